//! Settings → Data: download everything, clear chat history (all of it or one conversation),
//! delete the account. Every destructive action asks for a confirmation first, and the server
//! checks it again (a form posted without the confirmation changes nothing).

use super::layout::page;
use super::{render, session, when};
use crate::auth::{cookie, MaybeAuthed};
use crate::error::{ApiError, ApiPath};
use crate::state::AppState;
use axum::extract::{Form, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use clawden_core::ConversationId;
use clawden_store::AuditChain;
use maud::{html, Markup};
use secrecy::SecretString;
use serde::Deserialize;

/// The data pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/settings/data", get(data_page))
        .route("/settings/data/clear", get(clear_confirm).post(clear_submit))
        .route("/settings/data/conversations/{id}/delete", get(delete_one_confirm).post(delete_one_submit))
        .route("/settings/data/delete-account", axum::routing::post(delete_account_submit))
        .route("/settings/data/import", axum::routing::post(import_submit))
}

fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

async fn data_page(State(state): State<AppState>, MaybeAuthed(auth): MaybeAuthed) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    let totp = state.store.totp_enabled(&auth.principal(), auth.user.id).await?;
    Ok(render(StatusCode::OK, data_view(&state, &auth, &csrf, totp, None).await?))
}

async fn data_view(
    state: &AppState,
    auth: &crate::auth::Auth,
    csrf: &str,
    totp: bool,
    error: Option<&str>,
) -> Result<Markup, ApiError> {
    data_view_with(state, auth, csrf, totp, error, None).await
}

async fn data_view_with(
    state: &AppState,
    auth: &crate::auth::Auth,
    csrf: &str,
    totp: bool,
    error: Option<&str>,
    import_error: Option<&str>,
) -> Result<Markup, ApiError> {
    let conversations = state.store.conversations(&auth.principal()).await?;
    let memberships = state.store.memberships(&auth.principal()).await?;
    let configurable: Vec<_> = memberships.iter().filter(|m| m.role.can_configure()).collect();
    let owned: Vec<_> = memberships.iter().filter(|m| m.role == clawden_core::Role::Owner).collect();
    Ok(page(
        "Your data",
        Some((&auth.user.email, csrf)),
        html! {
            div.card #export {
                h1 { "Your data" }
                h2 { "Export everything" }
                p { "One zip archive with your account, conversations (as JSON and as readable transcripts), usage, "
                    "your audit records, and each agent you own laid out as an OpenClaw workspace with its "
                    code { "openclaw.json" } ". It never contains a password, key, token or two-factor secret." }
                p { a.button #export-download href="/api/v1/export" download { "Download my data (.zip)" } }
            }
            @if !configurable.is_empty() {
                div.card #import {
                    h2 { "Import an OpenClaw workspace" }
                    p { "A zip or tar (as " code { "openclaw setup" } " makes it) of " code { "SOUL.md" } ", "
                        code { "AGENTS.md" } ", … and " code { "skills/<name>/SKILL.md" } ". Every file is checked; "
                        "files clawden does not know are ignored, and a broken or hostile archive changes nothing. "
                        "The API takes the same archive at " code { "POST /api/v1/instances/<id>/import" } "." }
                    @if let Some(e) = import_error { p.error role="alert" { (e) } }
                    form method="post" action="/settings/data/import" enctype="multipart/form-data" {
                        input type="hidden" name="csrf_token" value=(csrf);
                        label for="import-instance" { "Into the agent" }
                        select #import-instance name="instance" required {
                            @for m in &configurable { option value=(m.id) { (m.name) } }
                        }
                        label for="import-archive" { "Archive (.zip, .tar or .tar.gz)" }
                        input #import-archive type="file" name="archive" accept=".zip,.tar,.tgz,.gz,application/zip,application/x-tar,application/gzip" required;
                        label.check for="import-replace" {
                            input #import-replace type="checkbox" name="replace" value="yes";
                            span { "Replace the workspace: delete files that are not in the archive" }
                        }
                        button type="submit" { "Import" }
                    }
                }
            }
            div.card #history {
                h2 { "Chat history" }
                @if conversations.is_empty() {
                    p.muted { "You have no conversations." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "Conversation" } th scope="col" { "Last message" } th scope="col" { span.muted { "Action" } } } }
                        tbody {
                            @for c in &conversations {
                                tr {
                                    td { a href={ "/chat/" (c.id) } { (c.title) } }
                                    td { (when(c.updated_at)) }
                                    td { a href={ "/settings/data/conversations/" (c.id) "/delete" } aria-label={ "Delete " (c.title) } { "Delete…" } }
                                }
                            }
                        }
                    }
                    p { a.button.danger #clear-history href="/settings/data/clear" { "Clear all history…" } }
                }
            }
            div.card.danger-zone #delete-account {
                h2 { "Delete your account" }
                p { "This deletes your account, your conversations, usage, stored credentials, API keys and sessions, and "
                    @if owned.is_empty() { "nothing else: you own no agent." }
                    @else { "the agents you alone own (" (owned.iter().map(|m| m.name.as_str()).collect::<Vec<_>>().join(", ")) "), with their sandboxes." }
                    " Your encryption keys are destroyed, so no backup can be read afterwards. It cannot be undone — download your data first." }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action="/settings/data/delete-account#delete-account" {
                    input type="hidden" name="csrf_token" value=(csrf);
                    label for="delete-password" { "Your password" }
                    input #delete-password type="password" name="password" autocomplete="current-password" required;
                    @if totp {
                        label for="delete-totp" { "Two-factor code" }
                        input #delete-totp type="text" name="totp_code" inputmode="numeric" autocomplete="one-time-code" required;
                    }
                    label.check for="delete-confirm" {
                        input #delete-confirm type="checkbox" name="confirm" value="yes" required;
                        span { "I understand that my account and everything listed above are deleted for good." }
                    }
                    button.danger type="submit" { "Delete my account" }
                }
            }
        },
    ))
}

