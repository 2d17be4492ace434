//! The local Linux backend: sandboxes built by the helper from namespaces, seccomp, Landlock and
//! cgroups on this machine.

pub(crate) mod ids;

use crate::api::{ExecOutcome, ExecProcess, ExecRequest, ExecStdio, Sandbox, SandboxStatus};
use crate::config::{BackendConfig, SandboxConfig, SandboxKey, WorkspaceStorage};
use crate::error::{Error, Result};
use crate::plan::{CommandPlan, SandboxPlan, Target};
use crate::probe::{probe, Capabilities};
use crate::{files, HELPER_SUBCOMMAND};
use async_trait::async_trait;
use ids::HostIds;
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::Mutex;

/// How long a helper may take to build a sandbox (the first start formats the volume).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a monitor may take to tear a sandbox down.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Extra time the library gives the helper past an exec's own timeout before killing it.
const EXEC_GRACE: Duration = Duration::from_secs(5);

/// A sandbox this process started.
#[derive(Debug)]
struct Running {
    monitor: Mutex<Child>,
    control: Mutex<Option<ChildStdin>>,
    target: Target,
    workspace: PathBuf,
    ids: HostIds,
    config: SandboxConfig,
}

/// What the lifecycle manager needs to know about a running sandbox.
#[derive(Debug, Clone)]
pub(crate) struct RunningInfo {
    pub workspace: PathBuf,
    pub ids: HostIds,
    pub init_pid: i32,
    pub userns_ino: u64,
}

/// The local Linux backend. One value serves every sandbox of the process; it is cheap to share
/// behind an `Arc`.
#[derive(Debug)]
pub struct LocalSandboxes {
    config: BackendConfig,
    capabilities: Capabilities,
    running: Mutex<HashMap<SandboxKey, Arc<Running>>>,
}

impl LocalSandboxes {
    /// Checks the kernel against the configuration and fails closed: if any required isolation
    /// feature is missing, this returns [`Error::Unsupported`] and no tool can run.
    pub fn new(config: BackendConfig) -> Result<Self> {
        let capabilities = probe();
        let missing = capabilities.missing(&config);
        if !missing.is_empty() {
            return Err(Error::Unsupported { missing: missing.join(", ") });
        }
        if !config.helper.is_file() {
            return Err(Error::InvalidConfig("the helper executable does not exist"));
        }
        if config.cgroup_parent.is_empty()
            || config.cgroup_parent.contains("..")
            || config.cgroup_parent.starts_with('/')
        {
            return Err(Error::InvalidConfig("cgroup_parent must be a relative name"));
        }
        std::fs::create_dir_all(&config.state_dir).map_err(Error::io("creating the state directory"))?;
        Ok(LocalSandboxes { config, capabilities, running: Mutex::new(HashMap::new()) })
    }

    /// Where a running sandbox's workspace is on the host, who owns it, and its first process.
    pub(crate) async fn running_info(&self, key: &SandboxKey) -> Result<RunningInfo> {
        let r = self.get(key).await?;
        Ok(RunningInfo {
            workspace: r.workspace.clone(),
            ids: r.ids,
            init_pid: r.target.init_pid,
            userns_ino: r.target.userns_ino,
        })
    }

    /// What the kernel offered when this backend was created.
    pub fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn helper(&self, mode: &str) -> Command {
        let mut cmd = Command::new(&self.config.helper);
        cmd.arg(HELPER_SUBCOMMAND).arg(mode);
        // Nothing of the server's environment (keys, tokens) reaches the helper or the sandbox.
        cmd.env_clear();
        cmd
    }

