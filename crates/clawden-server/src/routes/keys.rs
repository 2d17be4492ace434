//! `/api/v1/api-keys` (session only) and `/api/v1/credentials` (session or API key).

use crate::audit;
use crate::auth::{Auth, Authed, SessionAuthed, API_KEY_DOMAIN, API_KEY_PREFIX};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use clawden_core::ApiKeyId;
use clawden_crypto::PlainToken;
use clawden_store::{AuditChain, CredentialInfo, NewApiKey};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Longest stored credential value.
pub const MAX_CREDENTIAL_BYTES: usize = 8 * 1024;
/// Most API keys per user.
pub const MAX_API_KEYS: usize = 50;
/// Most stored credentials per user.
pub const MAX_CREDENTIALS: usize = 50;

/// New API key request.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct NewKeyRequest {
    name: String,
}

/// A new API key: the key is shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct NewKeyBody {
    #[schema(value_type = String)]
    id: ApiKeyId,
    name: String,
    key: String,
    prefix: String,
}

/// An API key as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct KeyBody {
    #[schema(value_type = String)]
    id: ApiKeyId,
    name: String,
    prefix: String,
    created_at: i64,
    last_used_at: Option<i64>,
}

fn valid_label(name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request("invalid_name", "give a name of 1 to 100 printable characters"));
    }
    Ok(name.to_owned())
}

/// Creates an API key; the key is in this answer and nowhere else, ever.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "keys", request_body = NewKeyRequest,
    responses((status = 201, body = NewKeyBody), (status = 400, body = crate::error::ErrorBody), (status = 403, body = crate::error::ErrorBody)))]
pub async fn create_api_key(
    State(state): State<AppState>,
    SessionAuthed(auth, _): SessionAuthed,
    ApiJson(req): ApiJson<NewKeyRequest>,
) -> Result<Response, ApiError> {
    let created = create_key(&state, &auth, &req.name).await?;
    let body =
        NewKeyBody { id: created.id, name: created.name, key: created.key.expose().to_owned(), prefix: created.prefix };
    Ok((StatusCode::CREATED, [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body))
        .into_response())
}

/// The caller's API keys (never the keys themselves).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "keys", responses((status = 200, body = [KeyBody])))]
pub async fn list_api_keys(
    State(state): State<AppState>,
    SessionAuthed(auth, _): SessionAuthed,
) -> Result<Json<Vec<KeyBody>>, ApiError> {
    let keys = state.store.api_keys(&auth.principal()).await?;
    Ok(Json(
        keys.into_iter()
            .map(|k| KeyBody {
                id: k.id,
                name: k.name,
                prefix: k.prefix,
                created_at: k.created_at,
                last_used_at: k.last_used_at,
            })
            .collect(),
    ))
}

/// Deletes one of the caller's API keys.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_api_key(
    State(state): State<AppState>,
    SessionAuthed(auth, _): SessionAuthed,
    ApiPath(id): ApiPath<ApiKeyId>,
) -> Result<StatusCode, ApiError> {
    delete_key(&state, &auth, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A credential to store.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CredentialRequest {
    #[schema(value_type = String, format = Password)]
    value: SecretString,
}

/// A stored credential as listed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CredentialBody {
    name: String,
    last4: String,
    updated_at: i64,
}

impl From<CredentialInfo> for CredentialBody {
    fn from(c: CredentialInfo) -> Self {
        Self { name: c.name, last4: c.last4, updated_at: c.updated_at }
    }
}

/// Credential names: the provider names, or a channel name of lowercase letters, digits, `-`, `_`.
pub fn valid_credential_name(name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request("invalid_name", "credential names are 1 to 64 of a-z, 0-9, '-' and '_'"))
    }
}

/// Stores a provider key (`anthropic`, `openai`) or channel credential, sealed under the
/// caller's key. It is never shown again, only its last four characters.
#[utoipa::path(put, path = "/api/v1/credentials/{name}", tag = "keys", params(("name" = String, Path)), request_body = CredentialRequest,
    responses((status = 204), (status = 400, body = crate::error::ErrorBody)))]
