//! The backend-independent interface: what the agent runtime and the CLI use.

use crate::config::{SandboxConfig, SandboxKey};
use crate::error::Result;
use async_trait::async_trait;
use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Whether a sandbox is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SandboxStatus {
    /// Running and ready for execs.
    Running,
    /// Not running (never started, stopped, or died — for instance on an out-of-memory kill).
    Stopped,
}

/// Where one standard stream of an exec goes.
#[derive(Debug, Default)]
pub enum ExecStdio {
    /// `/dev/null`.
    Null,
    /// A pipe, available on the [`ExecProcess`] (the default).
    #[default]
    Piped,
    /// The caller's own stream (for the CLI).
    Inherit,
    /// A descriptor of the caller's choosing.
    Fd(OwnedFd),
}

/// One command to run in a sandbox.
#[derive(Debug)]
pub struct ExecRequest {
    /// Program and arguments; the program is looked up on the sandbox's `PATH`.
    pub argv: Vec<OsString>,
    /// Extra environment variables; the environment is otherwise clean (`PATH`, `HOME`, `LANG`).
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox (default `/workspace`).
    pub cwd: String,
    /// Wall-clock limit; `None` uses the sandbox's [`Limits::exec_timeout`](crate::Limits).
    pub timeout: Option<Duration>,
    /// Standard input.
    pub stdin: ExecStdio,
    /// Standard output.
    pub stdout: ExecStdio,
    /// Standard error.
    pub stderr: ExecStdio,
}

impl ExecRequest {
    /// A request to run `argv` with piped streams and the default timeout.
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        ExecRequest {
            argv: argv.into_iter().map(Into::into).collect(),
            env: Vec::new(),
            cwd: "/workspace".to_owned(),
            timeout: None,
            stdin: ExecStdio::Piped,
            stdout: ExecStdio::Piped,
            stderr: ExecStdio::Piped,
        }
    }

    /// `sh -c SCRIPT`.
    pub fn shell(script: &str) -> Self {
        Self::new(["/bin/sh", "-c", script])
    }

    /// Sets the wall-clock limit.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// How an exec ended. The code follows shell conventions: the command's exit code, `128 + n`
/// when killed by signal `n`, [`EXIT_TIMEOUT`](crate::EXIT_TIMEOUT) (124) when the wall-clock
/// limit stopped it, [`EXIT_KILLED`](crate::EXIT_KILLED) (137) after a memory kill, and
/// [`EXIT_SANDBOX_FAILURE`](crate::EXIT_SANDBOX_FAILURE) (125) when the sandbox could not run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecOutcome {
    /// The exit code.
    pub code: i32,
}

impl ExecOutcome {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Stopped by the wall-clock limit.
    pub fn timed_out(&self) -> bool {
        self.code == crate::EXIT_TIMEOUT
    }
}

/// The collected result of [`Sandbox::exec_collect`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutput {
    /// How it ended.
    pub outcome: ExecOutcome,
    /// Standard output, cut at the requested size.
    pub stdout: Vec<u8>,
    /// Standard error, cut at the requested size.
    pub stderr: Vec<u8>,
}

/// A byte sink for the exec's standard input.
pub type ExecWriter = Pin<Box<dyn AsyncWrite + Send>>;
/// A byte source for the exec's standard output or error.
pub type ExecReader = Pin<Box<dyn AsyncRead + Send>>;
type Waiter = Pin<Box<dyn Future<Output = Result<ExecOutcome>> + Send>>;

/// A running exec: its piped streams and a way to wait for its end.
pub struct ExecProcess {
    /// Standard input, when [`ExecStdio::Piped`]; drop it to send end-of-file.
    pub stdin: Option<ExecWriter>,
    /// Standard output, when piped.
    pub stdout: Option<ExecReader>,
    /// Standard error, when piped.
    pub stderr: Option<ExecReader>,
    waiter: Waiter,
}

impl fmt::Debug for ExecProcess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecProcess")
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .finish_non_exhaustive()
    }
}

impl ExecProcess {
    /// Assembles a process from a backend's parts.
    pub fn new(
        stdin: Option<ExecWriter>,
        stdout: Option<ExecReader>,
        stderr: Option<ExecReader>,
        waiter: impl Future<Output = Result<ExecOutcome>> + Send + 'static,
    ) -> Self {
        ExecProcess { stdin, stdout, stderr, waiter: Box::pin(waiter) }
    }

    /// Waits for the command to end (the timeout is enforced by the backend).
    pub async fn wait(self) -> Result<ExecOutcome> {
        self.waiter.await
    }
}

async fn read_capped(reader: Option<ExecReader>, max: usize) -> Vec<u8> {
    let Some(mut reader) = reader else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            // Past the cap keep draining, so the command never blocks on a full pipe.
            Ok(n) => {
                let room = max.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
    out
}

/// A sandbox backend: one sandbox per [`SandboxKey`], started on demand, in which tools run.
#[async_trait]
pub trait Sandbox: Send + Sync {
    /// Starts the sandbox for `key` (no-op if it is running).
    async fn start(&self, key: &SandboxKey, config: &SandboxConfig) -> Result<SandboxStatus>;

    /// Starts a command in the running sandbox.
    async fn exec(&self, key: &SandboxKey, request: ExecRequest) -> Result<ExecProcess>;

    /// Runs a command with `stdin` as input and collects at most `max_output` bytes of each
    /// output stream.
    async fn exec_collect(
        &self,
        key: &SandboxKey,
        mut request: ExecRequest,
        stdin: Vec<u8>,
        max_output: usize,
    ) -> Result<ExecOutput> {
        request.stdin = ExecStdio::Piped;
        request.stdout = ExecStdio::Piped;
        request.stderr = ExecStdio::Piped;
        let mut process = self.exec(key, request).await?;
        let input = process.stdin.take();
        let feed = async move {
            if let Some(mut input) = input {
                // The command may exit without reading: a broken pipe is not an error here.
                let _ = input.write_all(&stdin).await;
                let _ = input.shutdown().await;
            }
        };
        let (_, stdout, stderr) = tokio::join!(
            feed,
            read_capped(process.stdout.take(), max_output),
            read_capped(process.stderr.take(), max_output)
        );
        let outcome = process.wait().await?;
        Ok(ExecOutput { outcome, stdout, stderr })
    }

    /// Reads a file of the workspace (`path` relative to `/workspace`), at most `max_bytes`.
    async fn read_file(&self, key: &SandboxKey, path: &Path, max_bytes: u64) -> Result<Vec<u8>>;

    /// Writes a file of the workspace, creating parent directories.
    async fn write_file(&self, key: &SandboxKey, path: &Path, contents: &[u8]) -> Result<()>;

    /// Stops the sandbox: every process in it ends; the workspace stays.
    async fn stop(&self, key: &SandboxKey) -> Result<()>;

    /// Stops the sandbox and deletes its workspace.
    async fn destroy(&self, key: &SandboxKey, config: &SandboxConfig) -> Result<()>;

    /// Whether the sandbox is running.
    async fn status(&self, key: &SandboxKey) -> Result<SandboxStatus>;
}
