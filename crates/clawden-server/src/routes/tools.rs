//! The agent's tools, as owners and admins steer them: the instance's tool policy, the
//! approvals of elevated calls, and the "stop" that aborts a running turn.
//!
//! Deciding an approval needs a browser session: a bearer credential (an API key, a gateway
//! token) is something the agent itself might reach, so it can never approve its own calls.

use crate::audit;
use crate::auth::{Authed, InstanceAdmin, Member, SessionAuthed};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::routes::conversations::approval_json;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use clawden_agent::approvals::DecideError;
use clawden_agent::tools::policy::ToolPolicy;
use clawden_core::{ApprovalId, InstanceId, Outcome, Principal};
use clawden_store::AuditChain;
use serde::Deserialize;
use serde_json::Value;

/// The instance's tool policy (the defaults when none was set). Any member.
#[utoipa::path(get, path = "/api/v1/instances/{id}/policy", tag = "tools", params(("id" = String, Path)),
    responses((status = 200, description = "`{profile, allow, deny, elevated, scratch, egress_allow, always_allow}`"),
        (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_policy(State(state): State<AppState>, member: Member) -> Result<Json<Value>, ApiError> {
    let policy = state.runtime.policy_of(member.instance).await.map_err(crate::chat::turn_error)?;
    Ok(Json(policy_json(&policy, &state, member.instance).await?))
}

async fn policy_json(policy: &ToolPolicy, state: &AppState, instance: InstanceId) -> Result<Value, ApiError> {
    let mut value = serde_json::to_value(policy).map_err(ApiError::internal)?;
    value["offered"] = serde_json::json!(offered_now(policy, state, instance).await?);
    Ok(value)
}

/// What the agent is offered now under `policy`, after the instance's tier and this server's
/// sandbox.
pub(crate) async fn offered_now(
    policy: &ToolPolicy,
    state: &AppState,
    instance: InstanceId,
) -> Result<Vec<&'static str>, ApiError> {
    let tier = state.runtime.tier_of(instance).await.map_err(crate::chat::turn_error)?;
    Ok(policy
        .offered(tier)
        .into_iter()
        .filter(|t| !t.needs_sandbox() || state.sandbox.is_some())
        .map(|t| t.as_str())
        .collect())
}

/// Replaces the instance's tool policy. Owners and admins. Unknown fields, unknown tool
/// names, addresses in `egress_allow` and commands that may not be allowed always are
/// refused with 422. With a bearer credential (API key) the policy can only be tightened; a
/// change that lets the agent do more needs a browser session (403 `session_required`).
#[utoipa::path(put, path = "/api/v1/instances/{id}/policy", tag = "tools", params(("id" = String, Path)),
    request_body(content = Object, description = "`{profile, allow, deny, elevated, scratch, egress_allow, always_allow}`; missing fields take their defaults"),
    responses((status = 200, description = "the stored policy"), (status = 403, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn put_policy(
    State(state): State<AppState>,
    InstanceAdmin(admin): InstanceAdmin,
    ApiJson(body): ApiJson<Value>,
) -> Result<Json<Value>, ApiError> {
    let policy: ToolPolicy = serde_json::from_value(body)
        .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy", e.to_string()))?;
    let policy = save_policy(&state, &admin, policy).await?;
    Ok(Json(policy_json(&policy, &state, admin.instance).await?))
}

/// Validates and stores an instance's tool policy, audited as `policy.update`; the API and
/// the dashboard both save through here. A policy that does not validate is a 422
/// `invalid_policy` whose message says what is wrong, and nothing is stored.
pub(crate) async fn save_policy(state: &AppState, admin: &Member, policy: ToolPolicy) -> Result<ToolPolicy, ApiError> {
    if !admin.role.can_configure() {
        return Err(ApiError::forbidden("forbidden", "only the instance's owners and admins may do this"));
    }
    let policy =
        policy.validated().map_err(|why| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy", why))?;
    // Read, check and write against one version: a change made meanwhile is never
    // overwritten by a request that was checked against the older policy.
    let stored = state.store.tool_policy_versioned(&Principal::System, admin.instance).await?;
    let version = stored.as_ref().map_or(0, |(_, v)| *v);
    // A bearer credential is something the agent might reach: with one, the policy may only
    // be tightened. Letting the agent do more takes a browser session, like an approval does.
    if admin.auth.session().is_none() {
        let current = ToolPolicy::from_stored(stored.as_ref().map(|(body, _)| body.as_str()))
            .unwrap_or_else(|_| ToolPolicy::closed());
        if policy.widens(&current) {
            return Err(ApiError::forbidden(
                "session_required",
                "this change lets the agent do more (a tool, fewer approvals, a domain, a command allowed always); \
                 make it from a signed-in browser session",
            ));
        }
    }
    let text = serde_json::to_string(&policy).map_err(ApiError::internal)?;
    let ev = audit::event(
        state,
        admin.auth.ip,
        AuditChain::Instance(admin.instance),
        Some(admin.auth.user.id),
        Some(admin.instance),
        "policy.update",
        format!("instance:{}", admin.instance),
        Outcome::Success,
    );
    if !state.store.replace_tool_policy(&admin.principal(), admin.instance, &text, version, state.now(), ev).await? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "policy_changed",
            "the policy changed while this request was made; read it again and retry",
        ));
    }
    Ok(policy)
}

/// Stops the instance's running turns and kills its sandbox processes, audited as
/// `instance.stop`; returns how many turns were stopped. The API and the dashboard both stop
/// through here.
pub(crate) async fn stop_instance(state: &AppState, admin: &Member) -> Result<usize, ApiError> {
    if !admin.role.can_configure() {
        return Err(ApiError::forbidden("forbidden", "only the instance's owners and admins may do this"));
    }
    let stopped = state.runtime.stop_instance(admin.instance).await;
    let ev = audit::event(
        state,
        admin.auth.ip,
        AuditChain::Instance(admin.instance),
        Some(admin.auth.user.id),
        Some(admin.instance),
        "instance.stop",
        format!("turns:{stopped}"),
        Outcome::Success,
    );
    state.store.record(ev).await?;
    Ok(stopped)
}

/// Which approvals to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ApprovalQuery {
    /// Only this instance's.
    #[param(value_type = Option<String>)]
    instance_id: Option<InstanceId>,
}

