//! `clawden security-audit [--json]`: checks the configuration the server would run with, the
//! key and data files on disk, and the isolation this kernel offers sandboxes, and prints
//! findings with a severity and a fix. Exits 2 when any finding is critical. Reads only: it
//! creates no file and opens no database.

use clawden_core::SignupMode;
use clawden_sandbox::Capabilities;
use clawden_server::Settings;
use serde::Serialize;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Fix before serving anyone: secrets or traffic are exposed.
    Critical,
    /// Weaker than it should be, or a feature is off because of it.
    Warning,
    /// Worth knowing.
    Info,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Critical => "CRITICAL",
            Severity::Warning => "WARNING",
            Severity::Info => "INFO",
        }
    }
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Stable dotted id, e.g. `master_key.permissions`.
    pub id: &'static str,
    /// How bad.
    pub severity: Severity,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, severity: Severity, id: &'static str, message: impl Into<String>, hint: impl Into<String>) {
        self.0.push(Finding { id, severity, message: message.into(), hint: hint.into() });
    }
}

/// Exit code when a critical finding exists.
pub const EXIT_CRITICAL: i32 = 2;

/// Runs every check; findings sorted by severity.
pub fn audit(settings: &Settings, caps: &Capabilities) -> Vec<Finding> {
    let mut f = Findings::default();
    listening(settings, &mut f);
    key_files(settings, &mut f);
    data_dir(settings, &mut f);
    sandbox(settings, caps, &mut f);
    providers(settings, &mut f);
    proxies(settings, &mut f);
    database(settings, &mut f);
    retention(settings, &mut f);
    let mut all = f.0;
    all.sort_by_key(|x| x.severity);
    all
}

fn listening(s: &Settings, f: &mut Findings) {
    let public = !s.listen.ip().is_loopback();
    if public && !s.tls_enabled() {
        if s.trusted_proxies.is_empty() {
            f.add(
                Severity::Critical,
                "listen.plain_http",
                format!("listening on {} with plain HTTP (insecure_http) and no trusted proxy configured: passwords and session cookies cross the network in clear", s.listen),
                "give --tls-cert/--tls-key or --tls-self-signed, or listen on 127.0.0.1 behind a TLS proxy and list it in trusted_proxies",
            );
        } else {
            f.add(
                Severity::Warning,
                "listen.plain_http",
                format!("listening on {} with plain HTTP (insecure_http) behind a proxy: anyone who can reach this port directly bypasses TLS", s.listen),
                "listen on a loopback or private address that only the TLS proxy can reach, or firewall the port",
            );
        }
    }
    if public && s.tls_self_signed {
        f.add(
            Severity::Info,
            "tls.self_signed",
            "TLS uses a self-signed certificate: browsers warn, and users learn to click through warnings",
            "give a certificate from a public CA with --tls-cert/--tls-key",
        );
    }
    if public && s.signup == SignupMode::Open {
        f.add(
            Severity::Warning,
            "signup.open_public",
            format!("anyone who reaches {} can sign up and spend the platform's provider quota", s.listen),
            "set signup = \"invite-only\" or \"closed\" and create users with `clawden admin create-user`",
        );
    }
}

/// Mode bits of a file that let others than its owner read or write it.
fn check_secret_file(path: &Path, id: &'static str, what: &str, f: &mut Findings) {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            f.add(
                Severity::Info,
                id,
                format!("{what} {} does not exist yet", path.display()),
                "it is created with mode 0600 on first start",
            );
            return;
        }
        Err(e) => {
            f.add(
                Severity::Warning,
                id,
                format!("cannot check {what} {}: {e}", path.display()),
                "run security-audit as the user the server runs as",
            );
            return;
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        f.add(
            Severity::Critical,
            id,
            format!("{what} {} is readable or writable by other users (mode {mode:04o})", path.display()),
            format!("chmod 600 {}", path.display()),
        );
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        f.add(
            Severity::Warning,
            id,
            format!("{what} {} belongs to uid {}, not to uid {me} running this audit", path.display(), meta.uid()),
            format!("chown it to the user the server runs as: chown {me} {}", path.display()),
        );
    }
}

