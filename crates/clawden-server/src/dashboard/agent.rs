//! Dashboard pages for the agent: conversations with streamed replies, and the workspace file
//! editor (read-only for members with the `user` role). Plain forms work without JavaScript;
//! `/static/chat.js` streams replies when scripts run.

use super::layout::page;
use super::{render, when};
use crate::auth::MaybeAuthed;
use crate::chat::turn_error;
use crate::error::ApiError;
use crate::routes::conversations::{create_conversation, MessageBody};
use crate::state::AppState;
use axum::extract::{Form, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use clawden_agent::runtime::TurnEvent;
use clawden_agent::workspace::{validate_file, WorkspacePath, MAX_TOTAL_CHARS};
use clawden_core::{ConversationId, InstanceId, Principal};
use clawden_store::{AuditChain, StoreError};
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::HashMap;

const CHAT_JS: &str = include_str!("chat.js");

/// The agent pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/chat", get(chat_index))
        .route("/chat/new", post(chat_new))
        .route("/chat/{id}", get(chat_page))
        .route("/chat/{id}/send", post(chat_send))
        .route("/agent/{id}/files", get(files_index))
        .route("/agent/{id}/files/{*path}", get(file_page).post(file_save))
        .route("/static/chat.js", get(chat_js))
}

async fn chat_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        CHAT_JS,
    )
        .into_response()
}

/// The signed-in browser's caller and CSRF token, or a redirect to sign in.
fn signed_in(state: &AppState, auth: Option<crate::auth::Auth>) -> Result<(crate::auth::Auth, String), Box<Response>> {
    super::session(state, auth).ok_or_else(|| Box::new(Redirect::to("/login").into_response()))
}

async fn chat_index(State(state): State<AppState>, MaybeAuthed(auth): MaybeAuthed) -> Result<Response, ApiError> {
    let (auth, csrf) = match signed_in(&state, auth) {
        Ok(v) => v,
        Err(r) => return Ok(*r),
    };
    let conversations = state.store.conversations(&auth.principal()).await?;
    let instances = state.store.memberships(&auth.principal()).await?;
    let markup = page(
        "Chat",
        Some((&auth.user.email, &csrf)),
        html! {
            div.card {
                h1 { "Chat" }
                form method="post" action="/chat/new" {
                    input type="hidden" name="csrf_token" value=(csrf);
                    label for="instance_id" { "Agent" }
                    select #instance_id name="instance_id" {
                        @for m in &instances { option value=(m.id) { (m.name) " (" (m.role) ")" } }
                    }
                    button type="submit" { "New conversation" }
                }
            }
            div.card {
                h2 { "Your conversations" }
                @if conversations.is_empty() { p.muted { "None yet." } }
                ul #conversations {
                    @for c in &conversations {
                        li { a href={ "/chat/" (c.id) } { (c.title) } " " span.hint { (when(c.updated_at)) } }
                    }
                }
            }
            div.card {
                h2 { "Agent files" }
                ul {
                    @for m in &instances {
                        li {
                            a href={ "/agent/" (m.id) "/files" } { (m.name) }
                            @if m.role.can_configure() { " · " a href={ "/agent/" (m.id) "/members" } { "members" } }
                        }
                    }
                }
            }
        },
    );
    Ok(render(StatusCode::OK, markup))
}

#[derive(Deserialize)]
struct NewForm {
    instance_id: Option<InstanceId>,
}

async fn chat_new(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Form(form): Form<NewForm>,
) -> Result<Response, ApiError> {
    let (auth, _) = match signed_in(&state, auth) {
        Ok(v) => v,
        Err(r) => return Ok(*r),
    };
    let conversation = create_conversation(&state, &auth, form.instance_id, None).await?;
    Ok(Redirect::to(&format!("/chat/{}", conversation.id)).into_response())
}

