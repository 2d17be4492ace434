//! `DELETE /api/v1/account` and `GET /api/v1/usage/history`.

use crate::audit;
use crate::auth::{cookie, Auth, Authed, SessionAuthed};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use crate::totp::{self, SecondFactor};
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use clawden_agent::runtime::utc_day;
use clawden_core::{InstanceId, Principal, Role, UserId};
use clawden_crypto::PasswordVerdict;
use clawden_sandbox::StopReason;
use clawden_store::{AuditChain, DailyUsage};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// The password, and a current two-factor code when 2FA is on.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DeleteAccountRequest {
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    /// A current TOTP code or an unused recovery code (needed when 2FA is on).
    #[serde(default)]
    totp_code: Option<String>,
}

/// Deletes the caller's account and everything they own: the instances where they are the only
/// owner (with their sandboxes), conversations, usage, credentials, API keys and sessions; then
/// destroys their data keys, so every backup of their rows stays sealed. Session only; the
/// password (and the second factor when 2FA is on) is checked again.
#[utoipa::path(delete, path = "/api/v1/account", tag = "account", request_body = DeleteAccountRequest,
    responses((status = 204, description = "deleted; the session cookie is cleared"),
              (status = 401, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn delete_account(
    State(state): State<AppState>,
    SessionAuthed(auth, _): SessionAuthed,
    ApiJson(req): ApiJson<DeleteAccountRequest>,
) -> Result<Response, ApiError> {
    delete_with(&state, &auth, req.password, req.totp_code.as_deref()).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie::clear(state.settings.tls_enabled()))]).into_response())
}

/// Checks the password and second factor again, then deletes the caller's account. Shared by
/// the JSON API and the dashboard. A refusal is audited as a failed `account.delete`.
pub async fn delete_with(
    state: &AppState,
    auth: &Auth,
    password: SecretString,
    code: Option<&str>,
) -> Result<(), ApiError> {
    let user = &auth.user;
    // Guesses here are password guesses: the sign-in limits (and their backoff) apply.
    if let Err(wait) = state.limits.login_check(&user.email, auth.ip.0) {
        return Err(ApiError::rate_limited(wait));
    }
    let record = state.store.login_lookup(&Principal::System, &user.email).await?.ok_or_else(ApiError::not_found)?;
    let password_ok = state.passwords.verify(password, Some(record.password_hash)).await? != PasswordVerdict::Mismatch;
    // The second factor is only spent when the password was right.
    let factor = if password_ok { totp::check_second_factor(state, user.id, code).await? } else { SecondFactor::Wrong };
    let refused = match factor {
        _ if !password_ok => Some(ApiError::forbidden("invalid_credentials", "wrong password")),
        SecondFactor::Missing => {
            Some(ApiError::forbidden("totp_required", "two-factor sign-in is on: enter a current code too"))
        }
        SecondFactor::Wrong | SecondFactor::Replayed => {
            Some(ApiError::forbidden("invalid_credentials", "wrong two-factor code"))
        }
        SecondFactor::Passed | SecondFactor::NotEnabled => None,
    };
    if let Some(err) = refused {
        if err.code() == "invalid_credentials" {
            state.limits.login_failed(&user.email, auth.ip.0);
        }
        audit::record_failure(
            state,
            auth.ip,
            AuditChain::Account(user.id),
            Some(user.id),
            "account.delete",
            String::new(),
        )
        .await;
        return Err(err);
    }
    // Sandboxes go first, while the instances' keys still exist to seal them (stopping one
    // after its key is gone would make a new key).
    let going = solely_owned(state, &auth.principal()).await?;
    retire_sandboxes(state, &going, Some(user.id)).await;
    let ev = audit::success(state, auth.ip, AuditChain::Account(user.id), None, "account.delete");
    let deleted = state.store.delete_user(&auth.principal(), user.id, ev).await?;
    remove_sandbox_volumes(state, &deleted, Some(user.id)).await;
    tracing::info!(user.id = %user.id, instances.deleted = deleted.len(), "account deleted");
    Ok(())
}