fn key_files(s: &Settings, f: &mut Findings) {
    if s.master_key.is_some() {
        f.add(
            Severity::Info,
            "master_key.environment",
            "the master key comes from the environment (CLAWDEN_MASTER_KEY_HEX)",
            "prefer CLAWDEN_MASTER_KEY_HEX_FILE pointing at a 0600 file, so the key stays out of process environments",
        );
    } else {
        let path = s.master_key_path();
        check_secret_file(&path, "master_key.permissions", "the master key file", f);
        if path.starts_with(&s.data_dir) {
            f.add(
                Severity::Info,
                "master_key.in_data_dir",
                "the master key lives in the data dir: a backup of the whole data dir holds both the wrapped keys and the key that opens them",
                "back up the data dir without master.key (keep it elsewhere), or set master_key_file outside the data dir",
            );
        }
    }
    if let Some(key) = &s.tls_key {
        check_secret_file(key, "tls.key_permissions", "the TLS private key", f);
    } else if s.tls_self_signed {
        let key = s.data_dir.join("tls").join("self-signed.key");
        if key.exists() {
            check_secret_file(&key, "tls.key_permissions", "the TLS private key", f);
        }
    }
    let socket = s.admin_socket_path();
    if let Ok(meta) = std::fs::symlink_metadata(&socket) {
        let mode = meta.permissions().mode() & 0o777;
        if meta.file_type().is_socket() && mode & 0o077 != 0 {
            f.add(
                Severity::Critical,
                "admin_socket.permissions",
                format!(
                    "the admin socket {} is open to other users (mode {mode:04o}); it runs commands in every sandbox",
                    socket.display()
                ),
                "restart the server (it creates the socket 0600) and check the data dir's mode",
            );
        }
    }
}

fn data_dir(s: &Settings, f: &mut Findings) {
    let dir = &s.data_dir;
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(_) => {
            f.add(
                Severity::Info,
                "data_dir.missing",
                format!("the data dir {} does not exist yet", dir.display()),
                "the server creates it with mode 0700 on first start",
            );
            return;
        }
    };
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o002 != 0 {
        f.add(
            Severity::Critical,
            "data_dir.permissions",
            format!("the data dir {} is writable by every user (mode {mode:04o})", dir.display()),
            format!("chmod 700 {}", dir.display()),
        );
    } else if mode & 0o077 != 0 {
        f.add(
            Severity::Warning,
            "data_dir.permissions",
            format!(
                "the data dir {} is open to other users (mode {mode:04o}); the server tightens it to 0700 at start",
                dir.display()
            ),
            format!("chmod 700 {}", dir.display()),
        );
    }
    let dir_closed = mode & 0o077 == 0;
    for name in ["clawden.db", "keys.db"] {
        let path = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&path) {
            let file_mode = meta.permissions().mode() & 0o777;
            if file_mode & 0o077 != 0 {
                let (severity, why) = if dir_closed {
                    (Severity::Info, "only the data dir's own mode keeps other users out")
                } else {
                    (Severity::Warning, "and the data dir is open too")
                };
                f.add(
                    severity,
                    "data_dir.database_permissions",
                    format!("{} (sealed data, wrapped keys) has mode {file_mode:04o}: {why}", path.display()),
                    format!("chmod 600 {}", path.display()),
                );
            }
        }
    }
}

