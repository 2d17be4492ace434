//! The server-rendered dashboard. Plain HTML forms that work without JavaScript; writes carry
//! the CSRF token as a `csrf_token` field. Every page goes through the same account logic as
//! the JSON API.

mod agent;
mod approvals;
mod data;
mod hub;
mod layout;
mod policy;
mod security;
mod team;
mod usage;

use crate::accounts::{self, NewLogin};
use crate::audit;
use crate::auth::{cookie, csrf_token_for, MaybeAuthed, SessionAuthed};
use crate::client_ip::ClientIp;
use crate::error::{ApiError, ApiPath};
use crate::state::AppState;
use axum::extract::{Form, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use clawden_core::{Principal, SessionId};
use clawden_store::AuditChain;
use layout::page;
use maud::{html, Markup};
use secrecy::SecretString;
use serde::Deserialize;

const STYLE: &str = include_str!("style.css");

/// The dashboard's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login_submit))
        .route("/signup", get(signup_page).post(signup_submit))
        .route("/account", get(account_page))
        .route("/logout", post(logout_submit))
        .route("/account/sessions/{id}/revoke", post(revoke_submit))
        .route("/static/app.css", get(stylesheet))
        .merge(agent::routes())
        .merge(policy::routes())
        .merge(approvals::routes())
        .merge(team::routes())
        .merge(security::routes())
        .merge(data::routes())
        .merge(usage::routes())
        .merge(hub::routes())
        .layer(axum::middleware::from_fn(layout::nav_context))
}

async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        STYLE,
    )
        .into_response()
}

/// The signed-in browser's caller and CSRF token (a session, never a bearer credential).
pub(crate) fn session(state: &AppState, auth: Option<crate::auth::Auth>) -> Option<(crate::auth::Auth, String)> {
    let csrf = csrf_token_for(state, auth.as_ref()?.session()?);
    Some((auth?, csrf))
}

pub(crate) fn render(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

async fn home(MaybeAuthed(auth): MaybeAuthed) -> Redirect {
    if auth.is_some() {
        Redirect::to("/account")
    } else {
        Redirect::to("/login")
    }
}

fn login_form(error: Option<&str>, email: &str) -> Markup {
    page(
        "Sign in",
        None,
        html! {
            div.card.narrow {
                h1 { "Sign in" }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/login" {
                    label for="email" { "Email" }
                    input #email type="email" name="email" autocomplete="username" required value=(email);
                    label for="password" { "Password" }
                    input #password type="password" name="password" autocomplete="current-password" required;
                    label for="totp_code" { "Two-factor code " span.hint { "(if you turned it on)" } }
                    input #totp_code type="text" name="totp_code" inputmode="numeric" autocomplete="one-time-code";
                    button type="submit" { "Sign in" }
                }
                p.hint { "No account yet? " a href="/signup" { "Create one" } "." }
            }
        },
    )
}

fn signup_form(error: Option<&str>, email: &str, state: &AppState) -> Markup {
    let needs_invite = state.settings.signup == clawden_core::SignupMode::InviteOnly;
    page(
        "Create account",
        None,
        html! {
            div.card.narrow {
                h1 { "Create your account" }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                @if state.settings.signup == clawden_core::SignupMode::Closed {
                    p { "Sign-up is closed on this server. Ask its operator for an account." }
                } @else {
                    form method="post" action="/signup" {
                        label for="email" { "Email" }
                        input #email type="email" name="email" autocomplete="username" required value=(email);
                        label for="password" { "Password" }
                        input #password type="password" name="password" autocomplete="new-password" minlength="12" required aria-describedby="pw-hint";
                        p #pw-hint .hint { "At least 12 characters; not your email, not a common password." }
                        label for="invite_code" { "Invite code" @if !needs_invite { span.hint { " (optional)" } } }
                        input #invite_code type="text" name="invite_code" required[needs_invite];
                        button type="submit" { "Create account" }
                    }
                }
                p.hint { "Already have an account? " a href="/login" { "Sign in" } "." }
            }
        },
    )
}

/// Answers a successful form sign-in: cookie, then the account page.
fn signed_in_redirect(state: &AppState, login: &NewLogin) -> Response {
    let max_age = state.settings.auth.session_absolute.as_secs();
    (
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie::set(login.token.expose(), max_age, state.settings.tls_enabled())),
            (header::LOCATION, HeaderValue::from_static("/account")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
    )
        .into_response()
}

async fn login_page(MaybeAuthed(auth): MaybeAuthed) -> Response {
    if auth.is_some() {
        return Redirect::to("/account").into_response();
    }
    render(StatusCode::OK, login_form(None, ""))
}

#[derive(Deserialize)]
struct LoginForm {
    email: String,
    password: SecretString,
    #[serde(default)]
    totp_code: Option<String>,
}

async fn login_submit(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    form: Result<Form<LoginForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return render(StatusCode::BAD_REQUEST, login_form(Some("Fill in your email and password."), ""));
    };
    let ua = accounts::user_agent(&headers);
    match accounts::login(&state, ip, &form.email, form.password, form.totp_code.as_deref(), ua).await {
        Ok(login) => signed_in_redirect(&state, &login),
        Err(err) => error_page(err, |msg| login_form(Some(msg), &form.email)),
    }
}

/// Renders a form again with the error's message, keeping the error's status and Retry-After.
fn error_page(err: ApiError, form: impl FnOnce(&str) -> Markup) -> Response {
    let markup = form(err.message());
    error_response(err, markup)
}