/// The instances where the principal is the only owner (they go with the account).
async fn solely_owned(state: &AppState, principal: &Principal) -> Result<Vec<InstanceId>, ApiError> {
    let Some(me) = principal.user_id() else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for m in state.store.memberships(principal).await? {
        if m.role != Role::Owner {
            continue;
        }
        let inside = Principal::Member { user: me, instance: m.id, role: m.role };
        let members = state.store.members(&inside, m.id).await?;
        if !members.iter().any(|o| o.role == Role::Owner && o.user_id != me) {
            out.push(m.id);
        }
    }
    Ok(out)
}

/// Stops (and seals) every running sandbox of `instances`, and every sandbox of `member`.
pub(crate) async fn retire_sandboxes(state: &AppState, instances: &[InstanceId], member: Option<UserId>) {
    let Some(manager) = &state.sandbox else { return };
    for key in manager.running() {
        if instances.contains(&key.instance) || member == Some(key.member) {
            if let Err(err) = manager.stop(&key, StopReason::Requested).await {
                tracing::error!(sandbox = %key, error = %err, "stopping a sandbox of a deleted account failed");
            }
        }
    }
}

/// Removes the (sealed, now unreadable) workspace volumes of `instances` and of `member`.
pub(crate) async fn remove_sandbox_volumes(state: &AppState, instances: &[InstanceId], member: Option<UserId>) {
    let Some(manager) = &state.sandbox else { return };
    let dir = manager.settings().volumes_dir.clone();
    let instances: Vec<String> = instances.iter().map(|i| format!("{i}-")).collect();
    let member = member.map(|m| format!("-{m}"));
    let removed = tokio::task::spawn_blocking(move || {
        let Ok(listing) = std::fs::read_dir(&dir) else { return 0 };
        let mut n = 0;
        for entry in listing.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let ours = instances.iter().any(|p| name.starts_with(p.as_str()))
                || member.as_deref().is_some_and(|m| name.ends_with(m));
            // Never follow a link out of the volumes directory.
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if ours && is_dir {
                match std::fs::remove_dir_all(entry.path()) {
                    Ok(()) => n += 1,
                    Err(err) => tracing::error!(volume = %name, error = %err, "removing a sandbox volume failed"),
                }
            }
        }
        n
    })
    .await
    .unwrap_or(0);
    if removed > 0 {
        tracing::info!(volumes.removed = removed, "removed sandbox volumes");
    }
}

/// How many days of history to show.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct HistoryParams {
    /// 1 to 366; 30 when left out.
    days: Option<u32>,
}

/// One day of usage.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UsageDay {
    /// UTC day, `YYYY-MM-DD`.
    pub day: String,
    /// Messages sent.
    pub messages: i64,
    /// Tokens read by the provider.
    pub input_tokens: i64,
    /// Tokens written by the provider.
    pub output_tokens: i64,
    /// Tool calls run.
    pub tool_calls: i64,
}

/// The caller's usage for each of the last `days` UTC days (today last), zeros included.
#[utoipa::path(get, path = "/api/v1/usage/history", tag = "account", params(HistoryParams),
    responses((status = 200, body = [UsageDay]), (status = 400, body = crate::error::ErrorBody)))]
pub async fn usage_history(
    State(state): State<AppState>,
    Authed(auth): Authed,
    params: Result<Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Vec<UsageDay>>, ApiError> {
    let Query(params) = params?;
    let days = params.days.unwrap_or(30);
    if !(1..=366).contains(&days) {
        return Err(ApiError::bad_request("invalid_days", "days must be between 1 and 366"));
    }
    Ok(Json(history(&state, &auth.principal(), days).await?))
}

/// The last `days` UTC days of the principal's usage, oldest first, with empty days as zeros.
pub async fn history(state: &AppState, principal: &Principal, days: u32) -> Result<Vec<UsageDay>, ApiError> {
    const DAY_MS: i64 = 86_400_000;
    let now = state.now();
    let all: Vec<String> = (0..i64::from(days)).rev().map(|back| utc_day(now - back * DAY_MS)).collect();
    let (Some(first), Some(last)) = (all.first(), all.last()) else { return Ok(Vec::new()) };
    let rows = state.store.usage_between(principal, first, last).await?;
    Ok(all
        .into_iter()
        .map(|day| {
            let u = rows.iter().find(|(d, _)| *d == day).map(|(_, u)| *u).unwrap_or(DailyUsage::default());
            UsageDay {
                day,
                messages: u.messages,
                input_tokens: u.input_tokens,
                output_tokens: u.output_tokens,
                tool_calls: u.tool_calls,
            }
        })
        .collect())
}