async fn chat_page(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path(id): Path<ConversationId>,
) -> Result<Response, ApiError> {
    let (auth, csrf) = match signed_in(&state, auth) {
        Ok(v) => v,
        Err(r) => return Ok(*r),
    };
    let conversation = state.store.conversation(&auth.principal(), id).await?.ok_or_else(ApiError::not_found)?;
    let messages: Vec<MessageBody> =
        state.store.messages(&auth.principal(), id, 500).await?.iter().map(MessageBody::from).collect();
    // Which tool each result answers, to name it.
    let tool_names: HashMap<&str, &str> =
        messages.iter().flat_map(|m| m.tool_calls()).map(|c| (c.id.as_str(), c.name.as_str())).collect();
    // Calls of this conversation waiting for a decision (seen by the instance's owners and
    // admins only: they are the ones who decide).
    let waiting: Vec<_> = state
        .store
        .pending_approvals(&auth.principal(), Some(conversation.instance_id), state.now())
        .await?
        .into_iter()
        .filter(|a| a.conversation_id == id)
        .collect();
    let markup = page(
        &conversation.title,
        Some((&auth.user.email, &csrf)),
        html! {
            div.card {
                h1 { (conversation.title) }
                p.hint { "Replies come from the " (state.runtime.provider_name()) " provider." }
                ol #messages .messages aria-live="polite" {
                    @for m in &messages { (message(m, &tool_names)) }
                }
                @for a in &waiting {
                    p.notice.waiting role="status" {
                        "The agent waits for approval to run " code { (a.tool) } ". "
                        a href={ "/agent/" (conversation.instance_id) "/approvals" } { "Decide on the Approvals page" } "."
                    }
                }
                form #send method="post" action={ "/chat/" (id) "/send" } data-api={ "/api/v1/conversations/" (id) "/messages" }
                    data-approvals={ "/agent/" (conversation.instance_id) "/approvals" } {
                    input type="hidden" name="csrf_token" value=(csrf);
                    label for="content" { "Message" }
                    textarea #content name="content" rows="3" required maxlength="32000" {}
                    button type="submit" { "Send" }
                }
                p #status .hint role="status" {}
            }
            script src="/static/chat.js" defer {}
        },
    );
    Ok(render(StatusCode::OK, markup))
}

/// Pretty-printed JSON arguments.
fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

