//! The errors of the sandbox crate.

use std::path::PathBuf;

/// What can go wrong when managing a sandbox. A failing *command* is not an error: it is an
/// [`ExecOutcome`](crate::ExecOutcome) with a non-zero code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The kernel lacks an isolation feature the configuration requires; tools must stay off.
    #[error("sandbox isolation unavailable: {missing}")]
    Unsupported {
        /// Which features are missing, for humans (also shown by `security-audit`).
        missing: String,
    },
    /// The sandbox for this key is not running.
    #[error("sandbox is not running")]
    NotRunning,
    /// A configuration value is unusable.
    #[error("invalid sandbox configuration: {0}")]
    InvalidConfig(&'static str),
    /// A workspace path is absolute, climbs out with `..`, or resolves through a link leaving the
    /// workspace.
    #[error("path is not inside the workspace: {0}")]
    PathOutsideWorkspace(PathBuf),
    /// A workspace file is larger than the caller allowed.
    #[error("file is larger than {limit} bytes")]
    FileTooLarge {
        /// The limit that was exceeded.
        limit: u64,
    },
    /// The helper process failed while building or tearing down the sandbox.
    #[error("sandbox helper failed: {0}")]
    Helper(String),
    /// The helper did not answer in time.
    #[error("sandbox helper did not answer within {0:?}")]
    HelperTimeout(std::time::Duration),
    /// No unprivileged host uid range is left for a new sandbox.
    #[error("no free host uid range for a new sandbox")]
    NoFreeUidRange,
    /// A sealed workspace did not open: tampered, truncated, reordered, or sealed under another
    /// key or for another sandbox. The sealed file is kept exactly as it was.
    #[error("the sealed workspace refused to open and was kept as it was: {0}")]
    Sealed(#[source] clawden_crypto::stream::StreamError),
    /// A sealed workspace opened but its archive is not one clawden writes.
    #[error("the sealed workspace archive is malformed: {0}")]
    MalformedArchive(String),
    /// Every running sandbox is busy and the cap on running sandboxes is reached.
    #[error("all {0} sandbox slots are busy; try again later")]
    AtCapacity(usize),
    /// Another clawden process (a server, or a one-shot `sandbox exec`) runs this sandbox.
    #[error("this sandbox is running in another clawden process")]
    InUse,
    /// The workspace key could not be obtained.
    #[error("the workspace key is unavailable: {0}")]
    WorkspaceKey(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        move |source| Error::Io { context, source }
    }
}

/// Result with the sandbox [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
