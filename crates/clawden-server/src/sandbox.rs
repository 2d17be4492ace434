//! The server's sandbox manager (DESIGN.md invariant 5): built at start when the kernel offers
//! the isolation and failing closed when it does not (chat keeps working, tools do not), fed
//! with the instances' data keys, and the checks every exec goes through — shared by the admin
//! socket and the one-shot `clawden sandbox exec`.

use crate::settings::{SandboxSettings, Settings};
use clawden_core::{Clock, InstanceId, Outcome, Principal, Tier};
use clawden_sandbox::{
    BackendConfig, EgressEvent, EgressProxy, EgressReporter, Limits, LocalSandboxes, ManagerSettings, SandboxKey,
    SandboxManager, WorkspaceKey, WorkspaceKeyFuture, WorkspaceKeys, WorkspaceStorage,
};
use clawden_store::{AuditChain, AuditEvent, KeyOwner, Keyring, Store, StoreError};
use std::sync::Arc;

/// Workspace keys from the keyring: a sandbox's workspace is sealed under its instance's data
/// key, so destroying that key crypto-shreds the sealed workspaces too.
#[derive(Debug)]
pub struct InstanceDeks {
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
}

impl InstanceDeks {
    /// Keys from `keyring`; `clock` dates a data key created on first use.
    pub fn new(keyring: Arc<Keyring>, clock: Arc<dyn Clock>) -> Self {
        Self { keyring, clock }
    }
}

impl WorkspaceKeys for InstanceDeks {
    fn workspace_key<'a>(&'a self, key: &'a SandboxKey) -> WorkspaceKeyFuture<'a> {
        Box::pin(async move {
            let dek = self
                .keyring
                .dek(KeyOwner::Instance(key.instance), self.clock.now_millis())
                .await
                .map_err(|e| clawden_sandbox::Error::WorkspaceKey(Box::new(e)))?;
            Ok(WorkspaceKey::new(*dek.key()))
        })
    }
}

/// The manager's settings from the server's.
pub fn manager_settings(settings: &Settings) -> ManagerSettings {
    let s: &SandboxSettings = &settings.sandbox;
    let mut m = ManagerSettings::new(settings.data_dir.join("sandbox").join("volumes"));
    m.storage = WorkspaceStorage::QuotaImage;
    m.idle_timeout = s.idle_timeout;
    m.reap_interval = s.reap_interval;
    m.max_running = s.max_running;
    m.limits = Limits {
        memory_bytes: s.memory_mib << 20,
        pids: s.pids,
        cpu_millicores: s.cpu_millicores,
        exec_timeout: s.exec_timeout,
        workspace_quota_bytes: s.workspace_quota_mib << 20,
        tmp_bytes: s.tmp_mib << 20,
        ..Limits::default()
    };
    m
}

/// The local backend's settings: the helper is this very executable (`clawden __sandbox-init`).
pub fn backend_config(settings: &Settings) -> Result<BackendConfig, String> {
    let helper = match &settings.sandbox.helper {
        Some(helper) => helper.clone(),
        None => std::env::current_exe().map_err(|e| format!("finding the clawden executable: {e}"))?,
    };
    let mut config = BackendConfig::new(helper, settings.data_dir.join("sandbox").join("state"));
    config.require_landlock = settings.sandbox.require_landlock;
    Ok(config)
}

/// Logs each egress decision (host and port, never content) and records it in the
/// instance's audit chain.
fn egress_reporter(store: Option<Arc<dyn clawden_store::Store>>, clock: Arc<dyn Clock>) -> EgressReporter {
    Arc::new(move |e: &EgressEvent| {
        if let (Some(store), Ok(runtime)) = (store.clone(), tokio::runtime::Handle::try_current()) {
            let event = clawden_store::AuditEvent {
                chain: clawden_store::AuditChain::Instance(e.sandbox.instance),
                actor: Some(e.sandbox.member),
                instance: Some(e.sandbox.instance),
                action: if e.allowed { "egress.allowed" } else { "egress.refused" }.to_owned(),
                target: format!("{}:{}", e.host.chars().take(253).collect::<String>(), e.port),
                outcome: if e.allowed { clawden_core::Outcome::Success } else { clawden_core::Outcome::Failure },
                ip: None,
                at: clock.now_millis(),
            };
            runtime.spawn(async move {
                if let Err(err) = store.record(event).await {
                    tracing::error!(error = %err, "could not record an egress decision");
                }
            });
        }
        if e.allowed {
            tracing::info!(egress.host = %e.host, egress.port = e.port, "egress allowed");
        } else {
            tracing::warn!(
                egress.host = %e.host,
                egress.port = e.port,
                egress.reason = e.reason.as_deref().unwrap_or(""),
                "egress refused"
            );
        }
    })
}

/// Builds the sandbox manager, or says why there is none. Never runs anything on the host
/// instead: without a manager, invite-tier tools are simply unavailable.
pub fn build_manager(
    settings: &Settings,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    store: Option<Arc<dyn clawden_store::Store>>,
) -> Result<Arc<SandboxManager>, String> {
    if !settings.sandbox.enabled {
        return Err("sandboxes are turned off (sandbox.enabled = false)".to_owned());
    }
    let backend = LocalSandboxes::new(backend_config(settings)?).map_err(|e| e.to_string())?;
    Ok(SandboxManager::new(
        Arc::new(backend),
        Arc::new(InstanceDeks::new(keyring, clock.clone())),
        Some(EgressProxy::new(Some(egress_reporter(store, clock)))),
        manager_settings(settings),
    ))
}