/// One message of the history: text, the tool calls an assistant message made, or a tool's
/// result (folded, marked when the tool failed or was refused).
fn message(m: &MessageBody, tool_names: &HashMap<&str, &str>) -> Markup {
    if m.role_name() == "tool" {
        let tool = m.call_id().and_then(|id| tool_names.get(id)).copied().unwrap_or("tool");
        return html! {
            li class={ "msg tool" @if m.is_error() { " failed" } } {
                details {
                    summary {
                        span.who { "tool result" } " " code { (tool) }
                        @if m.is_error() { " " span.badge.bad { "error" } }
                    }
                    pre.output { (m.text()) }
                }
            }
        };
    }
    html! {
        li class={ "msg " (m.role_name()) } {
            span.who { (m.role_name()) }
            @if !m.text().is_empty() || m.tool_calls().is_empty() { div.text { (m.text()) } }
            @for call in m.tool_calls() {
                div.tool-call {
                    span.hint { "calls " } code.tool-name { (call.name) }
                    pre.arguments { (pretty(&call.arguments)) }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct SendForm {
    content: String,
}

/// The no-JavaScript path: send, wait for the reply, show the conversation again.
async fn chat_send(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path(id): Path<ConversationId>,
    Form(form): Form<SendForm>,
) -> Result<Response, ApiError> {
    let (auth, _) = match signed_in(&state, auth) {
        Ok(v) => v,
        Err(r) => return Ok(*r),
    };
    let user = auth.user.id;
    let conversation = state.store.conversation(&auth.principal(), id).await?.ok_or_else(ApiError::not_found)?;
    state.chat.burst(user)?;
    let _slot = state.chat.stream_slot(user, state.settings.chat.concurrent_streams_per_user)?;
    state.runtime.accept(user, &conversation, &form.content).await.map_err(turn_error)?;
    let mut events = state.runtime.respond(user, conversation, Vec::new());
    while let Some(event) = events.recv().await {
        match event {
            TurnEvent::Failed { code, message } => {
                return Err(ApiError::new(StatusCode::BAD_GATEWAY, code, message));
            }
            // The turn goes on in its own task; the page shows the wait, and the reply once
            // it is there.
            TurnEvent::ApprovalRequired(_) => break,
            _ => {}
        }
    }
    Ok(Redirect::to(&format!("/chat/{id}")).into_response())
}

async fn files_index(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path(instance): Path<InstanceId>,
) -> Result<Response, ApiError> {
    let (auth, csrf) = match signed_in(&state, auth) {
        Ok(v) => v,
        Err(r) => return Ok(*r),
    };
    let role = state.store.role_in(&auth.principal(), instance).await?.ok_or_else(ApiError::not_found)?;
    let files = state.store.list_files(&auth.principal(), instance).await?;
    let markup = page(
        "Agent files",
        Some((&auth.user.email, &csrf)),
        html! {
            div.card {
                h1 { "Agent files" }
                p.hint { "Your agent's personality and rules, as OpenClaw workspace markdown. "
                    @if !role.can_configure() { "Your role is " (role) ": you can read them, not change them." } }
                table {
                    thead { tr { th scope="col" { "File" } th scope="col" { "Characters" } th scope="col" { "Changed" } } }
                    tbody {
                        @for f in &files {
                            tr { td { a href={ "/agent/" (instance) "/files/" (f.path) } { (f.path) } } td { (f.size) } td { (when(f.updated_at)) } }
                        }
                    }
                }
            }
        },
    );
    Ok(render(StatusCode::OK, markup))
}

/// What the file editor shows.
struct Editor<'a> {
    instance: InstanceId,
    path: &'a str,
    text: &'a str,
    editable: bool,
    error: Option<&'a str>,
}

fn editor(auth: &crate::auth::Auth, csrf: &str, e: Editor<'_>) -> Response {
    let Editor { instance, path, text, editable, error } = e;
    let markup = page(
        path,
        Some((&auth.user.email, csrf)),
        html! {
            div.card {
                h1 { (path) }
                @if let Some(e) = error { p.error role="alert" { (e) } }
                form method="post" action={ "/agent/" (instance) "/files/" (path) } {
                    input type="hidden" name="csrf_token" value=(csrf);
                    label for="content" { "Content (markdown)" }
                    @if editable {
                        textarea #content .editor name="content" rows="24" { (text) }
                        button type="submit" { "Save" }
                    } @else {
                        textarea #content .editor name="content" rows="24" readonly { (text) }
                        p.hint { "Read only: only the instance's owners and admins change its files." }
                    }
                }
                p { a href={ "/agent/" (instance) "/files" } { "All files" } }
            }
        },
    );
    render(if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, markup)
}

async fn file_page(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path((instance, path)): Path<(InstanceId, String)>,
) -> Result<Response, ApiError> {
    let (auth, csrf) = match signed_in(&state, auth) {
        Ok(v) => v,
        Err(r) => return Ok(*r),
    };
    let role = state.store.role_in(&auth.principal(), instance).await?.ok_or_else(ApiError::not_found)?;
    let path = WorkspacePath::parse(&path).map_err(|e| ApiError::bad_request("invalid_path", e.to_string()))?;
    let text = state.store.read_file(&auth.principal(), instance, &path.as_path()).await?.unwrap_or_default();
    let shown = path.as_path();
    Ok(editor(
        &auth,
        &csrf,
        Editor { instance, path: &shown, text: &text, editable: role.can_configure(), error: None },
    ))
}

#[derive(Deserialize)]
struct FileForm {
    content: String,
}

async fn file_save(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path((instance, path)): Path<(InstanceId, String)>,
    Form(form): Form<FileForm>,
) -> Result<Response, ApiError> {
    let (auth, csrf) = match signed_in(&state, auth) {
        Ok(v) => v,
        Err(r) => return Ok(*r),
    };
    let role = state.store.role_in(&auth.principal(), instance).await?.ok_or_else(ApiError::not_found)?;
    if !role.can_configure() {
        return Err(ApiError::forbidden("forbidden", "only the instance's owners and admins may do this"));
    }
    let path = WorkspacePath::parse(&path).map_err(|e| ApiError::bad_request("invalid_path", e.to_string()))?;
    // Browsers send CRLF line ends from textareas; store what the user typed, as LF.
    let text = form.content.replace("\r\n", "\n");
    if let Err(e) = validate_file(&path, text.as_bytes()) {
        let (shown, msg) = (path.as_path(), e.to_string());
        return Ok(editor(
            &auth,
            &csrf,
            Editor { instance, path: &shown, text: &text, editable: true, error: Some(&msg) },
        ));
    }
    let principal = Principal::Member { user: auth.user.id, instance, role };
    let ev = crate::audit::event(
        &state,
        auth.ip,
        AuditChain::Instance(instance),
        Some(auth.user.id),
        Some(instance),
        "file.write",
        String::new(),
        clawden_core::Outcome::Success,
    );
    let max = i64::try_from(MAX_TOTAL_CHARS).unwrap_or(i64::MAX);
    match state.store.write_file(&principal, instance, &path.as_path(), &text, max, state.now(), Some(ev)).await {
        Err(StoreError::LimitReached(_)) => {
            let msg = format!("the workspace may hold at most {MAX_TOTAL_CHARS} characters in all");
            let shown = path.as_path();
            Ok(editor(&auth, &csrf, Editor { instance, path: &shown, text: &text, editable: true, error: Some(&msg) }))
        }
        other => {
            other?;
            Ok(Redirect::to(&format!("/agent/{instance}/files")).into_response())
        }
    }
}
