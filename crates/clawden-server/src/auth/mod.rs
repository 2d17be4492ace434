//! Who is calling. The `resolve` middleware reads the session cookie once per request, checks
//! expiry and CSRF, and leaves an [`Auth`] in the request; handlers ask for it through
//! extractors that build privilege step by step ([`Authed`] → [`SessionAuthed`]).

pub mod cookie;
mod csrf;
mod instance;

pub use csrf::csrf_token_for;
pub use instance::{InstanceAdmin, InstanceOwner, Member, PlatformAdmin};

use crate::client_ip::ClientIp;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use clawden_core::{Principal, SessionId};
use clawden_store::{Session, User};

/// Prefix of session tokens.
pub const SESSION_PREFIX: &str = "cds_";
/// Hash domain of session tokens.
pub const SESSION_DOMAIN: &str = "session";
/// Only write `last_seen_at` when it is older than this, so reads stay reads.
const TOUCH_EVERY_MS: i64 = 60_000;

/// Prefix of API keys.
pub const API_KEY_PREFIX: &str = "cd_";
/// Hash domain of API keys.
pub const API_KEY_DOMAIN: &str = "api_key";
/// Prefix of gateway tokens.
pub const GATEWAY_PREFIX: &str = "cdg_";
/// Hash domain of gateway tokens.
pub const GATEWAY_DOMAIN: &str = "gateway";

/// How the caller proved who they are.
#[derive(Debug, Clone)]
pub enum Via {
    /// A browser session cookie.
    Session(Session),
    /// An API key (`Authorization: Bearer cd_…`).
    ApiKey(clawden_store::ApiKey),
    /// An instance's gateway token: acts as the instance owner, on the chat routes only.
    Gateway(clawden_core::InstanceId),
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Auth {
    /// The user.
    pub user: User,
    /// How.
    pub via: Via,
    /// The client address.
    pub ip: ClientIp,
}

impl Auth {
    /// The principal for store calls.
    pub fn principal(&self) -> Principal {
        Principal::User { user: self.user.id }
    }

    /// The session, when authenticated by one.
    pub fn session(&self) -> Option<&Session> {
        match &self.via {
            Via::Session(s) => Some(s),
            _ => None,
        }
    }

    /// The instance a gateway token is bound to.
    pub fn gateway_instance(&self) -> Option<clawden_core::InstanceId> {
        match &self.via {
            Via::Gateway(i) => Some(*i),
            _ => None,
        }
    }

    /// The session id, when authenticated by one.
    pub fn session_id(&self) -> Option<SessionId> {
        self.session().map(|s| s.id)
    }
}

/// Any authenticated caller.
#[derive(Debug, Clone)]
pub struct Authed(pub Auth);

/// A caller authenticated by a browser session (never a bearer credential).
#[derive(Debug, Clone)]
pub struct SessionAuthed(pub Auth, pub Session);

impl<S: Send + Sync> FromRequestParts<S> for Authed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Auth>().cloned().map(Authed).ok_or_else(ApiError::unauthenticated)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionAuthed {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Authed(auth) = Authed::from_request_parts(parts, state).await?;
        match auth.session().cloned() {
            Some(session) => Ok(SessionAuthed(auth, session)),
            None => Err(ApiError::forbidden("session_required", "this action needs a signed-in browser session")),
        }
    }
}

/// An optional caller, for pages that show a sign-in form to strangers.
#[derive(Debug, Clone)]
pub struct MaybeAuthed(pub Option<Auth>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeAuthed {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeAuthed(parts.extensions.get::<Auth>().cloned()))
    }
}

