//! The escape test suite: each test is one known attempt to get out of a sandbox, named for the
//! promise it checks, and asserts the observable effect. Every attempt is bounded in count and
//! time (small limits, short timeouts).

mod support;

use clawden_sandbox::{ExecRequest, Sandbox, SandboxStatus, WorkspaceStorage};
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};
use support::*;

macro_rules! harness_or_skip {
    () => {
        match harness() {
            Some(h) => h,
            None => return,
        }
    };
}

#[tokio::test]
async fn sandbox_cannot_read_etc_shadow() {
    let h = harness_or_skip!();
    let b = h.start("shadow").await;
    let out = h.sh(&b, "cat /etc/shadow; echo rc=$?; ls /etc").await;
    let stdout = text(&out.stdout);
    assert!(stdout.contains("rc=1"), "{out:?} {}", text(&out.stderr));
    assert!(!stdout.lines().any(|l| l == "shadow" || l == "gshadow"), "{stdout}");
    if let Ok(shadow) = std::fs::read_to_string("/etc/shadow") {
        let root_line = shadow.lines().find(|l| l.starts_with("root:")).unwrap_or("root:");
        assert!(!stdout.contains(root_line), "host shadow leaked");
    }
    h.finish(b).await;
}

#[tokio::test]
async fn sandbox_cannot_reach_the_data_dir_or_master_key() {
    let h = harness_or_skip!();
    let data = h.dir.path().join("clawden-data");
    std::fs::create_dir_all(&data).expect("data dir");
    std::fs::write(data.join("master.key"), "MASTER-KEY-SECRET-4711").expect("plant");
    std::fs::write(data.join("clawden.sqlite"), "DATABASE-SECRET-4711").expect("plant");
    let b = h.start("datadir").await;
    let script = format!(
        "cat {d}/master.key {d}/clawden.sqlite; ls {d}; \
         find / -path /proc -prune -o \\( -name master.key -o -name clawden.sqlite \\) -print; \
         grep -rs SECRET-4711 /workspace /tmp /etc /root /home /var; echo done",
        d = data.display()
    );
    let out = h.run(&b, ExecRequest::shell(&script).with_timeout(Duration::from_secs(60))).await;
    let stdout = text(&out.stdout);
    assert!(stdout.ends_with("done\n"), "the search did not finish: {stdout} {}", text(&out.stderr));
    assert!(!stdout.contains("SECRET-4711"), "{stdout}");
    assert!(!stdout.contains("master.key"), "{stdout}");
    assert!(!stdout.contains("clawden.sqlite"), "{stdout}");
    h.finish(b).await;
}

#[tokio::test]
async fn members_and_instances_cannot_read_each_others_workspaces() {
    let h = harness_or_skip!();
    let team = clawden_core::InstanceId::new();
    let key = |instance, member| clawden_sandbox::SandboxKey { instance, member };
    let (d, l) = (WorkspaceStorage::Directory, small_limits);
    // Alice and Bob are members of the same team instance; Carol has an instance of her own.
    let alice = h.start_key("alice", key(team, clawden_core::UserId::new()), d.clone(), l()).await;
    let bob = h.start_key("bob", key(team, clawden_core::UserId::new()), d.clone(), l()).await;
    let carol = h.start_key("carol", key(clawden_core::InstanceId::new(), clawden_core::UserId::new()), d, l()).await;
    for (owner, file, secret) in
        [(&bob, "diary-bob.txt", "BOB-PRIVATE-0815"), (&carol, "diary-carol.txt", "CAROL-PRIVATE-0816")]
    {
        h.backend.write_file(&owner.key, Path::new(file), secret.as_bytes()).await.expect("write");
        let script = format!(
            "cat {}/{file}; find / -path /proc -prune -o -name {file} -print; \
             cat /proc/*/root/workspace/{file}; echo done",
            h.workspace(owner).display()
        );
        let out = h.run(&alice, ExecRequest::shell(&script).with_timeout(Duration::from_secs(60))).await;
        let stdout = text(&out.stdout);
        assert!(stdout.ends_with("done\n"), "{stdout}");
        assert!(!stdout.contains(secret), "{stdout}");
        assert!(!stdout.contains(file), "{stdout}");
        // The owner still sees the file, so the write really happened.
        let own = h.sh(owner, &format!("cat /workspace/{file}")).await;
        assert_eq!(text(&own.stdout), secret);
    }
    h.finish(alice).await;
    h.finish(bob).await;
    h.finish(carol).await;
}

