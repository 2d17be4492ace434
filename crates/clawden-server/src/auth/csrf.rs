//! CSRF protection for cookie-authenticated writes: the token `GET /api/v1/me` returns must
//! come back as the `x-csrf-token` header or a `csrf_token` form field. The token is a keyed
//! tag of the session id, so it needs no storage and dies with the session. Writes that carry
//! an `Origin` header from another site are refused outright.

use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use clawden_crypto::token::ct_str_eq;
use clawden_store::Session;

/// The CSRF token of a session.
pub fn csrf_token_for(state: &AppState, session: &Session) -> String {
    state.keyring.hasher().tag("csrf", session.id.to_string().as_bytes())
}

fn forbidden() -> ApiError {
    ApiError::forbidden("csrf_failed", "missing or wrong CSRF token; reload the page and try again")
}

/// Refuses a write whose `Origin` names another host than the one it was sent to.
pub(super) fn check_origin(req: &Request) -> Result<(), ApiError> {
    let Some(origin) = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let origin_host = origin.split_once("://").map(|(_, rest)| rest).unwrap_or("");
    if origin_host.is_empty() || !origin_host.eq_ignore_ascii_case(host) {
        return Err(ApiError::forbidden("cross_origin", "cross-site requests are not accepted"));
    }
    Ok(())
}

/// Checks the CSRF token of a cookie-authenticated write; returns the request with its body
/// intact (a form body is read to find the field, then put back).
pub(super) async fn verify(state: &AppState, req: Request, session: &Session) -> Result<Request, ApiError> {
    let expected = csrf_token_for(state, session);
    if let Some(given) = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()) {
        return if ct_str_eq(given, &expected) { Ok(req) } else { Err(forbidden()) };
    }
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    // A multipart form (a file upload) carries the token as a field too; its boundary says
    // where the fields are.
    let boundary = if content_type.starts_with("multipart/form-data") {
        Some(multer::parse_boundary(&content_type).map_err(|_| forbidden())?)
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        None
    } else {
        return Err(forbidden());
    };
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, state.settings.max_body_bytes).await.map_err(|_| {
        ApiError::new(axum::http::StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is larger than allowed")
    })?;
    let given = match boundary {
        None => serde_urlencoded::from_bytes::<Vec<(String, String)>>(&bytes)
            .ok()
            .and_then(|pairs| pairs.into_iter().find(|(k, _)| k == "csrf_token").map(|(_, v)| v)),
        Some(boundary) => multipart_token(bytes.clone(), boundary).await,
    };
    match given {
        Some(given) if ct_str_eq(&given, &expected) => Ok(Request::from_parts(parts, Body::from(bytes))),
        _ => Err(forbidden()),
    }
}

/// The `csrf_token` field of a multipart body (already read, so bounded by the body limit).
async fn multipart_token(bytes: axum::body::Bytes, boundary: String) -> Option<String> {
    let stream = futures::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
    let mut form = multer::Multipart::new(stream, boundary);
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("csrf_token") {
            return field.text().await.ok();
        }
    }
    None
}
