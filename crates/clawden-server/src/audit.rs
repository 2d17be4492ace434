//! The one place audit events are built. Store methods write an action's event in the same
//! transaction as the action; failed attempts are written alone with [`record_failure`].

use crate::client_ip::ClientIp;
use crate::state::AppState;
use clawden_core::{InstanceId, Outcome, UserId};
use clawden_store::{AuditChain, AuditEvent};

/// A successful action by `actor` in `chain`.
pub fn success(state: &AppState, ip: ClientIp, chain: AuditChain, actor: Option<UserId>, action: &str) -> AuditEvent {
    event(state, ip, chain, actor, None, action, String::new(), Outcome::Success)
}

/// An event with every field given.
#[allow(clippy::too_many_arguments)]
pub fn event(
    state: &AppState,
    ip: ClientIp,
    chain: AuditChain,
    actor: Option<UserId>,
    instance: Option<InstanceId>,
    action: &str,
    target: String,
    outcome: Outcome,
) -> AuditEvent {
    AuditEvent {
        chain,
        actor,
        instance,
        action: action.to_owned(),
        target,
        outcome,
        ip: Some(ip.0.to_string()),
        at: state.now(),
    }
}

/// Records a failed attempt in its own transaction. A failure to record is logged, never
/// turned into a different answer to the client.
pub async fn record_failure(
    state: &AppState,
    ip: ClientIp,
    chain: AuditChain,
    actor: Option<UserId>,
    action: &str,
    target: String,
) {
    let ev = event(state, ip, chain, actor, None, action, target, Outcome::Failure);
    if let Err(err) = state.store.record(ev).await {
        tracing::error!(error = %err, audit.action = action, "could not record a failed attempt");
    }
}
