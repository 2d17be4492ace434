//! `clawden sandbox exec` as an operator uses it without a server: exit codes, timeouts, the
//! base-tier refusal, and a workspace left sealed on disk.

#![allow(clippy::unwrap_used)]

#[path = "support/sandbox.rs"]
mod sandbox;

use sandbox::sandbox_available;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn clawden(data: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_clawden"));
    cmd.arg("--data-dir").arg(data).env_remove("CLAWDEN_DATABASE_URL").env("CLAWDEN_LOG", "warn");
    cmd
}

fn with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

/// Creates a user and returns the id of their instance.
fn create_user(data: &Path, email: &str, tier: &str) -> String {
    let mut cmd = clawden(data);
    cmd.args(["admin", "create-user", "--email", email, "--tier", tier]);
    let out = with_stdin(cmd, "orchid-window-falls\n");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.trim().rsplit(' ').next().unwrap().to_owned()
}

fn exec(data: &Path, instance: &str, user: &str, extra: &[&str], argv: &[&str]) -> Output {
    let mut cmd = clawden(data);
    cmd.args(["sandbox", "exec", "--instance", instance, "--user", user]).args(extra).arg("--").args(argv);
    cmd.stdin(Stdio::null()).output().unwrap()
}

fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            seen += 1;
            assert!(seen < 100_000);
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file()
                && std::fs::read(e.path()).unwrap_or_default().windows(needle.len()).any(|w| w == needle)
            {
                found.push(e.path());
            }
        }
    }
    found
}

#[test]
fn the_commands_output_and_exit_code_pass_through() {
    if !sandbox_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let instance = create_user(dir.path(), "inv@example.com", "invite");
    let out = exec(dir.path(), &instance, "inv@example.com", &[], &["sh", "-c", "echo hello; echo oops >&2; exit 7"]);
    assert_eq!(out.status.code(), Some(7), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("oops"));
    let out = exec(dir.path(), &instance, "inv@example.com", &[], &["true"]);
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_command_past_its_timeout_exits_124() {
    if !sandbox_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let instance = create_user(dir.path(), "inv@example.com", "invite");
    let started = Instant::now();
    let out = exec(dir.path(), &instance, "inv@example.com", &["--timeout", "1s"], &["sleep", "30"]);
    assert_eq!(out.status.code(), Some(124), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(20));
}

#[test]
fn a_base_tier_instance_has_no_sandbox() {
    // No sandbox is needed to refuse: this runs everywhere.
    let dir = tempfile::tempdir().unwrap();
    let instance = create_user(dir.path(), "base@example.com", "base");
    let out = exec(dir.path(), &instance, "base@example.com", &[], &["true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("base tier") && err.contains("no sandbox and no tools"), "{err}");
    assert!(!dir.path().join("sandbox").join("volumes").exists(), "nothing was started");
    // A user who is not a member is refused; without --user the owner's sandbox is meant,
    // and the owner's base tier refuses it the same way.
    create_user(dir.path(), "other@example.com", "invite");
    let out = exec(dir.path(), &instance, "other@example.com", &[], &["true"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a member"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = clawden(dir.path()).args(["sandbox", "exec", "--instance", &instance, "--", "true"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("base tier"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn after_the_command_the_workspace_is_sealed() {
    if !sandbox_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let instance = create_user(dir.path(), "inv@example.com", "invite");
    // Built at run time so the marker is nowhere but in the workspace.
    let marker = format!("marker-{}-{}", std::process::id(), Instant::now().elapsed().as_nanos() ^ 0x5eed);
    let script = format!("echo {marker} > note; mkdir -p sub; echo {marker} > sub/deep");
    let out = exec(dir.path(), &instance, "inv@example.com", &[], &["sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let hits = files_containing(dir.path(), marker.as_bytes());
    assert!(hits.is_empty(), "plaintext marker under the data dir: {hits:?}");
    let sealed: Vec<_> = files_containing(dir.path(), b"CLAWDSTR");
    assert_eq!(sealed.len(), 1, "{sealed:?}");
    assert!(sealed[0].ends_with("workspace.sealed"));
    // The next run unseals it.
    let out = exec(dir.path(), &instance, "inv@example.com", &[], &["cat", "note", "sub/deep"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{marker}\n{marker}\n"));
    assert!(files_containing(dir.path(), marker.as_bytes()).is_empty());
}