pub async fn put_credential(
    State(state): State<AppState>,
    Authed(auth): Authed,
    ApiPath(name): ApiPath<String>,
    ApiJson(req): ApiJson<CredentialRequest>,
) -> Result<StatusCode, ApiError> {
    store_credential(&state, &auth, &name, &req.value).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's stored credentials: names and last four characters only.
#[utoipa::path(get, path = "/api/v1/credentials", tag = "keys", responses((status = 200, body = [CredentialBody])))]
pub async fn list_credentials(
    State(state): State<AppState>,
    Authed(auth): Authed,
) -> Result<Json<Vec<CredentialBody>>, ApiError> {
    Ok(Json(state.store.credentials(&auth.principal()).await?.into_iter().map(Into::into).collect()))
}

/// Deletes a stored credential.
#[utoipa::path(delete, path = "/api/v1/credentials/{name}", tag = "keys", params(("name" = String, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)))]
pub async fn delete_credential(
    State(state): State<AppState>,
    Authed(auth): Authed,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    remove_credential(&state, &auth, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new API key, as made by [`create_key`]: `key` is shown once and never stored.
#[derive(Debug)]
pub struct CreatedKey {
    /// The stored key's id.
    pub id: ApiKeyId,
    /// Its label.
    pub name: String,
    /// The key itself.
    pub key: PlainToken,
    /// The first characters, shown in lists.
    pub prefix: String,
}

/// Makes an API key for the caller (the JSON route and the dashboard both call this).
/// Audited as `api_key.create`.
pub async fn create_key(state: &AppState, auth: &Auth, name: &str) -> Result<CreatedKey, ApiError> {
    let name = valid_label(name)?;
    let principal = auth.principal();
    if state.store.api_keys(&principal).await?.len() >= MAX_API_KEYS {
        return Err(ApiError::bad_request("too_many_keys", format!("at most {MAX_API_KEYS} API keys per account")));
    }
    let key = PlainToken::generate(API_KEY_PREFIX);
    let prefix = key.display_prefix(API_KEY_PREFIX.len());
    let new = NewApiKey {
        name,
        prefix: prefix.clone(),
        key_hash: state.keyring.hasher().hash(API_KEY_DOMAIN, key.expose()),
        now: state.now(),
    };
    let ev = audit::success(state, auth.ip, AuditChain::Account(auth.user.id), Some(auth.user.id), "api_key.create");
    let stored = state.store.create_api_key(&principal, new, ev).await?;
    Ok(CreatedKey { id: stored.id, name: stored.name, key, prefix })
}

/// Deletes one of the caller's API keys; 404 when it is not theirs. Audited as `api_key.delete`.
pub async fn delete_key(state: &AppState, auth: &Auth, id: ApiKeyId) -> Result<(), ApiError> {
    let ev = audit::success(state, auth.ip, AuditChain::Account(auth.user.id), Some(auth.user.id), "api_key.delete");
    if state.store.delete_api_key(&auth.principal(), id, ev).await? {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}

/// Checks and stores (or replaces) one of the caller's credentials, sealed under their key.
/// Audited as `credential.put`.
pub async fn store_credential(state: &AppState, auth: &Auth, name: &str, value: &SecretString) -> Result<(), ApiError> {
    valid_credential_name(name)?;
    let plain = value.expose_secret();
    if plain.is_empty() || plain.len() > MAX_CREDENTIAL_BYTES || plain.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "invalid_value",
            format!("a credential is 1 to {MAX_CREDENTIAL_BYTES} bytes of printable text"),
        ));
    }
    let principal = auth.principal();
    let existing = state.store.credentials(&principal).await?;
    if existing.len() >= MAX_CREDENTIALS && !existing.iter().any(|c| c.name == name) {
        return Err(ApiError::bad_request("too_many_credentials", format!("at most {MAX_CREDENTIALS} credentials")));
    }
    let ev = audit::success(state, auth.ip, AuditChain::Account(auth.user.id), Some(auth.user.id), "credential.put");
    state.store.put_credential(&principal, name, value, state.now(), ev).await?;
    Ok(())
}

/// Deletes one of the caller's credentials; 404 when there is none by that name.
/// Audited as `credential.delete`.
pub async fn remove_credential(state: &AppState, auth: &Auth, name: &str) -> Result<(), ApiError> {
    valid_credential_name(name)?;
    let ev = audit::success(state, auth.ip, AuditChain::Account(auth.user.id), Some(auth.user.id), "credential.delete");
    if state.store.delete_credential(&auth.principal(), name, ev).await? {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}
