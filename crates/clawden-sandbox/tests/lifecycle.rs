//! The `Sandbox` trait on the local backend: lifecycle, streams, exit codes, workspace files.

mod support;

use clawden_sandbox::{probe, Error, ExecRequest, ExecStdio, Sandbox, SandboxStatus, WorkspaceStorage};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;
use tokio::io::AsyncReadExt;

macro_rules! harness_or_skip {
    () => {
        match harness() {
            Some(h) => h,
            None => return,
        }
    };
}

#[test]
fn the_probe_sees_the_isolation_this_machine_offers() {
    let caps = probe();
    if !caps.user_namespaces || !caps.seccomp {
        skip("this kernel lacks user namespaces or seccomp");
        return;
    }
    assert!(caps.pidfd);
    if is_root() {
        assert!(caps.cgroups.version.is_some(), "{caps:?}");
    }
}

#[tokio::test]
async fn a_sandbox_starts_runs_commands_and_stops() {
    let h = harness_or_skip!();
    let b = h.start("lifecycle").await;
    assert_eq!(h.backend.status(&b.key).await.expect("status"), SandboxStatus::Running);
    // Starting again is a no-op.
    h.backend.start(&b.key, &b.config).await.expect("restart");
    let out = h.sh(&b, "echo hello; echo oops >&2; exit 7").await;
    assert_eq!(text(&out.stdout), "hello\n");
    assert_eq!(text(&out.stderr), "oops\n");
    assert_eq!(out.outcome.code, 7);
    let missing = h.run(&b, ExecRequest::new(["no-such-program"])).await;
    assert_eq!(missing.outcome.code, 127, "{missing:?}");
    h.backend.stop(&b.key).await.expect("stop");
    assert_eq!(h.backend.status(&b.key).await.expect("status"), SandboxStatus::Stopped);
    match h.backend.exec(&b.key, ExecRequest::shell("true")).await {
        Err(Error::NotRunning) => {}
        other => panic!("exec after stop: {other:?}"),
    }
    h.finish(b).await;
}

#[tokio::test]
async fn stdin_and_stdout_stream_while_the_command_runs() {
    let h = harness_or_skip!();
    let b = h.start("streams").await;
    let out = h
        .backend
        .exec_collect(&b.key, ExecRequest::new(["tr", "a-z", "A-Z"]), b"shout\n".to_vec(), 1024)
        .await
        .expect("exec");
    assert_eq!(text(&out.stdout), "SHOUT\n");
    // The first line arrives before the command ends.
    let mut process =
        h.backend.exec(&b.key, ExecRequest::shell("echo first; sleep 2; echo second")).await.expect("exec");
    let mut stdout = process.stdout.take().expect("piped");
    let t = Instant::now();
    let mut buf = [0u8; 6];
    stdout.read_exact(&mut buf).await.expect("read");
    assert_eq!(&buf, b"first\n");
    assert!(t.elapsed() < Duration::from_millis(1500), "output was not streamed");
    let mut rest = Vec::new();
    stdout.read_to_end(&mut rest).await.expect("read");
    assert_eq!(rest, b"second\n");
    assert!(process.wait().await.expect("wait").success());
    h.finish(b).await;
}

#[tokio::test]
async fn execs_run_side_by_side() {
    let h = harness_or_skip!();
    let b = h.start("parallel").await;
    let t = Instant::now();
    let (a, c, d, e) = tokio::join!(
        h.sh(&b, "sleep 0.5; echo 0"),
        h.sh(&b, "sleep 0.5; echo 1"),
        h.sh(&b, "sleep 0.5; echo 2"),
        h.sh(&b, "sleep 0.5; echo 3"),
    );
    for (i, out) in [a, c, d, e].iter().enumerate() {
        assert_eq!(text(&out.stdout), format!("{i}\n"));
    }
    assert!(t.elapsed() < Duration::from_millis(1900), "execs were serialised: {:?}", t.elapsed());
    h.finish(b).await;
}

#[tokio::test]
async fn workspace_files_round_trip_and_belong_to_the_sandbox() {
    let h = harness_or_skip!();
    let b = h.start("files").await;
    h.backend.write_file(&b.key, Path::new("skills/demo/SKILL.md"), b"# demo\n").await.expect("write");
    let out = h.sh(&b, "cat /workspace/skills/demo/SKILL.md; echo more >> /workspace/skills/demo/SKILL.md").await;
    assert_eq!(text(&out.stdout), "# demo\n", "{out:?}");
    let back = h.backend.read_file(&b.key, Path::new("skills/demo/SKILL.md"), 1024).await.expect("read");
    assert_eq!(text(&back), "# demo\nmore\n");
    let meta = std::fs::metadata(h.workspace(&b).join("skills/demo/SKILL.md")).expect("meta");
    let root_owner = std::fs::metadata(h.workspace(&b)).expect("ws").uid();
    assert_eq!(meta.uid(), root_owner, "host-written file not owned by the sandbox");
    match h.backend.read_file(&b.key, Path::new("skills/demo/SKILL.md"), 3).await {
        Err(Error::FileTooLarge { limit: 3 }) => {}
        other => panic!("size limit ignored: {other:?}"),
    }
    h.finish(b).await;
}

