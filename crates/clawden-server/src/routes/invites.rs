//! Redeeming an invite code.

use crate::accounts::INVITE_DOMAIN;
use crate::audit;
use crate::auth::Authed;
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use clawden_store::AuditChain;
use serde::{Deserialize, Serialize};

/// Redeem request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct RedeemRequest {
    code: String,
}

/// Redeem answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RedeemBody {
    tier: String,
}

/// Upgrades the caller to the invite-enabled tier. Failed redemptions are rate-limited.
#[utoipa::path(post, path = "/api/v1/invites/redeem", tag = "account", request_body = RedeemRequest,
    responses((status = 200, body = RedeemBody), (status = 400, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn redeem(
    State(state): State<AppState>,
    Authed(auth): Authed,
    ApiJson(req): ApiJson<RedeemRequest>,
) -> Result<Json<RedeemBody>, ApiError> {
    redeem_code(&state, &auth, &req.code).await?;
    Ok(Json(RedeemBody { tier: clawden_core::Tier::Invite.to_string() }))
}

/// Spends an invite code for the caller, with failed attempts rate-limited per account.
pub async fn redeem_code(state: &AppState, auth: &crate::auth::Auth, code: &str) -> Result<(), ApiError> {
    let key = format!("invite:{}", auth.user.id);
    let now = state.now();
    state.limits.invite_redeem.check(&key, now).map_err(ApiError::rate_limited)?;
    let code = code.trim();
    if code.is_empty() || code.len() > 200 {
        return Err(ApiError::bad_request("invalid_invite", "the invite code is not valid"));
    }
    let hash = state.keyring.hasher().hash(INVITE_DOMAIN, code);
    let ev = audit::success(state, auth.ip, AuditChain::Account(auth.user.id), Some(auth.user.id), "invite.redeem");
    if state.store.redeem_invite(&auth.principal(), &hash, now, ev).await? {
        state.limits.invite_redeem.reset(&key);
        Ok(())
    } else {
        state.limits.invite_redeem.fail(&key, now);
        audit::record_failure(
            state,
            auth.ip,
            AuditChain::Account(auth.user.id),
            Some(auth.user.id),
            "invite.redeem",
            String::new(),
        )
        .await;
        Err(ApiError::bad_request("invalid_invite", "the invite code is not valid"))
    }
}
