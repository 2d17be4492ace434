//! The lifecycle manager: a member's sandbox starts on its first exec, stays warm, stops after an
//! idle timeout, and the least recently used one is stopped when the cap on running sandboxes is
//! reached. While stopped, a workspace exists only sealed (see [`crate::sealed`]).

use crate::api::{ExecProcess, ExecRequest, Sandbox, SandboxStatus};
use crate::config::{Limits, SandboxConfig, SandboxKey, WorkspaceStorage};
use crate::egress::{EgressPolicy, EgressProxy, PROXY_PORT};
use crate::error::{Error, Result};
use crate::local::LocalSandboxes;
use crate::sealed::{self, Owner, SealStats, SEALED_NAME};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex, RwLock, Weak};
use std::time::Duration;
// tokio's clock, so that a test can pause and advance time for the idle timeout.
use tokio::sync::Mutex;
use tokio::time::Instant;
use zeroize::Zeroizing;

/// The 32-byte key that seals one sandbox's workspace (the server gives the instance's DEK).
/// Zeroized on drop; `Debug` never shows it.
#[derive(Clone)]
pub struct WorkspaceKey(Zeroizing<[u8; 32]>);

impl WorkspaceKey {
    /// Wraps key bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        WorkspaceKey(Zeroizing::new(bytes))
    }

    fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for WorkspaceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WorkspaceKey(<redacted>)")
    }
}

/// Where workspace keys come from. The server implements it with the instance's data key
/// (`Keyring::dek(KeyOwner::Instance(key.instance))`); tests use a fixed key. The associated
/// data is not the implementer's choice: it is always [`workspace_associated_data`], so a sealed
/// workspace copied to another instance or member does not open.
pub trait WorkspaceKeys: Send + Sync {
    /// The key sealing the workspace of `key` (a boxed future, so implementers need no macro:
    /// `Box::pin(async move { … })`).
    fn workspace_key<'a>(&'a self, key: &'a SandboxKey) -> WorkspaceKeyFuture<'a>;
}

/// What [`WorkspaceKeys::workspace_key`] returns.
pub type WorkspaceKeyFuture<'a> = Pin<Box<dyn Future<Output = Result<WorkspaceKey>> + Send + 'a>>;

/// The associated data bound into every chunk of a sealed workspace.
pub fn workspace_associated_data(key: &SandboxKey) -> Vec<u8> {
    format!("clawden sandbox workspace v1\0instance:{}\0member:{}", key.instance, key.member).into_bytes()
}

/// Settings of the manager; every duration is a setting so tests can make them short.
#[derive(Debug, Clone)]
pub struct ManagerSettings {
    /// Holds one directory per sandbox (`<volumes_dir>/<key>`): the sealed workspace and,
    /// while running, the volume. The server uses `<data dir>/sandbox/volumes`.
    pub volumes_dir: PathBuf,
    /// How workspaces are stored while running.
    pub storage: WorkspaceStorage,
    /// Limits of every sandbox.
    pub limits: Limits,
    /// A sandbox with no exec for this long is stopped and sealed (default 10 min).
    pub idle_timeout: Duration,
    /// How often the reaper looks for idle sandboxes (default 30 s).
    pub reap_interval: Duration,
    /// The most sandboxes running at once (default 50); the least recently used idle one is
    /// stopped to make room.
    pub max_running: usize,
}

impl ManagerSettings {
    /// Defaults, with volumes under `volumes_dir`.
    pub fn new(volumes_dir: impl Into<PathBuf>) -> Self {
        ManagerSettings {
            volumes_dir: volumes_dir.into(),
            storage: WorkspaceStorage::QuotaImage,
            limits: Limits::default(),
            idle_timeout: Duration::from_secs(600),
            reap_interval: Duration::from_secs(30),
            max_running: 50,
        }
    }
}

/// Why a sandbox stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// No exec for the idle timeout.
    Idle,
    /// The cap on running sandboxes made room for another.
    Evicted,
    /// Asked for (an operator, the one-shot CLI).
    Requested,
    /// Server shutdown.
    Shutdown,
}

struct Entry {
    config: SandboxConfig,
    last_used: Instant,
    in_flight: usize,
    policy: Arc<RwLock<EgressPolicy>>,
    proxy_task: Option<tokio::task::JoinHandle<()>>,
    /// Held while the sandbox runs: a second clawden process (a server and a one-shot
    /// `sandbox exec`) can never mount the same volume twice.
    _volume_lock: nix::fcntl::Flock<std::fs::File>,
}

/// Starts sandboxes on demand, keeps them warm, stops and seals them when idle.
pub struct SandboxManager {
    backend: Arc<LocalSandboxes>,
    keys: Arc<dyn WorkspaceKeys>,
    egress: Option<Arc<EgressProxy>>,
    settings: ManagerSettings,
    entries: StdMutex<HashMap<SandboxKey, Entry>>,
    key_locks: StdMutex<HashMap<SandboxKey, Arc<Mutex<()>>>>,
}

