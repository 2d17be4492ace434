//! The `clawden_session` cookie: HttpOnly, SameSite=Strict, Path=/, Secure under TLS.

use axum::http::{header, HeaderMap, HeaderValue};

/// The cookie's name.
pub const COOKIE_NAME: &str = "clawden_session";

/// The session token from the request's cookies, if any.
pub fn session_token(headers: &HeaderMap) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).find_map(|line| {
        line.split(';').find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE_NAME && value.starts_with(super::SESSION_PREFIX)).then(|| value.to_owned())
        })
    })
}

/// `Set-Cookie` for a new session.
pub fn set(token: &str, max_age_secs: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text = format!("{COOKIE_NAME}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{secure}");
    // Tokens are base32 behind an ASCII prefix, so the header value is always valid.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("clawden_session=; Path=/"))
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear(secure: bool) -> HeaderValue {
    if secure {
        HeaderValue::from_static("clawden_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0; Secure")
    } else {
        HeaderValue::from_static("clawden_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }
}
