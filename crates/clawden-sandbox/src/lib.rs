//! Per-instance-member Linux sandboxes for clawden (DESIGN.md, invariant 5).
//!
//! The crate has three layers:
//!
//! * [`Sandbox`], the trait every backend implements (the local Linux backend here; Docker and
//!   Kubernetes later), with its request and result types;
//! * [`LocalSandboxes`], the local backend: it never forks the async server, it re-executes a
//!   helper binary (`clawden __sandbox-init …`, see [`helper_main`]) which builds the sandbox from
//!   Linux namespaces, a read-only root, seccomp, Landlock and cgroups;
//! * [`probe`], which reports what isolation the running kernel offers so that the server can fail
//!   closed and `security-audit` can say why.
//!
//! This is the only clawden crate that may use `unsafe`; every block says why it is sound.

mod api;
mod config;
pub mod egress;
mod error;
mod files;
mod helper;
mod local;
mod manager;
mod plan;
mod probe;
mod sealed;
mod sys;

pub use api::{ExecOutcome, ExecOutput, ExecProcess, ExecRequest, ExecStdio, Sandbox, SandboxStatus};
pub use config::{BackendConfig, Limits, SandboxConfig, SandboxKey, WorkspaceStorage};
pub use egress::{EgressEvent, EgressPolicy, EgressProxy, EgressReporter};
pub use error::{Error, Result};
pub use helper::{helper_main, HELPER_SUBCOMMAND};
pub use local::LocalSandboxes;
pub use manager::{
    workspace_associated_data, ManagerSettings, SandboxManager, StopReason, WorkspaceKey, WorkspaceKeyFuture,
    WorkspaceKeys,
};
pub use probe::{probe, Capabilities, CgroupSupport, CgroupVersion};
pub use sealed::SealStats;

/// Exit code of an exec stopped by its wall-clock timeout (the convention of coreutils `timeout`).
pub const EXIT_TIMEOUT: i32 = 124;
/// Exit code when the sandbox could not run the command at all (the `docker run` convention); the
/// reason is written to the exec's stderr.
pub const EXIT_SANDBOX_FAILURE: i32 = 125;
/// Exit code of a command killed by `SIGKILL`, which is what the memory limit does.
pub const EXIT_KILLED: i32 = 137;