#[tokio::test]
async fn host_processes_and_their_environment_are_invisible() {
    let h = harness_or_skip!();
    let b = h.start("procs").await;
    // cargo sets CARGO_MANIFEST_DIR in this test process; the host's own pid 1 has its own env.
    let out = h
        .sh(
            &b,
            "cat /proc/1/environ | tr '\\0' '\\n'; echo ---; \
             for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done; echo ---; \
             ls -d /proc/[0-9]* | wc -l",
        )
        .await;
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("CARGO_MANIFEST_DIR"), "{stdout}");
    assert!(!stdout.contains("escape-"), "the test binary is visible: {stdout}");
    assert!(!stdout.contains("cargo"), "{stdout}");
    assert!(!stdout.contains("__sandbox-init"), "the helpers are visible: {stdout}");
    let me = std::process::id();
    let probe = h.sh(&b, &format!("test -e /proc/{me}/cmdline && cat /proc/{me}/cmdline")).await;
    assert!(!text(&probe.stdout).contains("escape"), "{probe:?}");
    let count: usize = stdout.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or(999);
    assert!(count < 10, "sandbox sees {count} processes: {stdout}");
    h.finish(b).await;
}

#[tokio::test]
async fn ptrace_is_refused() {
    let h = harness_or_skip!();
    let b = h.start("ptrace").await;
    h.install_attempt(&b).await;
    assert_eperm(&h.attempt(&b, &["ptrace"]).await, "ptrace");
    h.finish(b).await;
}

#[tokio::test]
async fn mounting_is_refused() {
    let h = harness_or_skip!();
    let b = h.start("mount").await;
    h.install_attempt(&b).await;
    assert_eperm(&h.attempt(&b, &["mount"]).await, "mount");
    let out = h.sh(&b, "mount -t tmpfs none /tmp; echo rc=$?").await;
    assert!(!text(&out.stdout).contains("rc=0"), "{out:?}");
    h.finish(b).await;
}

#[tokio::test]
async fn nested_user_namespaces_are_refused() {
    let h = harness_or_skip!();
    let b = h.start("userns").await;
    h.install_attempt(&b).await;
    assert_eperm(&h.attempt(&b, &["unshare-user"]).await, "unshare(CLONE_NEWUSER)");
    assert_eperm(&h.attempt(&b, &["clone-user"]).await, "clone(CLONE_NEWUSER)");
    let out = h.sh(&b, "unshare -U -r id; echo rc=$?").await;
    assert!(!text(&out.stdout).contains("rc=0"), "{out:?}");
    h.finish(b).await;
}

#[tokio::test]
async fn setuid_root_binaries_grant_nothing() {
    if !is_root() {
        skip("planting a setuid-root binary needs host root");
        return;
    }
    let h = harness_or_skip!();
    let b = h.start("setuid").await;
    // Plant a setuid-root copy of the attempt program in the workspace, from the host.
    let suid = h.workspace(&b).join("suid");
    std::fs::copy(ATTEMPT, &suid).expect("copy");
    std::os::unix::fs::chown(&suid, Some(0), Some(0)).expect("chown");
    std::fs::set_permissions(&suid, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    let out = h.sh(&b, "/workspace/suid create-file /workspace/made-by-suid").await;
    assert!(out.outcome.success(), "{out:?}");
    let owner = std::fs::metadata(h.workspace(&b).join("made-by-suid")).expect("made").uid();
    assert_ne!(owner, 0, "a setuid-root binary gave host root");
    // The host's own setuid programs do not help either.
    let out = h.sh(&b, "su -c id root </dev/null; echo rc=$?").await;
    assert!(!text(&out.stdout).contains("rc=0"), "{out:?}");
    h.finish(b).await;
}

#[tokio::test]
async fn sandbox_root_is_an_unprivileged_host_uid() {
    let h = harness_or_skip!();
    let b = h.start("uid").await;
    let out = h.sh(&b, "id -u; touch /workspace/made-by-root; cat /proc/self/uid_map").await;
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("0\n"), "not root inside: {stdout}");
    let owner = std::fs::metadata(h.workspace(&b).join("made-by-root")).expect("file").uid();
    assert_ne!(owner, 0, "uid 0 inside is host root");
    if is_root() {
        assert!(owner >= 100_000, "host uid {owner} is not from the sandbox range");
    }
    for line in stdout.lines().skip(1) {
        let host_start: u64 = line.split_whitespace().nth(1).and_then(|w| w.parse().ok()).unwrap_or(0);
        assert_ne!(host_start, 0, "host uid 0 is mapped: {line}");
    }
    h.finish(b).await;
}

