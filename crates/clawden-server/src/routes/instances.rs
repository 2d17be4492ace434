//! `/api/v1/instances`, the agent workspace files, and `/api/v1/usage`.

use crate::audit;
use crate::auth::{Authed, InstanceAdmin, Member};
use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use clawden_agent::runtime::utc_day;
use clawden_agent::workspace::{validate_file, WorkspacePath, MAX_TOTAL_CHARS};
use clawden_core::{InstanceId, Principal, Tier};
use clawden_store::{AuditChain, FileInfo, StoreError};
use serde::Serialize;

/// An instance the caller belongs to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct InstanceBody {
    #[schema(value_type = String)]
    id: InstanceId,
    name: String,
    role: String,
    /// The instance's tier (its owner's).
    tier: String,
}

/// Instances the caller belongs to.
#[utoipa::path(get, path = "/api/v1/instances", tag = "instances", responses((status = 200, body = [InstanceBody])))]
pub async fn list(State(state): State<AppState>, Authed(auth): Authed) -> Result<Json<Vec<InstanceBody>>, ApiError> {
    let mut out = Vec::new();
    for m in state.store.memberships(&auth.principal()).await? {
        let tier = state.runtime.tier_of(m.id).await.map_err(crate::chat::turn_error)?;
        out.push(InstanceBody { id: m.id, name: m.name, role: m.role.to_string(), tier: tier.to_string() });
    }
    Ok(Json(out))
}

/// One instance the caller belongs to.
#[utoipa::path(get, path = "/api/v1/instances/{id}", tag = "instances", params(("id" = String, Path)),
    responses((status = 200, body = InstanceBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_one(State(state): State<AppState>, member: Member) -> Result<Json<InstanceBody>, ApiError> {
    let m = state
        .store
        .memberships(&member.auth.principal())
        .await?
        .into_iter()
        .find(|m| m.id == member.instance)
        .ok_or_else(ApiError::not_found)?;
    let tier = state.runtime.tier_of(m.id).await.map_err(crate::chat::turn_error)?;
    Ok(Json(InstanceBody { id: m.id, name: m.name, role: m.role.to_string(), tier: tier.to_string() }))
}

/// A workspace file as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FileBody {
    path: String,
    /// Characters.
    size: i64,
    updated_at: i64,
}

impl From<FileInfo> for FileBody {
    fn from(f: FileInfo) -> Self {
        Self { path: f.path, size: f.size, updated_at: f.updated_at }
    }
}

/// The agent's workspace files.
#[utoipa::path(get, path = "/api/v1/instances/{id}/files", tag = "files", params(("id" = String, Path)),
    responses((status = 200, body = [FileBody]), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list_files(State(state): State<AppState>, member: Member) -> Result<Json<Vec<FileBody>>, ApiError> {
    Ok(Json(state.store.list_files(&member.principal(), member.instance).await?.into_iter().map(Into::into).collect()))
}

/// The `{*path}` of a file route.
#[derive(Debug, serde::Deserialize)]
pub struct FileParam {
    path: String,
}

fn parse_path(raw: &str) -> Result<WorkspacePath, ApiError> {
    WorkspacePath::parse(raw).map_err(|e| ApiError::bad_request("invalid_path", e.to_string()))
}

/// One workspace file, as `text/markdown`.
#[utoipa::path(get, path = "/api/v1/instances/{id}/files/{*path}", tag = "files", params(("id" = String, Path), ("path" = String, Path)),
    responses((status = 200, content_type = "text/markdown", body = String), (status = 404, body = crate::error::ErrorBody)))]
pub async fn read_file(
    State(state): State<AppState>,
    member: Member,
    Path(file): Path<FileParam>,
) -> Result<Response, ApiError> {
    let path = parse_path(&file.path)?;
    let text = state
        .store
        .read_file(&member.principal(), member.instance, &path.as_path())
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(([(header::CONTENT_TYPE, HeaderValue::from_static("text/markdown; charset=utf-8"))], text).into_response())
}

/// Writes a workspace file (`text/markdown` body). Owners and admins only; the agent itself
/// never reaches this route.
#[utoipa::path(put, path = "/api/v1/instances/{id}/files/{*path}", tag = "files", params(("id" = String, Path), ("path" = String, Path)),
    request_body(content = String, content_type = "text/markdown"),
    responses((status = 204), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn write_file(
    State(state): State<AppState>,
    InstanceAdmin(admin): InstanceAdmin,
    Path(file): Path<FileParam>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !(content_type.starts_with("text/markdown") || content_type.starts_with("text/plain")) {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the file as text/markdown",
        ));
    }
    let path = parse_path(&file.path)?;
    let text = validate_file(&path, &body).map_err(|e| ApiError::bad_request("invalid_file", e.to_string()))?;
    let ev = audit::event(
        &state,
        admin.auth.ip,
        AuditChain::Instance(admin.instance),
        Some(admin.auth.user.id),
        Some(admin.instance),
        "file.write",
        String::new(),
        clawden_core::Outcome::Success,
    );
    let max = i64::try_from(MAX_TOTAL_CHARS).unwrap_or(i64::MAX);
    match state
        .store
        .write_file(&admin.principal(), admin.instance, &path.as_path(), text, max, state.now(), Some(ev))
        .await
    {
        Err(StoreError::LimitReached(_)) => Err(ApiError::bad_request(
            "workspace_too_large",
            format!("the workspace may hold at most {MAX_TOTAL_CHARS} characters in all"),
        )),
        other => other.map(|()| StatusCode::NO_CONTENT).map_err(Into::into),
    }
}

/// Deletes a workspace file. Owners and admins only.
#[utoipa::path(delete, path = "/api/v1/instances/{id}/files/{*path}", tag = "files", params(("id" = String, Path), ("path" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_file(
    State(state): State<AppState>,
    InstanceAdmin(admin): InstanceAdmin,
    Path(file): Path<FileParam>,
) -> Result<StatusCode, ApiError> {
    let path = parse_path(&file.path)?;
    let ev = audit::event(
        &state,
        admin.auth.ip,
        AuditChain::Instance(admin.instance),
        Some(admin.auth.user.id),
        Some(admin.instance),
        "file.delete",
        String::new(),
        clawden_core::Outcome::Success,
    );
    if state.store.delete_file(&admin.principal(), admin.instance, &path.as_path(), ev).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found())
    }
}

/// Today's usage and limits.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UsageBody {
    day: String,
    messages: i64,
    messages_limit: i64,
    input_tokens: i64,
    output_tokens: i64,
    tool_calls: i64,
    tool_calls_limit: i64,
}

/// The caller's usage today (UTC) and their tier's limits.
#[utoipa::path(get, path = "/api/v1/usage", tag = "account", responses((status = 200, body = UsageBody)))]
pub async fn usage(State(state): State<AppState>, Authed(auth): Authed) -> Result<Json<UsageBody>, ApiError> {
    let day = utc_day(state.now());
    let used = state.store.usage(&auth.principal(), &day).await?;
    let tier = match state.store.user(&Principal::System, auth.user.id).await? {
        Some(u) => u.tier,
        None => Tier::Base,
    };
    let quotas = &state.runtime.settings().quotas;
    Ok(Json(UsageBody {
        day,
        messages: used.messages,
        messages_limit: quotas.messages(tier),
        input_tokens: used.input_tokens,
        output_tokens: used.output_tokens,
        tool_calls: used.tool_calls,
        tool_calls_limit: quotas.tool_calls(tier),
    }))
}
