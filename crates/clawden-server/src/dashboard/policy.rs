//! The Agent → Policy page: an instance's tool policy and what its agent is offered now.
//! Owners and admins edit it with a plain form; members with the `user` role read it. Saving
//! goes through the same validation, store call and audit (`policy.update`) as
//! `PUT /api/v1/instances/{id}/policy`.

use super::layout::page;
use super::{render, session};
use crate::auth::{Auth, MaybeAuthed, Member};
use crate::error::ApiError;
use crate::routes::tools::{offered_now, save_policy};
use crate::state::AppState;
use axum::extract::{Form, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use clawden_agent::tools::policy::{Profile, ToolPolicy, GROUPS};
use clawden_agent::tools::ToolName;
use clawden_core::InstanceId;
use maud::{html, Markup};
use serde::Deserialize;

/// The policy page's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/agent/{id}/policy", get(policy_page).post(policy_save))
        .route("/agent/{id}/policy/always-allow/remove", post(always_allow_remove))
}

const PROFILES: [(Profile, &str, &str); 3] = [
    (Profile::Minimal, "minimal", "look, don't touch: read, ls, memory_write"),
    (Profile::Coding, "coding", "files and commands: every tool but web_fetch"),
    (Profile::Full, "full", "every tool"),
];

/// The caller as a member of `instance` with the instance's name (404 for a non-member).
pub(crate) async fn membership(
    state: &AppState,
    auth: &Auth,
    instance: InstanceId,
) -> Result<(Member, String), ApiError> {
    let found = state.store.memberships(&auth.principal()).await?.into_iter().find(|m| m.id == instance);
    let m = found.ok_or_else(ApiError::not_found)?;
    Ok((Member { auth: auth.clone(), instance, role: m.role }, m.name))
}

/// An argument vector as a person would type it (words with spaces or quotes quoted).
pub(crate) fn command_line(argv: &[String]) -> String {
    let word = |w: &String| {
        if w.is_empty() || w.chars().any(|c| c.is_whitespace() || "\"'\\$`".contains(c)) {
            format!("{w:?}")
        } else {
            w.clone()
        }
    };
    argv.iter().map(word).collect::<Vec<_>>().join(" ")
}

#[derive(Deserialize, Default)]
struct PageQuery {
    saved: Option<String>,
}

async fn policy_page(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path(instance): Path<InstanceId>,
    Query(query): Query<PageQuery>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(Redirect::to("/login").into_response()) };
    let (member, name) = membership(&state, &auth, instance).await?;
    let policy = state.runtime.policy_of(instance).await.map_err(crate::chat::turn_error)?;
    let notice = query.saved.is_some().then_some(Notice::Saved);
    view(&state, &member, &csrf, &name, &policy, notice).await
}

enum Notice<'a> {
    Saved,
    Invalid(&'a str),
}