    fn sandbox_plan(&self, key: &SandboxKey, config: &SandboxConfig, ids: HostIds) -> Result<SandboxPlan> {
        let limits = &config.limits;
        if limits.memory_bytes < (16 << 20) || limits.pids < 4 || limits.cpu_millicores == 0 {
            return Err(Error::InvalidConfig("limits are too small to run anything"));
        }
        if !config.volume_dir.is_absolute() {
            return Err(Error::InvalidConfig("volume_dir must be absolute"));
        }
        let image = match config.storage {
            WorkspaceStorage::QuotaImage => {
                if !self.capabilities.quota_volumes {
                    return Err(Error::Unsupported {
                        missing: "workspace quota volumes (root, loop devices, mkfs.ext4)".into(),
                    });
                }
                Some(config.workspace_image())
            }
            WorkspaceStorage::Directory => {
                if self.config.require_quota {
                    return Err(Error::InvalidConfig(
                        "a workspace without quota was asked for, but require_quota is set",
                    ));
                }
                None
            }
        };
        std::fs::create_dir_all(&config.volume_dir).map_err(Error::io("creating the volume directory"))?;
        Ok(SandboxPlan {
            host_uid: ids.uid,
            host_gid: ids.gid,
            id_count: ids.count,
            unprivileged: ids.unprivileged,
            workspace: config.workspace_host_dir(),
            image,
            quota_bytes: limits.workspace_quota_bytes,
            cgroups: self.capabilities.cgroups.sandbox_dirs(&self.config.cgroup_parent, &key.name()),
            memory_bytes: limits.memory_bytes,
            swap_bytes: limits.swap_bytes,
            pids: limits.pids,
            cpu_millicores: limits.cpu_millicores,
            tmp_bytes: limits.tmp_bytes,
            hostname: "sandbox".to_owned(),
            template_dir: self.config.state_dir.join("templates"),
        })
    }

    async fn get(&self, key: &SandboxKey) -> Result<Arc<Running>> {
        let mut running = self.running.lock().await;
        let Some(r) = running.get(key).cloned() else {
            return Err(Error::NotRunning);
        };
        let alive = matches!(r.monitor.lock().await.try_wait(), Ok(None));
        if !alive {
            running.remove(key);
            return Err(Error::NotRunning);
        }
        Ok(r)
    }

    /// Runs one command in a fresh sandbox that exists only for it (the one-shot path of
    /// `clawden sandbox exec` without a server): build, run, tear down. Streams go to `request`'s
    /// stdio settings; piped streams are not available here, so they are treated as inherited.
    pub async fn run_once(
        &self,
        key: &SandboxKey,
        config: &SandboxConfig,
        request: ExecRequest,
    ) -> Result<ExecOutcome> {
        if self.running.lock().await.contains_key(key) {
            return Err(Error::InvalidConfig("this sandbox is already running; use exec"));
        }
        let ids = ids::host_ids(&self.config, key, self.capabilities.running_as_root)?;
        let plan = self.sandbox_plan(key, config, ids)?;
        let timeout = request.timeout.unwrap_or(config.limits.exec_timeout);
        let command = command_plan(&request, config, timeout);
        let mut args = Vec::new();
        plan.to_args(&mut args);
        command.to_args(&mut args);
        let mut cmd = self.helper("run");
        cmd.kill_on_drop(true);
        cmd.args(args);
        cmd.stdin(stdio(request.stdin, true)?);
        cmd.stdout(stdio(request.stdout, true)?);
        cmd.stderr(stdio(request.stderr, true)?);
        let mut child = cmd.spawn().map_err(Error::io("spawning the sandbox helper"))?;
        let status = wait_with_backstop(&mut child, timeout + START_TIMEOUT).await?;
        Ok(status)
    }
}

fn stdio(s: ExecStdio, piped_means_inherit: bool) -> Result<Stdio> {
    Ok(match s {
        ExecStdio::Null => Stdio::null(),
        ExecStdio::Piped if piped_means_inherit => Stdio::inherit(),
        ExecStdio::Piped => Stdio::piped(),
        ExecStdio::Inherit => Stdio::inherit(),
        ExecStdio::Fd(fd) => Stdio::from(fd),
    })
}