/// The client address, inserted by the client-ip middleware.
impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<ClientIp>().copied().ok_or_else(|| ApiError::internal("client ip middleware missing"))
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Paths that act on no existing session, so they do not need its CSRF token (they are still
/// protected by the Origin check).
fn csrf_exempt(path: &str) -> bool {
    matches!(path, "/api/v1/auth/login" | "/api/v1/auth/signup" | "/login" | "/signup")
}

/// Middleware: resolves the session cookie into an [`Auth`] and enforces CSRF rules on writes.
pub async fn resolve(State(state): State<AppState>, req: Request, next: Next) -> Response {
    match resolve_inner(&state, req).await {
        Ok(req) => next.run(req).await,
        Err(err) => err.into_response(),
    }
}

/// Where a gateway token is accepted: the OpenAI-compatible routes and the WebSocket.
pub fn gateway_route(path: &str) -> bool {
    path.starts_with("/v1/") || path == "/api/v1/ws"
}

fn bearer(req: &Request) -> Option<&str> {
    let value = req.headers().get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

fn bad_bearer() -> ApiError {
    ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "invalid_token", "the bearer credential is not valid here")
}

/// Authenticates a bearer credential for a request to `path`: an API key anywhere, a gateway
/// token on the chat routes only. Failures count against the client address and lock it out
/// with backoff; each failure is audited.
pub async fn authenticate_bearer(state: &AppState, token: &str, path: &str, ip: ClientIp) -> Result<Auth, ApiError> {
    let now = state.now();
    let key = ip.0.to_string();
    state.limits.bearer_ip.check(&key, now).map_err(ApiError::rate_limited)?;
    let hasher = state.keyring.hasher();
    let found = if token.starts_with(API_KEY_PREFIX) && token.len() <= 128 {
        let hash = hasher.hash(API_KEY_DOMAIN, token);
        match state.store.api_key_by_hash(&Principal::System, &hash).await? {
            Some((api_key, user)) if !user.disabled => {
                if api_key.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY_MS) {
                    state.store.touch_api_key(&Principal::System, api_key.id, now).await?;
                }
                Some(Auth { user, via: Via::ApiKey(api_key), ip })
            }
            _ => None,
        }
    } else if token.starts_with(GATEWAY_PREFIX) && token.len() <= 128 && gateway_route(path) {
        let hash = hasher.hash(GATEWAY_DOMAIN, token);
        match state.store.gateway_token_by_hash(&Principal::System, &hash, now).await? {
            Some((instance, owner)) if !owner.disabled => Some(Auth { user: owner, via: Via::Gateway(instance), ip }),
            _ => None,
        }
    } else {
        None
    };
    match found {
        Some(auth) => Ok(auth),
        None => {
            state.limits.bearer_ip.fail(&key, now);
            crate::audit::record_failure(
                state,
                ip,
                clawden_store::AuditChain::System,
                None,
                "auth.bearer",
                path.chars().take(200).collect(),
            )
            .await;
            Err(bad_bearer())
        }
    }
}

async fn resolve_bearer(state: &AppState, mut req: Request, token: String, ip: ClientIp) -> Result<Request, ApiError> {
    let auth = authenticate_bearer(state, &token, req.uri().path(), ip).await?;
    req.extensions_mut().insert(auth);
    Ok(req)
}

async fn resolve_inner(state: &AppState, mut req: Request) -> Result<Request, ApiError> {
    let ip = req.extensions().get::<ClientIp>().copied().ok_or_else(|| ApiError::internal("client ip missing"))?;
    if let Some(token) = bearer(&req).map(str::to_owned) {
        // Bearer credentials are not sent by browsers on their own, so they need no CSRF token.
        return resolve_bearer(state, req, token, ip).await;
    }
    if !is_safe(req.method()) {
        csrf::check_origin(&req)?;
    }
    let Some(token) = cookie::session_token(req.headers()) else { return Ok(req) };
    let now = state.now();
    let hash = state.keyring.hasher().hash(SESSION_DOMAIN, &token);
    let Some((session, user)) = state.store.session_by_token(&Principal::System, &hash, now).await? else {
        return Ok(req);
    };
    let idle_ms = i64::try_from(state.settings.auth.session_idle.as_millis()).unwrap_or(i64::MAX);
    if user.disabled || session.last_seen_at.saturating_add(idle_ms) <= now {
        return Ok(req);
    }
    if now - session.last_seen_at >= TOUCH_EVERY_MS {
        state.store.touch_session(&Principal::System, session.id, now).await?;
    }
    if !is_safe(req.method()) && !csrf_exempt(req.uri().path()) {
        req = csrf::verify(state, req, &session).await?;
    }
    req.extensions_mut().insert(Auth { user, via: Via::Session(session), ip });
    Ok(req)
}
