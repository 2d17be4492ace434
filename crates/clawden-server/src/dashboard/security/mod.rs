//! `/account/security`: two-factor sign-in, password, API keys, stored credentials and gateway
//! tokens, as plain HTML forms. Every write goes through the same functions as the JSON API
//! (`routes::keys`, `routes::totp`, `routes::gateway`, `accounts`), so checks and audit events
//! are the same. Pages that show a secret once are sent with `Cache-Control: no-store`.

mod view;

use super::{error_page, render};
use crate::accounts;
use crate::auth::{csrf_token_for, Auth, MaybeAuthed};
use crate::error::{ApiError, ApiPath};
use crate::routes::{gateway as gateway_api, keys as keys_api, totp as totp_api};
use crate::state::AppState;
use crate::totp;
use axum::extract::rejection::FormRejection;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use clawden_core::{ApiKeyId, InstanceId, Role};
use clawden_store::Session;
use maud::{html, Markup};
use secrecy::SecretString;
use serde::Deserialize;
use view::{Notice, Prefill, Section, SecurityPage};

const PAGE: &str = "/account/security";

/// The security pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(PAGE, get(show))
        .route("/account/security/totp/setup", post(totp_setup))
        .route("/account/security/totp/enable", post(totp_enable))
        .route("/account/security/totp/disable", post(totp_disable))
        .route("/account/security/password", post(password_change))
        .route("/account/security/keys", post(key_create))
        .route("/account/security/keys/{id}/delete", post(key_delete))
        .route("/account/security/credentials", post(credential_put))
        .route("/account/security/credentials/{name}/delete", post(credential_delete))
        .route("/account/security/instances/{id}/gateway-token", post(gateway_rotate))
}

/// A signed-in browser session; anyone else (no session, or a bearer credential) is sent to
/// the sign-in page, never served these pages.
struct PageSession {
    auth: Auth,
    session: Session,
}

impl FromRequestParts<AppState> for PageSession {
    type Rejection = Redirect;
    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Ok(MaybeAuthed(auth)) = MaybeAuthed::from_request_parts(parts, state).await;
        match auth {
            Some(auth) => match auth.session().cloned() {
                Some(session) => Ok(PageSession { auth, session }),
                None => Err(Redirect::to("/login")),
            },
            None => Err(Redirect::to("/login")),
        }
    }
}

impl PageSession {
    fn csrf(&self, state: &AppState) -> String {
        csrf_token_for(state, &self.session)
    }
}

