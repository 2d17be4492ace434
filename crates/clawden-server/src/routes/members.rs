//! Instance members and invitations. Inviting answers the same whether or not the email has
//! an account; the invitee becomes a member only by accepting.

use crate::accounts::validate_email;
use crate::audit;
use crate::auth::{Authed, InstanceAdmin, InstanceOwner, Member, SessionAuthed};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use clawden_core::{InstanceId, Outcome, Role, UserId};
use clawden_store::{AuditChain, Invitation, MemberInfo};
use serde::{Deserialize, Serialize};

/// How long an invitation stays open.
const INVITATION_DAYS: i64 = 14;

/// A member as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct MemberBody {
    #[schema(value_type = String)]
    user_id: UserId,
    email: String,
    role: String,
    joined_at: i64,
}

impl From<MemberInfo> for MemberBody {
    fn from(m: MemberInfo) -> Self {
        Self { user_id: m.user_id, email: m.email, role: m.role.to_string(), joined_at: m.joined_at }
    }
}

/// The instance's members. Owners and admins.
#[utoipa::path(get, path = "/api/v1/instances/{id}/members", tag = "members", params(("id" = String, Path)),
    responses((status = 200, body = [MemberBody]), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    InstanceAdmin(admin): InstanceAdmin,
) -> Result<Json<Vec<MemberBody>>, ApiError> {
    Ok(Json(state.store.members(&admin.auth.principal(), admin.instance).await?.into_iter().map(Into::into).collect()))
}

/// An invitation to send.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct InviteRequest {
    email: String,
    /// `owner`, `admin` or `user`.
    #[schema(value_type = String)]
    role: Role,
}

/// The same answer whatever the email.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvitedBody {
    status: &'static str,
}

fn event(state: &AppState, m: &Member, action: &str) -> clawden_store::AuditEvent {
    audit::event(
        state,
        m.auth.ip,
        AuditChain::Instance(m.instance),
        Some(m.auth.user.id),
        Some(m.instance),
        action,
        String::new(),
        Outcome::Success,
    )
}

