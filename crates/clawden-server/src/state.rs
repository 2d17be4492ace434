//! What every handler can reach, built once at start and passed in `AppState`.

use crate::limits::Limiters;
use crate::settings::Settings;
use clawden_core::{Clock, UnixMillis};
use clawden_crypto::{PasswordHasher, PasswordVerdict};
use clawden_store::{Keyring, Store};
use secrecy::SecretString;
use std::sync::Arc;
use tokio::sync::Semaphore;

/// Shared state of the server.
#[derive(Clone, Debug)]
pub struct AppState {
    /// Settings.
    pub settings: Arc<Settings>,
    /// The store.
    pub store: Arc<dyn Store>,
    /// The keyring.
    pub keyring: Arc<Keyring>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Password hashing, bounded.
    pub passwords: Arc<Passwords>,
    /// Rate limits.
    pub limits: Arc<Limiters>,
    /// New gateway tokens from scheduled rotation, for the owners' live connections.
    pub notices: crate::gateway::TokenNotices,
    /// The agent runtime (provider, quotas, context).
    pub runtime: Arc<clawden_agent::runtime::Runtime>,
    /// Per-user chat limits kept in the server.
    pub chat: Arc<crate::chat::ChatLimits>,
    /// The sandbox manager; `None` when the kernel lacks the isolation or sandboxes are off
    /// (invite-tier tools are then unavailable, never run on the host).
    pub sandbox: Option<Arc<clawden_sandbox::SandboxManager>>,
    /// Why there is no sandbox manager, for operators.
    pub sandbox_unavailable: Option<Arc<str>>,
}

impl AppState {
    /// Now, from the injected clock.
    pub fn now(&self) -> UnixMillis {
        self.clock.now_millis()
    }
}

/// Password hashing on the blocking pool, at most N at once, so a flood of logins cannot
/// occupy every core.
#[derive(Debug)]
pub struct Passwords {
    hasher: PasswordHasher,
    permits: Semaphore,
}

impl Passwords {
    /// Allows `concurrency` hashes at once.
    pub fn new(hasher: PasswordHasher, concurrency: usize) -> Self {
        Self { hasher, permits: Semaphore::new(concurrency.max(1)) }
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: SecretString) -> Result<String, crate::ApiError> {
        let _permit = self.permits.acquire().await.map_err(crate::ApiError::internal)?;
        let hasher = self.hasher.clone();
        tokio::task::spawn_blocking(move || hasher.hash(&password)).await.map_err(crate::ApiError::internal)
    }

    /// Verifies a password against a stored hash; `None` stored spends the same time on a
    /// dummy hash and answers `Mismatch`.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<PasswordVerdict, crate::ApiError> {
        let _permit = self.permits.acquire().await.map_err(crate::ApiError::internal)?;
        let hasher = self.hasher.clone();
        tokio::task::spawn_blocking(move || match stored {
            Some(stored) => hasher.verify(&password, &stored).unwrap_or(PasswordVerdict::Mismatch),
            None => {
                hasher.verify_dummy(&password);
                PasswordVerdict::Mismatch
            }
        })
        .await
        .map_err(crate::ApiError::internal)
    }
}