fn no_store(mut response: Response) -> Response {
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// After a write that reveals nothing: back to the page, with a fixed confirmation.
fn done(what: &str) -> Response {
    Redirect::to(&format!("{PAGE}?done={what}")).into_response()
}

/// The confirmations `?done=` can ask for; anything else shows nothing (the text never comes
/// from the URL).
fn confirmation(done: &str) -> Option<Notice> {
    let (section, text) = match done {
        "totp_off" => (Section::Totp, "Two-factor sign-in is off."),
        "password_changed" => (Section::Password, "Password changed. Your other devices are signed out."),
        "key_deleted" => (Section::Keys, "API key deleted. Programs using it can no longer sign in."),
        "credential_saved" => (Section::Credentials, "Credential saved."),
        "credential_deleted" => (Section::Credentials, "Credential deleted."),
        _ => return None,
    };
    Some(Notice { section, text: text.to_owned(), error: false })
}

/// Loads what the security page shows and renders it.
async fn security_markup(
    state: &AppState,
    who: &PageSession,
    notice: Option<Notice>,
    prefill: Prefill,
) -> Result<Markup, ApiError> {
    let principal = who.auth.principal();
    let user = &who.auth.user;
    let totp_enabled = state.store.totp_enabled(&principal, user.id).await?;
    let keys = state.store.api_keys(&principal).await?;
    let credentials = state.store.credentials(&principal).await?;
    let owned: Vec<(InstanceId, String)> = state
        .store
        .memberships(&principal)
        .await?
        .into_iter()
        .filter(|m| m.role == Role::Owner)
        .map(|m| (m.id, m.name))
        .collect();
    let csrf = who.csrf(state);
    Ok(view::security(&SecurityPage {
        user,
        csrf: &csrf,
        totp_enabled,
        keys: &keys,
        credentials: &credentials,
        owned: &owned,
        overlap_minutes: state.settings.gateway.overlap.as_secs().div_ceil(60),
        notice,
        prefill,
    }))
}

/// The security page again, with `err` shown in `section` and its status (and Retry-After).
async fn failed(state: &AppState, who: &PageSession, section: Section, err: ApiError, prefill: Prefill) -> Response {
    let notice = Notice { section, text: err.message().to_owned(), error: true };
    match security_markup(state, who, Some(notice), prefill).await {
        Ok(markup) => no_store(error_page(err, |_| markup)),
        Err(load) => load.into_response(),
    }
}

#[derive(Deserialize)]
struct DoneQuery {
    #[serde(default)]
    done: Option<String>,
}

async fn show(
    State(state): State<AppState>,
    who: PageSession,
    query: Result<Query<DoneQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let notice = query.ok().and_then(|Query(q)| q.done).and_then(|d| confirmation(&d));
    match security_markup(&state, &who, notice, Prefill::default()).await {
        Ok(markup) => no_store(render(StatusCode::OK, markup)),
        Err(err) => err.into_response(),
    }
}

async fn totp_setup(State(state): State<AppState>, who: PageSession) -> Response {
    let secret = match totp_api::begin_setup(&state, &who.auth).await {
        Ok(secret) => secret,
        Err(err) => return failed(&state, &who, Section::Totp, err, Prefill::default()).await,
    };
    setup_page(&state, &who, secret.as_slice(), StatusCode::OK, None)
}

/// The setup page for `secret` (a new one, or the pending one when a code was wrong).
fn setup_page(state: &AppState, who: &PageSession, secret: &[u8], status: StatusCode, error: Option<&str>) -> Response {
    let url = match totp::otpauth_url(secret, &who.auth.user.email) {
        Ok(url) => url,
        Err(err) => return err.into_response(),
    };
    let svg = match totp::qr_svg(&url) {
        Ok(svg) => svg,
        Err(err) => return err.into_response(),
    };
    let markup = view::totp_setup(&who.auth.user, &who.csrf(state), &totp::secret_base32(secret), &svg, error);
    no_store(render(status, markup))
}

#[derive(Deserialize)]
struct CodeForm {
    code: String,
}

async fn totp_enable(
    State(state): State<AppState>,
    who: PageSession,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Response {
    // Apps show codes as "123 456"; the spaces are not part of the code.
    let code: String = match &form {
        Ok(Form(f)) => f.code.split_whitespace().collect(),
        Err(_) => String::new(),
    };
    match totp_api::enable_with_code(&state, &who.auth, &code).await {
        Ok(codes) => no_store(render(StatusCode::OK, view::recovery_codes(&who.auth.user, &who.csrf(&state), &codes))),
        Err(err) => {
            // A wrong code: the same pending secret, so the app already set up keeps working.
            let pending = match state.store.totp_state(&who.auth.principal(), who.auth.user.id).await {
                Ok(Some(t)) if !t.enabled => t,
                Ok(_) => return failed(&state, &who, Section::Totp, err, Prefill::default()).await,
                Err(load) => return ApiError::from(load).into_response(),
            };
            let mut response = setup_page(&state, &who, &pending.secret, err.status(), Some(err.message()));
            if err.status().is_server_error() {
                let _ = err.into_response();
            }
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
    }
}

#[derive(Deserialize)]
struct DisableForm {
    password: SecretString,
    code: String,
}

async fn totp_disable(
    State(state): State<AppState>,
    who: PageSession,
    form: Result<Form<DisableForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        let err = ApiError::bad_request("invalid_form", "enter your password and a code");
        return failed(&state, &who, Section::Totp, err, Prefill::default()).await;
    };
    match totp_api::disable_with(&state, &who.auth, form.password, &form.code).await {
        Ok(()) => done("totp_off"),
        Err(err) => failed(&state, &who, Section::Totp, err, Prefill::default()).await,
    }
}

#[derive(Deserialize)]
struct PasswordForm {
    current_password: SecretString,
    new_password: SecretString,
}

async fn password_change(
    State(state): State<AppState>,
    who: PageSession,
    form: Result<Form<PasswordForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        let err = ApiError::bad_request("invalid_form", "enter your current and your new password");
        return failed(&state, &who, Section::Password, err, Prefill::default()).await;
    };
    let result = accounts::change_password(
        &state,
        who.auth.ip,
        &who.auth.user,
        &who.session,
        form.current_password,
        form.new_password,
    )
    .await;
    match result {
        Ok(()) => done("password_changed"),
        Err(err) => failed(&state, &who, Section::Password, err, Prefill::default()).await,
    }
}

#[derive(Deserialize)]
struct NameForm {
    name: String,
}

async fn key_create(
    State(state): State<AppState>,
    who: PageSession,
    form: Result<Form<NameForm>, FormRejection>,
) -> Response {
    let name = form.map(|Form(f)| f.name).unwrap_or_default();
    match keys_api::create_key(&state, &who.auth, &name).await {
        Ok(created) => {
            let lead = html! {
                p.ok role="status" { "API key " strong { (created.name) } " created." }
                p { "Send it as " code { "Authorization: Bearer …" } " from your programs." }
            };
            let markup = view::shown_once(
                &who.auth.user,
                &who.csrf(&state),
                "Your new API key",
                lead,
                "new-key",
                created.key.expose(),
            );
            no_store(render(StatusCode::CREATED, markup))
        }
        Err(err) => {
            let prefill = Prefill { key_name: name, ..Prefill::default() };
            failed(&state, &who, Section::Keys, err, prefill).await
        }
    }
}

async fn key_delete(State(state): State<AppState>, who: PageSession, ApiPath(id): ApiPath<ApiKeyId>) -> Response {
    match keys_api::delete_key(&state, &who.auth, id).await {
        Ok(()) => done("key_deleted"),
        Err(err) => failed(&state, &who, Section::Keys, err, Prefill::default()).await,
    }
}

#[derive(Deserialize)]
struct CredentialForm {
    name: String,
    value: SecretString,
}

async fn credential_put(
    State(state): State<AppState>,
    who: PageSession,
    form: Result<Form<CredentialForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        let err = ApiError::bad_request("invalid_form", "enter a name and a value");
        return failed(&state, &who, Section::Credentials, err, Prefill::default()).await;
    };
    let name = form.name.trim();
    match keys_api::store_credential(&state, &who.auth, name, &form.value).await {
        Ok(()) => done("credential_saved"),
        Err(err) => {
            let prefill = Prefill { credential_name: name.to_owned(), ..Prefill::default() };
            failed(&state, &who, Section::Credentials, err, prefill).await
        }
    }
}

