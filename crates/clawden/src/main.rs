//! The `clawden` command: wiring only. Every command accepts `--data-dir`, `--database-url`
//! and `--config`, and reads the same settings from `CLAWDEN_*` variables.

mod admin;
mod audit_cmd;
mod sandbox_cmd;
mod security_audit;

use anyhow::Context;
use clap::{Parser, Subcommand};
use clawden_server::{Overrides, Settings};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "clawden", version, about = "Host OpenClaw-compatible AI agents for many people, safely.")]
struct Cli {
    /// TOML settings file.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Data directory (SQLite files, master key, TLS material, sandbox volumes).
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// `sqlite://…` or `postgres://…`.
    #[arg(long, global = true, value_name = "URL")]
    database_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start the server.
    Serve(ServeArgs),
    /// Operator commands.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Master key management.
    #[command(subcommand)]
    Keys(admin::KeysCommand),
    /// The tamper-evident audit log.
    #[command(subcommand)]
    Audit(audit_cmd::AuditCommand),
    /// Run commands in a member's sandbox.
    #[command(subcommand)]
    Sandbox(sandbox_cmd::SandboxCommand),
    /// Check the configuration, key and data file permissions, and this kernel's sandbox
    /// support; exits 2 when a finding is critical.
    SecurityAudit(AuditArgs),
}

#[derive(clap::Args, Debug)]
struct AuditArgs {
    /// Print the findings as JSON.
    #[arg(long)]
    json: bool,
    /// The serve options to audit, as `clawden serve` would get them.
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8787).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// PEM certificate chain.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Generate (once) and use a self-signed certificate.
    #[arg(long, conflicts_with = "tls_cert")]
    tls_self_signed: bool,
    /// Allow plain HTTP on a non-loopback address (a TLS proxy must sit in front).
    #[arg(long)]
    insecure_http: bool,
}

impl Cli {
    fn settings(&self, serve: Option<&ServeArgs>) -> anyhow::Result<Settings> {
        let mut overrides = Overrides {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            ..Overrides::default()
        };
        if let Some(s) = serve {
            overrides.listen = s.listen;
            overrides.tls_cert = s.tls_cert.clone();
            overrides.tls_key = s.tls_key.clone();
            overrides.tls_self_signed = s.tls_self_signed;
            overrides.insecure_http = s.insecure_http;
        }
        Ok(Settings::load(self.config.as_deref(), &overrides)?)
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLAWDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(clawden_server::redact::Redacting(std::io::stderr))
        .init();
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled, so a SIGTERM right after `listening on` still shuts down gracefully.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    async move {
        let (mut term, mut int) = match (term, int) {
            (Ok(t), Ok(i)) => (t, i),
            _ => return std::future::pending().await,
        };
        tokio::select! {
            _ = int.recv() => {},
            _ = term.recv() => {},
        }
        tracing::info!("shutting down");
    }
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let listener =
        std::net::TcpListener::bind(settings.listen).with_context(|| format!("binding {}", settings.listen))?;
    let shutdown = shutdown_signal();
    let server = clawden_server::Server::build(settings, listener).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on {}", server.url())?;
    out.flush()?;
    drop(out);
    server.run(shutdown).await?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    // The sandbox helper must run before any thread or runtime exists: it unshares namespaces,
    // which a multi-threaded process cannot do.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == clawden_sandbox::HELPER_SUBCOMMAND) {
        let code = clawden_sandbox::helper_main(args.get(2..).unwrap_or_default());
        return std::process::ExitCode::from(u8::try_from(code).unwrap_or(1));
    }
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: starting the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match &cli.command {
            Command::Serve(args) => serve(cli.settings(Some(args))?).await,
            Command::Admin(cmd) => admin::run_admin(cmd, cli.settings(None)?).await,
            Command::Keys(cmd) => admin::run_keys(cmd, cli.settings(None)?).await,
            Command::Audit(cmd) => {
                let code = audit_cmd::run(cmd, cli.settings(None)?).await?;
                if code != 0 {
                    std::process::exit(i32::from(code));
                }
                Ok(())
            }
            Command::Sandbox(cmd) => {
                // The command's own exit code (124 timeout, 137 memory kill) is ours.
                let code = sandbox_cmd::run(cmd, cli.settings(None)?).await?;
                std::process::exit(code)
            }
            Command::SecurityAudit(args) => {
                let code = security_audit::run(&cli.settings(Some(&args.serve))?, args.json)?;
                std::process::exit(code)
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
