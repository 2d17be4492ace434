//! Dashboard pages for teams and tiers: an instance's members (owners and admins), the
//! caller's invitations and invite-code redemption, and the platform admin area (404 for
//! everyone else). Plain forms; every write goes through the same store rules and audit as
//! the JSON API.

use super::layout::page;
use super::{render, when};
use crate::accounts::validate_email;
use crate::audit;
use crate::auth::{Auth, MaybeAuthed};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use clawden_core::{InstanceId, Outcome, Principal, Role, Tier, UserId};
use clawden_store::{AdminLogEntry, AuditChain, AuditEvent};
use maud::html;
use serde::Deserialize;

/// The team and admin pages' routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/agent/{id}/members", get(members_page).post(members_invite))
        .route("/agent/{id}/members/{user_id}/role", post(members_role))
        .route("/agent/{id}/members/{user_id}/remove", post(members_remove))
        .route("/account/invitations", get(invitations_page))
        .route("/account/invitations/{id}/{answer}", post(invitation_answer))
        .route("/account/redeem", post(redeem))
        .route("/account/audit", get(audit_page))
        .route("/admin", get(admin_page))
        .route("/admin/users/{id}", post(admin_user))
        .route("/admin/invites", post(admin_invite))
}

use super::session;

fn to_login() -> Response {
    Redirect::to("/login").into_response()
}

fn error_text(err: &ApiError) -> String {
    format!("{} ({})", err.message(), err.status().as_u16())
}

async fn members_page(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path(instance): Path<InstanceId>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    members_view(&state, &auth, &csrf, instance, None).await
}

