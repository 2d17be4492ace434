//! Human approval of elevated tool calls.
//!
//! An approval names one exact call (tool and arguments, bound by
//! [`call_digest`](crate::tools::policy::call_digest)). The turn that asked waits for the
//! decision, woken at once when it is taken on this server and polling the store otherwise
//! (a decision taken on another server of a fleet is seen within one poll interval). No
//! decision within the timeout counts as denied. Each request, decision and expiry is
//! audited in the instance's chain, and [`ApprovalHub::subscribe`] streams them to the
//! WebSocket and the dashboard.

use crate::lock;
use crate::tools::policy::{call_digest, ToolPolicy};
use clawden_core::{ApprovalId, Clock, ConversationId, InstanceId, Outcome, Principal, UserId};
use clawden_store::{Approval, ApprovalStatus, AuditChain, AuditEvent, NewApproval, Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tokio::sync::{broadcast, oneshot};

/// How approvals wait.
#[derive(Debug, Clone)]
pub struct ApprovalSettings {
    /// No decision within this long means denied (default 5 min).
    pub timeout: Duration,
    /// How often a waiting turn also reads the store, for decisions taken on another server.
    pub poll_interval: Duration,
}

impl Default for ApprovalSettings {
    fn default() -> Self {
        ApprovalSettings { timeout: Duration::from_secs(300), poll_interval: Duration::from_secs(2) }
    }
}

/// Why a decision was not taken.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// No such approval the caller may decide.
    #[error("no such approval")]
    NotFound,
    /// Already decided or expired.
    #[error("{0}")]
    Conflict(&'static str),
    /// "Allow always" is refused for this call; the text says why.
    #[error("{0}")]
    AlwaysRefused(String),
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for DecideError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound | StoreError::Forbidden => DecideError::NotFound,
            StoreError::Conflict(why) => DecideError::Conflict(why),
            other => DecideError::Store(other),
        }
    }
}

/// Pending approvals of this server, their waiting turns, and the feed of changes.
#[derive(Debug)]
pub struct ApprovalHub {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    settings: ApprovalSettings,
    waiters: StdMutex<HashMap<ApprovalId, oneshot::Sender<ApprovalStatus>>>,
    feed: broadcast::Sender<Approval>,
}

/// A turn's wait for one decision. Dropping it (the turn was stopped) expires the approval.
#[derive(Debug)]
pub struct PendingApproval {
    hub: Arc<ApprovalHub>,
    /// The approval as created.
    pub approval: Approval,
    rx: Option<oneshot::Receiver<ApprovalStatus>>,
    settled: bool,
}

impl Drop for PendingApproval {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        lock(&self.hub.waiters).remove(&self.approval.id);
        let hub = Arc::clone(&self.hub);
        let id = self.approval.id;
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                hub.expire(id).await;
            });
        }
    }
}

impl PendingApproval {
    /// Waits for the decision: `Allowed`, `Denied`, or `Expired` after the timeout.
    pub async fn decision(mut self) -> ApprovalStatus {
        let hub = Arc::clone(&self.hub);
        let id = self.approval.id;
        let deadline = tokio::time::Instant::now() + hub.settings.timeout;
        let Some(mut rx) = self.rx.take() else { return ApprovalStatus::Denied };
        let status = loop {
            let poll = tokio::time::sleep(hub.settings.poll_interval.max(Duration::from_millis(10)));
            tokio::select! {
                decided = &mut rx => break decided.unwrap_or(ApprovalStatus::Denied),
                _ = tokio::time::sleep_until(deadline) => {
                    lock(&hub.waiters).remove(&id);
                    break hub.expire(id).await;
                }
                _ = poll => {
                    match hub.store.approval(&Principal::System, id).await {
                        Ok(Some(a)) if a.status != ApprovalStatus::Pending => {
                            lock(&hub.waiters).remove(&id);
                            break a.status;
                        }
                        Ok(_) => {}
                        Err(err) => tracing::warn!(error = %err, "reading an approval failed; still waiting"),
                    }
                }
            }
        };
        self.settled = true;
        status
    }
}

