//! Typed settings: defaults, then a TOML file, then `CLAWDEN_*` environment variables (with
//! `CLAWDEN_<NAME>_FILE` for secrets), then command-line flags. Insecure combinations are
//! refused when loading, never discovered at run time.

use clawden_core::SignupMode;
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use ipnet::IpNet;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file or environment could not be parsed.
    #[error("settings: {0}")]
    Parse(String),
    /// A combination that would be unsafe to run.
    #[error("refusing to start: {0}")]
    Insecure(String),
    /// A `*_FILE` secret could not be read.
    #[error("reading {0}: {1}")]
    SecretFile(String, std::io::Error),
}

/// Every setting of the server.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Where the SQLite files, master key, TLS material and sandbox volumes live.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`; default: `clawden.db` in the data dir.
    #[serde(skip_serializing)]
    pub database_url: Option<SecretString>,
    /// Key store URL; default: `keys.db` in the data dir, or the `clawden_keys` schema.
    #[serde(skip_serializing)]
    pub key_store_url: Option<SecretString>,
    /// Master key file; default `master.key` in the data dir.
    pub master_key_file: Option<PathBuf>,
    /// Master key as hex (instead of a file), e.g. from a secrets manager.
    #[serde(skip_serializing)]
    pub master_key: Option<SecretString>,
    /// PEM certificate chain for TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for TLS.
    pub tls_key: Option<PathBuf>,
    /// Generate (once) and use a self-signed certificate kept in the data dir.
    pub tls_self_signed: bool,
    /// Allow plain HTTP on a non-loopback address (behind a TLS-terminating proxy).
    pub insecure_http: bool,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Who may sign up.
    pub signup: SignupMode,
    /// Request body limit in bytes.
    pub max_body_bytes: usize,
    /// Authentication settings.
    pub auth: AuthSettings,
    /// Gateway token rotation.
    pub gateway: GatewaySettings,
    /// How often background housekeeping runs (session purge, due token rotations).
    #[serde(with = "humantime_serde")]
    pub housekeeping_every: Duration,
    /// Audit records older than this are removed (each chain stays verifiable through its
    /// checkpoint); `0s` keeps them forever. Conversations are never removed by it.
    #[serde(with = "humantime_serde")]
    pub audit_retention: Duration,
    /// Anomaly rule thresholds.
    pub anomaly: crate::anomaly::AnomalySettings,
    /// `demo`, `anthropic` or `openai`; default: the first with a key configured, else `demo`.
    pub provider: Option<String>,
    /// The provider's model; default per provider.
    pub model: Option<String>,
    /// Platform key for Anthropic (users may bring their own).
    #[serde(skip_serializing)]
    pub anthropic_api_key: Option<SecretString>,
    /// Platform key for OpenAI or an OpenAI-compatible server.
    #[serde(skip_serializing)]
    pub openai_api_key: Option<SecretString>,
    /// Anthropic API base URL (operators only; `https`, or `http` on loopback).
    pub anthropic_base_url: Option<String>,
    /// OpenAI-compatible base URL (operators only; Ollama, vLLM, llama.cpp…).
    pub openai_base_url: Option<String>,
    /// Chat limits.
    pub chat: ChatSettings,
    /// Sandboxes of invite-tier instances.
    pub sandbox: SandboxSettings,
    /// The agent loop: tool limits and approvals.
    pub tools: ToolSettings,
}

