//! The Agent → Approvals page: pending elevated tool calls of the instances the visitor owns or
//! administers, with Allow / Deny / "Allow always" as plain forms (deciding goes through
//! [`ApprovalHub::decide`](clawden_agent::approvals::ApprovalHub::decide), like the API), and
//! the "Stop the agent" button behind a confirmation page. `/static/approvals.js` reloads the
//! list when the WebSocket announces a change; without it a reload shows the same.

use super::layout::page;
use super::policy::membership;
use super::{render, session, when};
use crate::auth::{Auth, MaybeAuthed};
use crate::error::ApiError;
use crate::routes::tools::{decide_error, stop_instance};
use crate::state::AppState;
use axum::extract::{Form, Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use clawden_core::{ApprovalId, InstanceId, UserId};
use clawden_store::Approval;
use maud::{html, Markup};
use serde::Deserialize;
use std::collections::HashMap;

const APPROVALS_JS: &str = include_str!("approvals.js");

/// The approvals pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/agent/approvals", get(all_page))
        .route("/agent/approvals/{id}", post(decide_submit))
        .route("/agent/{id}/approvals", get(instance_page))
        .route("/agent/{id}/stop", get(stop_confirm).post(stop_submit))
        .route("/static/approvals.js", get(approvals_js))
}

async fn approvals_js() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600")),
        ],
        APPROVALS_JS,
    )
        .into_response()
}

fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

fn forbidden() -> ApiError {
    ApiError::forbidden("forbidden", "only the instance's owners and admins see and decide its approvals")
}

#[derive(Deserialize, Default)]
struct PageQuery {
    done: Option<String>,
    stopped: Option<usize>,
}

/// What a page shows besides the list.
enum Notice {
    Done(String),
    Refused(String),
}

async fn all_page(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    let notice = query.done.map(done_text).map(Notice::Done);
    view(&state, &auth, &csrf, None, notice, StatusCode::OK).await
}

async fn instance_page(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path(instance): Path<InstanceId>,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    let stopped = query.stopped.map(|n| match n {
        0 => "Stopped: no turn was running; the sandbox processes were killed.".to_owned(),
        1 => "Stopped 1 running turn and killed the sandbox processes.".to_owned(),
        n => format!("Stopped {n} running turns and killed the sandbox processes."),
    });
    let notice = stopped.or(query.done.map(done_text)).map(Notice::Done);
    view(&state, &auth, &csrf, Some(instance), notice, StatusCode::OK).await
}

fn done_text(done: String) -> String {
    match done.as_str() {
        "allowed" => "Allowed: the agent runs the call now.".into(),
        "always" => "Allowed, and this exact command is now allowed always.".into(),
        "denied" => "Denied: the agent is told so.".into(),
        _ => "Done.".into(),
    }
}

/// The page: every administered instance's approvals, or one instance's (`only`).
async fn view(
    state: &AppState,
    auth: &Auth,
    csrf: &str,
    only: Option<InstanceId>,
    notice: Option<Notice>,
    status: StatusCode,
) -> Result<Response, ApiError> {
    let mut instances: Vec<(InstanceId, String)> = Vec::new();
    if let Some(instance) = only {
        let (member, name) = membership(state, auth, instance).await?;
        if !member.role.can_configure() {
            return Err(forbidden());
        }
        instances.push((instance, name));
    } else {
        for m in state.store.memberships(&auth.principal()).await? {
            if m.role.can_configure() {
                instances.push((m.id, m.name));
            }
        }
        if instances.is_empty() {
            return Err(forbidden());
        }
    }
    let pending = state.store.pending_approvals(&auth.principal(), only, state.now()).await?;
    let mut emails: HashMap<UserId, String> = HashMap::new();
    for (instance, _) in &instances {
        if pending.iter().any(|a| a.instance_id == *instance) {
            for m in state.store.members(&auth.principal(), *instance).await? {
                emails.insert(m.user_id, m.email);
            }
        }
    }
    let names: HashMap<InstanceId, &str> = instances.iter().map(|(id, n)| (*id, n.as_str())).collect();
    let title = match only {
        Some(_) => format!("Approvals · {}", instances[0].1),
        None => "Approvals".to_owned(),
    };
    let hub_missing = state.runtime.approvals().is_none();
    let markup = page(
        &title,
        Some((&auth.user.email, csrf)),
        html! {
            div.card {
                h1 { (title) }
                p.hint { "Calls of elevated tools wait here for an owner or admin. No decision before the expiry means denied. "
                    "The arguments are exactly what runs; a changed argument asks again." }
                @match &notice {
                    Some(Notice::Done(text)) => p.ok role="status" { (text) },
                    Some(Notice::Refused(why)) => p.error role="alert" { (why) },
                    None => {},
                }
                @if hub_missing { p.muted { "Tools are not enabled on this server." } }
                div #approval-list aria-live="polite" data-instance=[only] {
                    @if pending.is_empty() {
                        p #no-approvals .muted { "Nothing waits for a decision." }
                    }
                    ul #approvals .approvals {
                        @for a in &pending {
                            (row(a, names.get(&a.instance_id).copied().unwrap_or(""), emails.get(&a.user_id).map(String::as_str), csrf, only))
                        }
                    }
                }
                p.hint #live-status role="status" {}
            }
            div.card {
                h2 { "Stop the agent" }
                p.hint { "Aborts every running turn of the agent and kills the processes in its sandboxes. Its files stay." }
                div.actions {
                    @for (id, name) in &instances {
                        a.button.danger href={ "/agent/" (id) "/stop" } { "Stop " (name) "…" }
                    }
                }
            }
            script src="/static/approvals.js" defer {}
        },
    );
    Ok(render(status, markup))
}

