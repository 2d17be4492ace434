//! `GET /api/v1/audit`: the caller's own actions, or (owners and admins) everything recorded
//! in an instance.

use crate::auth::Authed;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::Json;
use clawden_core::InstanceId;
use clawden_store::AuditRecord;
use serde::{Deserialize, Serialize};

/// Filters.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// An instance the caller owns or administers; without it, the caller's own actions.
    #[param(value_type = Option<String>)]
    #[serde(default)]
    instance_id: Option<InstanceId>,
    /// Only records before this time (Unix ms), for paging.
    #[serde(default)]
    before: Option<i64>,
    /// At most this many (default 100, at most 500).
    #[serde(default)]
    limit: Option<u32>,
    /// Only this action (e.g. `auth.login`).
    #[serde(default)]
    action: Option<String>,
    /// Only `success` or `failure`.
    #[serde(default)]
    outcome: Option<String>,
    /// Only records at or after this time (Unix ms).
    #[serde(default)]
    since: Option<i64>,
}

/// One audit record.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditBody {
    seq: i64,
    at: i64,
    actor: Option<String>,
    action: String,
    target: String,
    outcome: String,
    ip: Option<String>,
}

impl From<AuditRecord> for AuditBody {
    fn from(r: AuditRecord) -> Self {
        Self { seq: r.seq, at: r.at, actor: r.actor, action: r.action, target: r.target, outcome: r.outcome, ip: r.ip }
    }
}

/// Audit records, newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = [AuditBody]), (status = 403, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    Authed(auth): Authed,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<AuditBody>>, ApiError> {
    let Query(q) = query?;
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let filtered = q.action.is_some() || q.outcome.is_some() || q.since.is_some();
    // With filters, read a full page and filter it; paging goes on with `before`.
    let fetch = if filtered { 500 } else { limit };
    let records = match q.instance_id {
        Some(instance) => match state.store.instance_audit(&auth.principal(), instance, q.before, fetch).await {
            Err(clawden_store::StoreError::Forbidden) => {
                return Err(ApiError::forbidden(
                    "forbidden",
                    "only the instance's owners and admins read its audit log",
                ));
            }
            other => other?,
        },
        None => state.store.own_audit(&auth.principal(), q.before, fetch).await?,
    };
    let records = records
        .into_iter()
        .filter(|r| q.action.as_deref().is_none_or(|a| r.action == a))
        .filter(|r| q.outcome.as_deref().is_none_or(|o| r.outcome == o))
        .filter(|r| q.since.is_none_or(|t| r.at >= t))
        .take(limit as usize);
    Ok(Json(records.map(Into::into).collect()))
}