fn sandbox(s: &Settings, caps: &Capabilities, f: &mut Findings) {
    if !s.sandbox.enabled {
        f.add(
            Severity::Info,
            "sandbox.disabled",
            "sandboxes are turned off: invite-tier tools are unavailable",
            "set sandbox.enabled = true on a kernel that supports them",
        );
        return;
    }
    let off = "invite-tier tools are unavailable on this machine (the server fails closed)";
    if !caps.running_as_root {
        f.add(
            Severity::Warning,
            "sandbox.not_root",
            format!(
                "not running as root: the local backend needs root for uid ranges, quota volumes and cgroups; {off}"
            ),
            "run the server as root (sandboxes still map to unprivileged uids) or use a container engine backend",
        );
    }
    if !caps.user_namespaces {
        f.add(Severity::Warning, "sandbox.user_namespaces", format!("user namespaces are unavailable; {off}"), "enable them: sysctl user.max_user_namespaces=15000 (and kernel.unprivileged_userns_clone=1 where it exists)");
    }
    if !caps.seccomp {
        f.add(
            Severity::Warning,
            "sandbox.seccomp",
            format!("seccomp filters are unavailable; {off}"),
            "use a kernel built with CONFIG_SECCOMP_FILTER",
        );
    }
    if !caps.pidfd {
        f.add(
            Severity::Warning,
            "sandbox.pidfd",
            format!("pidfd_open is unavailable; {off}"),
            "use Linux 5.8 or later",
        );
    }
    match caps.landlock_abi {
        None if s.sandbox.require_landlock => f.add(
            Severity::Warning,
            "sandbox.landlock",
            format!("Landlock is unavailable and sandbox.require_landlock is set; {off}"),
            "boot with lsm=...,landlock (Linux 5.13+), or unset sandbox.require_landlock",
        ),
        None => f.add(
            Severity::Warning,
            "sandbox.landlock",
            "Landlock is unavailable: sandboxes run without this layer of file-system confinement",
            "boot with lsm=...,landlock (Linux 5.13+)",
        ),
        Some(abi) if abi < 3 => f.add(
            Severity::Info,
            "sandbox.landlock",
            format!("Landlock ABI {abi}: truncation is not controlled (ABI 3, Linux 6.2+)"),
            "upgrade the kernel for a newer Landlock ABI",
        ),
        Some(_) => {}
    }
    if caps.cgroups.version.is_none() {
        f.add(
            Severity::Warning,
            "sandbox.cgroups",
            format!(
                "the cgroup controllers memory, pids and cpu are not all available (v2: [{}], v1: [{}]); {off}",
                caps.cgroups.v2_controllers.join(" "),
                caps.cgroups.v1_controllers.join(" ")
            ),
            "enable the memory, pids and cpu controllers (cgroup v2: cgroup.subtree_control of the server's parent cgroup; systemd: Delegate=yes)",
        );
    }
    if !caps.quota_volumes {
        f.add(
            Severity::Warning,
            "sandbox.quota_volumes",
            format!("workspace quota volumes need root, /dev/loop-control and mkfs.ext4; {off}"),
            "install e2fsprogs and load the loop module",
        );
    }
    if caps.core_pattern_pipe {
        f.add(Severity::Warning, "sandbox.core_pattern_pipe", "kernel.core_pattern pipes core dumps to a program, which runs as host root when a sandboxed process crashes", "sysctl kernel.core_pattern=core (or a plain path)");
    }
}

fn providers(s: &Settings, f: &mut Findings) {
    if let Err(why) = clawden_server::chat::build_provider(s) {
        f.add(
            Severity::Critical,
            "provider.invalid",
            format!("the server refuses to start with this provider configuration: {why}"),
            "fix the provider settings",
        );
    }
    for (name, url) in [("anthropic_base_url", &s.anthropic_base_url), ("openai_base_url", &s.openai_base_url)] {
        if url.as_deref().is_some_and(|u| u.trim().to_ascii_lowercase().starts_with("http://")) {
            f.add(
                Severity::Info,
                "provider.http_base_url",
                format!("{name} uses plain http (allowed only to a loopback address): prompts and keys cross this host unencrypted"),
                "use https, or keep the provider on the loopback interface only",
            );
        }
    }
    if s.anthropic_api_key.is_some() || s.openai_api_key.is_some() {
        let c = &s.chat;
        f.add(
            Severity::Info,
            "provider.platform_key",
            format!(
                "a platform provider key is configured: users without their own key spend it (quotas: base {} messages a day, invite {} messages and {} tool calls a day, {} a minute)",
                c.base_messages_per_day, c.invite_messages_per_day, c.invite_tool_calls_per_day, c.messages_per_minute
            ),
            "set a spending limit with the provider too; lower chat.*_per_day if the bill matters",
        );
        if c.base_messages_per_day > 10_000 || c.invite_messages_per_day > 100_000 || c.messages_per_minute > 600 {
            f.add(
                Severity::Warning,
                "provider.quotas_too_high",
                "a platform key is configured with quotas so high they do not limit spending",
                "lower chat.base_messages_per_day, chat.invite_messages_per_day and chat.messages_per_minute",
            );
        }
    }
}

