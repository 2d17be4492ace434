//! Anomaly rules over the audit log, run by housekeeping. Each rule looks for a burst in a
//! window and contains it automatically, once per window: it records what it did in the
//! audit log and leaves a notice the owner sees in the dashboard.
//!
//! - **Failed sign-in burst** on one account: sign-in is locked for a while (from addresses
//!   that never signed in to it — the owner's known addresses still work) and its sessions end.
//! - **Egress refusal burst** in one instance: its sandboxes are stopped (and sealed).
//!
//! Bursts of bearer failures are contained by the per-address lockout as they happen. Tool-call
//! spikes and approvals timing out in a row come with tools and approvals.

use crate::error::ApiError;
use crate::state::AppState;
use clawden_core::{Outcome, Principal};
use clawden_store::{AuditChain, AuditEvent};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Rule thresholds and windows.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalySettings {
    /// Failed sign-ins on one account within the window that trigger a lock.
    pub login_failures: i64,
    /// The failed sign-in window.
    #[serde(with = "humantime_serde")]
    pub login_window: Duration,
    /// How long the lock lasts.
    #[serde(with = "humantime_serde")]
    pub lock_for: Duration,
    /// Refused egress connections in one instance within the window that stop its sandboxes.
    pub egress_refusals: i64,
    /// The egress window.
    #[serde(with = "humantime_serde")]
    pub egress_window: Duration,
}

impl Default for AnomalySettings {
    fn default() -> Self {
        Self {
            login_failures: 10,
            login_window: Duration::from_secs(600),
            lock_for: Duration::from_secs(900),
            egress_refusals: 20,
            egress_window: Duration::from_secs(600),
        }
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Runs every rule once; returns how many times a rule acted.
pub async fn run_rules(state: &AppState) -> Result<usize, ApiError> {
    let rules = &state.settings.anomaly;
    let now = state.now();
    let mut acted = 0;
    let since = now.saturating_sub(ms(rules.login_window));
    for user in state.store.failed_login_bursts(&Principal::System, since, rules.login_failures).await? {
        let chain = AuditChain::Account(user);
        if state.store.acted_since(&Principal::System, &chain.key(), "anomaly.login_burst", since).await? {
            continue;
        }
        let until = now.saturating_add(ms(rules.lock_for));
        let notice = format!(
            "We saw {}+ failed sign-ins to your account within {}. Sign-in from new places is paused for {} and \
             your sessions were ended. If this was not you, change your password and turn on two-factor sign-in.",
            rules.login_failures,
            humantime::format_duration(rules.login_window),
            humantime::format_duration(rules.lock_for)
        );
        let event = AuditEvent {
            chain,
            actor: None,
            instance: None,
            action: "anomaly.login_burst".into(),
            target: format!("user:{user}"),
            outcome: Outcome::Success,
            ip: None,
            at: now,
        };
        state.store.lock_account(&Principal::System, user, until, &notice, event).await?;
        tracing::warn!(user.id = %user, "anomaly: failed sign-in burst, account locked");
        acted += 1;
    }
    let since = now.saturating_sub(ms(rules.egress_window));
    for instance in state.store.egress_refusal_bursts(&Principal::System, since, rules.egress_refusals).await? {
        let chain = AuditChain::Instance(instance);
        if state.store.acted_since(&Principal::System, &chain.key(), "anomaly.egress_refusals", since).await? {
            continue;
        }
        if let Some(manager) = &state.sandbox {
            for key in manager.running().into_iter().filter(|k| k.instance == instance) {
                if let Err(err) = manager.stop(&key, clawden_sandbox::StopReason::Requested).await {
                    tracing::error!(error = %err, "anomaly: stopping a sandbox failed");
                }
            }
        }
        let notice = format!(
            "A sandbox of your instance {instance} tried {}+ blocked network connections within {}; its sandboxes \
             were stopped. They start again on the next tool call.",
            rules.egress_refusals,
            humantime::format_duration(rules.egress_window)
        );
        let event = AuditEvent {
            chain,
            actor: None,
            instance: Some(instance),
            action: "anomaly.egress_refusals".into(),
            target: format!("instance:{instance}"),
            outcome: Outcome::Success,
            ip: None,
            at: now,
        };
        state.store.notify_owners(&Principal::System, instance, "anomaly.egress_refusals", &notice, event).await?;
        acted += 1;
    }
    Ok(acted)
}
