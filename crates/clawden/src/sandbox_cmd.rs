//! `clawden sandbox exec`: run a command in an instance member's sandbox.
//!
//! With a server running on the data dir, the command goes through its local admin socket and
//! runs in the member's warm sandbox held by the server's manager (the server makes the checks).
//! Without one, the one-shot path: open the store, check the member and the tier, start the
//! sandbox (unsealing its workspace), run, stop and seal. The volume lock makes a second process
//! fail cleanly instead of mounting a volume twice.

use anyhow::Context;
use clap::Subcommand;
use clawden_core::{InstanceId, Principal, SystemClock, Tier};
use clawden_sandbox::{
    EgressEvent, EgressPolicy, EgressProxy, EgressReporter, ExecRequest, ExecStdio, LocalSandboxes, SandboxManager,
    StopReason,
};
use clawden_server::admin_socket::{self, ExecCall};
use clawden_server::{sandbox, Settings};
use clawden_store::{AgentStore, Store};
use std::ffi::OsString;
use std::sync::Arc;
use std::time::Duration;

#[derive(Subcommand, Debug)]
pub enum SandboxCommand {
    /// Run a command in the sandbox of an instance and member; exits with the command's code
    /// (124 on timeout, 137 when killed for memory).
    Exec(ExecArgs),
}

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// The instance id.
    #[arg(long)]
    instance: InstanceId,
    /// The member whose sandbox to use (email); default: the instance's owner.
    #[arg(long, value_name = "EMAIL")]
    user: Option<String>,
    /// Wall-clock limit of the command.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// The command and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<OsString>,
}

/// Runs the command; returns the exit code the process should end with.
pub async fn run(cmd: &SandboxCommand, settings: Settings) -> anyhow::Result<i32> {
    let SandboxCommand::Exec(args) = cmd;
    let socket = settings.admin_socket_path();
    if let Some(stream) = admin_socket::client::connect(&socket).await? {
        return through_server(stream, args).await;
    }
    one_shot(args, settings).await
}

/// A server runs on this data dir: its manager runs the command in the member's warm sandbox.
async fn through_server(stream: tokio::net::UnixStream, args: &ExecArgs) -> anyhow::Result<i32> {
    let argv = args
        .command
        .iter()
        .map(|a| a.to_str().map(str::to_owned))
        .collect::<Option<Vec<_>>>()
        .context("through a running server's admin socket the command and its arguments must be UTF-8")?;
    let call = ExecCall { instance: args.instance, user: args.user.clone(), timeout: args.timeout, argv };
    let (mut stdout, mut stderr) = (tokio::io::stdout(), tokio::io::stderr());
    tokio::select! {
        code = admin_socket::client::exec(stream, call, &mut stdout, &mut stderr) => Ok(code?),
        // Closing the connection closes the command's output pipes; its timeout bounds the rest.
        _ = tokio::signal::ctrl_c() => Ok(130),
    }
}

/// No server: start the sandbox (unsealing its workspace), run, stop and seal.
async fn one_shot(args: &ExecArgs, settings: Settings) -> anyhow::Result<i32> {
    let (store, keyring) = clawden_server::open_storage(&settings, &SystemClock).await?;
    // An instance's tier is its owner's tier: the same check the agent makes before any tool.
    let tier = store.instance_tier(&Principal::System, args.instance).await?.unwrap_or(Tier::Base);
    let key = sandbox::authorize_exec(store.as_ref(), args.instance, args.user.as_deref(), tier).await?;
    store.ping().await?;

    let backend = LocalSandboxes::new(sandbox::backend_config(&settings).map_err(anyhow::Error::msg)?)
        .context("the sandbox is unavailable on this machine (invite-tier tools stay off)")?;
    let reporter: EgressReporter = Arc::new(|e: &EgressEvent| {
        eprintln!(
            "clawden: egress {} {}:{}{}",
            if e.allowed { "allowed" } else { "refused" },
            e.host,
            e.port,
            e.reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        );
    });
    let manager = SandboxManager::new(
        Arc::new(backend),
        Arc::new(sandbox::InstanceDeks::new(keyring, Arc::new(SystemClock))),
        Some(EgressProxy::new(Some(reporter))),
        sandbox::manager_settings(&settings),
    );
    let mut request = ExecRequest::new(args.command.iter().cloned()).with_timeout(args.timeout);
    request.stdin = ExecStdio::Inherit;
    request.stdout = ExecStdio::Inherit;
    request.stderr = ExecStdio::Inherit;
    // The instance policy's egress allowlist is not stored yet: empty, so nothing is reachable.
    let outcome = match manager.exec(&key, EgressPolicy::default(), request).await {
        Ok(process) => {
            tokio::select! {
                outcome = process.wait() => outcome.map(|o| o.code),
                _ = tokio::signal::ctrl_c() => Ok(130),
            }
        }
        Err(e) => Err(e),
    };
    // Stop and seal whatever happened; a sealing failure is an error even if the command worked.
    let stopped = manager.stop(&key, StopReason::Requested).await;
    sandbox::record_operator_exec(store.as_ref(), &SystemClock, &key, outcome.as_ref().ok().copied()).await;
    let code = outcome.context("running the command in the sandbox")?;
    stopped.context("stopping and sealing the sandbox")?;
    Ok(code)
}