fn proxies(s: &Settings, f: &mut Findings) {
    for net in &s.trusted_proxies {
        let wide = match net.addr() {
            IpAddr::V4(_) => net.prefix_len() < 8,
            IpAddr::V6(_) => net.prefix_len() < 32,
        };
        let public = match net.addr() {
            IpAddr::V4(a) => !(a.is_private() || a.is_loopback() || a.is_link_local()),
            IpAddr::V6(a) => !(a.is_loopback() || (a.segments()[0] & 0xfe00) == 0xfc00),
        };
        if net.prefix_len() == 0 || wide {
            f.add(
                Severity::Critical,
                "trusted_proxies.too_wide",
                format!("trusted_proxies contains {net}: any client can forge X-Forwarded-For and escape per-address login and signup limits"),
                "list only the addresses of your own reverse proxies (e.g. 127.0.0.1/32)",
            );
        } else if public {
            f.add(
                Severity::Warning,
                "trusted_proxies.public",
                format!("trusted_proxies contains the public range {net}: every host in it can forge client addresses"),
                "list only your own proxies' addresses",
            );
        }
    }
}

fn retention(s: &Settings, f: &mut Findings) {
    if s.audit_retention.is_zero() {
        f.add(
            Severity::Warning,
            "audit-retention-disabled",
            "audit records are kept forever (audit_retention = 0s)",
            "set audit_retention (default 30d) so old records leave the log; chains stay verifiable",
        );
    } else if s.audit_retention < std::time::Duration::from_secs(7 * 24 * 3600) {
        f.add(
            Severity::Warning,
            "audit-retention-short",
            format!("audit records are kept only {}", humantime::format_duration(s.audit_retention)),
            "keep at least a week of audit records to investigate incidents",
        );
    }
}

fn database(s: &Settings, f: &mut Findings) {
    let url = s.database_url();
    if url.starts_with("postgres") {
        let local = ["@localhost", "@127.0.0.1", "@[::1]", "@/", "host=/"].iter().any(|h| url.contains(h));
        let tls = ["sslmode=require", "sslmode=verify-ca", "sslmode=verify-full"].iter().any(|m| url.contains(m));
        if !local && !tls {
            f.add(
                Severity::Warning,
                "database.no_tls",
                "the PostgreSQL URL does not require TLS to a remote host",
                "add ?sslmode=verify-full to the database URL",
            );
        }
        if s.key_store_url.is_none() {
            f.add(
                Severity::Info,
                "database.key_store_same_database",
                "the key store is a schema of the same PostgreSQL database: its backups hold the wrapped data keys next to the data",
                "set key_store_url to a separate database, backed up separately",
            );
        }
    }
}

/// Prints the findings and returns the exit code (2 if any is critical).
pub fn run(settings: &Settings, json: bool) -> anyhow::Result<i32> {
    let caps = clawden_sandbox::probe();
    let findings = audit(settings, &caps);
    let count = |s: Severity| findings.iter().filter(|x| x.severity == s).count();
    let (critical, warnings, info) = (count(Severity::Critical), count(Severity::Warning), count(Severity::Info));
    let mut out = std::io::stdout().lock();
    if json {
        let doc = serde_json::json!({
            "findings": findings,
            "critical": critical,
            "warnings": warnings,
            "info": info,
        });
        serde_json::to_writer_pretty(&mut out, &doc)?;
        writeln!(out)?;
    } else {
        for x in &findings {
            writeln!(out, "{:<8}  {}  {}", x.severity.label(), x.id, x.message)?;
            writeln!(out, "{:<8}  fix: {}", "", x.hint)?;
        }
        writeln!(out, "{critical} critical, {warnings} warnings, {info} info")?;
    }
    out.flush()?;
    Ok(if critical > 0 { EXIT_CRITICAL } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clawden_sandbox::CgroupSupport;

    fn bare_kernel() -> Capabilities {
        Capabilities {
            running_as_root: true,
            user_namespaces: false,
            seccomp: false,
            landlock_abi: None,
            pidfd: true,
            quota_volumes: true,
            cgroups: CgroupSupport::default(),
            core_pattern_pipe: true,
        }
    }

    #[test]
    fn missing_kernel_features_are_named_as_warnings_because_the_server_fails_closed() {
        let settings = Settings { data_dir: "/nonexistent/clawden-audit".into(), ..Settings::default() };
        let findings = audit(&settings, &bare_kernel());
        for id in [
            "sandbox.user_namespaces",
            "sandbox.seccomp",
            "sandbox.landlock",
            "sandbox.cgroups",
            "sandbox.core_pattern_pipe",
        ] {
            let f = findings.iter().find(|f| f.id == id);
            assert!(f.is_some_and(|f| f.severity == Severity::Warning), "{id}: {findings:?}");
        }
        assert!(!findings.iter().any(|f| f.severity == Severity::Critical), "{findings:?}");
    }
}