/// Invites someone by email. 202 with the same body whether or not the email has an account.
/// Only owners may invite an owner. Needs a browser session.
#[utoipa::path(post, path = "/api/v1/instances/{id}/members", tag = "members", params(("id" = String, Path)), request_body = InviteRequest,
    responses((status = 202, body = InvitedBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn invite(
    State(state): State<AppState>,
    InstanceAdmin(admin): InstanceAdmin,
    _session: SessionAuthed,
    ApiJson(req): ApiJson<InviteRequest>,
) -> Result<(StatusCode, Json<InvitedBody>), ApiError> {
    let email = validate_email(&req.email)?;
    let now = state.now();
    let expires = now.saturating_add(INVITATION_DAYS * 86_400_000);
    let ev = event(&state, &admin, "member.invite");
    state
        .store
        .invite(&admin.auth.principal(), admin.instance, &email, req.role, now, expires, ev)
        .await
        .map_err(owner_rule)?;
    Ok((StatusCode::ACCEPTED, Json(InvitedBody { status: "invited" })))
}

fn owner_rule(err: clawden_store::StoreError) -> ApiError {
    match err {
        clawden_store::StoreError::Forbidden => {
            ApiError::forbidden("forbidden", "admins cannot change or remove owners, and only owners grant `owner`")
        }
        other => other.into(),
    }
}

/// A role change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RoleRequest {
    #[schema(value_type = String)]
    role: Role,
}

/// The path of a member route.
#[derive(Debug, Deserialize)]
pub struct MemberPath {
    id: InstanceId,
    user_id: UserId,
}

/// Changes a member's role. Admins cannot change owners or grant `owner`; the last owner
/// cannot be demoted. Needs a browser session.
#[utoipa::path(patch, path = "/api/v1/instances/{id}/members/{user_id}", tag = "members", params(("id" = String, Path), ("user_id" = String, Path)),
    request_body = RoleRequest, responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn set_role(
    State(state): State<AppState>,
    InstanceAdmin(admin): InstanceAdmin,
    _session: SessionAuthed,
    Path(path): Path<MemberPath>,
    ApiJson(req): ApiJson<RoleRequest>,
) -> Result<StatusCode, ApiError> {
    let ev = event(&state, &admin, "member.role");
    state.store.set_role(&admin.auth.principal(), path.id, path.user_id, req.role, ev).await.map_err(owner_rule)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a member, or leaves (your own id). Admins cannot remove owners; the last owner
/// cannot leave. Needs a browser session.
#[utoipa::path(delete, path = "/api/v1/instances/{id}/members/{user_id}", tag = "members", params(("id" = String, Path), ("user_id" = String, Path)),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    member: Member,
    _session: SessionAuthed,
    Path(path): Path<MemberPath>,
) -> Result<StatusCode, ApiError> {
    let action = if path.user_id == member.auth.user.id { "member.leave" } else { "member.remove" };
    let ev = event(&state, &member, action);
    state.store.remove_member(&member.auth.principal(), path.id, path.user_id, ev).await.map_err(owner_rule)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes the instance: its files, conversations, tokens, audit chain and data key. Owners
/// only; needs a browser session.
#[utoipa::path(delete, path = "/api/v1/instances/{id}", tag = "instances", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_instance(
    State(state): State<AppState>,
    InstanceOwner(owner): InstanceOwner,
    _session: SessionAuthed,
) -> Result<StatusCode, ApiError> {
    let ev = event(&state, &owner, "instance.delete");
    // Its sandboxes are stopped while the instance's key still exists, then their volumes go.
    crate::routes::account::retire_sandboxes(&state, &[owner.instance], None).await;
    state.store.delete_instance(&owner.auth.principal(), owner.instance, ev).await?;
    crate::routes::account::remove_sandbox_volumes(&state, &[owner.instance], None).await;
    Ok(StatusCode::NO_CONTENT)
}

/// A pending invitation.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InvitationBody {
    id: String,
    #[schema(value_type = String)]
    instance_id: InstanceId,
    instance_name: String,
    role: String,
    created_at: i64,
    expires_at: i64,
}

impl From<Invitation> for InvitationBody {
    fn from(i: Invitation) -> Self {
        Self {
            id: i.id,
            instance_id: i.instance_id,
            instance_name: i.instance_name,
            role: i.role.to_string(),
            created_at: i.created_at,
            expires_at: i.expires_at,
        }
    }
}

/// The caller's pending invitations.
#[utoipa::path(get, path = "/api/v1/invitations", tag = "members", responses((status = 200, body = [InvitationBody])))]
pub async fn invitations(
    State(state): State<AppState>,
    Authed(auth): Authed,
) -> Result<Json<Vec<InvitationBody>>, ApiError> {
    Ok(Json(state.store.invitations(&auth.principal(), state.now()).await?.into_iter().map(Into::into).collect()))
}

async fn answer(state: &AppState, auth: &crate::auth::Auth, id: &str, accept: bool) -> Result<StatusCode, ApiError> {
    if id.len() > 64 {
        return Err(ApiError::not_found());
    }
    let action = if accept { "invitation.accept" } else { "invitation.decline" };
    let ev = audit::success(state, auth.ip, AuditChain::Account(auth.user.id), Some(auth.user.id), action);
    if state.store.answer_invitation(&auth.principal(), id, accept, state.now(), ev).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// Accepts an invitation: the caller becomes a member with the offered role.
#[utoipa::path(post, path = "/api/v1/invitations/{id}/accept", tag = "members", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn accept(
    State(state): State<AppState>,
    SessionAuthed(auth, _): SessionAuthed,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    answer(&state, &auth, &id, true).await
}

/// Declines an invitation.
#[utoipa::path(post, path = "/api/v1/invitations/{id}/decline", tag = "members", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn decline(
    State(state): State<AppState>,
    SessionAuthed(auth, _): SessionAuthed,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    answer(&state, &auth, &id, false).await
}
