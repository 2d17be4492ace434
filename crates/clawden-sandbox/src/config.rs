//! Which sandbox, and with what limits.

use clawden_core::{InstanceId, UserId};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Identifies one sandbox: there is exactly one per (instance, member), so two members of a team
/// instance never share processes or files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SandboxKey {
    /// The agent instance.
    pub instance: InstanceId,
    /// The member of the instance on whose behalf tools run.
    pub member: UserId,
}

impl SandboxKey {
    /// A name made only of `[0-9a-f-]`, safe as a file or cgroup name.
    pub fn name(&self) -> String {
        format!("{}-{}", self.instance, self.member)
    }
}

impl fmt::Display for SandboxKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// Resource limits of one sandbox. Memory, PIDs and CPU apply to the sandbox as a whole (every
/// exec shares them); the timeout applies to each exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Memory limit in bytes, page cache and tmpfs files included (default 512 MiB).
    pub memory_bytes: u64,
    /// Swap the sandbox may use in bytes (default 0).
    pub swap_bytes: u64,
    /// Maximum number of processes and threads (default 256).
    pub pids: u32,
    /// CPU bandwidth in thousandths of a core (default 1000, one core).
    pub cpu_millicores: u32,
    /// Default wall-clock limit of one exec (default 30 s); an [`ExecRequest`](crate::ExecRequest)
    /// may ask for less or more.
    pub exec_timeout: Duration,
    /// Size of the workspace volume in bytes (default 1 GiB); writes past it fail with `ENOSPC`.
    pub workspace_quota_bytes: u64,
    /// Size of the private `/tmp` in bytes (default 64 MiB); it is memory, and counts against
    /// [`Limits::memory_bytes`].
    pub tmp_bytes: u64,
    /// Maximum number of open files per process (default 1024).
    pub open_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 512 << 20,
            swap_bytes: 0,
            pids: 256,
            cpu_millicores: 1000,
            exec_timeout: Duration::from_secs(30),
            workspace_quota_bytes: 1 << 30,
            tmp_bytes: 64 << 20,
            open_files: 1024,
        }
    }
}

/// Where the workspace lives on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkspaceStorage {
    /// A per-sandbox ext4 image of [`Limits::workspace_quota_bytes`] bytes, attached to a loop
    /// device and mounted while the sandbox runs: the quota ends in `ENOSPC`. Needs host root.
    /// The image is `<volume_dir>/workspace.img`, mounted at `<volume_dir>/workspace`.
    QuotaImage,
    /// A plain host directory `<volume_dir>/workspace`, without a quota (unprivileged hosts and
    /// tests only; [`BackendConfig::require_quota`] refuses it).
    Directory,
}

/// How to build one sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// A host directory that belongs to this sandbox alone. It holds the workspace (see
    /// [`WorkspaceStorage`]); it must not be shared with any other sandbox.
    pub volume_dir: PathBuf,
    /// How the workspace is stored.
    pub storage: WorkspaceStorage,
    /// Resource limits.
    pub limits: Limits,
}

impl SandboxConfig {
    /// The host directory that appears as `/workspace` inside the sandbox.
    pub fn workspace_host_dir(&self) -> PathBuf {
        self.volume_dir.join("workspace")
    }

    /// The ext4 image of a [`WorkspaceStorage::QuotaImage`] workspace.
    pub fn workspace_image(&self) -> PathBuf {
        self.volume_dir.join("workspace.img")
    }
}

/// Settings of the local backend as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendConfig {
    /// The executable to re-execute as the helper. It must call
    /// [`helper_main`](crate::helper_main) when its first argument is
    /// [`HELPER_SUBCOMMAND`](crate::HELPER_SUBCOMMAND) (the `clawden` binary does).
    pub helper: PathBuf,
    /// A host directory for the backend's own records (the uid range allocated to each sandbox).
    pub state_dir: PathBuf,
    /// The first host uid (and gid) handed to sandboxes when running as root; each sandbox gets
    /// its own range of [`BackendConfig::uid_range`] ids above it. Unprivileged, the sandbox root
    /// maps to the caller's own uid instead.
    pub uid_base: u32,
    /// Size of each sandbox's uid range when running as root (default 65536).
    pub uid_range: u32,
    /// Name of the cgroup, below the helper's own cgroup, that holds one child cgroup per sandbox.
    pub cgroup_parent: String,
    /// Refuse to start a sandbox without memory, PID and CPU limits (default true).
    pub require_cgroups: bool,
    /// Refuse to start a sandbox whose workspace has no quota (default true).
    pub require_quota: bool,
    /// Refuse to start a sandbox without Landlock (default false: it is defence in depth on top of
    /// the mount namespace, and older kernels lack it).
    pub require_landlock: bool,
}

impl BackendConfig {
    /// Defaults for a helper executable and a state directory.
    pub fn new(helper: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Self {
        BackendConfig {
            helper: helper.into(),
            state_dir: state_dir.into(),
            uid_base: 100_000,
            uid_range: 65_536,
            cgroup_parent: "clawden".to_owned(),
            require_cgroups: true,
            require_quota: true,
            require_landlock: false,
        }
    }
}
