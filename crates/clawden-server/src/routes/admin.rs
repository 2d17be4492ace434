//! `/api/v1/admin/*`: the platform admin's users, tiers, invites, configuration and log. For
//! every other caller these routes answer 404, exactly like a route that does not exist.

use crate::auth::{PlatformAdmin, SessionAuthed};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use clawden_core::{Outcome, Principal, Tier, UserId};
use clawden_store::{AdminLogEntry, User};
use serde::{Deserialize, Serialize};

fn log(state: &AppState, admin: &PlatformAdmin, action: &str, target: String) -> AdminLogEntry {
    AdminLogEntry {
        at: state.now(),
        actor: Some(admin.0.user.id.to_string()),
        action: action.to_owned(),
        target,
        outcome: Outcome::Success.as_str().to_owned(),
        ip: Some(admin.0.ip.0.to_string()),
    }
}

/// Paging.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct Page {
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

/// A user as the platform admin sees them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AdminUserBody {
    #[schema(value_type = String)]
    id: UserId,
    email: String,
    tier: String,
    platform_admin: bool,
    disabled: bool,
    created_at: i64,
}

impl From<User> for AdminUserBody {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            email: u.email,
            tier: u.tier.to_string(),
            platform_admin: u.platform_admin,
            disabled: u.disabled,
            created_at: u.created_at,
        }
    }
}

/// Every user.
#[utoipa::path(get, path = "/api/v1/admin/users", tag = "admin", params(Page),
    responses((status = 200, body = [AdminUserBody]), (status = 404, body = crate::error::ErrorBody)))]
pub async fn users(
    State(state): State<AppState>,
    _admin: PlatformAdmin,
    Query(page): Query<Page>,
) -> Result<Json<Vec<AdminUserBody>>, ApiError> {
    let limit = page.limit.unwrap_or(100).clamp(1, 1000);
    let offset = page.offset.unwrap_or(0).max(0);
    Ok(Json(state.store.all_users(&Principal::System, limit, offset).await?.into_iter().map(Into::into).collect()))
}

/// Changes to a user.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct UserUpdate {
    #[schema(value_type = Option<String>)]
    #[serde(default)]
    tier: Option<Tier>,
    #[serde(default)]
    disabled: Option<bool>,
}

/// Sets a user's tier or disables them (which ends their sessions). Needs a browser session.
#[utoipa::path(patch, path = "/api/v1/admin/users/{id}", tag = "admin", params(("id" = String, Path)), request_body = UserUpdate,
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn update_user(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    _session: SessionAuthed,
    ApiPath(id): ApiPath<UserId>,
    ApiJson(req): ApiJson<UserUpdate>,
) -> Result<StatusCode, ApiError> {
    if id == admin.0.user.id && req.disabled == Some(true) {
        return Err(ApiError::bad_request("cannot_disable_self", "a platform admin cannot disable their own account"));
    }
    let what = format!(
        "user:{id}{}{}",
        req.tier.map(|t| format!(" tier:{t}")).unwrap_or_default(),
        req.disabled.map(|d| format!(" disabled:{d}")).unwrap_or_default()
    );
    let entry = log(&state, &admin, "admin.user.update", what);
    if state.store.admin_update_user(&Principal::System, id, req.tier, req.disabled, entry).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// A new invite code.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InviteRequest {
    #[serde(default)]
    uses: Option<i64>,
    #[serde(default)]
    expires_in_days: Option<i64>,
}

/// The code, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InviteBody {
    code: String,
    uses: i64,
    expires_at: i64,
}

/// Creates an invite code that upgrades a user to the invite-enabled tier.
#[utoipa::path(post, path = "/api/v1/admin/invites", tag = "admin", request_body = InviteRequest,
    responses((status = 201, body = InviteBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn create_invite(
    State(state): State<AppState>,
    admin: PlatformAdmin,
    _session: SessionAuthed,
    ApiJson(req): ApiJson<InviteRequest>,
) -> Result<Response, ApiError> {
    let uses = req.uses.unwrap_or(1);
    let days = req.expires_in_days.unwrap_or(7);
    if !(1..=10_000).contains(&uses) || !(1..=365).contains(&days) {
        return Err(ApiError::bad_request("invalid_invite", "uses 1 to 10000, expires_in_days 1 to 365"));
    }
    let now = state.now();
    let expires_at = now.saturating_add(days * 86_400_000);
    let actor = Some((admin.0.user.id, admin.0.ip.0.to_string()));
    let code =
        crate::accounts::issue_invite(state.store.as_ref(), &state.keyring, actor, uses, expires_at, now).await?;
    let body = InviteBody { code: code.expose().to_owned(), uses, expires_at };
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body))
        .into_response())
}

/// An admin log entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogBody {
    at: i64,
    actor: Option<String>,
    action: String,
    target: String,
    outcome: String,
    ip: Option<String>,
}

/// The admin log, newest first.
#[utoipa::path(get, path = "/api/v1/admin/log", tag = "admin", responses((status = 200, body = [LogBody]), (status = 404, body = crate::error::ErrorBody)))]
pub async fn admin_log(State(state): State<AppState>, _admin: PlatformAdmin) -> Result<Json<Vec<LogBody>>, ApiError> {
    let entries = state.store.admin_log_entries(&Principal::System, 500).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| LogBody {
                at: e.at,
                actor: e.actor,
                action: e.action,
                target: e.target,
                outcome: e.outcome,
                ip: e.ip,
            })
            .collect(),
    ))
}

/// The running configuration, without secrets.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ConfigBody {
    listen: String,
    tls: bool,
    signup: String,
    database: String,
    provider: String,
    model: String,
    base_messages_per_day: i64,
    invite_messages_per_day: i64,
    session_idle_secs: u64,
    session_absolute_secs: u64,
    gateway_rotate_every_secs: u64,
}

/// The system configuration (no secrets).
#[utoipa::path(get, path = "/api/v1/admin/config", tag = "admin", responses((status = 200, body = ConfigBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn config(State(state): State<AppState>, _admin: PlatformAdmin) -> Json<ConfigBody> {
    let s = &state.settings;
    Json(ConfigBody {
        listen: s.listen.to_string(),
        tls: s.tls_enabled(),
        signup: s.signup.to_string(),
        database: crate::settings::mask_url(&s.database_url()),
        provider: s.provider_name().to_owned(),
        model: s.model_name(),
        base_messages_per_day: s.chat.base_messages_per_day,
        invite_messages_per_day: s.chat.invite_messages_per_day,
        session_idle_secs: s.auth.session_idle.as_secs(),
        session_absolute_secs: s.auth.session_absolute.as_secs(),
        gateway_rotate_every_secs: s.gateway.rotate_every.as_secs(),
    })
}
