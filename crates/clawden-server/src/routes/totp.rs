//! `/api/v1/auth/totp/*`: set up, enable and disable two-factor sign-in (session only).

use crate::audit;
use crate::auth::{Auth, SessionAuthed};
use crate::error::{ApiError, ApiJson};
use crate::state::AppState;
use crate::totp::{self, SecondFactor};
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use clawden_crypto::PasswordVerdict;
use clawden_store::AuditChain;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// A new TOTP secret, to put in an authenticator app.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SetupBody {
    /// Base32, as apps accept it when typed.
    secret: String,
    /// `otpauth://totp/…`, as a QR code carries it.
    otpauth_url: String,
}

/// Starts 2FA setup: a new secret, not yet required at sign-in.
#[utoipa::path(post, path = "/api/v1/auth/totp/setup", tag = "auth",
    responses((status = 200, body = SetupBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn setup(
    State(state): State<AppState>,
    SessionAuthed(auth, _): SessionAuthed,
) -> Result<Json<SetupBody>, ApiError> {
    let secret = begin_setup(&state, &auth).await?;
    Ok(Json(SetupBody {
        secret: totp::secret_base32(secret.as_slice()),
        otpauth_url: totp::otpauth_url(secret.as_slice(), &auth.user.email)?,
    }))
}

/// Stores a new, not yet enabled TOTP secret for the caller and returns it; 409 when 2FA is
/// already on. Shared by the JSON route and the dashboard.
pub async fn begin_setup(state: &AppState, auth: &Auth) -> Result<Zeroizing<[u8; 20]>, ApiError> {
    let secret = Zeroizing::new(clawden_crypto::random_bytes::<20>());
    match state.store.totp_begin(&auth.principal(), secret.as_slice(), state.now()).await {
        Err(clawden_store::StoreError::Forbidden) => {
            return Err(ApiError::new(StatusCode::CONFLICT, "totp_enabled", "two-factor sign-in is already on"));
        }
        other => other?,
    }
    Ok(secret)
}

/// A code from the authenticator app.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct EnableRequest {
    code: String,
}

/// Recovery codes, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EnableBody {
    recovery_codes: Vec<String>,
}

/// Turns 2FA on after a valid code; returns 10 single-use recovery codes.
#[utoipa::path(post, path = "/api/v1/auth/totp/enable", tag = "auth", request_body = EnableRequest,
    responses((status = 200, body = EnableBody), (status = 400, body = crate::error::ErrorBody)))]
pub async fn enable(
    State(state): State<AppState>,
    SessionAuthed(auth, _): SessionAuthed,
    ApiJson(req): ApiJson<EnableRequest>,
) -> Result<Json<EnableBody>, ApiError> {
    let recovery_codes = enable_with_code(&state, &auth, &req.code).await?;
    Ok(Json(EnableBody { recovery_codes }))
}

/// Turns 2FA on for the caller when `code` matches the pending secret; returns the 10
/// recovery codes to show once. Audited as `auth.totp.enable`.
pub async fn enable_with_code(state: &AppState, auth: &Auth, code: &str) -> Result<Vec<String>, ApiError> {
    let principal = auth.principal();
    let Some(current) = state.store.totp_state(&principal, auth.user.id).await? else {
        return Err(ApiError::bad_request("totp_not_set_up", "start with /api/v1/auth/totp/setup"));
    };
    if current.enabled {
        return Err(ApiError::new(StatusCode::CONFLICT, "totp_enabled", "two-factor sign-in is already on"));
    }
    let Some(step) = totp::matching_step(&current.secret, code, state.clock.now_secs())? else {
        return Err(ApiError::bad_request("invalid_totp", "that code is not valid; check the time on your device"));
    };
    let (codes, hashes) = totp::new_recovery_codes(state);
    let ev = audit::success(state, auth.ip, AuditChain::Account(auth.user.id), Some(auth.user.id), "auth.totp.enable");
    if !state.store.totp_enable(&principal, step, &hashes, ev).await? {
        return Err(ApiError::bad_request("invalid_totp", "that code was already used; wait for the next one"));
    }
    Ok(codes)
}

/// Password and a current code (or a recovery code).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct DisableRequest {
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    code: String,
}

/// Turns 2FA off; needs the password and a code.
#[utoipa::path(post, path = "/api/v1/auth/totp/disable", tag = "auth", request_body = DisableRequest,
    responses((status = 204), (status = 403, body = crate::error::ErrorBody)))]
pub async fn disable(
    State(state): State<AppState>,
    SessionAuthed(auth, _): SessionAuthed,
    ApiJson(req): ApiJson<DisableRequest>,
) -> Result<StatusCode, ApiError> {
    disable_with(&state, &auth, req.password, &req.code).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Turns 2FA off for the caller after checking the password and a code (or recovery code).
/// A failure is audited as a failed `auth.totp.disable`, success as a successful one.
pub async fn disable_with(state: &AppState, auth: &Auth, password: SecretString, code: &str) -> Result<(), ApiError> {
    let user = &auth.user;
    let record = state
        .store
        .login_lookup(&clawden_core::Principal::System, &user.email)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let password_ok = state.passwords.verify(password, Some(record.password_hash)).await? != PasswordVerdict::Mismatch;
    let factor = totp::check_second_factor(state, user.id, Some(code)).await?;
    if !password_ok || !matches!(factor, SecondFactor::Passed) {
        audit::record_failure(
            state,
            auth.ip,
            AuditChain::Account(user.id),
            Some(user.id),
            "auth.totp.disable",
            String::new(),
        )
        .await;
        return Err(ApiError::forbidden("invalid_credentials", "wrong password or code"));
    }
    let ev = audit::success(state, auth.ip, AuditChain::Account(user.id), Some(user.id), "auth.totp.disable");
    state.store.totp_disable(&auth.principal(), ev).await?;
    Ok(())
}
