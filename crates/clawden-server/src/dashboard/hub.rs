//! Landing pages of two navigation sections: Settings (what is under it) and Agent (each
//! instance the visitor belongs to, with the pages their role opens).

use super::layout::page;
use super::{render, session};
use crate::auth::MaybeAuthed;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use maud::html;

/// The hub pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/settings", get(settings_page)).route("/agent", get(agent_page))
}

async fn settings_page(State(state): State<AppState>, MaybeAuthed(auth): MaybeAuthed) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(Redirect::to("/login").into_response()) };
    let sections = [
        ("Account", "/account", "Who you are, your instances, and the devices signed in."),
        (
            "Security",
            "/account/security",
            "Password, two-factor sign-in, API keys, stored provider keys, gateway tokens.",
        ),
        ("Data", "/settings/data", "Download everything, clear chat history, delete your account."),
        ("Audit log", "/account/audit", "Everything done on your behalf, and in the instances you run."),
        ("Invitations", "/account/invitations", "Invitations to other people's agents, and invite codes."),
    ];
    let markup = page(
        "Settings",
        Some((&auth.user.email, &csrf)),
        html! {
            div.card {
                h1 { "Settings" }
                ul.hub {
                    @for (title, href, what) in sections {
                        li { a href=(href) { (title) } " — " span.muted { (what) } }
                    }
                }
            }
        },
    );
    Ok(render(StatusCode::OK, markup))
}

async fn agent_page(State(state): State<AppState>, MaybeAuthed(auth): MaybeAuthed) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(Redirect::to("/login").into_response()) };
    let instances = state.store.memberships(&auth.principal()).await?;
    let waiting = state.store.pending_approvals(&auth.principal(), None, state.now()).await?.len();
    let markup = page(
        "Agent",
        Some((&auth.user.email, &csrf)),
        html! {
            div.card {
                h1 { "Your agents" }
                p.hint { "Each agent's personality and rules are OpenClaw workspace files, and its tool policy says which tools it may use. Owners and admins change them, decide the agent's requests to run elevated tools, and manage members; everyone else reads them and chats." }
                @if instances.iter().any(|m| m.role.can_configure()) {
                    @if waiting > 0 {
                        p { a.button #approvals-waiting href="/agent/approvals" {
                            (waiting) @if waiting == 1 { " approval waits" } @else { " approvals wait" } " for you" } }
                    } @else {
                        p.hint { a href="/agent/approvals" { "Approvals" } ": nothing waits for a decision." }
                    }
                }
                table #agents {
                    thead { tr { th scope="col" { "Agent" } th scope="col" { "Your role" } th scope="col" { "Pages" } } }
                    tbody {
                        @for m in &instances {
                            tr {
                                td { (m.name) }
                                td { span.badge { (m.role) } }
                                td {
                                    a href={ "/agent/" (m.id) "/files" } { "Files" }
                                    " · " a href={ "/agent/" (m.id) "/policy" } { "Tool policy" }
                                    @if m.role.can_configure() {
                                        " · " a href={ "/agent/" (m.id) "/approvals" } { "Approvals" }
                                        " · " a href={ "/agent/" (m.id) "/members" } { "Members & invitations" }
                                    }
                                    " · " a href="/chat" { "Chat" }
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
