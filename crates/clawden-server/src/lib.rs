//! The clawden server: JSON API, dashboard, authentication, rate limits and TLS.
//!
//! Start it with [`launch`], or — in tests, to inject a clock and learn the address first —
//! with [`Server::build`] and [`Server::run`]. The listener is bound by the caller, so tests
//! bind port 0 and never sleep waiting for a server.

pub mod accounts;
pub mod admin_socket;
pub mod anomaly;
pub mod audit;
pub mod auth;
pub mod chat;
pub mod client_ip;
pub mod dashboard;
pub mod error;
pub mod gateway;
pub mod limits;
pub mod middleware;
pub mod openclaw;
pub mod permissions;
pub mod redact;
pub mod routes;
pub mod sandbox;
pub mod settings;
pub mod state;
pub mod tls;
pub mod totp;

pub use error::ApiError;
pub use settings::{Overrides, Settings, SettingsError};
pub use state::AppState;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use clawden_core::{Clock, SystemClock};
use clawden_crypto::{MasterKeys, PasswordHasher};
use clawden_store::{KeyStore, Keyring, MasterKeySource, SqlStore, Store};
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::sync::Arc;
use std::time::Duration;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Settings.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The data directory.
    #[error("data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    /// The master key.
    #[error(transparent)]
    Crypto(#[from] clawden_crypto::CryptoError),
    /// The database or key store.
    #[error(transparent)]
    Store(#[from] clawden_store::StoreError),
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The local admin socket.
    #[error("admin socket: {0}")]
    AdminSocket(std::io::Error),
    /// Serving.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Creates the data directory with mode 0700 (tightening an existing one).
pub fn prepare_data_dir(settings: &Settings) -> Result<(), LaunchError> {
    let dir = &settings.data_dir;
    let err = |e| LaunchError::DataDir(dir.display().to_string(), e);
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(err)?;
    let meta = std::fs::metadata(dir).map_err(err)?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}

/// The master keys the settings name: hex from the environment, or the key file.
pub fn load_master_keys(settings: &Settings) -> Result<(MasterKeys, MasterKeySource), LaunchError> {
    match &settings.master_key {
        Some(hex) => Ok((MasterKeys::from_hex(secrecy::ExposeSecret::expose_secret(hex))?, MasterKeySource::Fixed)),
        None => {
            let path = settings.master_key_path();
            Ok((MasterKeys::load_or_create(&path)?, MasterKeySource::File(path)))
        }
    }
}

/// Opens the store and keyring the settings name (creating files on first start).
pub async fn open_storage(
    settings: &Settings,
    clock: &dyn Clock,
) -> Result<(Arc<SqlStore>, Arc<Keyring>), LaunchError> {
    prepare_data_dir(settings)?;
    let (master, source) = load_master_keys(settings)?;
    let keys = KeyStore::connect(&settings.key_store_url()).await?;
    let keyring = Arc::new(Keyring::open(master, source, keys, clock.now_millis()).await?);
    let store = SqlStore::connect(&settings.database_url(), keyring.clone()).await?;
    Ok((Arc::new(store), keyring))
}

/// A server that is ready to serve on its listener.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    listener: std::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    sql: Arc<SqlStore>,
    admin: Option<admin_socket::AdminSocket>,
}

impl Server {
    /// Opens storage and prepares everything, with the system clock.
    pub async fn build(settings: Settings, listener: std::net::TcpListener) -> Result<Self, LaunchError> {
        Self::build_with_clock(settings, listener, Arc::new(SystemClock)).await
    }

    /// Opens storage and prepares everything, with the given clock.
    pub async fn build_with_clock(
        settings: Settings,
        listener: std::net::TcpListener,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, LaunchError> {
        settings.validate()?;
        let tls = tls::server_config(&settings)?;
        let (sql, keyring) = open_storage(&settings, clock.as_ref()).await?;
        let store: Arc<dyn Store> = sql.clone();
        let passwords = state::Passwords::new(PasswordHasher::owasp(), settings.auth.password_hash_concurrency);
        let limits = limits::Limiters::new(&settings.auth, clock.clone());
        let (provider, platform_key) = chat::build_provider(&settings).map_err(SettingsError::Insecure)?;
        let runtime = clawden_agent::runtime::Runtime::new(
            store.clone(),
            provider,
            platform_key,
            clock.clone(),
            chat::runtime_settings(&settings),
        );
        let chat_limits = chat::ChatLimits::new(&settings, clock.clone());
        let (sandbox, sandbox_unavailable) =
            match sandbox::build_manager(&settings, keyring.clone(), clock.clone(), Some(store.clone())) {
                Ok(manager) => (Some(manager), None),
                Err(why) => {
                    tracing::warn!(reason = %why, "no sandboxes: invite-tier tools are unavailable");
                    (None, Some(Arc::<str>::from(why)))
                }
            };
        // Approvals left pending by an earlier run have no turn waiting for them any more.
        store.expire_all_pending(&clawden_core::Principal::System, clock.now_millis()).await?;
        let approvals = clawden_agent::approvals::ApprovalHub::new(
            store.clone(),
            clock.clone(),
            clawden_agent::approvals::ApprovalSettings {
                timeout: settings.tools.approval_timeout,
                poll_interval: settings.tools.approval_poll_interval,
            },
        );
        let runtime = runtime.with_tools(sandbox::tool_executor(&settings, sandbox.as_ref()), Some(approvals));
        // Bound before `listening on` is printed, so a `clawden sandbox exec` right after finds it.
        let admin = if settings.sandbox.admin_socket {
            Some(admin_socket::AdminSocket::bind(&settings.admin_socket_path()).map_err(LaunchError::AdminSocket)?)
        } else {
            None
        };
        let state = AppState {
            settings: Arc::new(settings),
            store,
            keyring,
            clock,
            passwords: Arc::new(passwords),
            limits: Arc::new(limits),
            notices: gateway::TokenNotices::default(),
            runtime: Arc::new(runtime),
            chat: Arc::new(chat_limits),
            sandbox,
            sandbox_unavailable,
        };
        listener.set_nonblocking(true)?;
        Ok(Self { state, listener, tls, sql, admin })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// `http://addr` or `https://addr`.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        match self.local_addr() {
            Ok(addr) => format!("{scheme}://{addr}"),
            Err(_) => format!("{scheme}://{}", self.state.settings.listen),
        }
    }

    /// The shared state (tests reach the store and clock through it).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then finishes in-flight requests and closes storage.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<(), LaunchError> {
        let app = router(self.state.clone());
        let jobs = tokio::spawn(background_jobs(self.state.clone(), self.sql.clone()));
        let reaper = self.state.sandbox.as_ref().map(|m| m.spawn_reaper());
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = self.admin.map(|socket| {
            tokio::spawn(socket.serve(self.state.clone(), async {
                let _ = admin_stopped.await;
            }))
        });
        let served = match self.tls {
            None => {
                let listener = tokio::net::TcpListener::from_std(self.listener)?;
                axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
                    .with_graceful_shutdown(shutdown)
                    .await
            }
            Some(config) => {
                let handle = axum_server::Handle::new();
                let stopper = handle.clone();
                tokio::spawn(async move {
                    shutdown.await;
                    stopper.graceful_shutdown(Some(Duration::from_secs(10)));
                });
                axum_server::from_tcp_rustls(self.listener, axum_server::tls_rustls::RustlsConfig::from_config(config))
                    .handle(handle)
                    .serve(app.into_make_service_with_connect_info::<SocketAddr>())
                    .await
            }
        };
        jobs.abort();
        // The admin socket first (its connections end and the file goes), then every sandbox
        // is stopped and its workspace sealed, before storage closes.
        let _ = admin_stop.send(());
        if let Some(task) = admin {
            let _ = task.await;
        }
        if let Some(reaper) = reaper {
            reaper.abort();
        }
        if let Some(manager) = &self.state.sandbox {
            if let Err(err) = manager.stop_all().await {
                tracing::error!(error = %err, "stopping and sealing the sandboxes at shutdown failed");
            }
        }
        self.sql.close().await;
        self.state.keyring.key_store().close().await;
        served.map_err(LaunchError::from)
    }
}

