//! The lifecycle manager on the local backend: sealed workspaces at rest, idle stop, on-demand
//! start, the LRU cap, host-side file access, and the egress proxy seen from inside.

mod support;

use clawden_core::{InstanceId, UserId};
use clawden_sandbox::{
    EgressEvent, EgressPolicy, EgressProxy, EgressReporter, Error, ExecOutput, ExecRequest, Limits, ManagerSettings,
    Sandbox, SandboxKey, SandboxManager, StopReason, WorkspaceKey, WorkspaceKeyFuture, WorkspaceKeys, WorkspaceStorage,
};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;
use tokio::io::AsyncReadExt;

struct FixedKey;

impl WorkspaceKeys for FixedKey {
    fn workspace_key<'a>(&'a self, _key: &'a SandboxKey) -> WorkspaceKeyFuture<'a> {
        Box::pin(async { Ok(WorkspaceKey::new([42u8; 32])) })
    }
}

struct Setup {
    manager: Arc<SandboxManager>,
    dir: tempfile::TempDir,
}

fn limits() -> Limits {
    Limits { workspace_quota_bytes: 64 << 20, ..small_limits() }
}

fn setup(adjust: impl FnOnce(&mut ManagerSettings), egress: Option<Arc<EgressProxy>>) -> Option<Setup> {
    let Harness { backend, dir } = harness()?;
    let mut settings = ManagerSettings::new(dir.path().join("volumes"));
    settings.storage = WorkspaceStorage::QuotaImage;
    settings.limits = limits();
    adjust(&mut settings);
    let manager = SandboxManager::new(Arc::new(backend), Arc::new(FixedKey), egress, settings);
    Some(Setup { manager, dir })
}

macro_rules! setup_or_skip {
    ($adjust:expr, $egress:expr) => {
        match setup($adjust, $egress) {
            Some(s) => s,
            None => return,
        }
    };
}

fn key() -> SandboxKey {
    SandboxKey { instance: InstanceId::new(), member: UserId::new() }
}

async fn sh(m: &Arc<SandboxManager>, key: &SandboxKey, script: &str) -> clawden_sandbox::Result<ExecOutput> {
    let mut p = m.exec(key, EgressPolicy::default(), ExecRequest::shell(script)).await?;
    drop(p.stdin.take());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    if let Some(mut s) = p.stdout.take() {
        let _ = s.read_to_end(&mut out).await;
    }
    if let Some(mut s) = p.stderr.take() {
        let _ = s.read_to_end(&mut err).await;
    }
    let outcome = p.wait().await?;
    Ok(ExecOutput { outcome, stdout: out, stderr: err })
}

async fn sh_ok(m: &Arc<SandboxManager>, key: &SandboxKey, script: &str) -> String {
    let out = sh(m, key, script).await.expect("exec");
    assert!(out.outcome.success(), "{script}: {} {}", text(&out.stdout), text(&out.stderr));
    text(&out.stdout)
}

/// Every file under `dir` (not following links) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = 0;
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            seen += 1;
            assert!(seen < 100_000, "too many files under {dir:?}");
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                if let Ok(bytes) = std::fs::read(e.path()) {
                    if bytes.windows(needle.len()).any(|w| w == needle) {
                        found.push(e.path());
                    }
                }
            }
        }
    }
    found
}

fn marker() -> String {
    format!("clawden-marker-{}", UserId::new())
}

#[tokio::test]
async fn a_stopped_workspace_exists_only_sealed_and_comes_back_on_the_next_exec() {
    let s = setup_or_skip!(|_| {}, None);
    let k = key();
    let m = marker();
    sh_ok(
        &s.manager,
        &k,
        &format!("echo {m} > note; mkdir -p a/b; echo {m} > a/b/deep; ln -s /etc/shadow shadow-link"),
    )
    .await;
    // While running, the plaintext is there (in the volume).
    assert_eq!(s.manager.running(), vec![k]);
    let stats = s.manager.stop(&k, StopReason::Requested).await.expect("stop").expect("stats");
    assert_eq!((stats.files, stats.symlinks), (2, 1), "{stats:?}");
    assert!(s.manager.running().is_empty());
    assert!(s.manager.sealed_path(&k).exists());
    assert!(!s.manager.config_for(&k).workspace_image().exists(), "the plaintext volume is gone");
    let hits = files_containing(s.dir.path(), m.as_bytes());
    assert!(hits.is_empty(), "plaintext marker found in {hits:?}");

    // On demand: the next exec starts the sandbox and unseals the workspace.
    let out = sh_ok(&s.manager, &k, "cat note a/b/deep; readlink shadow-link; stat -c %u note").await;
    assert_eq!(out, format!("{m}\n{m}\n/etc/shadow\n0\n"));
    s.manager.stop_all().await.expect("stop all");
    assert!(files_containing(s.dir.path(), m.as_bytes()).is_empty());
}