/// The agent loop's limits and the approval of elevated tool calls. Every duration is a
/// setting, so tests make them short.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolSettings {
    /// The most tool calls in one turn.
    pub max_calls_per_turn: usize,
    /// The longest one turn may run, approvals included.
    #[serde(with = "humantime_serde")]
    pub turn_timeout: Duration,
    /// The most provider tokens one turn may use.
    pub max_tokens_per_turn: u64,
    /// The same call may run this many times in one turn; the next is refused as a loop.
    pub max_repeats: usize,
    /// Tool results are cut to this many characters.
    pub max_result_chars: usize,
    /// No decision on an approval within this long means denied.
    #[serde(with = "humantime_serde")]
    pub approval_timeout: Duration,
    /// How often a waiting turn re-reads its approval (decisions taken on another server).
    #[serde(with = "humantime_serde")]
    pub approval_poll_interval: Duration,
    /// A non-streaming send still waiting for an approval after this long answers 202
    /// `waiting_for_approval` and the turn finishes in the background.
    #[serde(with = "humantime_serde")]
    pub approval_response_after: Duration,
    /// `exec` output (stdout and stderr each) is cut at this many bytes.
    pub exec_output_bytes: usize,
    /// `exec` runs this long unless the model asks for another limit.
    #[serde(with = "humantime_serde")]
    pub exec_default_timeout: Duration,
    /// The longest `exec` limit a model may ask for.
    #[serde(with = "humantime_serde")]
    pub exec_max_timeout: Duration,
    /// `read` returns at most this many bytes; `write` accepts at most this many.
    pub file_bytes: usize,
    /// `web_fetch` reads at most this many bytes of a response.
    pub fetch_bytes: usize,
    /// `web_fetch` gives up after this long.
    #[serde(with = "humantime_serde")]
    pub fetch_timeout: Duration,
}

impl Default for ToolSettings {
    fn default() -> Self {
        Self {
            max_calls_per_turn: 25,
            turn_timeout: Duration::from_secs(600),
            max_tokens_per_turn: 400_000,
            max_repeats: 3,
            max_result_chars: 32_000,
            approval_timeout: Duration::from_secs(300),
            approval_poll_interval: Duration::from_secs(2),
            approval_response_after: Duration::from_secs(30),
            exec_output_bytes: 64 * 1024,
            exec_default_timeout: Duration::from_secs(60),
            exec_max_timeout: Duration::from_secs(600),
            file_bytes: 1024 * 1024,
            fetch_bytes: 2 * 1024 * 1024,
            fetch_timeout: Duration::from_secs(20),
        }
    }
}

/// Sandboxes (DESIGN.md invariant 5): lifecycle, limits, the local admin socket.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SandboxSettings {
    /// Run a sandbox manager at all. Off, or when the kernel lacks the isolation, invite-tier
    /// tools are unavailable (fail closed) and chat still works.
    pub enabled: bool,
    /// A sandbox with no exec for this long is stopped and its workspace sealed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// How often idle sandboxes are looked for.
    #[serde(with = "humantime_serde")]
    pub reap_interval: Duration,
    /// Sandboxes running at once; the least recently used idle one stops to make room.
    pub max_running: usize,
    /// Memory of one sandbox in MiB (page cache and `/tmp` included).
    pub memory_mib: u64,
    /// Processes and threads in one sandbox.
    pub pids: u32,
    /// CPU of one sandbox in thousandths of a core.
    pub cpu_millicores: u32,
    /// Default wall-clock limit of one exec.
    #[serde(with = "humantime_serde")]
    pub exec_timeout: Duration,
    /// Longest wall-clock limit an exec may ask for (the CLI's `--timeout` included).
    #[serde(with = "humantime_serde")]
    pub max_exec_timeout: Duration,
    /// Workspace quota of one sandbox in MiB (writes past it fail with `ENOSPC`).
    pub workspace_quota_mib: u64,
    /// Size of the private `/tmp` in MiB (counts against the memory limit).
    pub tmp_mib: u64,
    /// Refuse to start sandboxes on a kernel without Landlock.
    pub require_landlock: bool,
    /// Listen on `<data dir>/admin.sock` (0600, own uid only) for `clawden sandbox exec`.
    pub admin_socket: bool,
    /// The `clawden` executable that sets each sandbox up (`clawden __sandbox-init`);
    /// default: the running executable. For embedding the server in another program.
    pub helper: Option<PathBuf>,
    /// A client of the admin socket must send its request within this time.
    #[serde(with = "humantime_serde")]
    pub admin_request_timeout: Duration,
}

impl Default for SandboxSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            idle_timeout: Duration::from_secs(600),
            reap_interval: Duration::from_secs(30),
            max_running: 50,
            memory_mib: 512,
            pids: 256,
            cpu_millicores: 1000,
            exec_timeout: Duration::from_secs(30),
            max_exec_timeout: Duration::from_secs(3600),
            workspace_quota_mib: 1024,
            tmp_mib: 64,
            require_landlock: false,
            admin_socket: true,
            helper: None,
            admin_request_timeout: Duration::from_secs(5),
        }
    }
}