/// Builds, prints `listening on …` once ready, and serves until `shutdown`.
pub async fn launch(
    settings: Settings,
    listener: std::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), LaunchError> {
    let server = Server::build(settings, listener).await?;
    println!("listening on {}", server.url());
    server.run(shutdown).await
}

/// Periodic housekeeping: audit chaining, expired sessions, due gateway-token rotations.
async fn background_jobs(state: AppState, sql: Arc<SqlStore>) {
    let mut tick = tokio::time::interval(state.settings.housekeeping_every);
    loop {
        tick.tick().await;
        if let Err(err) = sql.chain_audit(state.now()).await {
            tracing::error!(error = %err, "chaining audit records failed");
        }
        match anomaly::run_rules(&state).await {
            Ok(n) if n > 0 => tracing::warn!(anomaly.actions = n, "anomaly rules acted"),
            Ok(_) => {}
            Err(err) => tracing::error!(error.code = err.code(), "anomaly rules failed"),
        }
        let retention = i64::try_from(state.settings.audit_retention.as_millis()).unwrap_or(i64::MAX);
        if retention > 0 {
            match sql.apply_audit_retention(state.now().saturating_sub(retention), state.now()).await {
                Ok(n) if n > 0 => tracing::info!(audit.removed = n, "audit retention"),
                Ok(_) => {}
                Err(err) => tracing::error!(error = %err, "audit retention failed"),
            }
        }
        match gateway::rotate_due(&state).await {
            Ok(n) if n > 0 => tracing::info!(gateway_tokens.rotated = n, "rotated gateway tokens"),
            Ok(_) => {}
            Err(err) => tracing::warn!(error.code = err.code(), "gateway token rotation failed"),
        }
        match state.store.purge_expired_sessions(&clawden_core::Principal::System, state.now()).await {
            Ok(n) if n > 0 => tracing::info!(sessions.purged = n, "purged expired sessions"),
            Ok(_) => {}
            Err(err) => tracing::warn!(error = %err, "session purge failed"),
        }
    }
}