impl fmt::Debug for SandboxManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SandboxManager").field("settings", &self.settings).finish_non_exhaustive()
    }
}

fn lock<T>(m: &StdMutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind; carry on with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Decrements the in-flight count of an exec when it ends or is dropped.
struct InFlight {
    manager: Weak<SandboxManager>,
    key: SandboxKey,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(m) = self.manager.upgrade() {
            if let Some(e) = lock(&m.entries).get_mut(&self.key) {
                e.in_flight = e.in_flight.saturating_sub(1);
                e.last_used = Instant::now();
            }
        }
    }
}

impl SandboxManager {
    /// A manager over `backend`. With `egress`, each sandbox gets a proxy on
    /// `127.0.0.1:`[`PROXY_PORT`] inside its network namespace and its execs get `HTTP_PROXY` and
    /// `HTTPS_PROXY`; without it, sandboxes have no network at all.
    pub fn new(
        backend: Arc<LocalSandboxes>,
        keys: Arc<dyn WorkspaceKeys>,
        egress: Option<Arc<EgressProxy>>,
        settings: ManagerSettings,
    ) -> Arc<Self> {
        Arc::new(SandboxManager {
            backend,
            keys,
            egress,
            settings,
            entries: StdMutex::new(HashMap::new()),
            key_locks: StdMutex::new(HashMap::new()),
        })
    }

    /// The settings.
    pub fn settings(&self) -> &ManagerSettings {
        &self.settings
    }

    /// The sandboxes running now.
    pub fn running(&self) -> Vec<SandboxKey> {
        let mut keys: Vec<_> = lock(&self.entries).keys().copied().collect();
        keys.sort();
        keys
    }

    /// The configuration the manager uses for `key`.
    pub fn config_for(&self, key: &SandboxKey) -> SandboxConfig {
        SandboxConfig {
            volume_dir: self.settings.volumes_dir.join(key.name()),
            storage: self.settings.storage.clone(),
            limits: self.settings.limits.clone(),
        }
    }

    /// The sealed workspace file of `key`.
    pub fn sealed_path(&self, key: &SandboxKey) -> PathBuf {
        self.config_for(key).volume_dir.join(SEALED_NAME)
    }

    fn key_lock(&self, key: &SandboxKey) -> Arc<Mutex<()>> {
        lock(&self.key_locks).entry(*key).or_insert_with(|| Arc::new(Mutex::new(()))).clone()
    }

    /// Runs a command in `key`'s sandbox, starting it (and unsealing its workspace) if needed.
    /// `policy` is the instance's egress policy now; a running sandbox picks up changes.
    pub async fn exec(
        self: &Arc<Self>,
        key: &SandboxKey,
        policy: EgressPolicy,
        mut request: ExecRequest,
    ) -> Result<ExecProcess> {
        {
            let key_lock = self.key_lock(key);
            let _guard = key_lock.lock().await;
            let mut running = lock(&self.entries).contains_key(key);
            if running && self.backend.status(key).await? == SandboxStatus::Stopped {
                // It died (a memory kill): seal what it left, then start afresh.
                self.stop_locked(key, StopReason::Requested).await?;
                running = false;
            }
            if !running {
                self.make_room(key).await?;
                self.start_locked(key, policy.clone()).await?;
            }
            let mut entries = lock(&self.entries);
            let entry = entries.get_mut(key).ok_or(Error::NotRunning)?;
            entry.in_flight += 1;
            entry.last_used = Instant::now();
            *entry.policy.write().unwrap_or_else(|p| p.into_inner()) = policy;
        }
        let in_flight = InFlight { manager: Arc::downgrade(self), key: *key };
        if self.egress.is_some() {
            let url = format!("http://127.0.0.1:{PROXY_PORT}");
            for name in ["HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"] {
                request.env.push((name.to_owned(), url.clone()));
            }
        }
        let mut process = self.backend.exec(key, request).await?;
        let (stdin, stdout, stderr) = (process.stdin.take(), process.stdout.take(), process.stderr.take());
        Ok(ExecProcess::new(stdin, stdout, stderr, async move {
            let outcome = process.wait().await;
            drop(in_flight);
            outcome
        }))
    }

    /// Starts `key`'s sandbox now (normally [`SandboxManager::exec`] does it).
    pub async fn start(self: &Arc<Self>, key: &SandboxKey, policy: EgressPolicy) -> Result<Option<SealStats>> {
        let key_lock = self.key_lock(key);
        let _guard = key_lock.lock().await;
        if lock(&self.entries).contains_key(key) {
            return Ok(None);
        }
        self.make_room(key).await?;
        self.start_locked(key, policy).await
    }