/// The executor of the agent's sandbox tools, when this server has sandboxes.
pub fn tool_executor(
    settings: &Settings,
    manager: Option<&Arc<SandboxManager>>,
) -> Option<Arc<dyn clawden_agent::tools::ToolExecutor>> {
    use clawden_agent::tools::sandboxed::{SandboxToolSettings, SandboxTools};
    let t = &settings.tools;
    let tool_settings = SandboxToolSettings {
        output_cap_bytes: t.exec_output_bytes,
        read_cap_bytes: t.file_bytes,
        write_cap_bytes: t.file_bytes,
        patch_cap_bytes: t.file_bytes,
        default_exec_timeout: t.exec_default_timeout,
        max_exec_timeout: t.exec_max_timeout,
        web_fetch_body_cap_bytes: t.fetch_bytes,
        web_fetch_timeout: t.fetch_timeout,
        ..SandboxToolSettings::default()
    };
    Some(Arc::new(SandboxTools::new(Arc::clone(manager?), tool_settings)))
}

/// Why an exec was refused before anything started.
#[derive(Debug, thiserror::Error)]
pub enum ExecRefused {
    /// `--user` names nobody.
    #[error("no user with that email")]
    NoSuchUser,
    /// The instance does not exist.
    #[error("no instance {0}")]
    NoSuchInstance(InstanceId),
    /// The user is not a member of the instance.
    #[error("{email} is not a member of instance {instance}")]
    NotAMember {
        /// The user.
        email: String,
        /// The instance.
        instance: InstanceId,
    },
    /// Base-tier instances have no sandbox, like the agent would refuse.
    #[error("instance {0} is on the base tier: it has no sandbox and no tools (redeem an invite to upgrade)")]
    BaseTier(InstanceId),
    /// The member's account is disabled.
    #[error("the account {0} is disabled")]
    Disabled(String),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

/// Checks that `email` (default: the instance's owner) is a member of `instance`, whose tier is
/// `tier`, with an enabled account, and returns the sandbox that exec would use.
pub async fn authorize_exec(
    store: &dyn Store,
    instance: InstanceId,
    email: Option<&str>,
    tier: Tier,
) -> Result<SandboxKey, ExecRefused> {
    let user = match email {
        Some(email) => store.user_by_email(&Principal::System, email).await?.ok_or(ExecRefused::NoSuchUser)?,
        None => {
            store.instance_owner(&Principal::System, instance).await?.ok_or(ExecRefused::NoSuchInstance(instance))?
        }
    };
    if store.role_in(&Principal::User { user: user.id }, instance).await?.is_none() {
        return Err(ExecRefused::NotAMember { email: user.email, instance });
    }
    // An instance's tier is its owner's tier: the same check the agent makes before any tool.
    if tier == Tier::Base {
        return Err(ExecRefused::BaseTier(instance));
    }
    if user.disabled {
        return Err(ExecRefused::Disabled(user.email));
    }
    Ok(SandboxKey { instance, member: user.id })
}

/// Records an operator's exec in the instance's audit chain (the command itself is not
/// recorded: it may carry secrets). A failure to record is logged.
pub async fn record_operator_exec(store: &dyn Store, clock: &dyn Clock, key: &SandboxKey, code: Option<i32>) {
    let event = AuditEvent {
        chain: AuditChain::Instance(key.instance),
        actor: None,
        instance: Some(key.instance),
        action: "sandbox.operator_exec".to_owned(),
        target: match code {
            Some(code) => format!("member:{} exit:{code}", key.member),
            None => format!("member:{}", key.member),
        },
        outcome: if code.is_some() { Outcome::Success } else { Outcome::Failure },
        ip: None,
        at: clock.now_millis(),
    };
    if let Err(err) = store.record(event).await {
        tracing::error!(error = %err, "could not record an operator's sandbox exec");
    }
}

#[cfg(test)]
mod egress_audit_tests {
    use super::*;
    use clawden_store::AuditStore;

    #[tokio::test]
    async fn egress_decisions_land_in_the_instance_audit_chain() {
        let db = clawden_store::testing::TestDb::sqlite();
        let (store, _) = db.open().await;
        let instance = clawden_core::InstanceId::new();
        let member = clawden_core::UserId::new();
        let dyn_store: Arc<dyn clawden_store::Store> = store.clone();
        let report = egress_reporter(Some(dyn_store), Arc::new(clawden_core::FixedClock::at(5)));
        report(&EgressEvent {
            sandbox: SandboxKey { instance, member },
            host: "metadata.example".into(),
            port: 80,
            allowed: false,
            reason: Some("resolves to a link-local address".into()),
        });
        // The record is written by a spawned task: wait for it, bounded.
        let mut found = Vec::new();
        for _ in 0..100 {
            found = store.own_audit(&clawden_core::Principal::User { user: member }, None, 10).await.unwrap();
            if !found.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].action, "egress.refused");
        assert_eq!(found[0].target, "metadata.example:80");
        assert_eq!(found[0].chain, format!("instance:{instance}"));
        assert_eq!(found[0].outcome, "failure");
    }
}