fn command_plan(request: &ExecRequest, config: &SandboxConfig, timeout: Duration) -> CommandPlan {
    let mut env: Vec<OsString> = vec![
        "PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin".into(),
        "HOME=/workspace".into(),
        "LANG=C.UTF-8".into(),
        "TMPDIR=/tmp".into(),
    ];
    for (k, v) in &request.env {
        env.push(format!("{k}={v}").into());
    }
    CommandPlan {
        timeout_ms: timeout.as_millis().max(1) as u64,
        cwd: request.cwd.clone(),
        env,
        open_files: config.limits.open_files,
        pids: config.limits.pids,
        argv: request.argv.clone(),
    }
}

fn outcome_of(status: std::process::ExitStatus) -> ExecOutcome {
    let code = match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(sig)) => 128 + sig,
        (None, None) => crate::EXIT_SANDBOX_FAILURE,
    };
    ExecOutcome { code }
}

/// Waits for a helper; if it overstays `limit` (it enforces the real timeout itself), kills it,
/// which kills its command through the parent-death signal.
async fn wait_with_backstop(child: &mut Child, limit: Duration) -> Result<ExecOutcome> {
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => Ok(outcome_of(status.map_err(Error::io("waiting for the sandbox helper"))?)),
        Err(_) => {
            let _ = child.kill().await;
            Ok(ExecOutcome { code: crate::EXIT_TIMEOUT })
        }
    }
}

#[async_trait]
impl Sandbox for LocalSandboxes {
    async fn start(&self, key: &SandboxKey, config: &SandboxConfig) -> Result<SandboxStatus> {
        if self.get(key).await.is_ok() {
            return Ok(SandboxStatus::Running);
        }
        let ids = ids::host_ids(&self.config, key, self.capabilities.running_as_root)?;
        let plan = self.sandbox_plan(key, config, ids)?;
        let mut args = Vec::new();
        plan.to_args(&mut args);
        let mut cmd = self.helper("start");
        cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = cmd.spawn().map_err(Error::io("spawning the sandbox helper"))?;
        let stdout = child.stdout.take().ok_or_else(|| Error::Helper("no stdout pipe".into()))?;
        let mut line = String::new();
        let read = tokio::time::timeout(START_TIMEOUT, BufReader::new(stdout).read_line(&mut line)).await;
        let ready = match read {
            Ok(Ok(_)) => parse_ready(&line),
            Ok(Err(e)) => Err(Error::Io { context: "reading the sandbox helper", source: e }),
            Err(_) => Err(Error::HelperTimeout(START_TIMEOUT)),
        };
        let (init_pid, userns_ino) = match ready {
            Ok(r) => r,
            Err(e) => {
                let _ = child.kill().await;
                return Err(e);
            }
        };
        let control = child.stdin.take();
        let running = Running {
            monitor: Mutex::new(child),
            control: Mutex::new(control),
            target: Target { init_pid, userns_ino, cgroups: plan.cgroups.clone() },
            workspace: plan.workspace.clone(),
            ids,
            config: config.clone(),
        };
        self.running.lock().await.insert(*key, Arc::new(running));
        Ok(SandboxStatus::Running)
    }

    async fn exec(&self, key: &SandboxKey, request: ExecRequest) -> Result<ExecProcess> {
        let running = self.get(key).await?;
        let timeout = request.timeout.unwrap_or(running.config.limits.exec_timeout);
        let command = command_plan(&request, &running.config, timeout);
        let mut args = Vec::new();
        running.target.to_args(&mut args);
        command.to_args(&mut args);
        let mut cmd = self.helper("exec");
        // Dropping the exec (a cancelled tool call) kills the helper, and with it, through the
        // parent-death signal, the command's whole PID namespace.
        cmd.kill_on_drop(true);
        cmd.args(args)
            .stdin(stdio(request.stdin, false)?)
            .stdout(stdio(request.stdout, false)?)
            .stderr(stdio(request.stderr, false)?);
        let mut child = cmd.spawn().map_err(Error::io("spawning the sandbox helper"))?;
        let stdin = child.stdin.take().map(|s| Box::pin(s) as crate::api::ExecWriter);
        let stdout = child.stdout.take().map(|s| Box::pin(s) as crate::api::ExecReader);
        let stderr = child.stderr.take().map(|s| Box::pin(s) as crate::api::ExecReader);
        let waiter = async move { wait_with_backstop(&mut child, timeout + EXEC_GRACE).await };
        Ok(ExecProcess::new(stdin, stdout, stderr, waiter))
    }