#[derive(Clone)]
struct OpenApiJson(Arc<String>);

async fn openapi_json(Extension(doc): Extension<OpenApiJson>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], doc.0.as_str().to_owned())
}

/// The full application router.
pub fn router(state: AppState) -> Router {
    let (api, mut openapi) = routes::api();
    openapi.paths.paths.insert(
        "/api/v1/openapi.json".into(),
        utoipa::openapi::path::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .summary(Some("This OpenAPI document"))
                .response("200", utoipa::openapi::Response::new("OpenAPI 3 JSON")),
        ),
    );
    let doc = OpenApiJson(Arc::new(openapi.to_json().unwrap_or_default()));
    let proxies = Arc::new(state.settings.trusted_proxies.clone());
    let tls = state.settings.tls_enabled();
    let max_body = state.settings.max_body_bytes;
    let mut app = Router::new()
        .merge(api)
        .merge(dashboard::routes())
        .route("/api/v1/openapi.json", get(openapi_json))
        .fallback(middleware::not_found)
        .method_not_allowed_fallback(middleware::method_not_allowed)
        .layer(Extension(doc))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::resolve))
        .layer(axum::middleware::from_fn_with_state(proxies, client_ip::layer))
        .layer(DefaultBodyLimit::max(max_body));
    for layer in middleware::security_headers(tls) {
        app = app.layer(layer);
    }
    app.layer(CatchPanicLayer::custom(middleware::panic_response)).layer(TraceLayer::new_for_http()).with_state(state)
}
