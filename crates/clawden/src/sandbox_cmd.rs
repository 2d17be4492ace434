//! `clawden sandbox exec`: run a command in an instance member's sandbox.
//!
//! This is the one-shot path for when no server runs on the data dir: open the store, check the
//! member and the tier, start the sandbox (unsealing its workspace), run, stop and seal. With a
//! server running, the command will go through the server's admin socket instead (not built yet:
//! it arrives with the server-side manager); meanwhile the volume lock makes a second process
//! fail cleanly instead of mounting a volume twice.

use anyhow::{bail, Context};
use clap::Subcommand;
use clawden_core::{Clock, InstanceId, Principal, SystemClock, Tier};
use clawden_sandbox::{
    BackendConfig, EgressEvent, EgressPolicy, EgressProxy, EgressReporter, ExecRequest, ExecStdio, LocalSandboxes,
    ManagerSettings, SandboxKey, SandboxManager, StopReason, WorkspaceKey, WorkspaceKeyFuture, WorkspaceKeys,
    WorkspaceStorage,
};
use clawden_server::Settings;
use clawden_store::{AgentStore, KeyOwner, Keyring, Store, UserStore};
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

/// Workspace keys from the keyring: the instance's data key.
struct InstanceDeks(Arc<Keyring>);

impl WorkspaceKeys for InstanceDeks {
    fn workspace_key<'a>(&'a self, key: &'a SandboxKey) -> WorkspaceKeyFuture<'a> {
        Box::pin(async move {
            let dek = self
                .0
                .dek(KeyOwner::Instance(key.instance), SystemClock.now_millis())
                .await
                .map_err(|e| clawden_sandbox::Error::WorkspaceKey(Box::new(e)))?;
            Ok(WorkspaceKey::new(*dek.key()))
        })
    }
}

/// Runs the command; returns the exit code the process should end with.
pub async fn run(cmd: &SandboxCommand, settings: Settings) -> anyhow::Result<i32> {
    let SandboxCommand::Exec(args) = cmd;
    let (store, keyring) = clawden_server::open_storage(&settings, &SystemClock).await?;
    let user = match &args.user {
        Some(email) => store
            .user_by_email(&Principal::System, email)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no user with that email"))?,
        None => store
            .instance_owner(&Principal::System, args.instance)
            .await?
            .ok_or_else(|| anyhow::anyhow!("no instance {}", args.instance))?,
    };
    store
        .role_in(&Principal::User { user: user.id }, args.instance)
        .await?
        .ok_or_else(|| anyhow::anyhow!("{} is not a member of instance {}", user.email, args.instance))?;
    // An instance's tier is its owner's tier: the same check the agent makes before any tool.
    let tier = store.instance_tier(&Principal::System, args.instance).await?.unwrap_or(Tier::Base);
    if tier == Tier::Base {
        bail!(
            "instance {} is on the base tier: it has no sandbox and no tools (redeem an invite to upgrade)",
            args.instance
        );
    }
    if user.disabled {
        bail!("the account {} is disabled", user.email);
    }
    store.ping().await?;

    let sandbox_dir = settings.data_dir.join("sandbox");
    let helper = std::env::current_exe().context("finding the clawden executable")?;
    let backend = LocalSandboxes::new(BackendConfig::new(helper, sandbox_dir.join("state")))
        .context("the sandbox is unavailable on this machine (invite-tier tools stay off)")?;
    let mut manager_settings = ManagerSettings::new(sandbox_dir.join("volumes"));
    manager_settings.storage = WorkspaceStorage::QuotaImage;
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
        Arc::new(InstanceDeks(keyring)),
        Some(EgressProxy::new(Some(reporter))),
        manager_settings,
    );
    let key = SandboxKey { instance: args.instance, member: user.id };
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
    let code = outcome.context("running the command in the sandbox")?;
    stopped.context("stopping and sealing the sandbox")?;
    Ok(code)
}