async fn view(
    state: &AppState,
    member: &Member,
    csrf: &str,
    name: &str,
    policy: &ToolPolicy,
    notice: Option<Notice<'_>>,
) -> Result<Response, ApiError> {
    // What is offered now follows the stored policy, not a draft that failed to validate.
    let stored = state.runtime.policy_of(member.instance).await.map_err(crate::chat::turn_error)?;
    let offered = offered_now(&stored, state, member.instance).await?;
    let editable = member.role.can_configure();
    let instance = member.instance;
    let status =
        if matches!(notice, Some(Notice::Invalid(_))) { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK };
    let markup = page(
        "Tool policy",
        Some((&member.auth.user.email, csrf)),
        html! {
            div.card {
                h1 { "Tool policy · " (name) }
                @match notice {
                    Some(Notice::Saved) => p.ok role="status" { "Saved. The next turn uses the new policy." },
                    Some(Notice::Invalid(why)) => p.error role="alert" { "Not saved: " (why) },
                    None => {},
                }
                h2 { "Offered to the agent now" }
                @if offered.is_empty() {
                    p #offered .muted { "No tools: the base tier has none (an invite code upgrades the account), or the policy allows none." }
                } @else {
                    p #offered { @for t in &offered { span.badge { (t) } " " } }
                }
                p.hint { "After the tier and this server's sandbox. Calls of elevated tools wait for an owner's or admin's approval"
                    @if editable { ": " a href={ "/agent/" (instance) "/approvals" } { "Approvals" } } "." }
            }
            @if editable {
                (edit_form(instance, csrf, policy))
            } @else {
                (read_only(policy))
            }
            div.card {
                h2 { "Always allowed commands" }
                p.hint { "Exact exec commands an owner or admin allowed for good from the Approvals page." }
                @if policy.always_allow.is_empty() { p.muted { "None." } }
                ul #always-allow {
                    @for argv in &policy.always_allow {
                        @let line = command_line(argv);
                        li {
                            code { (line) }
                            @if editable {
                                " "
                                form.inline method="post" action={ "/agent/" (instance) "/policy/always-allow/remove" } {
                                    input type="hidden" name="csrf_token" value=(csrf);
                                    input type="hidden" name="command" value=(serde_json::to_string(argv).unwrap_or_default());
                                    button.secondary type="submit" aria-label={ "Remove " (line) } { "Remove" }
                                }
                            }
                        }
                    }
                }
            }
        },
    );
    Ok(render(status, markup))
}

fn lines(entries: &[String]) -> String {
    entries.join("\n")
}

fn edit_form(instance: InstanceId, csrf: &str, policy: &ToolPolicy) -> Markup {
    let tools = ToolName::ALL.map(|t| t.as_str()).join(", ");
    let groups = GROUPS.map(|(g, _)| g).join(", ");
    html! {
        div.card {
            h2 { "Change the policy" }
            form #policy method="post" action={ "/agent/" (instance) "/policy" } {
                input type="hidden" name="csrf_token" value=(csrf);
                label for="profile" { "Profile" }
                select #profile name="profile" aria-describedby="profile-hint" {
                    @for (p, value, what) in PROFILES {
                        option value=(value) selected[p == policy.profile] { (value) " — " (what) }
                    }
                }
                p #profile-hint .hint { "The base set of tools; allow adds to it, deny removes from it (deny wins)." }
                p.hint { "One entry a line. Tools: " code { (tools) } ". Groups: " code { (groups) } ". " code { "*" } " matches any part of a tool name." }
                div.fields {
                    div {
                        label for="allow" { "Allow" }
                        textarea #allow .editor name="allow" rows="4" { (lines(&policy.allow)) }
                    }
                    div {
                        label for="deny" { "Deny" }
                        textarea #deny .editor name="deny" rows="4" { (lines(&policy.deny)) }
                    }
                    div {
                        label for="elevated" { "Elevated " span.hint { "(wait for approval)" } }
                        textarea #elevated .editor name="elevated" rows="4" { (lines(&policy.elevated)) }
                    }
                    div {
                        label for="scratch" { "Scratch folders " span.hint { "(write and edit run there without asking)" } }
                        textarea #scratch .editor name="scratch" rows="4" { (lines(&policy.scratch)) }
                    }
                    div {
                        label for="egress_allow" { "Egress domains " span.hint { "(example.com or *.example.com)" } }
                        textarea #egress_allow .editor name="egress_allow" rows="4" { (lines(&policy.egress_allow)) }
                    }
                }
                button type="submit" { "Save policy" }
            }
        }
    }
}