    /// Stops the least recently used idle sandbox if the cap is reached.
    async fn make_room(&self, starting: &SandboxKey) -> Result<()> {
        // Bounded: each round stops one sandbox or gives up.
        for _ in 0..self.settings.max_running.max(1) {
            let victims: Vec<SandboxKey> = {
                let entries = lock(&self.entries);
                if entries.len() < self.settings.max_running.max(1) {
                    return Ok(());
                }
                let mut idle: Vec<_> = entries
                    .iter()
                    .filter(|(k, e)| e.in_flight == 0 && *k != starting)
                    .map(|(k, e)| (e.last_used, *k))
                    .collect();
                idle.sort();
                idle.into_iter().map(|(_, k)| k).collect()
            };
            let mut stopped = false;
            for victim in victims {
                let victim_lock = self.key_lock(&victim);
                // A sandbox being started or stopped by someone else is not a candidate.
                let Ok(_guard) = victim_lock.try_lock() else { continue };
                if lock(&self.entries).get(&victim).is_some_and(|e| e.in_flight == 0) {
                    self.stop_locked(&victim, StopReason::Evicted).await?;
                    stopped = true;
                    break;
                }
            }
            if !stopped {
                return Err(Error::AtCapacity(self.settings.max_running));
            }
        }
        Err(Error::AtCapacity(self.settings.max_running))
    }

    fn plaintext_exists(config: &SandboxConfig) -> bool {
        match config.storage {
            WorkspaceStorage::QuotaImage => config.workspace_image().exists(),
            WorkspaceStorage::Directory => {
                std::fs::read_dir(config.workspace_host_dir()).is_ok_and(|mut d| d.next().is_some())
            }
        }
    }

