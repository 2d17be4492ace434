//! Shared set-up for the sandbox integration tests: a backend pointed at the crate's own helper
//! binary, throwaway volumes, and the skip-or-fail rule for kernels without isolation.

#![allow(dead_code)]

use clawden_core::{InstanceId, UserId};
use clawden_sandbox::{
    BackendConfig, ExecOutput, ExecRequest, Limits, LocalSandboxes, Sandbox, SandboxConfig, SandboxKey,
    WorkspaceStorage,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const HELPER: &str = env!("CARGO_BIN_EXE_clawden-sandbox-helper");
pub const ATTEMPT: &str = env!("CARGO_BIN_EXE_clawden-sandbox-attempt");

/// Skips a test that needs something this machine lacks — except under CI (`CI=true`), where a
/// test that would skip fails instead, so that a green CI run always means the promises held.
pub fn skip(reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and this test cannot run here: {reason}");
    }
    eprintln!("SKIPPED: {reason}");
}

pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A backend and a temporary directory for its state and the volumes of its sandboxes.
pub struct Harness {
    pub backend: LocalSandboxes,
    pub dir: tempfile::TempDir,
}

/// The backend, or `None` (after [`skip`]) when the kernel cannot isolate.
pub fn harness() -> Option<Harness> {
    harness_with(|_| {})
}

pub fn harness_with(adjust: impl FnOnce(&mut BackendConfig)) -> Option<Harness> {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("tempdir: {e}"),
    };
    let mut config = BackendConfig::new(HELPER, dir.path().join("state"));
    config.cgroup_parent = "clawden-test".to_owned();
    config.require_quota = false;
    config.require_cgroups = is_root();
    adjust(&mut config);
    match LocalSandboxes::new(config) {
        Ok(backend) => Some(Harness { backend, dir }),
        Err(e) => {
            skip(&format!("sandbox backend unavailable: {e}"));
            None
        }
    }
}

/// Small limits so that every attempt is bounded.
pub fn small_limits() -> Limits {
    Limits {
        memory_bytes: 128 << 20,
        swap_bytes: 0,
        pids: 64,
        cpu_millicores: 1000,
        exec_timeout: Duration::from_secs(20),
        workspace_quota_bytes: 16 << 20,
        tmp_bytes: 8 << 20,
        open_files: 256,
    }
}

/// One sandbox under test.
pub struct Sbx {
    pub key: SandboxKey,
    pub config: SandboxConfig,
}

impl Harness {
    pub fn config(&self, name: &str, storage: WorkspaceStorage, limits: Limits) -> SandboxConfig {
        SandboxConfig { volume_dir: self.dir.path().join("volumes").join(name), storage, limits }
    }

    /// Starts a sandbox with a plain-directory workspace and small limits.
    pub async fn start(&self, name: &str) -> Sbx {
        self.start_with(name, WorkspaceStorage::Directory, small_limits()).await
    }

    pub async fn start_with(&self, name: &str, storage: WorkspaceStorage, limits: Limits) -> Sbx {
        let key = SandboxKey { instance: InstanceId::new(), member: UserId::new() };
        self.start_key(name, key, storage, limits).await
    }

    /// Starts the sandbox of a given (instance, member).
    pub async fn start_key(&self, name: &str, key: SandboxKey, storage: WorkspaceStorage, limits: Limits) -> Sbx {
        let config = self.config(name, storage, limits);
        if let Err(e) = self.backend.start(&key, &config).await {
            panic!("starting sandbox {name}: {e}");
        }
        Sbx { key, config }
    }

    pub async fn sh(&self, b: &Sbx, script: &str) -> ExecOutput {
        self.run(b, ExecRequest::shell(script)).await
    }

    pub async fn run(&self, b: &Sbx, request: ExecRequest) -> ExecOutput {
        match self.backend.exec_collect(&b.key, request, Vec::new(), 1 << 20).await {
            Ok(out) => out,
            Err(e) => panic!("exec failed: {e}"),
        }
    }

    /// Runs with the request's own stdio settings (for handing in a terminal) and collects the
    /// piped ones.
    pub async fn run_keep_stdin(&self, b: &Sbx, request: ExecRequest) -> ExecOutput {
        use tokio::io::AsyncReadExt;
        let mut process = self.backend.exec(&b.key, request).await.expect("exec");
        let mut stdout = Vec::new();
        if let Some(mut s) = process.stdout.take() {
            let _ = s.read_to_end(&mut stdout).await;
        }
        let mut stderr = Vec::new();
        if let Some(mut s) = process.stderr.take() {
            let _ = s.read_to_end(&mut stderr).await;
        }
        let outcome = process.wait().await.expect("wait");
        ExecOutput { outcome, stdout, stderr }
    }

    /// Copies the attempt program into the workspace as `/workspace/attempt`.
    pub async fn install_attempt(&self, b: &Sbx) {
        let bytes = std::fs::read(ATTEMPT).expect("attempt binary");
        self.backend.write_file(&b.key, Path::new("attempt"), &bytes).await.expect("write attempt");
        let out = self.sh(b, "chmod 755 /workspace/attempt").await;
        assert!(out.outcome.success(), "chmod: {out:?}");
    }

    /// Runs one attempt inside the sandbox and returns its one-line verdict.
    pub async fn attempt(&self, b: &Sbx, args: &[&str]) -> String {
        let mut argv = vec!["/workspace/attempt"];
        argv.extend_from_slice(args);
        let out = self.run(b, ExecRequest::new(argv).with_timeout(Duration::from_secs(20))).await;
        assert_eq!(out.outcome.code, 0, "attempt {args:?} did not run: {} {}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    }

    pub async fn finish(&self, b: Sbx) {
        self.backend.destroy(&b.key, &b.config).await.expect("destroy");
    }

    pub fn workspace(&self, b: &Sbx) -> PathBuf {
        b.config.workspace_host_dir()
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts that an attempt was refused by the kernel with `EPERM`, the answer of the seccomp
/// filter (so the test fails if the call went through, and also if it failed for an unrelated
/// reason such as the kernel lacking the feature).
pub fn assert_eperm(verdict: &str, what: &str) {
    assert_eq!(verdict, "denied errno=1", "{what} was not refused by the sandbox: {verdict}");
}

/// Host pids whose command line starts with `marker`. The tests look from the host: inside, each
/// exec is its own Landlock domain and cannot see the processes of another.
pub fn host_processes_with(marker: &str) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.starts_with(marker) {
                found.push(pid);
            }
        }
    }
    found
}

/// Waits up to `limit` for no host process to match `marker`.
pub async fn wait_until_gone(marker: &str, limit: std::time::Duration) -> Vec<u32> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = host_processes_with(marker);
        if left.is_empty() || std::time::Instant::now() > deadline {
            return left;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}