async fn credential_delete(
    State(state): State<AppState>,
    who: PageSession,
    ApiPath(name): ApiPath<String>,
) -> Response {
    match keys_api::remove_credential(&state, &who.auth, &name).await {
        Ok(()) => done("credential_deleted"),
        Err(err) => failed(&state, &who, Section::Credentials, err, Prefill::default()).await,
    }
}

async fn gateway_rotate(
    State(state): State<AppState>,
    who: PageSession,
    ApiPath(instance): ApiPath<InstanceId>,
) -> Response {
    match gateway_api::rotate_as_owner(&state, &who.auth, instance).await {
        Ok((token, until)) => {
            let lead = html! {
                p.ok role="status" { "A new gateway token for instance " code { (instance) } " is ready." }
                p { "The previous token keeps working until " (super::when(until)) "." }
            };
            let markup = view::shown_once(
                &who.auth.user,
                &who.csrf(&state),
                "New gateway token",
                lead,
                "gateway-token",
                token.expose(),
            );
            no_store(render(StatusCode::OK, markup))
        }
        Err(err) => failed(&state, &who, Section::Gateway, err, Prefill::default()).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_come_from_a_fixed_list() {
        assert!(confirmation("credential_saved").is_some_and(|n| !n.error && n.section == Section::Credentials));
        assert!(confirmation("<script>alert(1)</script>").is_none());
        assert!(confirmation("").is_none());
    }
}