#[tokio::test]
async fn a_tampered_or_truncated_seal_refuses_to_open_and_is_kept() {
    let s = setup_or_skip!(|_| {}, None);
    let k = key();
    let m = marker();
    sh_ok(&s.manager, &k, &format!("echo {m} > note; head -c 300000 /dev/urandom > noise")).await;
    s.manager.stop(&k, StopReason::Requested).await.expect("stop");
    let path = s.manager.sealed_path(&k);
    let original = std::fs::read(&path).expect("sealed");

    let mut flipped = original.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let truncated = original[..original.len() - 100].to_vec();
    let dropped_end = original[..original.len() - 20_000].to_vec();
    for (what, bad) in [("tampered", flipped), ("truncated", truncated), ("cut", dropped_end)] {
        std::fs::write(&path, &bad).expect("write");
        let err = sh(&s.manager, &k, "cat note").await.expect_err(what);
        assert!(matches!(err, Error::Sealed(_)), "{what}: {err}");
        let msg = err.to_string();
        assert!(msg.contains("sealed workspace refused to open"), "{what}: {msg}");
        // Nothing replaced the sealed file, nothing is left running or in plaintext.
        assert_eq!(std::fs::read(&path).expect("sealed"), bad, "{what}");
        assert!(s.manager.running().is_empty());
        assert!(!s.manager.config_for(&k).workspace_image().exists());
    }
    // The previous state is intact: put the good seal back and it opens.
    std::fs::write(&path, &original).expect("write");
    assert_eq!(sh_ok(&s.manager, &k, "cat note").await, format!("{m}\n"));
    // A seal copied to another member's sandbox does not open there.
    let other = SandboxKey { instance: k.instance, member: UserId::new() };
    s.manager.stop_all().await.expect("stop all");
    std::fs::create_dir_all(s.manager.config_for(&other).volume_dir).expect("mkdir");
    std::fs::copy(&path, s.manager.sealed_path(&other)).expect("copy");
    let err = sh(&s.manager, &other, "true").await.expect_err("swapped");
    assert!(matches!(err, Error::Sealed(_)), "{err}");
}