    fn remove_plaintext(config: &SandboxConfig) -> Result<()> {
        let result = match config.storage {
            WorkspaceStorage::QuotaImage => std::fs::remove_file(config.workspace_image()),
            // remove_dir_all never follows links out of the tree (it works with *at calls).
            WorkspaceStorage::Directory => std::fs::remove_dir_all(config.workspace_host_dir()),
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io { context: "removing the plaintext workspace", source: e }),
        }
    }

    fn lock_volume(config: &SandboxConfig) -> Result<nix::fcntl::Flock<std::fs::File>> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(&config.volume_dir).map_err(Error::io("creating the volume directory"))?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(config.volume_dir.join(".lock"))
            .map_err(Error::io("locking the sandbox volume"))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                Error::InUse
            } else {
                Error::Io { context: "locking the sandbox volume", source: errno.into() }
            }
        })
    }

    async fn start_locked(&self, key: &SandboxKey, policy: EgressPolicy) -> Result<Option<SealStats>> {
        let config = self.config_for(key);
        let volume_lock = Self::lock_volume(&config)?;
        let leftover = Self::plaintext_exists(&config);
        let workspace_key = if leftover { None } else { Some(self.keys.workspace_key(key).await?) };
        self.backend.start(key, &config).await?;
        let info = match self.backend.running_info(key).await {
            Ok(i) => i,
            Err(e) => {
                let _ = self.backend.stop(key).await;
                return Err(e);
            }
        };
        let mut stats = None;
        if let Some(wk) = workspace_key {
            let sealed_file = config.volume_dir.join(SEALED_NAME);
            let root = info.workspace.clone();
            let owner = Owner { uid: info.ids.uid, gid: info.ids.gid, count: info.ids.count };
            let ad = workspace_associated_data(key);
            let result =
                tokio::task::spawn_blocking(move || sealed::unseal(&sealed_file, &root, wk.bytes(), &ad, &owner))
                    .await
                    .map_err(|e| Error::Helper(format!("unseal task failed: {e}")))?;
            match result {
                Ok(s) => stats = s,
                Err(e) => {
                    // The sealed file stays as it was; the partly filled volume goes.
                    tracing::warn!(sandbox = %key, error = %e, "sealed workspace refused to open");
                    let _ = self.backend.stop(key).await;
                    let _ = Self::remove_plaintext(&config);
                    return Err(e);
                }
            }
        } else {
            tracing::warn!(sandbox = %key, "workspace was not sealed at its last stop (crash?); it is sealed at the next stop");
        }
        let policy = Arc::new(RwLock::new(policy));
        let proxy_task = match &self.egress {
            Some(proxy) => match proxy.attach(*key, policy.clone(), info.init_pid, info.userns_ino).await {
                Ok(task) => Some(task),
                Err(e) => {
                    let _ = self.stop_and_seal(key, &config, StopReason::Requested).await;
                    return Err(e);
                }
            },
            None => None,
        };
        lock(&self.entries).insert(
            *key,
            Entry { config, last_used: Instant::now(), in_flight: 0, policy, proxy_task, _volume_lock: volume_lock },
        );
        tracing::info!(sandbox = %key, "sandbox started");
        Ok(stats)
    }

    /// Stops `key`'s sandbox (every process in it ends) and seals its workspace.
    pub async fn stop(&self, key: &SandboxKey, reason: StopReason) -> Result<Option<SealStats>> {
        let key_lock = self.key_lock(key);
        let _guard = key_lock.lock().await;
        self.stop_locked(key, reason).await
    }

    async fn stop_locked(&self, key: &SandboxKey, reason: StopReason) -> Result<Option<SealStats>> {
        // The entry stays listed until the workspace is sealed: `running()` never shows a
        // sandbox as stopped while its plaintext still exists. The key's lock keeps execs out.
        let config = {
            let mut entries = lock(&self.entries);
            let Some(entry) = entries.get_mut(key) else {
                return Ok(None);
            };
            if let Some(task) = entry.proxy_task.take() {
                task.abort();
            }
            entry.config.clone()
        };
        let result = self.stop_and_seal(key, &config, reason).await.map(Some);
        lock(&self.entries).remove(key);
        result
    }

    async fn stop_and_seal(&self, key: &SandboxKey, config: &SandboxConfig, reason: StopReason) -> Result<SealStats> {
        // A sandbox that died (a memory kill) has its volume unmounted: start it once more so
        // its workspace can be sealed rather than left in plaintext.
        let info = match self.backend.running_info(key).await {
            Ok(i) => i,
            Err(Error::NotRunning) => {
                self.backend.start(key, config).await?;
                self.backend.running_info(key).await?
            }
            Err(e) => return Err(e),
        };
        let wk = self.keys.workspace_key(key).await?;
        let sealed_file = config.volume_dir.join(SEALED_NAME);
        let root = info.workspace.clone();
        let owner = Owner { uid: info.ids.uid, gid: info.ids.gid, count: info.ids.count };
        let ad = workspace_associated_data(key);
        let budget = config.limits.workspace_quota_bytes;
        let started = Instant::now();
        let sealed =
            tokio::task::spawn_blocking(move || sealed::seal(&root, &sealed_file, wk.bytes(), &ad, &owner, budget))
                .await
                .map_err(|e| Error::Helper(format!("seal task failed: {e}")))?;
        let stopped = self.backend.stop(key).await;
        match sealed {
            Ok(stats) => {
                stopped?;
                Self::remove_plaintext(config)?;
                tracing::info!(sandbox = %key, ?reason, files = stats.files, bytes = stats.bytes,
                    seal_ms = started.elapsed().as_millis() as u64, "sandbox stopped and sealed");
                Ok(stats)
            }
            Err(e) => {
                // The previous seal is kept and the volume too: nothing is lost, and the next
                // stop tries again.
                tracing::error!(sandbox = %key, error = %e, "sealing the workspace failed");
                Err(e)
            }
        }
    }

    /// Stops and seals every sandbox idle for the idle timeout; returns those stopped.
    pub async fn reap_idle(&self) -> Vec<SandboxKey> {
        let now = Instant::now();
        let idle: Vec<SandboxKey> = lock(&self.entries)
            .iter()
            .filter(|(_, e)| e.in_flight == 0 && now.duration_since(e.last_used) >= self.settings.idle_timeout)
            .map(|(k, _)| *k)
            .collect();
        let mut stopped = Vec::new();
        for key in idle {
            let key_lock = self.key_lock(&key);
            let _guard = key_lock.lock().await;
            // Re-check under the key's lock: an exec may have come in meanwhile.
            let still_idle = lock(&self.entries).get(&key).is_some_and(|e| {
                e.in_flight == 0 && Instant::now().duration_since(e.last_used) >= self.settings.idle_timeout
            });
            if still_idle {
                match self.stop_locked(&key, StopReason::Idle).await {
                    Ok(_) => stopped.push(key),
                    Err(e) => tracing::error!(sandbox = %key, error = %e, "stopping an idle sandbox failed"),
                }
            }
        }
        stopped
    }

    /// Runs [`SandboxManager::reap_idle`] every `reap_interval` until the manager is dropped.
    pub fn spawn_reaper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        let interval = self.settings.reap_interval.max(Duration::from_millis(10));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(manager) = weak.upgrade() else { return };
                manager.reap_idle().await;
            }
        })
    }

    /// Stops and seals every sandbox (server shutdown). Returns the first error, after trying all.
    pub async fn stop_all(&self) -> Result<()> {
        let keys = self.running();
        let mut first = None;
        for key in keys {
            if let Err(e) = self.stop(&key, StopReason::Shutdown).await {
                tracing::error!(sandbox = %key, error = %e, "stopping a sandbox at shutdown failed");
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// The backend, for file access to running sandboxes.
    pub fn backend(&self) -> &Arc<LocalSandboxes> {
        &self.backend
    }
}