/// A page asking to confirm one destructive action.
fn confirm_page(csrf: &str, email: &str, title: &str, what: Markup, action: &str, button: &str) -> Markup {
    page(
        title,
        Some((email, csrf)),
        html! {
            div.card.narrow.danger-zone {
                h1 { (title) }
                (what)
                form method="post" action=(action) {
                    input type="hidden" name="csrf_token" value=(csrf);
                    label.check for="confirm" {
                        input #confirm type="checkbox" name="confirm" value="yes" required;
                        span { "Yes, delete it. This cannot be undone." }
                    }
                    div.actions {
                        button.danger type="submit" { (button) }
                        a href="/settings/data" { "Cancel" }
                    }
                }
            }
        },
    )
}

#[derive(Debug, Deserialize)]
struct Confirm {
    #[serde(default)]
    confirm: Option<String>,
}

impl Confirm {
    fn given(&self) -> bool {
        self.confirm.as_deref() == Some("yes")
    }
}

async fn clear_confirm(State(state): State<AppState>, MaybeAuthed(auth): MaybeAuthed) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    let n = state.store.conversations(&auth.principal()).await?.len();
    let what = html! { p { "Your " (n) @if n == 1 { " conversation" } @else { " conversations" } ", with every message, will be deleted." } };
    Ok(render(
        StatusCode::OK,
        confirm_page(&csrf, &auth.user.email, "Clear all history?", what, "/settings/data/clear", "Clear all history"),
    ))
}

async fn clear_submit(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    form: Result<Form<Confirm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    let Some((auth, _)) = session(&state, auth) else { return Ok(to_login()) };
    let Form(form) = form?;
    if !form.given() {
        return Ok(Redirect::to("/settings/data/clear").into_response());
    }
    let ev = crate::audit::success(
        &state,
        auth.ip,
        AuditChain::Account(auth.user.id),
        Some(auth.user.id),
        "conversation.clear",
    );
    state.store.delete_conversations(&auth.principal(), None, ev).await?;
    Ok(Redirect::to("/settings/data#history").into_response())
}

async fn delete_one_confirm(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    ApiPath(id): ApiPath<ConversationId>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    let c = state.store.conversation(&auth.principal(), id).await?.ok_or_else(ApiError::not_found)?;
    let what = html! { p { "The conversation " strong { (c.title) } " and all its messages will be deleted." } };
    let action = format!("/settings/data/conversations/{id}/delete");
    Ok(render(
        StatusCode::OK,
        confirm_page(&csrf, &auth.user.email, "Delete this conversation?", what, &action, "Delete conversation"),
    ))
}

async fn delete_one_submit(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    ApiPath(id): ApiPath<ConversationId>,
    form: Result<Form<Confirm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    let Some((auth, _)) = session(&state, auth) else { return Ok(to_login()) };
    let Form(form) = form?;
    if !form.given() {
        return Ok(Redirect::to(&format!("/settings/data/conversations/{id}/delete")).into_response());
    }
    let ev = crate::audit::success(
        &state,
        auth.ip,
        AuditChain::Account(auth.user.id),
        Some(auth.user.id),
        "conversation.delete",
    );
    match state.store.delete_conversations(&auth.principal(), Some(id), ev).await? {
        0 => Err(ApiError::not_found()),
        _ => Ok(Redirect::to("/settings/data#history").into_response()),
    }
}