async fn members_view(
    state: &AppState,
    auth: &Auth,
    csrf: &str,
    instance: InstanceId,
    notice: Option<String>,
) -> Result<Response, ApiError> {
    let role = state.store.role_in(&auth.principal(), instance).await?.ok_or_else(ApiError::not_found)?;
    if !role.can_configure() {
        return Err(ApiError::forbidden("forbidden", "only the instance's owners and admins see its members"));
    }
    let members = state.store.members(&auth.principal(), instance).await?;
    let roles: &[Role] =
        if role == Role::Owner { &[Role::Owner, Role::Admin, Role::User] } else { &[Role::Admin, Role::User] };
    let markup = page(
        "Members",
        Some((&auth.user.email, csrf)),
        html! {
            div.card {
                h1 { "Members" }
                @if let Some(n) = &notice { p.error role="alert" { (n) } }
                table {
                    thead { tr { th scope="col" { "Email" } th scope="col" { "Role" } th scope="col" { "Joined" } th scope="col" { span.muted { "Actions" } } } }
                    tbody {
                        @for m in &members {
                            tr {
                                td { (m.email) }
                                td { (m.role) }
                                td { (when(m.joined_at)) }
                                td {
                                    form.inline method="post" action={ "/agent/" (instance) "/members/" (m.user_id) "/role" } {
                                        input type="hidden" name="csrf_token" value=(csrf);
                                        label.inline for={ "role-" (m.user_id) } { span.muted { "Role " } }
                                        select id={ "role-" (m.user_id) } name="role" {
                                            @for r in roles { option value=(r) selected[*r == m.role] { (r) } }
                                        }
                                        button.secondary type="submit" { "Change" }
                                    }
                                    " "
                                    form.inline method="post" action={ "/agent/" (instance) "/members/" (m.user_id) "/remove" } {
                                        input type="hidden" name="csrf_token" value=(csrf);
                                        button.secondary type="submit" { @if m.user_id == auth.user.id { "Leave" } @else { "Remove" } }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            div.card {
                h2 { "Invite someone" }
                p.hint { "They join when they accept. The answer is the same whether or not the address has an account." }
                form method="post" action={ "/agent/" (instance) "/members" } {
                    input type="hidden" name="csrf_token" value=(csrf);
                    label for="email" { "Email" }
                    input #email type="email" name="email" required;
                    label for="role" { "Role" }
                    select #role name="role" { @for r in roles { option value=(r) selected[*r == Role::User] { (r) } } }
                    button type="submit" { "Invite" }
                }
            }
        },
    );
    Ok(render(if notice.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, markup))
}

#[derive(Deserialize)]
struct InviteForm {
    email: String,
    role: Role,
}

fn instance_event(state: &AppState, auth: &Auth, instance: InstanceId, action: &str) -> AuditEvent {
    audit::event(
        state,
        auth.ip,
        AuditChain::Instance(instance),
        Some(auth.user.id),
        Some(instance),
        action,
        String::new(),
        Outcome::Success,
    )
}

async fn members_invite(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path(instance): Path<InstanceId>,
    Form(form): Form<InviteForm>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    let result = async {
        let email = validate_email(&form.email)?;
        let now = state.now();
        let ev = instance_event(&state, &auth, instance, "member.invite");
        state
            .store
            .invite(&auth.principal(), instance, &email, form.role, now, now.saturating_add(14 * 86_400_000), ev)
            .await?;
        Ok::<_, ApiError>(())
    }
    .await;
    match result {
        Ok(()) => Ok(Redirect::to(&format!("/agent/{instance}/members")).into_response()),
        Err(e) => members_view(&state, &auth, &csrf, instance, Some(error_text(&e))).await,
    }
}

#[derive(Deserialize)]
struct RoleForm {
    role: Role,
}

async fn members_role(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path((instance, user)): Path<(InstanceId, UserId)>,
    Form(form): Form<RoleForm>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    let ev = instance_event(&state, &auth, instance, "member.role");
    match state.store.set_role(&auth.principal(), instance, user, form.role, ev).await {
        Ok(()) => Ok(Redirect::to(&format!("/agent/{instance}/members")).into_response()),
        Err(e) => {
            let msg = match e {
                clawden_store::StoreError::Forbidden => {
                    "admins cannot change owners, and only owners grant owner".to_owned()
                }
                other => error_text(&other.into()),
            };
            members_view(&state, &auth, &csrf, instance, Some(msg)).await
        }
    }
}

async fn members_remove(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path((instance, user)): Path<(InstanceId, UserId)>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    let action = if user == auth.user.id { "member.leave" } else { "member.remove" };
    let ev = instance_event(&state, &auth, instance, action);
    match state.store.remove_member(&auth.principal(), instance, user, ev).await {
        Ok(()) if user == auth.user.id => Ok(Redirect::to("/account").into_response()),
        Ok(()) => Ok(Redirect::to(&format!("/agent/{instance}/members")).into_response()),
        Err(e) => {
            let msg = match e {
                clawden_store::StoreError::Forbidden => "admins cannot remove owners".to_owned(),
                other => error_text(&other.into()),
            };
            members_view(&state, &auth, &csrf, instance, Some(msg)).await
        }
    }
}

async fn invitations_page(State(state): State<AppState>, MaybeAuthed(auth): MaybeAuthed) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    invitations_view(&state, &auth, &csrf, None).await
}

async fn invitations_view(
    state: &AppState,
    auth: &Auth,
    csrf: &str,
    notice: Option<&str>,
) -> Result<Response, ApiError> {
    let pending = state.store.invitations(&auth.principal(), state.now()).await?;
    let markup = page(
        "Invitations",
        Some((&auth.user.email, csrf)),
        html! {
            div.card {
                h1 { "Invitations" }
                @if pending.is_empty() { p.muted #no-invitations { "No pending invitations." } }
                ul #invitations {
                    @for i in &pending {
                        li {
                            (i.instance_name) " — as " strong { (i.role) } " "
                            form.inline method="post" action={ "/account/invitations/" (i.id) "/accept" } {
                                input type="hidden" name="csrf_token" value=(csrf);
                                button type="submit" { "Accept" }
                            }
                            " "
                            form.inline method="post" action={ "/account/invitations/" (i.id) "/decline" } {
                                input type="hidden" name="csrf_token" value=(csrf);
                                button.secondary type="submit" { "Decline" }
                            }
                        }
                    }
                }
            }
            div.card {
                h2 { "Your tier: " span.badge #tier { (auth.user.tier) } }
                @if let Some(n) = notice { p.error role="alert" { (n) } }
                @if auth.user.tier == Tier::Base {
                    p { "An invite code unlocks the invite tier: a sandbox of your own, tools and larger quotas." }
                    form method="post" action="/account/redeem" {
                        input type="hidden" name="csrf_token" value=(csrf);
                        label for="code" { "Invite code" }
                        input #code type="text" name="code" required autocomplete="off";
                        button type="submit" { "Redeem" }
                    }
                }
            }
        },
    );
    Ok(render(if notice.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK }, markup))
}

async fn invitation_answer(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path((id, answer)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let Some((auth, _)) = session(&state, auth) else { return Ok(to_login()) };
    let accept = match answer.as_str() {
        "accept" => true,
        "decline" => false,
        _ => return Err(ApiError::not_found()),
    };
    let action = if accept { "invitation.accept" } else { "invitation.decline" };
    let ev = audit::success(&state, auth.ip, AuditChain::Account(auth.user.id), Some(auth.user.id), action);
    if id.len() > 64 || !state.store.answer_invitation(&auth.principal(), &id, accept, state.now(), ev).await? {
        return Err(ApiError::not_found());
    }
    Ok(Redirect::to(if accept { "/account" } else { "/account/invitations" }).into_response())
}

#[derive(Deserialize)]
struct RedeemForm {
    code: String,
}

async fn redeem(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Form(form): Form<RedeemForm>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    match crate::routes::invites::redeem_code(&state, &auth, &form.code).await {
        Ok(()) => Ok(Redirect::to("/account/invitations").into_response()),
        Err(e) => invitations_view(&state, &auth, &csrf, Some(&error_text(&e))).await,
    }
}

#[derive(Deserialize)]
struct AuditFilter {
    #[serde(default)]
    instance_id: Option<InstanceId>,
}

/// Settings → Security → Audit log: the caller's own actions, or an instance's whole chain for
/// its owners and admins.
async fn audit_page(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    axum::extract::Query(filter): axum::extract::Query<AuditFilter>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth) else { return Ok(to_login()) };
    let principal = auth.principal();
    let records = match filter.instance_id {
        Some(i) => match state.store.instance_audit(&principal, i, None, 200).await {
            Err(clawden_store::StoreError::Forbidden) => {
                return Err(ApiError::forbidden(
                    "forbidden",
                    "only the instance's owners and admins read its audit log",
                ));
            }
            other => other?,
        },
        None => state.store.own_audit(&principal, None, 200).await?,
    };
    let instances = state.store.memberships(&principal).await?;
    let markup = page(
        "Audit log",
        Some((&auth.user.email, &csrf)),
        html! {
            div.card {
                h1 { "Audit log" }
                p.hint { "Everything done on your behalf: who, what, on what, when, from where, and whether it worked. Kept 30 days; tamper-evident." }
                p {
                    a href="/account/audit" { "My actions" }
                    @for m in instances.iter().filter(|m| m.role.can_configure()) { " · " a href={ "/account/audit?instance_id=" (m.id) } { (m.name) } }
                }
                table #audit {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Action" } th scope="col" { "Target" } th scope="col" { "Outcome" } th scope="col" { "From" } } }
                    tbody {
                        @for r in &records {
                            tr { td { (when(r.at)) } td { (r.action) } td { (r.target) } td { (r.outcome) } td { (r.ip.as_deref().unwrap_or("")) } }
                        }
                    }
                }
            }
        },
    );
    Ok(render(StatusCode::OK, markup))
}

async fn admin_page(State(state): State<AppState>, MaybeAuthed(auth): MaybeAuthed) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth).filter(|(a, _)| a.user.platform_admin) else {
        return Err(ApiError::not_found());
    };
    let users = state.store.all_users(&Principal::System, 500, 0).await?;
    let log = state.store.admin_log_entries(&Principal::System, 50).await?;
    let markup = page(
        "Admin",
        Some((&auth.user.email, &csrf)),
        html! {
            div.card {
                h1 { "Platform admin" }
                h2 { "Users" }
                table {
                    thead { tr { th scope="col" { "Email" } th scope="col" { "Tier" } th scope="col" { "State" } th scope="col" { span.muted { "Change" } } } }
                    tbody {
                        @for u in &users {
                            tr {
                                td { (u.email) @if u.platform_admin { " " span.badge { "admin" } } }
                                td { (u.tier) }
                                td { @if u.disabled { "disabled" } @else { "active" } }
                                td {
                                    form.inline method="post" action={ "/admin/users/" (u.id) } {
                                        input type="hidden" name="csrf_token" value=(csrf);
                                        label for={ "tier-" (u.id) } { span.muted { "Tier " } }
                                        select id={ "tier-" (u.id) } name="tier" {
                                            option value="base" selected[u.tier == Tier::Base] { "base" }
                                            option value="invite" selected[u.tier == Tier::Invite] { "invite" }
                                        }
                                        label for={ "disabled-" (u.id) } { span.muted { " Disabled " } }
                                        select id={ "disabled-" (u.id) } name="disabled" {
                                            option value="false" selected[!u.disabled] { "no" }
                                            option value="true" selected[u.disabled] { "yes" }
                                        }
                                        button.secondary type="submit" { "Save" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            div.card {
                h2 { "New invite code" }
                form method="post" action="/admin/invites" {
                    input type="hidden" name="csrf_token" value=(csrf);
                    label for="uses" { "Uses" }
                    input #uses type="text" inputmode="numeric" name="uses" value="1";
                    button type="submit" { "Create" }
                }
            }
            div.card {
                h2 { "Admin log" }
                table {
                    thead { tr { th scope="col" { "When" } th scope="col" { "Action" } th scope="col" { "Target" } } }
                    tbody { @for e in &log { tr { td { (when(e.at)) } td { (e.action) } td { (e.target) } } } }
                }
            }
        },
    );
    Ok(render(StatusCode::OK, markup))
}

#[derive(Deserialize)]
struct AdminUserForm {
    tier: Tier,
    disabled: bool,
}

async fn admin_user(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Path(user): Path<UserId>,
    Form(form): Form<AdminUserForm>,
) -> Result<Response, ApiError> {
    let Some((auth, _)) = session(&state, auth).filter(|(a, _)| a.user.platform_admin) else {
        return Err(ApiError::not_found());
    };
    if user == auth.user.id && form.disabled {
        return Err(ApiError::bad_request("cannot_disable_self", "a platform admin cannot disable their own account"));
    }
    let entry = AdminLogEntry {
        at: state.now(),
        actor: Some(auth.user.id.to_string()),
        action: "admin.user.update".into(),
        target: format!("user:{user} tier:{} disabled:{}", form.tier, form.disabled),
        outcome: "success".into(),
        ip: Some(auth.ip.0.to_string()),
    };
    if !state.store.admin_update_user(&Principal::System, user, Some(form.tier), Some(form.disabled), entry).await? {
        return Err(ApiError::not_found());
    }
    Ok(Redirect::to("/admin").into_response())
}

#[derive(Deserialize)]
struct AdminInviteForm {
    uses: String,
}

async fn admin_invite(
    State(state): State<AppState>,
    MaybeAuthed(auth): MaybeAuthed,
    Form(form): Form<AdminInviteForm>,
) -> Result<Response, ApiError> {
    let Some((auth, csrf)) = session(&state, auth).filter(|(a, _)| a.user.platform_admin) else {
        return Err(ApiError::not_found());
    };
    let uses: i64 = form
        .uses
        .trim()
        .parse()
        .ok()
        .filter(|n| (1..=10_000).contains(n))
        .ok_or_else(|| ApiError::bad_request("invalid_invite", "uses must be a number from 1 to 10000"))?;
    let now = state.now();
    let actor = Some((auth.user.id, auth.ip.0.to_string()));
    let code = crate::accounts::issue_invite(
        state.store.as_ref(),
        &state.keyring,
        actor,
        uses,
        now.saturating_add(7 * 86_400_000),
        now,
    )
    .await?;
    let markup = page(
        "Invite code",
        Some((&auth.user.email, &csrf)),
        html! {
            div.card {
                h1 { "New invite code" }
                p { "Shown once. It upgrades an account to the invite tier, " (uses) " time(s), for 7 days." }
                p { code #invite-code { (code.expose()) } }
                p { a href="/admin" { "Back to admin" } }
            }
        },
    );
    let mut response = render(StatusCode::CREATED, markup);
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response)
}