impl ApprovalHub {
    /// A hub over `store`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: ApprovalSettings) -> Arc<Self> {
        let (feed, _) = broadcast::channel(256);
        Arc::new(ApprovalHub { store, clock, settings, waiters: StdMutex::new(HashMap::new()), feed })
    }

    /// The settings.
    pub fn settings(&self) -> &ApprovalSettings {
        &self.settings
    }

    /// Every approval created or decided on this server, as it happens.
    pub fn subscribe(&self) -> broadcast::Receiver<Approval> {
        self.feed.subscribe()
    }

    /// Asks for a decision on one call, records it, and announces it.
    pub async fn request(
        self: &Arc<Self>,
        instance: InstanceId,
        conversation: ConversationId,
        member: UserId,
        tool: &str,
        arguments: &serde_json::Value,
    ) -> Result<PendingApproval, StoreError> {
        let now = self.clock.now_millis();
        let timeout_ms = i64::try_from(self.settings.timeout.as_millis()).unwrap_or(i64::MAX);
        let new = NewApproval {
            id: ApprovalId::new(),
            instance_id: instance,
            conversation_id: conversation,
            user_id: member,
            tool: tool.to_owned(),
            arguments: arguments.to_string(),
            digest: call_digest(tool, arguments),
            created_at: now,
            expires_at: now.saturating_add(timeout_ms),
        };
        let (tx, rx) = oneshot::channel();
        lock(&self.waiters).insert(new.id, tx);
        let audit = AuditEvent {
            chain: AuditChain::Instance(instance),
            actor: Some(member),
            instance: Some(instance),
            action: "approval.request".into(),
            target: format!("approval:{} tool:{tool}", new.id),
            outcome: Outcome::Success,
            ip: None,
            at: now,
        };
        if let Err(err) = self.store.create_approval(&Principal::System, &new, audit).await {
            lock(&self.waiters).remove(&new.id);
            return Err(err);
        }
        let approval = Approval {
            id: new.id,
            instance_id: instance,
            conversation_id: conversation,
            user_id: member,
            tool: new.tool,
            arguments: new.arguments,
            digest: new.digest,
            status: ApprovalStatus::Pending,
            always: false,
            created_at: now,
            expires_at: new.expires_at,
            decided_at: None,
            decided_by: None,
        };
        let _ = self.feed.send(approval.clone());
        Ok(PendingApproval { hub: Arc::clone(self), approval, rx: Some(rx), settled: false })
    }

    /// Marks an approval expired (if still pending), audits and announces it, and returns its
    /// final status.
    async fn expire(&self, id: ApprovalId) -> ApprovalStatus {
        let now = self.clock.now_millis();
        match self.store.expire_approval(&Principal::System, id, now).await {
            Ok(true) => {}
            Ok(false) => {
                // Decided at the last moment: that decision stands.
                return match self.store.approval(&Principal::System, id).await {
                    Ok(Some(a)) => a.status,
                    _ => ApprovalStatus::Denied,
                };
            }
            Err(err) => {
                tracing::error!(error = %err, "could not mark an approval expired");
                return ApprovalStatus::Expired;
            }
        }
        if let Ok(Some(approval)) = self.store.approval(&Principal::System, id).await {
            let event = AuditEvent {
                chain: AuditChain::Instance(approval.instance_id),
                actor: None,
                instance: Some(approval.instance_id),
                action: "approval.expire".into(),
                target: format!("approval:{id} tool:{}", approval.tool),
                outcome: Outcome::Failure,
                ip: None,
                at: now,
            };
            if let Err(err) = self.store.record(event).await {
                tracing::error!(error = %err, "could not record an approval's expiry");
            }
            let _ = self.feed.send(approval);
        }
        ApprovalStatus::Expired
    }

    /// The instance's policy and its version (0 when none is stored). An unreadable stored
    /// policy is an error, never silently replaced by the defaults.
    async fn stored_policy(&self, instance: InstanceId) -> Result<(ToolPolicy, i64), DecideError> {
        let stored = self.store.tool_policy_versioned(&Principal::System, instance).await?;
        let version = stored.as_ref().map_or(0, |(_, v)| *v);
        ToolPolicy::from_stored(stored.as_ref().map(|(body, _)| body.as_str()))
            .map(|policy| (policy, version))
            .map_err(|_| DecideError::Store(StoreError::Corrupt("the stored tool policy is unreadable".into())))
    }

    /// An owner's or admin's decision. With `always` (allow only), the exact `exec` command
    /// is also stored in the instance's policy — refused, before anything changes, for a
    /// command whose behaviour could change after the approval (see
    /// [`always_allow_refusal`](crate::tools::policy::always_allow_refusal)).
    pub async fn decide(
        &self,
        by: &Principal,
        id: ApprovalId,
        allow: bool,
        always: bool,
        ip: Option<String>,
    ) -> Result<Approval, DecideError> {
        let actor = by.user_id().ok_or(DecideError::NotFound)?;
        let current = self.store.approval(by, id).await?.ok_or(DecideError::NotFound)?;
        let arguments: serde_json::Value = serde_json::from_str(&current.arguments)
            .map_err(|_| StoreError::Corrupt("approval arguments are not JSON".into()))?;
        if allow && always {
            // Checked before anything changes: a refused "allow always" leaves it pending.
            let (policy, _) = self.stored_policy(current.instance_id).await?;
            policy.clone().allow_always(&current.tool, &arguments).map_err(DecideError::AlwaysRefused)?;
        }
        let now = self.clock.now_millis();
        let status = if allow { ApprovalStatus::Allowed } else { ApprovalStatus::Denied };
        let audit = AuditEvent {
            chain: AuditChain::Instance(current.instance_id),
            actor: Some(actor),
            instance: Some(current.instance_id),
            action: if allow { "approval.allow" } else { "approval.deny" }.into(),
            target: format!("approval:{id} tool:{}{}", current.tool, if always && allow { " always" } else { "" }),
            outcome: Outcome::Success,
            ip: ip.clone(),
            at: now,
        };
        let decided = self.store.decide_approval(by, id, status, always && allow, now, audit).await?;
        if allow && always {
            // Read, add, write back only if nobody changed the policy meanwhile (a tightening
            // made in between is never undone); retried a few times under contention.
            let mut stored = false;
            for _ in 0..5 {
                let (mut policy, version) = self.stored_policy(current.instance_id).await?;
                policy.allow_always(&current.tool, &arguments).map_err(DecideError::AlwaysRefused)?;
                let body = serde_json::to_string(&policy)
                    .map_err(|_| StoreError::Corrupt("policy does not serialise".into()))?;
                let audit = AuditEvent {
                    chain: AuditChain::Instance(current.instance_id),
                    actor: Some(actor),
                    instance: Some(current.instance_id),
                    action: "policy.allow_always".into(),
                    target: format!("approval:{id}"),
                    outcome: Outcome::Success,
                    ip: ip.clone(),
                    at: now,
                };
                if self.store.replace_tool_policy(by, current.instance_id, &body, version, now, audit).await? {
                    stored = true;
                    break;
                }
            }
            if !stored {
                tracing::warn!(approval = %id, "the policy kept changing; the command was allowed once, not always");
            }
        }
        if let Some(waiter) = lock(&self.waiters).remove(&id) {
            let _ = waiter.send(decided.status);
        }
        let _ = self.feed.send(decided.clone());
        Ok(decided)
    }
}