#[derive(Deserialize)]
struct DeleteAccountForm {
    password: SecretString,
    #[serde(default)]
    totp_code: Option<String>,
    #[serde(default)]
    confirm: Option<String>,
}

async fn delete_account_submit(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    form: Result<Form<DeleteAccountForm>, axum::extract::rejection::FormRejection>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    let totp = state.store.totp_enabled(&auth.principal(), auth.user.id).await?;
    let again = |msg: String| {
        let (state, auth, csrf) = (state.clone(), auth.clone(), csrf.clone());
        async move {
            let view = data_view(&state, &auth, &csrf, totp, Some(&msg)).await?;
            Ok::<Response, ApiError>(render(StatusCode::BAD_REQUEST, view))
        }
    };
    let Ok(Form(form)) = form else { return again("Enter your password to delete your account.".into()).await };
    if form.confirm.as_deref() != Some("yes") {
        return again("Tick the box to confirm that the account is to be deleted.".into()).await;
    }
    if let Err(err) = crate::routes::account::delete_with(&state, &auth, form.password, form.totp_code.as_deref()).await
    {
        if err.status().is_client_error() {
            // Shown on the page, with the status (a 429 keeps its Retry-After).
            let view = data_view(&state, &auth, &csrf, totp, Some(&format!("Not deleted: {}.", err.message()))).await?;
            return Ok(super::error_response(err, view));
        }
        return Err(err);
    }
    let markup = page(
        "Account deleted",
        None,
        html! {
            div.card.narrow {
                h1 #account-deleted { "Your account is deleted" }
                p { "Everything of yours is gone, and the keys that sealed it are destroyed." }
                p { a href="/signup" { "Create a new account" } }
            }
        },
    );
    let mut response = render(StatusCode::OK, markup);
    response.headers_mut().insert(header::SET_COOKIE, cookie::clear(state.settings.tls_enabled()));
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The import form: a multipart upload (its CSRF token is a form field, checked before this
/// runs), into an instance where the caller is an owner or admin.
async fn import_submit(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    form: Result<axum::extract::Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    let bad = |_| ApiError::bad_request("invalid_form", "the upload could not be read");
    let mut form =
        form.map_err(|_| ApiError::bad_request("invalid_form", "send the import form as multipart/form-data"))?;
    let (mut instance, mut replace, mut archive) = (None, false, None);
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name() {
            Some("instance") => instance = field.text().await.map_err(bad)?.parse::<clawden_core::InstanceId>().ok(),
            Some("replace") => replace = field.text().await.map_err(bad)? == "yes",
            Some("archive") => archive = Some(field.bytes().await.map_err(bad)?),
            _ => {}
        }
    }
    let instance = instance.ok_or_else(|| ApiError::bad_request("invalid_form", "choose an agent to import into"))?;
    let role = match state.store.role_in(&auth.principal(), instance).await? {
        Some(role) if role.can_configure() => role,
        Some(_) => return Err(ApiError::forbidden("forbidden", "only owners and admins import into an agent")),
        None => return Err(ApiError::not_found()),
    };
    let totp = state.store.totp_enabled(&auth.principal(), auth.user.id).await?;
    let Some(archive) = archive.filter(|a| !a.is_empty()) else {
        let view = data_view_with(&state, &auth, &csrf, totp, None, Some("choose an archive to import")).await?;
        return Ok(render(StatusCode::BAD_REQUEST, view));
    };
    let member = crate::auth::Member { auth: auth.clone(), instance, role };
    match crate::routes::import::import_archive(&state, &member, archive, replace).await {
        Ok(result) => Ok(render(
            StatusCode::OK,
            page(
                "Imported",
                Some((&auth.user.email, &csrf)),
                html! {
                    div.card.narrow #import-result {
                        h1 { "Workspace imported" }
                        p { (result.imported.len()) " files written" @if result.replaced { ", other files deleted" } "." }
                        ul { @for f in &result.imported { li { code { (f) } } } }
                        @if result.ignored_count > 0 {
                            p { (result.ignored_count) " entries were not workspace files and were ignored:" }
                            ul { @for f in &result.ignored { li { code { (f) } } } }
                        }
                        p { a href="/settings/data" { "Back to your data" } }
                    }
                },
            ),
        )),
        Err(err) => {
            let view = data_view_with(&state, &auth, &csrf, totp, None, Some(err.message())).await?;
            Ok(super::error_response(err, view))
        }
    }
}