impl SandboxSettings {
    fn validate(&self) -> Result<(), SettingsError> {
        let bad = |what: &str| Err(SettingsError::Insecure(format!("sandbox.{what}")));
        if self.idle_timeout.is_zero() || self.reap_interval.is_zero() {
            return bad("idle_timeout and sandbox.reap_interval must be non-zero");
        }
        if self.exec_timeout.is_zero() || self.max_exec_timeout < self.exec_timeout {
            return bad("exec_timeout must be non-zero and at most sandbox.max_exec_timeout");
        }
        if self.admin_request_timeout.is_zero() {
            return bad("admin_request_timeout must be non-zero");
        }
        if self.max_running == 0 {
            return bad("max_running must be at least 1");
        }
        if self.memory_mib < 32 || self.pids < 16 || self.cpu_millicores < 10 {
            return bad("memory_mib must be at least 32, pids at least 16, cpu_millicores at least 10");
        }
        if self.workspace_quota_mib < 8 || self.tmp_mib == 0 || self.tmp_mib >= self.memory_mib {
            return bad("workspace_quota_mib must be at least 8, and tmp_mib non-zero and below memory_mib");
        }
        Ok(())
    }
}

/// Limits on chatting.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatSettings {
    /// Longest message, in characters.
    pub max_message_chars: usize,
    /// Messages a day on the base tier.
    pub base_messages_per_day: i64,
    /// Messages a day on the invite tier.
    pub invite_messages_per_day: i64,
    /// Tool calls a day on the invite tier.
    pub invite_tool_calls_per_day: i64,
    /// Messages a minute per user (bursts).
    pub messages_per_minute: u32,
    /// Replies streaming at once per user.
    pub concurrent_streams_per_user: usize,
    /// WebSocket connections at once per user.
    pub websockets_per_user: usize,
    /// Conversations a user may keep.
    pub conversations_per_user: i64,
    /// Time a WebSocket may stay open before it authenticates.
    #[serde(with = "humantime_serde")]
    pub websocket_auth_timeout: Duration,
    /// Longest reply, in tokens.
    pub max_reply_tokens: u32,
}

impl Default for ChatSettings {
    fn default() -> Self {
        Self {
            max_message_chars: 32_000,
            base_messages_per_day: 50,
            invite_messages_per_day: 1000,
            invite_tool_calls_per_day: 500,
            messages_per_minute: 20,
            concurrent_streams_per_user: 4,
            websockets_per_user: 8,
            conversations_per_user: 1000,
            websocket_auth_timeout: Duration::from_secs(5),
            max_reply_tokens: 4096,
        }
    }
}

/// Gateway token rotation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Tokens older than this are replaced.
    #[serde(with = "humantime_serde")]
    pub rotate_every: Duration,
    /// The previous token keeps working this long after a rotation.
    #[serde(with = "humantime_serde")]
    pub overlap: Duration,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self { rotate_every: Duration::from_secs(24 * 3600), overlap: Duration::from_secs(600) }
    }
}

