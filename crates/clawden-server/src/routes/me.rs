//! `GET /api/v1/me` and the caller's sessions.

use crate::audit;
use crate::auth::{csrf_token_for, Authed, SessionAuthed};
use crate::error::{ApiError, ApiPath};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use clawden_core::{InstanceId, SessionId};
use clawden_store::{AuditChain, User};
use serde::Serialize;

/// An instance the caller belongs to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstanceRef {
    #[schema(value_type = String)]
    id: InstanceId,
    name: String,
    role: String,
}

/// Who the caller is.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MeBody {
    #[schema(value_type = String)]
    id: clawden_core::UserId,
    email: String,
    tier: String,
    totp_enabled: bool,
    platform_admin: bool,
    /// Send back as `x-csrf-token` (or a `csrf_token` form field) on cookie-authenticated writes.
    csrf_token: Option<String>,
    instances: Vec<InstanceRef>,
}

pub(crate) async fn me_body(state: &AppState, user: &User, csrf_token: Option<String>) -> Result<MeBody, ApiError> {
    let principal = clawden_core::Principal::User { user: user.id };
    let instances = state
        .store
        .memberships(&principal)
        .await?
        .into_iter()
        .map(|m| InstanceRef { id: m.id, name: m.name, role: m.role.to_string() })
        .collect();
    Ok(MeBody {
        id: user.id,
        email: user.email.clone(),
        tier: user.tier.to_string(),
        totp_enabled: state.store.totp_enabled(&principal, user.id).await?,
        platform_admin: user.platform_admin,
        csrf_token,
        instances,
    })
}

/// The caller's account, instances and CSRF token.
#[utoipa::path(get, path = "/api/v1/me", tag = "account", responses((status = 200, body = MeBody), (status = 401, body = crate::error::ErrorBody)))]
pub async fn me(State(state): State<AppState>, Authed(auth): Authed) -> Result<Json<MeBody>, ApiError> {
    let csrf = auth.session().map(|s| csrf_token_for(&state, s));
    Ok(Json(me_body(&state, &auth.user, csrf).await?))
}

/// A session in the list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionBody {
    #[schema(value_type = String)]
    id: SessionId,
    created_at: i64,
    last_seen_at: i64,
    expires_at: i64,
    ip: Option<String>,
    user_agent: Option<String>,
    /// This is the session making the request.
    current: bool,
}

/// The caller's live sessions (every signed-in device).
#[utoipa::path(get, path = "/api/v1/sessions", tag = "account", responses((status = 200, body = [SessionBody]), (status = 401, body = crate::error::ErrorBody)))]
pub async fn list_sessions(
    State(state): State<AppState>,
    SessionAuthed(auth, current): SessionAuthed,
) -> Result<Json<Vec<SessionBody>>, ApiError> {
    let sessions = state.store.sessions(&auth.principal(), state.now()).await?;
    Ok(Json(
        sessions
            .into_iter()
            .map(|s| SessionBody {
                current: s.id == current.id,
                id: s.id,
                created_at: s.created_at,
                last_seen_at: s.last_seen_at,
                expires_at: s.expires_at,
                ip: s.ip,
                user_agent: s.user_agent,
            })
            .collect(),
    ))
}

/// Ends one of the caller's sessions.
#[utoipa::path(delete, path = "/api/v1/sessions/{id}", tag = "account", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn revoke_session(
    State(state): State<AppState>,
    SessionAuthed(auth, _): SessionAuthed,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<StatusCode, ApiError> {
    let ev = audit::success(&state, auth.ip, AuditChain::Account(auth.user.id), Some(auth.user.id), "session.revoke");
    if state.store.revoke_session(&auth.principal(), id, ev).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// A notice from the platform.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NoticeBody {
    kind: String,
    message: String,
    created_at: i64,
}

/// What the platform's anomaly rules did about the caller's account or instances.
#[utoipa::path(get, path = "/api/v1/notices", tag = "account", responses((status = 200, body = [NoticeBody])))]
pub async fn notices(State(state): State<AppState>, Authed(auth): Authed) -> Result<Json<Vec<NoticeBody>>, ApiError> {
    let list = state.store.notices(&auth.principal(), 50).await?;
    Ok(Json(
        list.into_iter().map(|n| NoticeBody { kind: n.kind, message: n.message, created_at: n.created_at }).collect(),
    ))
}
