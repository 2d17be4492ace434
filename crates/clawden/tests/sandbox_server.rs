//! `clawden sandbox exec` against a running `clawden serve`: it goes through the server's local
//! admin socket (0600), runs in the sandbox the server's manager keeps warm, passes output and
//! exit codes through, and the server seals every workspace when it stops.

#![allow(clippy::unwrap_used)]

#[path = "support/sandbox.rs"]
mod sandbox;

use sandbox::sandbox_available;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn clawden(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clawden"));
    cmd.arg("--data-dir").arg(data).env_remove("CLAWDEN_DATABASE_URL").env("CLAWDEN_LOG", "warn");
    cmd
}

/// Creates a user and returns the id of their instance.
fn create_user(data: &Path, email: &str, tier: &str) -> String {
    let mut cmd = clawden(data);
    cmd.args(["admin", "create-user", "--email", email, "--tier", tier]);
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"orchid-window-falls\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().rsplit(' ').next().unwrap().to_owned()
}

/// A `clawden serve` on a data dir, stopped with SIGTERM (a graceful shutdown) when dropped.
struct RunningServer {
    child: Option<Child>,
}

impl RunningServer {
    fn start(data: &Path) -> Self {
        let mut child = clawden(data)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let server = RunningServer { child: Some(child) };
        assert!(line.starts_with("listening on http://127.0.0.1:"), "the server did not start: {line:?}");
        server
    }

    /// Sends SIGTERM and waits (bounded) for a clean exit.
    fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().unwrap();
        let pid = child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the server did not stop within 60 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

fn exec(data: &Path, instance: &str, extra: &[&str], argv: &[&str]) -> Output {
    let mut cmd = clawden(data);
    cmd.args(["sandbox", "exec", "--instance", instance]).args(extra).arg("--").args(argv);
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn exec_goes_through_the_running_servers_warm_sandbox() {
    if !sandbox_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let instance = create_user(data, "inv@example.com", "invite");
    let mut server = RunningServer::start(data);

    let socket = data.join("admin.sock");
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the admin socket is 0600");

    // Output and exit code pass through; the default member is the owner.
    let out = exec(data, &instance, &[], &["sh", "-c", "echo hello; echo oops >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
    assert!(text(&out.stderr).contains("oops"));

    // The server keeps the sandbox warm: its private /tmp survives between two execs, which a
    // one-shot start and stop would not allow.
    let out = exec(data, &instance, &["--user", "inv@example.com"], &["sh", "-c", "echo warm-7c1 > /tmp/marker"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = exec(data, &instance, &[], &["cat", "/tmp/marker"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "warm-7c1\n");

    // The timeout is the operator's, and ends in 124.
    let started = Instant::now();
    let out = exec(data, &instance, &["--timeout", "1s"], &["sleep", "30"]);
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(20));

    // A workspace file written through the server is sealed when the server stops.
    let out = exec(data, &instance, &[], &["sh", "-c", "echo plaintext-marker-5d2e > /workspace/note.txt"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let status = server.stop();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    assert!(!socket.exists(), "the socket file is removed at shutdown");
    let volumes = data.join("sandbox").join("volumes");
    let sealed: Vec<_> = std::fs::read_dir(&volumes)
        .unwrap()
        .flatten()
        .filter(|e| e.path().join("workspace.sealed").is_file())
        .collect();
    assert_eq!(sealed.len(), 1, "one sealed workspace under {}", volumes.display());
    assert!(!sealed[0].path().join("workspace.img").exists(), "no plaintext volume is left");

    // Without the server the one-shot path finds the sealed workspace again.
    let out = exec(data, &instance, &[], &["cat", "/workspace/note.txt"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "plaintext-marker-5d2e\n");
}

#[test]
fn the_server_refuses_base_tier_and_non_members_over_the_socket() {
    // The socket exists and the checks run whether or not this kernel can sandbox.
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let base = create_user(data, "base@example.com", "base");
    create_user(data, "other@example.com", "invite");
    let _server = RunningServer::start(data);
    assert!(data.join("admin.sock").exists());

    let out = exec(data, &base, &[], &["true"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("base tier") && err.contains("no sandbox and no tools"), "{err}");

    let out = exec(data, &base, &["--user", "other@example.com"], &["true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("not a member"), "{}", text(&out.stderr));
    assert!(!data.join("sandbox").join("volumes").exists(), "nothing was started");
}

#[test]
fn a_stale_socket_file_does_not_stop_the_one_shot_path_or_a_new_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let base = create_user(data, "base@example.com", "base");
    // A socket nobody listens on, as a crashed server leaves behind.
    drop(std::os::unix::net::UnixListener::bind(data.join("admin.sock")).unwrap());
    assert!(data.join("admin.sock").exists());
    // The CLI takes the one-shot path (which refuses the base tier itself).
    let out = exec(data, &base, &[], &["true"]);
    assert!(text(&out.stderr).contains("base tier"), "{}", text(&out.stderr));
    // A new server replaces the stale socket.
    let mut server = RunningServer::start(data);
    let mode = std::fs::metadata(data.join("admin.sock")).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(server.stop().success());
    assert!(!data.join("admin.sock").exists());
}
