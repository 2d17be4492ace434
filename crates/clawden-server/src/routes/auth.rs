//! `/api/v1/auth/*`: sign-up, sign-in, sign-out, password change.

use crate::accounts::{self, NewLogin};
use crate::auth::{cookie, csrf_token_for, SessionAuthed};
use crate::client_ip::ClientIp;
use crate::error::{ApiError, ApiJson};
use crate::routes::me::{me_body, MeBody};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use secrecy::SecretString;
use serde::Deserialize;

/// Sign-up request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct SignupRequest {
    email: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    /// Required when sign-up is invite-only; starts the account on the invite tier.
    #[serde(default)]
    invite_code: Option<String>,
}

/// Sign-in request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct LoginRequest {
    email: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    /// The current 2FA code, when 2FA is on.
    #[serde(default)]
    totp_code: Option<String>,
}

/// Password change request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct PasswordRequest {
    #[schema(value_type = String, format = Password)]
    current_password: SecretString,
    #[schema(value_type = String, format = Password)]
    new_password: SecretString,
}

/// Answers a new login with the cookie and the caller's `me` body.
pub(crate) async fn login_response(
    state: &AppState,
    status: StatusCode,
    login: NewLogin,
) -> Result<Response, ApiError> {
    let max_age = state.settings.auth.session_absolute.as_secs();
    let csrf = csrf_token_for(state, &login.session);
    let body = me_body(state, &login.user, Some(csrf)).await?;
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::SET_COOKIE, cookie::set(login.token.expose(), max_age, state.settings.tls_enabled()));
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Creates an account and its personal instance, and signs in.
#[utoipa::path(post, path = "/api/v1/auth/signup", tag = "auth", request_body = SignupRequest,
    responses((status = 201, body = MeBody), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody),
        (status = 409, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn signup(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SignupRequest>,
) -> Result<Response, ApiError> {
    let (login, _) = accounts::signup(
        &state,
        ip,
        &req.email,
        req.password,
        req.invite_code.as_deref(),
        accounts::user_agent(&headers),
    )
    .await?;
    login_response(&state, StatusCode::CREATED, login).await
}

/// Signs in and sets the session cookie.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = MeBody), (status = 401, body = crate::error::ErrorBody), (status = 429, body = crate::error::ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    ApiJson(req): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let ua = accounts::user_agent(&headers);
    let login = accounts::login(&state, ip, &req.email, req.password, req.totp_code.as_deref(), ua).await?;
    login_response(&state, StatusCode::OK, login).await
}

/// Ends this session.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", responses((status = 204), (status = 401, body = crate::error::ErrorBody)))]
pub async fn logout(
    State(state): State<AppState>,
    SessionAuthed(auth, session): SessionAuthed,
) -> Result<Response, ApiError> {
    accounts::logout(&state, auth.ip, &auth.user, &session).await?;
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie::clear(state.settings.tls_enabled()))]).into_response())
}

/// Changes the password; every other session of the user ends.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordRequest,
    responses((status = 204), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn change_password(
    State(state): State<AppState>,
    SessionAuthed(auth, session): SessionAuthed,
    ApiJson(req): ApiJson<PasswordRequest>,
) -> Result<StatusCode, ApiError> {
    accounts::change_password(&state, auth.ip, &auth.user, &session, req.current_password, req.new_password).await?;
    Ok(StatusCode::NO_CONTENT)
}
