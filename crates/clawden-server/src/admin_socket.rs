//! The local admin socket: how `clawden sandbox exec` reaches a running server's sandbox
//! manager, so that a command runs in the same warm sandbox the agent uses instead of a second
//! process mounting its volume.
//!
//! `<data dir>/admin.sock`, mode 0600 in the 0700 data dir, and a peer must have the server's
//! own uid (`SO_PEERCRED`), checked on every connection. The protocol is line-delimited JSON:
//! the client sends one [`Request`] line; the server answers with [`Frame`] lines — output as
//! it comes, then exactly one `exit` or `error` frame — and closes. The command's standard
//! input is `/dev/null`.

use crate::sandbox::{authorize_exec, record_operator_exec};
use crate::state::AppState;
use clawden_core::InstanceId;
use clawden_sandbox::{EgressPolicy, ExecRequest, ExecStdio};
use data_encoding::BASE64;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Longest request line.
const MAX_REQUEST_BYTES: u64 = 256 * 1024;
/// Longest frame line a client accepts (a 16 KiB chunk is ~22 KiB of base64).
const MAX_FRAME_BYTES: u64 = 64 * 1024;
/// Output is forwarded in chunks of at most this many bytes.
const CHUNK: usize = 16 * 1024;

/// What a client asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Run a command in a member's sandbox.
    Exec(ExecCall),
}

/// `clawden sandbox exec` over the socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecCall {
    /// The instance.
    pub instance: InstanceId,
    /// The member's email; default: the instance's owner.
    #[serde(default)]
    pub user: Option<String>,
    /// Wall-clock limit, e.g. `"30s"`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Program and arguments.
    pub argv: Vec<String>,
}

/// What the server sends back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Frame {
    /// Bytes of standard output, base64.
    Stdout {
        /// Base64.
        data: String,
    },
    /// Bytes of standard error, base64.
    Stderr {
        /// Base64.
        data: String,
    },
    /// The command ended with this code (124 timeout, 137 killed).
    Exit {
        /// Exit code.
        code: i32,
    },
    /// Nothing ran, or the sandbox failed.
    Error {
        /// For the operator.
        message: String,
    },
}

/// The bound socket of a server, ready to serve.
#[derive(Debug)]
pub struct AdminSocket {
    listener: std::os::unix::net::UnixListener,
    path: PathBuf,
    /// (device, inode) of the socket file, so shutdown removes only our own.
    id: (u64, u64),
}

fn own_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

impl AdminSocket {
    /// Binds `path` with mode 0600. A stale socket left by a crashed server is replaced; a live
    /// one (another server on this data dir) is an `AddrInUse` error, and so is anything that
    /// is not a socket.
    pub fn bind(path: &Path) -> io::Result<Self> {
        if let Ok(meta) = std::fs::symlink_metadata(path) {
            if !meta.file_type().is_socket() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("another clawden server is listening on {}", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
        }
        // The data dir is 0700, so nobody else can reach the socket between bind and chmod.
        let listener = std::os::unix::net::UnixListener::bind(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok(Self { listener, path: path.to_owned(), id: (meta.dev(), meta.ino()) })
    }

    /// Where it listens.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts connections until `shutdown`, then ends the connections still open (their
    /// sandboxes are stopped by the caller) and removes the socket file.
    pub async fn serve(self, state: AppState, shutdown: impl Future<Output = ()>) {
        let listener = match tokio::net::UnixListener::from_std(self.listener) {
            Ok(l) => l,
            Err(err) => {
                tracing::error!(error = %err, "admin socket: cannot serve");
                remove_if_ours(&self.path, self.id);
                return;
            }
        };
        let mut connections = tokio::task::JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        let state = state.clone();
                        connections.spawn(async move {
                            if let Err(err) = handle(state, stream).await {
                                tracing::debug!(error = %err, "admin socket connection ended");
                            }
                        });
                    }
                    Err(err) => tracing::warn!(error = %err, "admin socket: accept failed"),
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        connections.abort_all();
        while connections.join_next().await.is_some() {}
        drop(listener);
        remove_if_ours(&self.path, self.id);
    }
}

fn remove_if_ours(path: &Path, id: (u64, u64)) {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if (meta.dev(), meta.ino()) == id {
            if let Err(err) = std::fs::remove_file(path) {
                tracing::warn!(error = %err, "admin socket: could not remove the socket file");
            }
        }
    }
}