/// A page showing an API error: its status, its `Retry-After`, and the server-side log of a
/// 5xx — what every dashboard page answers when the API call behind it fails.
pub(super) fn error_response(err: ApiError, markup: Markup) -> Response {
    let mut response = render(err.status(), markup);
    if let Some(secs) = err.retry_after() {
        if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    if err.status().is_server_error() {
        // Logged once, like every 500.
        let _ = err.into_response();
    }
    response
}

async fn signup_page(State(state): State<AppState>, MaybeAuthed(auth): MaybeAuthed) -> Response {
    if auth.is_some() {
        return Redirect::to("/account").into_response();
    }
    render(StatusCode::OK, signup_form(None, "", &state))
}

#[derive(Deserialize)]
struct SignupForm {
    email: String,
    password: SecretString,
    #[serde(default)]
    invite_code: Option<String>,
}

async fn signup_submit(
    State(state): State<AppState>,
    ip: ClientIp,
    headers: HeaderMap,
    form: Result<Form<SignupForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return render(StatusCode::BAD_REQUEST, signup_form(Some("Fill in your email and a password."), "", &state));
    };
    let ua = accounts::user_agent(&headers);
    match accounts::signup(&state, ip, &form.email, form.password, form.invite_code.as_deref(), ua).await {
        Ok((login, _)) => signed_in_redirect(&state, &login),
        Err(err) => error_page(err, |msg| signup_form(Some(msg), &form.email, &state)),
    }
}

pub(crate) fn when(millis: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    time::OffsetDateTime::from_unix_timestamp(millis.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

async fn account_page(State(state): State<AppState>, MaybeAuthed(auth): MaybeAuthed) -> Result<Response, ApiError> {
    let Some(auth) = auth else { return Ok(Redirect::to("/login").into_response()) };
    let Some(current) = auth.session().cloned() else { return Ok(Redirect::to("/login").into_response()) };
    let csrf = csrf_token_for(&state, &current);
    let principal = auth.principal();
    let instances = state.store.memberships(&principal).await?;
    let sessions = state.store.sessions(&principal, state.now()).await?;
    let notices = state.store.notices(&principal, 5).await?;
    let user = &auth.user;
    let markup = page(
        "Account",
        Some((&user.email, &csrf)),
        html! {
            @if !notices.is_empty() {
                div.card #notices {
                    h2 { "Notices" }
                    ul { @for n in &notices { li { p.error role="alert" { (n.message) } span.hint { (when(n.created_at)) } } } }
                }
            }
            div.card {
                h1 { "Who am I" }
                dl {
                    dt { "Email" } dd #me-email { (user.email) }
                    dt { "Account id" } dd { code { (user.id) } }
                    dt { "Tier" } dd { span.badge { (user.tier) } }
                    dt { "Platform admin" } dd { @if user.platform_admin { "yes" } @else { "no" } }
                    dt { "Member since" } dd { (when(user.created_at)) }
                }
            }
            div.card {
                h2 { "Security" }
                p { "Two-factor sign-in, password, API keys, stored provider keys and gateway tokens." }
                p { a.button href="/account/security" { "Security settings" } }
            }
            div.card {
                h2 { "Instances" }
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Id" } th scope="col" { "Role" } } }
                    tbody {
                        @for m in &instances {
                            tr { td { (m.name) } td { code { (m.id) } } td { (m.role) } }
                        }
                    }
                }
            }
            div.card {
                h2 { "Signed-in devices" }
                table {
                    thead { tr { th scope="col" { "Device" } th scope="col" { "Address" } th scope="col" { "Last active" } th scope="col" { span.muted { "Action" } } } }
                    tbody {
                        @for s in &sessions {
                            tr {
                                td { (s.user_agent.as_deref().unwrap_or("unknown")) @if s.id == current.id { " " span.badge { "this device" } } }
                                td { (s.ip.as_deref().unwrap_or("")) }
                                td { (when(s.last_seen_at)) }
                                td {
                                    @if s.id != current.id {
                                        form.inline method="post" action={ "/account/sessions/" (s.id) "/revoke" } {
                                            input type="hidden" name="csrf_token" value=(csrf);
                                            button.secondary type="submit" aria-label="Sign out this device" { "Sign out" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        },
    );
    Ok(render(StatusCode::OK, markup))
}

async fn logout_submit(
    State(state): State<AppState>,
    SessionAuthed(auth, session): SessionAuthed,
) -> Result<Response, ApiError> {
    accounts::logout(&state, auth.ip, &auth.user, &session).await?;
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::SET_COOKIE, cookie::clear(state.settings.tls_enabled())),
            (header::LOCATION, HeaderValue::from_static("/login")),
        ],
    )
        .into_response())
}

async fn revoke_submit(
    State(state): State<AppState>,
    SessionAuthed(auth, _): SessionAuthed,
    ApiPath(id): ApiPath<SessionId>,
) -> Result<Response, ApiError> {
    let ev = audit::success(&state, auth.ip, AuditChain::Account(auth.user.id), Some(auth.user.id), "session.revoke");
    state.store.revoke_session(&Principal::User { user: auth.user.id }, id, ev).await?;
    Ok(Redirect::to("/account").into_response())
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_render() {
        assert_eq!(super::when(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::when(1_764_093_600_000), "2025-11-25 18:00 UTC");
    }
}