#[tokio::test]
async fn host_file_access_never_follows_a_link_out_of_the_workspace() {
    let h = harness_or_skip!();
    let b = h.start("links").await;
    let out = h
        .sh(
            &b,
            "ln -s /etc/passwd /workspace/abs; ln -s ../../../../../../etc/hostname /workspace/up; \
             mkdir -p /workspace/d; ln -s / /workspace/d/root; mkfifo /workspace/fifo; echo ok",
        )
        .await;
    assert_eq!(text(&out.stdout), "ok\n", "{out:?}");
    for path in ["abs", "up", "d/root/etc/hostname", "../x", "/etc/hostname"] {
        match h.backend.read_file(&b.key, Path::new(path), 1 << 20).await {
            Err(Error::PathOutsideWorkspace(_)) => {}
            other => panic!("read {path}: {other:?}"),
        }
    }
    for path in ["abs", "up", "d/root/tmp/x"] {
        match h.backend.write_file(&b.key, Path::new(path), b"pwned").await {
            Err(Error::PathOutsideWorkspace(_)) | Err(Error::Io { .. }) => {}
            other => panic!("write {path}: {other:?}"),
        }
    }
    // A FIFO planted by the sandbox does not hang the server.
    let t = Instant::now();
    assert!(h.backend.read_file(&b.key, Path::new("fifo"), 1024).await.is_err());
    assert!(t.elapsed() < Duration::from_secs(2));
    h.finish(b).await;
}

#[tokio::test]
async fn a_quota_workspace_survives_a_restart_with_the_same_owner() {
    let h = harness_or_skip!();
    if !h.backend.capabilities().quota_volumes {
        skip("quota volumes need root, loop devices and mkfs.ext4");
        return;
    }
    let b = h.start_with("persist", WorkspaceStorage::QuotaImage, small_limits()).await;
    let out = h.sh(&b, "echo kept > /workspace/note; df -k /workspace | tail -1").await;
    assert!(out.outcome.success(), "{out:?}");
    let owner = std::fs::metadata(h.workspace(&b).join("note")).expect("note").uid();
    h.backend.stop(&b.key).await.expect("stop");
    assert!(!h.workspace(&b).join("note").exists(), "the volume stayed mounted after stop");
    h.backend.start(&b.key, &b.config).await.expect("start again");
    let out = h.sh(&b, "cat /workspace/note").await;
    assert_eq!(text(&out.stdout), "kept\n");
    assert_eq!(std::fs::metadata(h.workspace(&b).join("note")).expect("note").uid(), owner);
    h.finish(b).await;
}

#[tokio::test]
async fn a_one_shot_run_builds_and_removes_its_sandbox() {
    let h = harness_or_skip!();
    let key =
        clawden_sandbox::SandboxKey { instance: clawden_core::InstanceId::new(), member: clawden_core::UserId::new() };
    let config = h.config("oneshot", WorkspaceStorage::Directory, small_limits());
    let mut request = ExecRequest::shell("test -d /workspace && exit 3");
    request.stdout = ExecStdio::Null;
    let outcome = h.backend.run_once(&key, &config, request).await.expect("run");
    assert_eq!(outcome.code, 3);
    let mut request = ExecRequest::shell("sleep 10").with_timeout(Duration::from_millis(300));
    request.stdout = ExecStdio::Null;
    let outcome = h.backend.run_once(&key, &config, request).await.expect("run");
    assert_eq!(outcome.code, 124);
    h.backend.destroy(&key, &config).await.expect("destroy");
}

#[tokio::test]
async fn the_server_environment_does_not_reach_commands() {
    let h = harness_or_skip!();
    let b = h.start("env").await;
    let out = h.sh(&b, "env | sort").await;
    let env = text(&out.stdout);
    assert!(!env.contains("CARGO"), "{env}");
    assert!(env.contains("HOME=/workspace"), "{env}");
    h.finish(b).await;
}

#[tokio::test]
async fn commands_start_with_default_signal_handling() {
    let h = harness_or_skip!();
    let b = h.start("signals").await;
    let out = h.run(&b, ExecRequest::new(["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"])).await;
    assert_eq!(text(&out.stdout), "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n", "{out:?}");
    // A writer into a closed pipe dies of SIGPIPE, as it would outside.
    let out = h.sh(&b, "yes | head -n 1").await;
    assert_eq!(text(&out.stdout), "y\n");
    h.finish(b).await;
}

#[tokio::test]
async fn dropping_an_exec_kills_its_processes() {
    let h = harness_or_skip!();
    let b = h.start("cancel").await;
    let process = h.backend.exec(&b.key, ExecRequest::shell("sleep 30561 & sleep 30562")).await.expect("exec");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(host_processes_with("sleep 3056").len(), 2, "the exec did not start");
    drop(process);
    let left = wait_until_gone("sleep 3056", Duration::from_secs(5)).await;
    assert!(left.is_empty(), "still running after the exec was dropped: {left:?}");
    h.finish(b).await;
}