async fn send(out: &mut (impl AsyncWrite + Unpin), frame: &Frame) -> io::Result<()> {
    let mut line = serde_json::to_vec(frame).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line).await?;
    out.flush().await
}

async fn handle(state: AppState, stream: UnixStream) -> io::Result<()> {
    let peer = stream.peer_cred()?;
    if peer.uid() != own_uid() {
        tracing::warn!(peer.uid = peer.uid(), peer.pid = peer.pid(), "admin socket: refused a peer with another uid");
        return Ok(());
    }
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST_BYTES);
    let got =
        tokio::time::timeout(state.settings.sandbox.admin_request_timeout, reader.read_until(b'\n', &mut line)).await;
    let request = match got {
        Ok(Ok(_)) => serde_json::from_slice::<Request>(&line).map_err(|e| format!("bad request: {e}")),
        Ok(Err(err)) => return Err(err),
        Err(_) => Err("no request within sandbox.admin_request_timeout".to_owned()),
    };
    let Request::Exec(call) = match request {
        Ok(r) => r,
        Err(message) => return send(&mut write, &Frame::Error { message }).await,
    };
    let end = match exec(&state, call, &mut write).await {
        Ok(code) => Frame::Exit { code },
        Err(message) => Frame::Error { message },
    };
    send(&mut write, &end).await
}

/// Runs the call in the server's manager, streaming output to `out`; the exit code or a
/// message for the operator.
async fn exec(state: &AppState, call: ExecCall, out: &mut (impl AsyncWrite + Unpin)) -> Result<i32, String> {
    let Some(manager) = &state.sandbox else {
        let why = state.sandbox_unavailable.as_deref().unwrap_or("no sandbox manager");
        return Err(format!("this server has no sandboxes: {why}"));
    };
    if call.argv.is_empty() {
        return Err("no command given".to_owned());
    }
    let max = state.settings.sandbox.max_exec_timeout;
    if call.timeout.is_zero() || call.timeout > max {
        return Err(format!("the timeout must be between 1 ms and sandbox.max_exec_timeout ({} s)", max.as_secs()));
    }
    let tier =
        state.runtime.tier_of(call.instance).await.map_err(|e| format!("looking up the instance's tier: {e}"))?;
    let key = authorize_exec(state.store.as_ref(), call.instance, call.user.as_deref(), tier)
        .await
        .map_err(|e| e.to_string())?;
    let mut request = ExecRequest::new(call.argv).with_timeout(call.timeout);
    request.stdin = ExecStdio::Null;
    // The instance policy's egress allowlist is not stored yet: empty, so nothing is reachable.
    let process = manager.exec(&key, EgressPolicy::default(), request).await;
    let mut process = match process {
        Ok(p) => p,
        Err(err) => {
            record_operator_exec(state.store.as_ref(), state.clock.as_ref(), &key, None).await;
            return Err(format!("starting the command in the sandbox: {err}"));
        }
    };
    tracing::info!(instance.id = %key.instance, member.id = %key.member, "operator exec through the admin socket");
    pump(process.stdout.take(), process.stderr.take(), out).await;
    let outcome = process.wait().await;
    let code = outcome.as_ref().ok().map(|o| o.code);
    record_operator_exec(state.store.as_ref(), state.clock.as_ref(), &key, code).await;
    outcome.map(|o| o.code).map_err(|e| format!("running the command in the sandbox: {e}"))
}

async fn read_some(reader: &mut Option<impl AsyncRead + Unpin>, buf: &mut [u8]) -> io::Result<usize> {
    match reader {
        Some(r) => r.read(buf).await,
        None => std::future::pending().await,
    }
}