/// Sessions, passwords and login limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    /// A session unused this long ends.
    #[serde(with = "humantime_serde")]
    pub session_idle: Duration,
    /// A session ends this long after sign-in, used or not.
    #[serde(with = "humantime_serde")]
    pub session_absolute: Duration,
    /// Password hashes computed at once (each takes ~19 MiB and a core for ~20 ms).
    pub password_hash_concurrency: usize,
    /// Failed logins from one address for one account before backoff starts.
    pub login_free_failures_per_account_ip: u32,
    /// Failed logins from one address (any account) before backoff starts.
    pub login_free_failures_per_ip: u32,
    /// Failed logins for one account from addresses that never signed in to it, before
    /// (short, capped) backoff starts for those addresses.
    pub login_free_failures_per_account: u32,
    /// First backoff step; doubles with each further failure.
    #[serde(with = "humantime_serde")]
    pub login_backoff_base: Duration,
    /// Longest backoff per account and address.
    #[serde(with = "humantime_serde")]
    pub login_backoff_max: Duration,
    /// Longest backoff for an account from unknown addresses (kept short, so nobody can lock
    /// an account's owner out by failing logins from elsewhere).
    #[serde(with = "humantime_serde")]
    pub login_account_backoff_max: Duration,
    /// Failures are forgotten this long after the last one.
    #[serde(with = "humantime_serde")]
    pub login_failure_window: Duration,
    /// Signups allowed per client address per hour.
    pub signups_per_ip_per_hour: u32,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            session_idle: Duration::from_secs(7 * 24 * 3600),
            session_absolute: Duration::from_secs(30 * 24 * 3600),
            // Half the cores: a flood of sign-ins cannot take every core from the rest of the server.
            password_hash_concurrency: std::thread::available_parallelism().map(|n| (n.get() / 2).max(1)).unwrap_or(1),
            login_free_failures_per_account_ip: 5,
            login_free_failures_per_ip: 20,
            login_free_failures_per_account: 50,
            login_backoff_base: Duration::from_secs(1),
            login_backoff_max: Duration::from_secs(15 * 60),
            login_account_backoff_max: Duration::from_secs(60),
            login_failure_window: Duration::from_secs(3600),
            signups_per_ip_per_hour: 10,
        }
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./clawden-data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            database_url: None,
            key_store_url: None,
            master_key_file: None,
            master_key: None,
            tls_cert: None,
            tls_key: None,
            tls_self_signed: false,
            insecure_http: false,
            trusted_proxies: Vec::new(),
            signup: SignupMode::Open,
            max_body_bytes: 1024 * 1024,
            auth: AuthSettings::default(),
            gateway: GatewaySettings::default(),
            housekeeping_every: Duration::from_secs(60),
            audit_retention: Duration::from_secs(30 * 24 * 3600),
            anomaly: crate::anomaly::AnomalySettings::default(),
            provider: None,
            model: None,
            anthropic_api_key: None,
            openai_api_key: None,
            anthropic_base_url: None,
            openai_base_url: None,
            chat: ChatSettings::default(),
            sandbox: SandboxSettings::default(),
            tools: ToolSettings::default(),
        }
    }
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|u| mask_url(secrecy::ExposeSecret::expose_secret(u))),
            )
            .field("tls", &self.tls_enabled())
            .field("signup", &self.signup)
            .finish_non_exhaustive()
    }
}

/// Settings given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    /// `--data-dir`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// `--listen`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// `--database-url`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// `--tls-cert`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// `--tls-self-signed`
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub tls_self_signed: bool,
    /// `--insecure-http`
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub insecure_http: bool,
}

/// Settings read from files named by `CLAWDEN_<NAME>_FILE` (secrets mounted as files).
const SECRET_FILE_VARS: &[(&str, &str)] = &[
    ("CLAWDEN_DATABASE_URL_FILE", "database_url"),
    ("CLAWDEN_KEY_STORE_URL_FILE", "key_store_url"),
    ("CLAWDEN_MASTER_KEY_HEX_FILE", "master_key"),
    ("CLAWDEN_ANTHROPIC_API_KEY_FILE", "anthropic_api_key"),
    ("CLAWDEN_OPENAI_API_KEY_FILE", "openai_api_key"),
];