#[tokio::test]
async fn raw_and_packet_sockets_are_refused() {
    let h = harness_or_skip!();
    let b = h.start("rawsock").await;
    h.install_attempt(&b).await;
    assert_eperm(&h.attempt(&b, &["raw-socket"]).await, "raw socket");
    assert_eperm(&h.attempt(&b, &["packet-socket"]).await, "packet socket");
    h.finish(b).await;
}

#[tokio::test]
async fn sandbox_cannot_connect_to_a_host_loopback_port() {
    let h = harness_or_skip!();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    let b = h.start("loopback").await;
    h.install_attempt(&b).await;
    let verdict = h.attempt(&b, &["connect", &addr.to_string()]).await;
    assert!(verdict.starts_with("denied"), "reached the host's port: {verdict}");
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the host listener saw a connection: {other:?}"),
    }
    h.finish(b).await;
}

#[tokio::test]
async fn there_is_no_route_off_the_machine() {
    // Judged from the sandbox's own interface and routing tables: no packet is ever sent.
    let h = harness_or_skip!();
    let b = h.start("routes").await;
    let out = h.sh(&b, "cat /proc/net/dev; echo ---; cat /proc/net/route; echo ---; cat /proc/net/ipv6_route").await;
    let stdout = text(&out.stdout);
    let mut parts = stdout.split("---\n");
    let dev = parts.next().unwrap_or_default();
    let v4 = parts.next().unwrap_or_default();
    let v6 = parts.next().unwrap_or_default();
    let interfaces: Vec<&str> = dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).collect();
    assert_eq!(interfaces, vec!["lo"], "{dev}");
    assert_eq!(v4.lines().count(), 1, "IPv4 routes exist: {v4}");
    for route in v6.lines() {
        assert!(route.trim_end().ends_with("lo"), "an IPv6 route leaves loopback: {route}");
    }
    h.finish(b).await;
}

#[tokio::test]
async fn io_uring_is_refused() {
    let h = harness_or_skip!();
    let b = h.start("iouring").await;
    h.install_attempt(&b).await;
    assert_eperm(&h.attempt(&b, &["io-uring"]).await, "io_uring_setup");
    h.finish(b).await;
}

#[tokio::test]
async fn tiocsti_cannot_type_into_the_callers_terminal() {
    let h = harness_or_skip!();
    let b = h.start("tiocsti").await;
    h.install_attempt(&b).await;
    // The operator's terminal, handed to the exec as its stdin (as `clawden sandbox exec` does).
    // Raw mode, so that a single injected byte would be readable at once.
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let mut termios = nix::sys::termios::tcgetattr(&pty.slave).expect("tcgetattr");
    nix::sys::termios::cfmakeraw(&mut termios);
    nix::sys::termios::tcsetattr(&pty.slave, nix::sys::termios::SetArg::TCSANOW, &termios).expect("raw");
    // What the operator's shell would read: our own descriptor of the terminal.
    let shell_side = std::fs::File::from(pty.slave.try_clone().expect("dup"));
    let mut request = ExecRequest::new(["/workspace/attempt", "tiocsti"]);
    request.stdin = clawden_sandbox::ExecStdio::Fd(pty.slave);
    let out = h.run_keep_stdin(&b, request).await;
    assert_eperm(text(&out.stdout).trim(), "TIOCSTI");
    let raw = std::os::fd::AsRawFd::as_raw_fd(&shell_side);
    let flags = nix::fcntl::fcntl(raw, nix::fcntl::FcntlArg::F_GETFL).expect("flags");
    let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(raw, nix::fcntl::FcntlArg::F_SETFL(flags)).expect("nonblock");
    let mut buf = [0u8; 64];
    match (&shell_side).read(&mut buf) {
        Ok(n) => assert!(!buf[..n].contains(&b'x'), "a key was injected: {:?}", &buf[..n]),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}"),
    }
    drop(pty.master);
    h.finish(b).await;
}

#[tokio::test]
async fn nothing_outside_workspace_and_tmp_is_writable() {
    let h = harness_or_skip!();
    let b = h.start("writes").await;
    let out = h
        .sh(
            &b,
            "for p in /x /usr/x /usr/bin/x /bin/x /lib/x /etc/x /etc/passwd /dev/x /proc/x /var/x \
             /root/x /home/x /proc/sys/kernel/hostname /proc/sysrq-trigger; do \
               (echo pwned > $p) 2>/dev/null && echo WROTE $p; done; \
             echo ok > /workspace/w && echo ok > /tmp/t && echo writable",
        )
        .await;
    let stdout = text(&out.stdout);
    assert!(!stdout.contains("WROTE"), "{stdout}");
    assert!(stdout.contains("writable"), "workspace or /tmp not writable: {stdout}");
    h.finish(b).await;
}