#[tokio::test]
async fn an_idle_sandbox_stops_and_the_next_exec_starts_it() {
    let s = setup_or_skip!(
        |st| {
            st.idle_timeout = Duration::from_millis(700);
            st.reap_interval = Duration::from_millis(100);
        },
        None
    );
    let reaper = s.manager.spawn_reaper();
    let k = key();
    sh_ok(&s.manager, &k, "echo kept > f").await;
    assert_eq!(s.manager.running(), vec![k]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s.manager.running().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(s.manager.running().is_empty(), "not stopped when idle");
    assert!(s.manager.sealed_path(&k).exists());
    assert_eq!(sh_ok(&s.manager, &k, "cat f").await, "kept\n");
    assert_eq!(s.manager.running(), vec![k]);
    // A long exec is not idle: it keeps its sandbox past the idle timeout.
    assert_eq!(sh_ok(&s.manager, &k, "sleep 1.5; cat f").await, "kept\n");
    reaper.abort();
    s.manager.stop_all().await.expect("stop all");
}

#[tokio::test]
async fn the_cap_stops_the_least_recently_used_sandbox() {
    let s = setup_or_skip!(|st| st.max_running = 2, None);
    let (a, b, c) = (key(), key(), key());
    sh_ok(&s.manager, &a, "echo a > f").await;
    sh_ok(&s.manager, &b, "echo b > f").await;
    sh_ok(&s.manager, &a, "cat f").await; // a is now more recent than b
    sh_ok(&s.manager, &c, "echo c > f").await;
    let mut expected = vec![a, c];
    expected.sort();
    assert_eq!(s.manager.running(), expected);
    assert!(s.manager.sealed_path(&b).exists(), "the evicted sandbox was sealed");
    assert_eq!(sh_ok(&s.manager, &b, "cat f").await, "b\n");
    assert_eq!(s.manager.running().len(), 2);
    s.manager.stop_all().await.expect("stop all");
    assert!(s.manager.running().is_empty());
}

#[tokio::test]
async fn host_side_file_access_refuses_links_out_and_dot_dot() {
    let s = setup_or_skip!(|_| {}, None);
    let k = key();
    sh_ok(&s.manager, &k, "ln -s /etc/shadow shadow; mkdir d; ln -s /etc etc-link; echo in > d/ok").await;
    let backend = s.manager.backend();
    for path in ["shadow", "../shadow", "d/../../etc/passwd", "etc-link/passwd", "/etc/passwd"] {
        let err = backend.read_file(&k, Path::new(path), 1 << 20).await.expect_err(path);
        assert!(matches!(err, Error::PathOutsideWorkspace(_)), "{path}: {err}");
    }
    for path in ["shadow", "../x", "etc-link/evil"] {
        let err = backend.write_file(&k, Path::new(path), b"x").await.expect_err(path);
        assert!(matches!(err, Error::PathOutsideWorkspace(_)), "{path}: {err}");
    }
    assert_eq!(backend.read_file(&k, Path::new("d/ok"), 100).await.expect("read"), b"in\n");
    s.manager.stop_all().await.expect("stop all");
}

#[tokio::test]
async fn the_egress_proxy_is_the_only_way_out_and_refuses_what_is_not_allowed() {
    let events: Arc<Mutex<Vec<EgressEvent>>> = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    let reporter: EgressReporter = Arc::new(move |e: &EgressEvent| {
        if let Ok(mut v) = sink.lock() {
            v.push(e.clone());
        }
    });
    let proxy = EgressProxy::new(Some(reporter));
    let s = setup_or_skip!(|_| {}, Some(proxy.clone()));
    let k = key();
    // The proxy variables are set; the listener answers on the sandbox's loopback; names off the
    // list and loopback literals are refused (none of them is resolved or contacted).
    let script = r#"
        echo "proxy=$HTTPS_PROXY"
        for target in example.com:443 127.0.0.1:443 169.254.169.254:80 localhost:443; do
            exec 3<>/dev/tcp/127.0.0.1/3128 || exit 9
            printf 'CONNECT %s HTTP/1.1\r\n\r\n' "$target" >&3
            head -n 1 <&3
            exec 3<&-
        done
    "#;
    let policy = EgressPolicy { allow: vec!["127.0.0.1".into(), "localhost".into(), "169.254.169.254".into()] };
    let mut p = s.manager.exec(&k, policy, ExecRequest::new(["/bin/bash", "-c", script])).await.expect("exec");
    let mut out = Vec::new();
    if let Some(mut o) = p.stdout.take() {
        let _ = o.read_to_end(&mut out).await;
    }
    let outcome = p.wait().await.expect("wait");
    let out = text(&out);
    assert_eq!(outcome.code, 0, "{out}");
    assert!(out.starts_with("proxy=http://127.0.0.1:3128\n"), "{out}");
    assert_eq!(out.matches("HTTP/1.1 403").count(), 4, "{out}");
    let ev = events.lock().expect("lock").clone();
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert!(ev.iter().all(|e| !e.allowed && e.sandbox == k));
    assert_eq!(proxy.counters().refused(), 4);
    // Nothing else leads out: the sandbox has no route at all (judged from its routing tables;
    // no packet is sent).
    let v4 = sh_ok(&s.manager, &k, "cat /proc/net/route").await;
    assert_eq!(v4.lines().count(), 1, "IPv4 routes exist: {v4}");
    let v6 = sh_ok(&s.manager, &k, "cat /proc/net/ipv6_route").await;
    assert!(v6.lines().all(|l| l.trim_end().ends_with(" lo")), "IPv6 routes off loopback: {v6}");
    s.manager.stop_all().await.expect("stop all");
}

#[tokio::test]
async fn seal_and_unseal_of_a_10_mb_workspace_are_timed() {
    let s = setup_or_skip!(|_| {}, None);
    let k = key();
    sh_ok(&s.manager, &k, "head -c 10485760 /dev/urandom > big; for i in $(seq 1 200); do echo $i > small-$i; done")
        .await;
    let t = Instant::now();
    let stats = s.manager.stop(&k, StopReason::Requested).await.expect("stop").expect("stats");
    let seal = t.elapsed();
    assert!(stats.bytes >= 10 << 20);
    let t = Instant::now();
    let unsealed = s.manager.start(&k, EgressPolicy::default()).await.expect("start").expect("stats");
    let cold = t.elapsed();
    assert_eq!(unsealed.bytes, stats.bytes);
    let t = Instant::now();
    sh_ok(&s.manager, &k, "true").await;
    let warm = t.elapsed();
    s.manager.stop_all().await.expect("stop all");
    // An empty workspace for comparison.
    let e = key();
    sh_ok(&s.manager, &e, "true").await;
    let t = Instant::now();
    s.manager.stop(&e, StopReason::Requested).await.expect("stop");
    let seal_empty = t.elapsed();
    let t = Instant::now();
    s.manager.start(&e, EgressPolicy::default()).await.expect("start");
    let cold_empty = t.elapsed();
    s.manager.stop_all().await.expect("stop all");
    eprintln!(
        "NUMBERS: 10 MB workspace (201 files): stop with seal {:.1} ms, cold start with unseal {:.1} ms, first exec after {:.1} ms; empty workspace: stop with seal {:.1} ms, cold start {:.1} ms",
        seal.as_secs_f64() * 1e3,
        cold.as_secs_f64() * 1e3,
        warm.as_secs_f64() * 1e3,
        seal_empty.as_secs_f64() * 1e3,
        cold_empty.as_secs_f64() * 1e3
    );
}

#[tokio::test]
async fn a_sandbox_killed_for_memory_is_still_sealed_when_stopped() {
    let s = setup_or_skip!(|st| st.limits.memory_bytes = 64 << 20, None);
    if s.manager.backend().capabilities().cgroups.version.is_none() {
        skip("no memory cgroup on this machine");
        return;
    }
    let k = key();
    let m = marker();
    sh_ok(&s.manager, &k, &format!("echo {m} > note")).await;
    let attempt = std::fs::read(ATTEMPT).expect("attempt binary");
    s.manager.backend().write_file(&k, Path::new("attempt"), &attempt).await.expect("write");
    sh_ok(&s.manager, &k, "chmod 755 attempt").await;
    let mut p = s
        .manager
        .exec(&k, EgressPolicy::default(), ExecRequest::new(["/workspace/attempt", "membomb", "1024"]))
        .await
        .expect("exec");
    drop(p.stdin.take());
    let (mut o, mut e) = (p.stdout.take(), p.stderr.take());
    let drain = async {
        let mut sink = Vec::new();
        if let Some(o) = o.as_mut() {
            let _ = o.read_to_end(&mut sink).await;
        }
        if let Some(e) = e.as_mut() {
            let _ = e.read_to_end(&mut sink).await;
        }
    };
    let (_, outcome) = tokio::join!(drain, p.wait());
    assert_eq!(outcome.expect("wait").code, 137);
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.manager.backend().status(&k).await.expect("status") == clawden_sandbox::SandboxStatus::Running {
        assert!(Instant::now() < deadline, "the sandbox survived its OOM kill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The next exec notices, seals what the dead sandbox left, and starts afresh.
    assert_eq!(sh_ok(&s.manager, &k, "cat note").await, format!("{m}\n"));
    // The volume is sealed at stop all the same, and nothing stays in plaintext.
    s.manager.stop(&k, StopReason::Requested).await.expect("stop");
    assert!(s.manager.running().is_empty());
    assert!(!s.manager.config_for(&k).workspace_image().exists());
    assert!(files_containing(s.dir.path(), m.as_bytes()).is_empty());
    assert_eq!(sh_ok(&s.manager, &k, "cat note").await, format!("{m}\n"));
    s.manager.stop_all().await.expect("stop all");
}

#[tokio::test]
async fn a_second_process_cannot_start_a_running_sandbox() {
    let s = setup_or_skip!(|_| {}, None);
    let Some(Harness { backend, dir: _other_state }) = harness() else { return };
    // A second manager (as a second clawden process would have) on the same volumes.
    let second = SandboxManager::new(Arc::new(backend), Arc::new(FixedKey), None, s.manager.settings().clone());
    let k = key();
    sh_ok(&s.manager, &k, "echo one > f").await;
    let err = sh(&second, &k, "true").await.expect_err("second start");
    assert!(matches!(err, Error::InUse), "{err}");
    s.manager.stop_all().await.expect("stop all");
    assert_eq!(sh_ok(&second, &k, "cat f").await, "one\n");
    second.stop_all().await.expect("stop all");
}