/// Pending approvals of the instances where the caller is an owner or admin, oldest first.
#[utoipa::path(get, path = "/api/v1/approvals", tag = "tools", params(ApprovalQuery),
    responses((status = 200, description = "`[{id, instance_id, conversation_id, user_id, tool, arguments, status, created_at, expires_at}]`")))]
pub async fn list_approvals(
    State(state): State<AppState>,
    Authed(auth): Authed,
    Query(query): Query<ApprovalQuery>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let pending = state.store.pending_approvals(&auth.principal(), query.instance_id, state.now()).await?;
    Ok(Json(pending.iter().map(approval_json).collect()))
}

/// A decision.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// `allow` or `deny`.
    decision: String,
    /// With `allow` on an `exec` call: also store this exact command in the policy, so it
    /// runs without asking next time. Refused (422) for shell syntax, interpreters, and
    /// commands that name files in writable places.
    #[serde(default)]
    always: bool,
}

/// Allows or denies a pending approval. Owners and admins of its instance, from a browser
/// session only.
#[utoipa::path(post, path = "/api/v1/approvals/{id}", tag = "tools", params(("id" = String, Path)), request_body = DecisionRequest,
    responses((status = 200, description = "the decided approval"), (status = 401, body = crate::error::ErrorBody),
        (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)))]
pub async fn decide(
    State(state): State<AppState>,
    SessionAuthed(auth, _): SessionAuthed,
    ApiPath(id): ApiPath<ApprovalId>,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> Result<Json<Value>, ApiError> {
    let allow = match req.decision.as_str() {
        "allow" => true,
        "deny" => false,
        _ => return Err(ApiError::bad_request("invalid_decision", "decision is \"allow\" or \"deny\"")),
    };
    let hub = state.runtime.approvals().ok_or_else(ApiError::not_found)?;
    let decided = hub
        .decide(&auth.principal(), id, allow, req.always, Some(auth.ip.0.to_string()))
        .await
        .map_err(decide_error)?;
    Ok(Json(approval_json(&decided)))
}

/// The API error of a decision not taken (the dashboard shows the same messages).
pub(crate) fn decide_error(err: DecideError) -> ApiError {
    match err {
        DecideError::NotFound => ApiError::not_found(),
        DecideError::Conflict(why) => ApiError::new(StatusCode::CONFLICT, "already_decided", why),
        DecideError::AlwaysRefused(why) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "allow_always_refused", why),
        DecideError::Store(e) => e.into(),
    }
}

/// Stops the instance's running turns and kills the processes of its sandboxes. Owners and
/// admins.
#[utoipa::path(post, path = "/api/v1/instances/{id}/stop", tag = "tools", params(("id" = String, Path)),
    responses((status = 200, description = "`{stopped_turns}`"), (status = 403, body = crate::error::ErrorBody)))]
pub async fn stop(State(state): State<AppState>, InstanceAdmin(admin): InstanceAdmin) -> Result<Json<Value>, ApiError> {
    let stopped = stop_instance(&state, &admin).await?;
    Ok(Json(serde_json::json!({"stopped_turns": stopped})))
}