#[tokio::test]
async fn a_fork_bomb_is_bounded_and_the_host_stays_responsive() {
    let h = harness_or_skip!();
    let mut limits = small_limits();
    limits.pids = 32;
    let b = h.start_with("forkbomb", WorkspaceStorage::Directory, limits).await;
    h.install_attempt(&b).await;
    let verdict = h.attempt(&b, &["forkbomb", "1000"]).await;
    let forked: u32 = verdict
        .strip_prefix("forked ")
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(u32::MAX);
    assert!(forked < 32, "the sandbox forked {forked} processes: {verdict}");
    // The classic shell bomb, stopped by the wall clock; meanwhile the host still forks quickly.
    let bomb = h.backend.exec_collect(
        &b.key,
        ExecRequest::shell("bomb() { bomb | bomb & }; bomb").with_timeout(Duration::from_secs(3)),
        Vec::new(),
        1 << 16,
    );
    let host = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t = Instant::now();
        let status = tokio::process::Command::new("/bin/true").status().await.expect("host fork");
        assert!(status.success());
        t.elapsed()
    };
    let (out, host_latency) = tokio::join!(bomb, host);
    out.expect("bomb exec");
    assert!(host_latency < Duration::from_secs(2), "host took {host_latency:?} to fork");
    // And the sandbox is usable again afterwards.
    let after = h.sh(&b, "echo alive").await;
    assert_eq!(text(&after.stdout), "alive\n", "{after:?}");
    h.finish(b).await;
}

#[tokio::test]
async fn a_memory_bomb_is_killed_with_137() {
    let h = harness_or_skip!();
    if h.backend.capabilities().cgroups.version.is_none() {
        skip("no memory cgroup on this machine");
        return;
    }
    let mut limits = small_limits();
    limits.memory_bytes = 64 << 20;
    let b = h.start_with("membomb", WorkspaceStorage::Directory, limits).await;
    h.install_attempt(&b).await;
    let out = h
        .run(&b, ExecRequest::new(["/workspace/attempt", "membomb", "1024"]).with_timeout(Duration::from_secs(30)))
        .await;
    assert_eq!(out.outcome.code, 137, "{out:?}");
    assert!(!text(&out.stdout).contains("allowed"), "{out:?}");
    // One out-of-memory kill takes the whole sandbox down (memory.oom.group on v2, the
    // monitor's eventfd on v1).
    let deadline = Instant::now() + Duration::from_secs(10);
    while h.backend.status(&b.key).await.expect("status") == SandboxStatus::Running {
        assert!(Instant::now() < deadline, "the sandbox survived its OOM kill");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.finish(b).await;
}

#[tokio::test]
async fn filling_the_disk_ends_in_enospc_at_the_quota() {
    let h = harness_or_skip!();
    if !h.backend.capabilities().quota_volumes {
        skip("quota volumes need root, loop devices and mkfs.ext4");
        return;
    }
    let mut limits = small_limits();
    limits.workspace_quota_bytes = 16 << 20;
    limits.memory_bytes = 256 << 20;
    let b = h.start_with("diskfill", WorkspaceStorage::QuotaImage, limits).await;
    let out = h.sh(&b, "dd if=/dev/zero of=/workspace/fill bs=1M count=64 2>&1; echo rc=$?; sync").await;
    let stdout = text(&out.stdout);
    assert!(stdout.contains("No space left on device"), "{stdout}");
    assert!(stdout.contains("rc=1"), "{stdout}");
    assert!(out.outcome.success(), "the writer was killed instead of getting ENOSPC: {out:?}");
    let size = std::fs::metadata(h.workspace(&b).join("fill")).expect("fill").len();
    assert!(size <= 16 << 20, "wrote {size} bytes past a 16 MiB quota");
    assert!(size >= 8 << 20, "quota hit far too early: {size}");
    h.finish(b).await;
}

#[tokio::test]
async fn a_cpu_spin_past_the_timeout_ends_with_124() {
    let h = harness_or_skip!();
    let b = h.start("spin").await;
    let t = Instant::now();
    let out = h.run(&b, ExecRequest::shell("while :; do :; done").with_timeout(Duration::from_secs(1))).await;
    assert_eq!(out.outcome.code, 124, "{out:?}");
    assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
    h.finish(b).await;
}

#[tokio::test]
async fn a_background_process_does_not_outlive_its_exec() {
    let h = harness_or_skip!();
    let b = h.start("background").await;
    // Checked from the host, which sees every process (inside, one exec cannot see another's).
    let out = h.sh(&b, "sleep 30571 & setsid sleep 30572 & nohup sleep 30573 >/dev/null 2>&1 & echo started").await;
    assert_eq!(text(&out.stdout), "started\n");
    let left = wait_until_gone("sleep 3057", Duration::from_secs(5)).await;
    assert!(left.is_empty(), "still running after the exec ended: {left:?}");
    // Nor when the exec is stopped by its timeout (checked to be running first).
    let spin = h.run(
        &b,
        ExecRequest::shell("sleep 30581 & setsid sleep 30582 & while :; do :; done")
            .with_timeout(Duration::from_millis(1500)),
    );
    let watch = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        host_processes_with("sleep 3058").len()
    };
    let (out, seen) = tokio::join!(spin, watch);
    assert_eq!(out.outcome.code, 124, "{out:?}");
    assert_eq!(seen, 2, "the background jobs never started");
    let left = wait_until_gone("sleep 3058", Duration::from_secs(5)).await;
    assert!(left.is_empty(), "still running after the timeout: {left:?}");
    h.finish(b).await;
}