fn read_only(policy: &ToolPolicy) -> Markup {
    let list = |entries: &[String]| {
        html! {
            @if entries.is_empty() { span.muted { "none" } }
            @for e in entries { code { (e) } " " }
        }
    };
    let profile = PROFILES.iter().find(|(p, _, _)| *p == policy.profile).map_or("", |(_, v, _)| v);
    html! {
        div.card #policy-read-only {
            h2 { "The policy" }
            p.hint { "Read only: only the instance's owners and admins change its tool policy." }
            dl {
                dt { "Profile" } dd { span.badge { (profile) } }
                dt { "Allow" } dd { (list(&policy.allow)) }
                dt { "Deny" } dd { (list(&policy.deny)) }
                dt { "Elevated" } dd { (list(&policy.elevated)) }
                dt { "Scratch folders" } dd { (list(&policy.scratch)) }
                dt { "Egress allowed domains" } dd { (list(&policy.egress_allow)) }
            }
        }
    }
}

#[derive(Deserialize)]
struct PolicyForm {
    profile: String,
    #[serde(default)]
    allow: String,
    #[serde(default)]
    deny: String,
    #[serde(default)]
    elevated: String,
    #[serde(default)]
    scratch: String,
    #[serde(default)]
    egress_allow: String,
}

fn entries(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

fn forbidden() -> ApiError {
    ApiError::forbidden("forbidden", "only the instance's owners and admins may do this")
}

/// Saves `policy`, or shows the page again with what is wrong (nothing saved).
async fn save_or_show(
    state: &AppState,
    member: &Member,
    csrf: &str,
    name: &str,
    policy: ToolPolicy,
) -> Result<Response, ApiError> {
    match save_policy(state, member, policy.clone()).await {
        Ok(_) => Ok(Redirect::to(&format!("/agent/{}/policy?saved=1", member.instance)).into_response()),
        Err(err) if err.status() == StatusCode::UNPROCESSABLE_ENTITY => {
            view(state, member, csrf, name, &policy, Some(Notice::Invalid(err.message()))).await
        }
        Err(err) => Err(err),
    }
}

async fn policy_save(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path(instance): Path<InstanceId>,
    Form(form): Form<PolicyForm>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(Redirect::to("/login").into_response()) };
    let (member, name) = membership(&state, &auth, instance).await?;
    if !member.role.can_configure() {
        return Err(forbidden());
    }
    let current = state.runtime.policy_of(instance).await.map_err(crate::chat::turn_error)?;
    let profile = PROFILES.iter().find(|(_, v, _)| *v == form.profile).map(|(p, _, _)| *p);
    let draft = ToolPolicy {
        profile: profile.unwrap_or(current.profile),
        allow: entries(&form.allow),
        deny: entries(&form.deny),
        elevated: entries(&form.elevated),
        scratch: entries(&form.scratch),
        egress_allow: entries(&form.egress_allow),
        // Changed from the Approvals page and the remove buttons, never by this form.
        always_allow: current.always_allow,
    };
    if profile.is_none() {
        let why = format!("{:?} is not a profile (minimal, coding or full)", form.profile);
        return view(&state, &member, &csrf, &name, &draft, Some(Notice::Invalid(&why))).await;
    }
    save_or_show(&state, &member, &csrf, &name, draft).await
}

#[derive(Deserialize)]
struct RemoveForm {
    /// The argument vector, as JSON.
    command: String,
}

async fn always_allow_remove(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path(instance): Path<InstanceId>,
    Form(form): Form<RemoveForm>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(Redirect::to("/login").into_response()) };
    let (member, name) = membership(&state, &auth, instance).await?;
    if !member.role.can_configure() {
        return Err(forbidden());
    }
    let argv: Vec<String> = serde_json::from_str(&form.command)
        .map_err(|_| ApiError::bad_request("invalid_command", "the command to remove is not an argument list"))?;
    let mut policy = state.runtime.policy_of(instance).await.map_err(crate::chat::turn_error)?;
    let before = policy.always_allow.len();
    policy.always_allow.retain(|a| *a != argv);
    if policy.always_allow.len() == before {
        // Removed already (another tab, another admin): nothing to change.
        return Ok(Redirect::to(&format!("/agent/{instance}/policy")).into_response());
    }
    save_or_show(&state, &member, &csrf, &name, policy).await
}