    async fn read_file(&self, key: &SandboxKey, path: &Path, max_bytes: u64) -> Result<Vec<u8>> {
        let running = self.get(key).await?;
        let root = running.workspace.clone();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || files::read_beneath(&root, &path, max_bytes))
            .await
            .map_err(|e| Error::Helper(format!("file task failed: {e}")))?
    }

    async fn write_file(&self, key: &SandboxKey, path: &Path, contents: &[u8]) -> Result<()> {
        let running = self.get(key).await?;
        let root = running.workspace.clone();
        let path = path.to_path_buf();
        let data = contents.to_vec();
        let (uid, gid) = (running.ids.uid, running.ids.gid);
        tokio::task::spawn_blocking(move || files::write_beneath(&root, &path, &data, uid, gid))
            .await
            .map_err(|e| Error::Helper(format!("file task failed: {e}")))?
    }

    async fn stop(&self, key: &SandboxKey) -> Result<()> {
        let Some(running) = self.running.lock().await.remove(key) else {
            return Ok(());
        };
        if let Some(mut control) = running.control.lock().await.take() {
            let _ = control.write_all(b"stop\n").await;
        }
        let mut monitor = running.monitor.lock().await;
        match tokio::time::timeout(STOP_TIMEOUT, monitor.wait()).await {
            Ok(Ok(status)) if status.success() => Ok(()),
            Ok(Ok(status)) => Err(Error::Helper(format!("teardown failed ({status})"))),
            Ok(Err(e)) => Err(Error::Io { context: "waiting for the sandbox helper", source: e }),
            Err(_) => {
                let _ = monitor.kill().await;
                Err(Error::HelperTimeout(STOP_TIMEOUT))
            }
        }
    }

    async fn destroy(&self, key: &SandboxKey, config: &SandboxConfig) -> Result<()> {
        self.stop(key).await?;
        let workspace = config.workspace_host_dir();
        if is_mount_point(&workspace) {
            return Err(Error::Helper("the workspace volume is still mounted".into()));
        }
        match std::fs::remove_dir_all(&config.volume_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io { context: "deleting the workspace", source: e }),
        }
        let cgroups = self.capabilities.cgroups.sandbox_dirs(&self.config.cgroup_parent, &key.name());
        tokio::task::spawn_blocking(move || crate::helper::cgroup::remove(&cgroups))
            .await
            .map_err(|e| Error::Helper(format!("cgroup task failed: {e}")))?
            .map_err(Error::io("removing the sandbox's cgroups"))?;
        ids::release(&self.config, key);
        Ok(())
    }

    async fn status(&self, key: &SandboxKey) -> Result<SandboxStatus> {
        Ok(match self.get(key).await {
            Ok(_) => SandboxStatus::Running,
            Err(_) => SandboxStatus::Stopped,
        })
    }
}

fn is_mount_point(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(dir), dir.parent().map(std::fs::metadata)) {
        (Ok(me), Some(Ok(parent))) => me.dev() != parent.dev(),
        _ => false,
    }
}

fn parse_ready(line: &str) -> Result<(i32, u64)> {
    let mut words = line.split_whitespace();
    match words.next() {
        Some("ready") => {
            let pid = words.next().and_then(|w| w.parse().ok());
            let ino = words.next().and_then(|w| w.parse().ok());
            match (pid, ino) {
                (Some(pid), Some(ino)) => Ok((pid, ino)),
                _ => Err(Error::Helper(format!("unexpected answer {line:?}"))),
            }
        }
        Some("error") => Err(Error::Helper(line.trim_start_matches("error").trim().to_owned())),
        _ => Err(Error::Helper(if line.is_empty() {
            "the helper exited before the sandbox was ready".to_owned()
        } else {
            format!("unexpected answer {line:?}")
        })),
    }
}