#[tokio::test]
async fn dangerous_devices_are_absent() {
    let h = harness_or_skip!();
    let b = h.start("devices").await;
    let out = h
        .sh(
            &b,
            "for d in /dev/mem /dev/kmem /dev/port /dev/kmsg /dev/vda /dev/sda /dev/nvme0n1 /dev/loop0 \
             /dev/loop-control /dev/fuse /dev/kvm; do test -e $d && echo PRESENT $d; done; \
             find / -path /proc -prune -o -type b -print 2>/dev/null; echo done",
        )
        .await;
    assert_eq!(text(&out.stdout), "done\n");
    h.finish(b).await;
}

#[tokio::test]
async fn bpf_is_refused() {
    let h = harness_or_skip!();
    let b = h.start("bpf").await;
    h.install_attempt(&b).await;
    assert_eperm(&h.attempt(&b, &["bpf"]).await, "bpf");
    h.finish(b).await;
}

#[tokio::test]
async fn perf_event_open_is_refused() {
    let h = harness_or_skip!();
    let b = h.start("perf").await;
    h.install_attempt(&b).await;
    assert_eperm(&h.attempt(&b, &["perf"]).await, "perf_event_open");
    h.finish(b).await;
}

#[tokio::test]
async fn userfaultfd_is_refused() {
    let h = harness_or_skip!();
    let b = h.start("uffd").await;
    h.install_attempt(&b).await;
    assert_eperm(&h.attempt(&b, &["userfaultfd"]).await, "userfaultfd");
    h.finish(b).await;
}

#[tokio::test]
async fn keyctl_is_refused() {
    let h = harness_or_skip!();
    let b = h.start("keyctl").await;
    h.install_attempt(&b).await;
    assert_eperm(&h.attempt(&b, &["keyctl"]).await, "keyctl");
    h.finish(b).await;
}

#[tokio::test]
async fn reboot_is_refused() {
    let h = harness_or_skip!();
    let b = h.start("reboot").await;
    h.install_attempt(&b).await;
    assert_eperm(&h.attempt(&b, &["reboot"]).await, "reboot");
    h.finish(b).await;
}

#[tokio::test]
async fn setting_the_clock_is_refused() {
    let h = harness_or_skip!();
    let b = h.start("clock").await;
    h.install_attempt(&b).await;
    assert_eperm(&h.attempt(&b, &["clock-settime"]).await, "clock_settime");
    h.finish(b).await;
}

/// The attempts above can fail: outside a sandbox, the same program gets through. (Only the
/// harmless attempts are tried on the host.)
#[test]
fn the_attempts_succeed_outside_a_sandbox() {
    if !is_root() {
        skip("the host-side controls need root");
        return;
    }
    for attempt in ["raw-socket", "packet-socket", "userfaultfd", "keyctl", "unshare-user", "ptrace"] {
        let out = std::process::Command::new(ATTEMPT).arg(attempt).output().expect("run attempt");
        let verdict = text(&out.stdout);
        assert!(verdict.starts_with("allowed"), "{attempt} on the host: {verdict}");
    }
}
