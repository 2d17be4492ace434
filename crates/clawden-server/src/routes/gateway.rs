//! `POST /api/v1/instances/{id}/gateway-token/rotate` and `GET /v1/models`.

use crate::auth::{Auth, Authed};
use crate::error::{ApiError, ApiPath};
use crate::gateway;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use clawden_core::{InstanceId, Role};
use clawden_crypto::PlainToken;
use serde::Serialize;

/// A new gateway token, shown once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenBody {
    token: String,
    /// Until when (Unix ms) the previous token keeps working.
    previous_valid_until: i64,
}

/// Makes a new gateway token for the instance now; the old one works for the overlap window.
/// Owner only.
#[utoipa::path(post, path = "/api/v1/instances/{id}/gateway-token/rotate", tag = "instances", params(("id" = String, Path)),
    responses((status = 200, body = TokenBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn rotate(
    State(state): State<AppState>,
    Authed(auth): Authed,
    ApiPath(instance): ApiPath<InstanceId>,
) -> Result<Response, ApiError> {
    let (token, until) = rotate_as_owner(&state, &auth, instance).await?;
    let body = TokenBody { token: token.expose().to_owned(), previous_valid_until: until };
    Ok(([(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))], Json(body)).into_response())
}

/// Rotates `instance`'s gateway token when the caller owns it (404 otherwise, as for a
/// stranger); returns the new token and until when the previous one works. Shared by the JSON
/// route and the dashboard.
pub async fn rotate_as_owner(
    state: &AppState,
    auth: &Auth,
    instance: InstanceId,
) -> Result<(PlainToken, i64), ApiError> {
    let principal = auth.principal();
    // Members who are not owners learn nothing more than strangers do.
    if state.store.role_in(&principal, instance).await? != Some(Role::Owner) {
        return Err(ApiError::not_found());
    }
    gateway::rotate(state, &principal, instance, Some(auth.ip)).await
}

/// One model entry, in OpenAI's format.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Model {
    id: String,
    object: &'static str,
    created: i64,
    owned_by: &'static str,
}

/// OpenAI's model list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelList {
    object: &'static str,
    data: Vec<Model>,
}

/// The caller's agents as OpenAI models: `clawden` (the default instance) and
/// `clawden/<instance id>` for each instance the caller may chat with.
#[utoipa::path(get, path = "/v1/models", tag = "openai", responses((status = 200, body = ModelList), (status = 401, body = crate::error::ErrorBody)))]
pub async fn models(State(state): State<AppState>, Authed(auth): Authed) -> Result<Json<ModelList>, ApiError> {
    let instances: Vec<_> = match auth.gateway_instance() {
        Some(only) => vec![only],
        None => state.store.memberships(&auth.principal()).await?.into_iter().map(|m| m.id).collect(),
    };
    let created = state.clock.now_secs();
    let mut data = vec![Model { id: "clawden".into(), object: "model", created, owned_by: "clawden" }];
    data.extend(instances.into_iter().map(|i| Model {
        id: format!("clawden/{i}"),
        object: "model",
        created,
        owned_by: "clawden",
    }));
    Ok(Json(ModelList { object: "list", data }))
}