impl Settings {
    /// Loads defaults → `config` file → environment → `overrides`, then validates.
    pub fn load(config: Option<&Path>, overrides: &Overrides) -> Result<Self, SettingsError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config {
            if !path.exists() {
                return Err(SettingsError::Parse(format!("config file {} does not exist", path.display())));
            }
            figment = figment.merge(Toml::file(path));
        }
        let skip: Vec<&str> = SECRET_FILE_VARS.iter().map(|(var, _)| *var).collect();
        figment = figment.merge(
            Env::prefixed("CLAWDEN_")
                .filter(move |key| {
                    let upper = format!("CLAWDEN_{}", key.as_str().to_ascii_uppercase());
                    !skip.contains(&upper.as_str()) && !is_foreign_env(key.as_str())
                })
                .map(|key| match key.as_str() {
                    "master_key_hex" => "master_key".into(),
                    other => other.replace("__", ".").into(),
                }),
        );
        for (var, key) in SECRET_FILE_VARS {
            if let Ok(path) = std::env::var(var) {
                let value = std::fs::read_to_string(&path).map_err(|e| SettingsError::SecretFile((*var).into(), e))?;
                figment = figment.merge(Serialized::default(key, value.trim().to_owned()));
            }
        }
        figment = figment.merge(Serialized::defaults(overrides));
        let settings: Settings = figment.extract().map_err(|e| SettingsError::Parse(e.to_string()))?;
        settings.validate()?;
        Ok(settings)
    }

    /// Refuses unsafe combinations.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(SettingsError::Insecure("--tls-cert and --tls-key go together".into()));
        }
        if !self.listen.ip().is_loopback() && !self.tls_enabled() && !self.insecure_http {
            return Err(SettingsError::Insecure(format!(
                "{} is not a loopback address; give --tls-cert/--tls-key or --tls-self-signed, \
                 or --insecure-http if a TLS proxy sits in front",
                self.listen
            )));
        }
        if self.auth.session_idle.is_zero() || self.auth.session_absolute < self.auth.session_idle {
            return Err(SettingsError::Insecure(
                "session_absolute must be at least session_idle, both non-zero".into(),
            ));
        }
        if self.gateway.overlap >= self.gateway.rotate_every {
            return Err(SettingsError::Insecure("gateway.overlap must be shorter than gateway.rotate_every".into()));
        }
        if self.housekeeping_every.is_zero() {
            return Err(SettingsError::Insecure("housekeeping_every must be non-zero".into()));
        }
        if let Some(p) = &self.provider {
            if !matches!(p.as_str(), "demo" | "anthropic" | "openai") {
                return Err(SettingsError::Parse(format!("provider `{p}` is not one of demo, anthropic, openai")));
            }
        }
        if self.max_body_bytes < 1024 {
            return Err(SettingsError::Insecure("max_body_bytes must be at least 1024".into()));
        }
        self.sandbox.validate()?;
        Ok(())
    }

    /// Whether the server speaks TLS.
    pub fn tls_enabled(&self) -> bool {
        self.tls_self_signed || self.tls_cert.is_some()
    }

    /// The data database URL.
    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) => secrecy::ExposeSecret::expose_secret(url).to_owned(),
            None => clawden_store::sqlite_url(&self.data_dir.join("clawden.db")),
        }
    }

    /// The key store URL.
    pub fn key_store_url(&self) -> String {
        match &self.key_store_url {
            Some(url) => secrecy::ExposeSecret::expose_secret(url).to_owned(),
            None => clawden_store::KeyStore::default_url(&self.database_url(), &self.data_dir),
        }
    }

    /// The provider in use: as set, else the first with a platform key, else `demo`.
    pub fn provider_name(&self) -> &str {
        match &self.provider {
            Some(p) => p,
            None if self.anthropic_api_key.is_some() => "anthropic",
            None if self.openai_api_key.is_some() || self.openai_base_url.is_some() => "openai",
            None => "demo",
        }
    }

    /// The model in use: as set, else a default for the provider.
    pub fn model_name(&self) -> String {
        self.model.clone().unwrap_or_else(|| {
            match self.provider_name() {
                "anthropic" => "claude-sonnet-4-5",
                "openai" => "gpt-4o-mini",
                _ => "demo",
            }
            .to_owned()
        })
    }

    /// The master key file path.
    pub fn master_key_path(&self) -> PathBuf {
        self.master_key_file.clone().unwrap_or_else(|| self.data_dir.join("master.key"))
    }

    /// The local admin socket of a running server (`<data dir>/admin.sock`).
    pub fn admin_socket_path(&self) -> PathBuf {
        self.data_dir.join("admin.sock")
    }
}

/// Environment variables under `CLAWDEN_` that are not settings of the server (read by
/// other parts: tests, provider keys handled elsewhere).
fn is_foreign_env(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key.starts_with("test_") || matches!(key.as_str(), "log")
}

/// A database URL with its password replaced, for printing.
pub fn mask_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("****"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
