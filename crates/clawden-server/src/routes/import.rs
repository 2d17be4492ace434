//! `POST /api/v1/instances/{id}/import`: an OpenClaw workspace archive into an instance.
//!
//! The archive is read on the blocking pool by [`crate::openclaw::read_archive`], which checks
//! every name before unpacking anything, refuses links and special entries, counts what actually
//! unpacks (never the sizes the archive claims), and applies the workspace rules to every file.
//! Only then are the files written, all in one transaction: a refused archive changes nothing.

use crate::audit;
use crate::auth::InstanceAdmin;
use crate::error::ApiError;
use crate::openclaw::{self, ImportError};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use clawden_agent::workspace::MAX_TOTAL_CHARS;
use clawden_core::Outcome;
use clawden_store::{AuditChain, StoreError};
use serde::{Deserialize, Serialize};

/// The largest archive accepted (also bounded by the server's body limit).
pub const MAX_ARCHIVE_BYTES: usize = 1024 * 1024;
/// At most this many ignored entries are named in the answer.
const MAX_IGNORED_SHOWN: usize = 50;

/// How to import.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct ImportParams {
    /// `true`: the workspace becomes exactly the archive's files (others are deleted).
    /// `false` (default): the archive's files are written and other files are kept.
    #[serde(default)]
    replace: bool,
}

/// What an import did.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportResult {
    /// Workspace files written.
    pub imported: Vec<String>,
    /// Entries of the archive that are not workspace files (not stored), at most 50 named.
    pub ignored: Vec<String>,
    /// How many entries were ignored in all.
    pub ignored_count: usize,
    /// Whether files not in the archive were deleted.
    pub replaced: bool,
}

/// Imports a workspace archive (`application/zip`, `application/x-tar` or `application/gzip`;
/// the format is recognised from the bytes) as `openclaw setup` lays it out, possibly under one
/// top-level folder. Owners and admins; session or API key.
#[utoipa::path(post, path = "/api/v1/instances/{id}/import", tag = "files",
    params(("id" = String, Path), ImportParams),
    request_body(content = Vec<u8>, content_type = "application/zip"),
    responses((status = 200, body = ImportResult), (status = 400, body = crate::error::ErrorBody),
              (status = 403, body = crate::error::ErrorBody), (status = 413, body = crate::error::ErrorBody),
              (status = 415, body = crate::error::ErrorBody)))]
pub async fn import(
    State(state): State<AppState>,
    InstanceAdmin(admin): InstanceAdmin,
    params: Result<Query<ImportParams>, axum::extract::rejection::QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ImportResult>, ApiError> {
    let Query(params) = params?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::bad_request("invalid_body", "the body could not be read")
        }
    })?;
    Ok(Json(import_archive(&state, &admin, body, params.replace).await?))
}

/// Checks and imports an archive into `admin.instance` (the caller is an owner or admin of it):
/// what the API route and the dashboard's import form both do. Refusals are audited too.
pub async fn import_archive(
    state: &AppState,
    admin: &crate::auth::Member,
    body: Bytes,
    replace: bool,
) -> Result<ImportResult, ApiError> {
    if body.len() > MAX_ARCHIVE_BYTES {
        return Err(too_large());
    }
    let fail = |code: &str| {
        let target = format!("import:{code}");
        let (state, ip, user, instance) = (state.clone(), admin.auth.ip, admin.auth.user.id, admin.instance);
        async move {
            let ev = audit::event(
                &state,
                ip,
                AuditChain::Instance(instance),
                Some(user),
                Some(instance),
                "workspace.import",
                target,
                Outcome::Failure,
            );
            if let Err(err) = state.store.record(ev).await {
                tracing::error!(error = %err, "could not record a refused import");
            }
        }
    };
    let read = tokio::task::spawn_blocking(move || openclaw::read_archive(&body)).await.map_err(ApiError::internal)?;
    let workspace = match read {
        Ok(w) => w,
        Err(err) => {
            fail(err.code()).await;
            return Err(import_error(err));
        }
    };
    let ev = audit::event(
        state,
        admin.auth.ip,
        AuditChain::Instance(admin.instance),
        Some(admin.auth.user.id),
        Some(admin.instance),
        "workspace.import",
        String::new(),
        Outcome::Success,
    );
    let max = i64::try_from(MAX_TOTAL_CHARS).unwrap_or(i64::MAX);
    match state
        .store
        .write_files(&admin.principal(), admin.instance, &workspace.files, replace, max, state.now(), ev)
        .await
    {
        Ok(()) => {}
        Err(StoreError::LimitReached(_)) => {
            fail("workspace_too_large").await;
            return Err(ApiError::bad_request(
                "workspace_too_large",
                format!("with these files the workspace would hold more than {MAX_TOTAL_CHARS} characters; import with ?replace=true or delete files first"),
            ));
        }
        Err(other) => return Err(other.into()),
    }
    let ignored_count = workspace.ignored.len();
    Ok(ImportResult {
        imported: workspace.files.into_iter().map(|(p, _)| p).collect(),
        ignored: workspace.ignored.into_iter().take(MAX_IGNORED_SHOWN).collect(),
        ignored_count,
        replaced: replace,
    })
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("the archive is larger than {MAX_ARCHIVE_BYTES} bytes"),
    )
}

fn import_error(err: ImportError) -> ApiError {
    let status = match err {
        ImportError::UnsupportedArchive => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ImportError::TooLarge | ImportError::EntryTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    };
    ApiError::new(status, err.code(), err.to_string())
}