fn pretty(arguments: &str) -> String {
    serde_json::from_str::<serde_json::Value>(arguments)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| arguments.to_owned())
}

fn row(a: &Approval, instance: &str, asked_by: Option<&str>, csrf: &str, only: Option<InstanceId>) -> Markup {
    html! {
        li.approval id={ "approval-" (a.id) } {
            h2 { code { (a.tool) } " " span.muted { "in " (instance) } }
            pre.arguments { code { (pretty(&a.arguments)) } }
            dl {
                dt { "Asked by" } dd { (asked_by.unwrap_or("a former member")) }
                dt { "Conversation" } dd { code { (a.conversation_id) } }
                dt { "Asked" } dd { (when(a.created_at)) }
                dt { "Expires" } dd { (when(a.expires_at)) }
            }
            form.actions method="post" action={ "/agent/approvals/" (a.id) } {
                input type="hidden" name="csrf_token" value=(csrf);
                @if let Some(instance) = only { input type="hidden" name="from" value=(instance); }
                button type="submit" name="decision" value="allow" { "Allow" }
                button.danger type="submit" name="decision" value="deny" { "Deny" }
                @if a.tool == "exec" {
                    button.secondary type="submit" name="decision" value="always" { "Allow always (this exact command)" }
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct DecisionForm {
    decision: String,
    #[serde(default)]
    from: Option<InstanceId>,
}

async fn decide_submit(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path(id): Path<ApprovalId>,
    Form(form): Form<DecisionForm>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    let (allow, always, done) = match form.decision.as_str() {
        "allow" => (true, false, "allowed"),
        "always" => (true, true, "always"),
        "deny" => (false, false, "denied"),
        _ => return Err(ApiError::bad_request("invalid_decision", "decision is allow, always or deny")),
    };
    let hub = state.runtime.approvals().ok_or_else(ApiError::not_found)?;
    match hub.decide(&auth.principal(), id, allow, always, Some(auth.ip.0.to_string())).await.map_err(decide_error) {
        Ok(_) => {
            let back = match form.from {
                Some(instance) => format!("/agent/{instance}/approvals?done={done}"),
                None => format!("/agent/approvals?done={done}"),
            };
            Ok(Redirect::to(&back).into_response())
        }
        // Refused "allow always", or decided already: say why on the page.
        Err(err) if err.status() == StatusCode::UNPROCESSABLE_ENTITY || err.status() == StatusCode::CONFLICT => {
            let status = err.status();
            let why = format!("Not decided: {}", err.message());
            view(&state, &auth, &csrf, form.from, Some(Notice::Refused(why)), status).await
        }
        Err(err) => Err(err),
    }
}

async fn stop_confirm(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path(instance): Path<InstanceId>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    let (member, name) = membership(&state, &auth, instance).await?;
    if !member.role.can_configure() {
        return Err(forbidden());
    }
    let markup = page(
        "Stop the agent",
        Some((&auth.user.email, &csrf)),
        html! {
            div.card.danger-zone {
                h1 { "Stop " (name) "?" }
                p { "Every running turn of this agent is aborted now, and the processes in its sandboxes are killed. "
                    "Replies being written stop where they are. The agent's files and conversations stay, and it answers new messages as usual." }
                form.actions method="post" action={ "/agent/" (instance) "/stop" } {
                    input type="hidden" name="csrf_token" value=(csrf);
                    button.danger type="submit" { "Stop the agent" }
                    a href={ "/agent/" (instance) "/approvals" } { "Cancel" }
                }
            }
        },
    );
    Ok(render(StatusCode::OK, markup))
}

async fn stop_submit(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path(instance): Path<InstanceId>,
) -> Result<Response, ApiError> {
    let Some((auth, _)) = session(&state, auth) else { return Ok(to_login()) };
    let (member, _) = membership(&state, &auth, instance).await?;
    if !member.role.can_configure() {
        return Err(forbidden());
    }
    let stopped = stop_instance(&state, &member).await?;
    Ok(Redirect::to(&format!("/agent/{instance}/approvals?stopped={stopped}")).into_response())
}