/// Forwards both output streams until they end. If the client goes away the pipes are closed,
/// so the command gets `SIGPIPE` or, at worst, runs into its timeout.
async fn pump(
    mut stdout: Option<impl AsyncRead + Unpin>,
    mut stderr: Option<impl AsyncRead + Unpin>,
    out: &mut (impl AsyncWrite + Unpin),
) {
    let (mut bo, mut be) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    while stdout.is_some() || stderr.is_some() {
        let frame = tokio::select! {
            r = read_some(&mut stdout, &mut bo) => match r {
                Ok(n) if n > 0 => Some(Frame::Stdout { data: BASE64.encode(&bo[..n]) }),
                _ => { stdout = None; None }
            },
            r = read_some(&mut stderr, &mut be) => match r {
                Ok(n) if n > 0 => Some(Frame::Stderr { data: BASE64.encode(&be[..n]) }),
                _ => { stderr = None; None }
            },
        };
        if let Some(frame) = frame {
            if send(out, &frame).await.is_err() {
                return;
            }
        }
    }
}

/// The client side, for `clawden sandbox exec`.
pub mod client {
    use super::*;

    /// Why the client could not get an answer.
    #[derive(Debug, thiserror::Error)]
    pub enum ClientError {
        /// Talking to the socket failed.
        #[error("admin socket: {0}")]
        Io(#[from] io::Error),
        /// The server answered something unexpected.
        #[error("admin socket: {0}")]
        Protocol(String),
        /// The server refused or failed; nothing ran, or the sandbox failed.
        #[error("{0}")]
        Refused(String),
    }

    /// Connects to a running server's socket. `None` when no server listens there (no file,
    /// or a stale one), so the caller can take the one-shot path; an error when one listens
    /// but is not ours.
    pub async fn connect(path: &Path) -> Result<Option<UnixStream>, ClientError> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() => {}
            _ => return Ok(None),
        }
        let stream = match UnixStream::connect(path).await {
            Ok(s) => s,
            Err(e) if matches!(e.kind(), io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound) => {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        };
        // Only ever hand a command to a server of our own uid.
        if stream.peer_cred()?.uid() != own_uid() {
            return Err(ClientError::Protocol(format!("{} belongs to another user", path.display())));
        }
        Ok(Some(stream))
    }

    /// Sends `call`, copies output frames to `stdout` and `stderr` as they come, and returns
    /// the command's exit code.
    pub async fn exec(
        stream: UnixStream,
        call: ExecCall,
        stdout: &mut (impl AsyncWrite + Unpin),
        stderr: &mut (impl AsyncWrite + Unpin),
    ) -> Result<i32, ClientError> {
        let (read, mut write) = stream.into_split();
        let mut line = serde_json::to_vec(&Request::Exec(call)).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push(b'\n');
        write.write_all(&line).await?;
        write.flush().await?;
        let mut reader = BufReader::new(read);
        loop {
            let mut line = Vec::new();
            let n = (&mut reader).take(MAX_FRAME_BYTES).read_until(b'\n', &mut line).await?;
            if n == 0 {
                return Err(ClientError::Protocol("the server closed the connection before the command ended".into()));
            }
            let frame: Frame = serde_json::from_slice(&line).map_err(|e| ClientError::Protocol(e.to_string()))?;
            match frame {
                Frame::Stdout { data } => {
                    stdout.write_all(&decode(&data)?).await?;
                    stdout.flush().await?;
                }
                Frame::Stderr { data } => {
                    stderr.write_all(&decode(&data)?).await?;
                    stderr.flush().await?;
                }
                Frame::Exit { code } => return Ok(code),
                Frame::Error { message } => return Err(ClientError::Refused(message)),
            }
        }
    }

    fn decode(data: &str) -> Result<Vec<u8>, ClientError> {
        BASE64.decode(data.as_bytes()).map_err(|e| ClientError::Protocol(e.to_string()))
    }
}
