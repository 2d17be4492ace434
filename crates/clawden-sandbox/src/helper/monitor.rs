//! Modes `start` and `run`: build a sandbox and watch over it from the host side.
//!
//! The monitor stays outside the sandbox. It creates the cgroups and mounts the workspace volume,
//! clones the sandbox's first process into new namespaces, writes its id maps, and then either
//! waits for the command (`run`) or keeps the sandbox alive for later execs (`start`) until told
//! to stop, until the server goes away (its stdin closes), or until the memory limit is hit.

use super::{cgroup, command, confine, rootfs, seccomp, volume};
use crate::plan::{CommandPlan, Parsed, SandboxPlan};
use crate::sys::{self, Forked};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{Gid, Pid, Uid};
use seccompiler::BpfProgram;
use std::fs;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

/// The namespaces created with the sandbox's first process. The cgroup namespace comes later,
/// once the process sits in its cgroup, so that the cgroup is its root.
pub(crate) const NAMESPACES: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS;

enum Mode<'a> {
    Start,
    Run(&'a CommandPlan),
}

/// Turns a wait status into a shell-style exit code.
pub(crate) fn exit_code(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => code,
        WaitStatus::Signaled(_, sig, _) => 128 + sig as i32,
        _ => crate::EXIT_SANDBOX_FAILURE,
    }
}

fn write_id_maps(pid: libc::pid_t, plan: &SandboxPlan) -> io::Result<()> {
    let count = plan.id_count.max(1);
    if plan.unprivileged {
        fs::write(format!("/proc/{pid}/setgroups"), "deny")?;
    }
    fs::write(format!("/proc/{pid}/uid_map"), format!("0 {} {count}\n", plan.host_uid))?;
    fs::write(format!("/proc/{pid}/gid_map"), format!("0 {} {count}\n", plan.host_gid))?;
    Ok(())
}

/// Inside the new namespaces: become root of the user namespace and build the file system.
fn setup_inside(plan: &SandboxPlan, go: &mut fs::File, sources: rootfs::Sources) -> io::Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
    await_monitor(go)?;
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))?;
    if !plan.unprivileged {
        nix::unistd::setgroups(&[])?;
    }
    rootfs::build(plan, sources)?;
    nix::unistd::sethostname(&plan.hostname)?;
    sys::loopback_up()?;
    nix::unistd::setsid()?;
    Ok(())
}

/// Waits for the next step of the monitor (one byte on the `go` pipe); end of file means the
/// monitor failed or died.
fn await_monitor(go: &mut fs::File) -> io::Result<()> {
    let mut byte = [0u8; 1];
    if go.read(&mut byte)? != 1 {
        return Err(io::Error::other("monitor went away"));
    }
    Ok(())
}

fn limits_of(plan: &SandboxPlan, cmd: &CommandPlan) -> confine::ProcessLimits {
    confine::ProcessLimits {
        open_files: cmd.open_files.max(64),
        processes: u64::from(if cmd.pids > 0 { cmd.pids } else { plan.pids.max(1) }),
    }
}

/// The sandbox's first process. Never returns.
fn child(
    parsed: &Parsed,
    mode: &Mode<'_>,
    go: OwnedFd,
    report: OwnedFd,
    sources: rootfs::Sources,
    filter: &BpfProgram,
) -> ! {
    let mut report = fs::File::from(report);
    let fail = |report: &mut fs::File, what: &str, e: &dyn std::fmt::Display| -> ! {
        let _ = write!(report, "{what}: {e}");
        sys::exit_now(crate::EXIT_SANDBOX_FAILURE)
    };
    let mut go = fs::File::from(go);
    if let Err(e) = setup_inside(&parsed.sandbox, &mut go, sources) {
        fail(&mut report, "building the sandbox", &e);
    }
    drop(go);
    match mode {
        Mode::Run(cmd) => {
            let prepared = match command::prepare(cmd) {
                Ok(p) => p,
                Err(e) => fail(&mut report, "command", &e),
            };
            if let Err(e) = nix::unistd::chdir(cmd.cwd.as_str()) {
                fail(&mut report, "cwd", &e);
            }
            confine::reset_signals();
            if let Err(e) = sys::cloexec_from(3) {
                fail(&mut report, "closing descriptors", &e);
            }
            if let Err(e) = confine::confine(limits_of(&parsed.sandbox, cmd), filter) {
                fail(&mut report, "confining", &e);
            }
            // The report pipe is close-on-exec: the monitor sees end-of-file, i.e. success.
            prepared.exec()
        }
        Mode::Start => {
            // The init must not hold the server's pipes open.
            if let Ok(null) = fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
                for fd in 0..3 {
                    // SAFETY: dup2 onto the standard descriptors, which this process owns.
                    unsafe {
                        libc::dup2(null.as_raw_fd(), fd);
                    }
                }
            }
            let limits = confine::ProcessLimits { open_files: 64, processes: u64::from(parsed.sandbox.pids.max(1)) };
            let set = match sys::block_sigchld() {
                Ok(set) => set,
                Err(e) => fail(&mut report, "signals", &e),
            };
            if let Err(e) = confine::confine(limits, filter) {
                fail(&mut report, "confining", &e);
            }
            let _ = nix::sys::prctl::set_dumpable(false);
            if report.write_all(b"ok").is_err() {
                sys::exit_now(crate::EXIT_SANDBOX_FAILURE);
            }
            drop(report);
            // Reap whatever gets reparented to us, forever; the monitor kills us to stop.
            loop {
                sys::wait_signal(&set);
                while let Ok(status) = waitpid(Pid::from_raw(-1), Some(nix::sys::wait::WaitPidFlag::WNOHANG)) {
                    if status == WaitStatus::StillAlive {
                        break;
                    }
                }
            }
        }
    }
}

/// Everything the monitor set up on the host, undone in reverse.
struct HostSide<'a> {
    plan: &'a SandboxPlan,
}

impl HostSide<'_> {
    /// The cgroups stay (empty) for the next start; the library removes them with the sandbox.
    fn teardown(&self) -> io::Result<()> {
        if self.plan.image.is_some() {
            volume::unmount(&self.plan.workspace)?;
        }
        Ok(())
    }
}

fn prepare_volume(plan: &SandboxPlan) -> io::Result<()> {
    match &plan.image {
        Some(image) => {
            volume::ensure_image(image, plan.quota_bytes, plan.host_uid, plan.host_gid)?;
            volume::mount_image(image, &plan.workspace)
        }
        None => {
            if !plan.workspace.is_dir() {
                fs::create_dir_all(&plan.workspace)?;
                std::os::unix::fs::chown(&plan.workspace, Some(plan.host_uid), Some(plan.host_gid))?;
            }
            Ok(())
        }
    }
}

/// The sandbox's first process (or an exec's command), as seen from its parent.
pub(crate) struct Started {
    pub pid: libc::pid_t,
    pub pidfd: OwnedFd,
}

/// Builds the sandbox; on success the first process runs (the command, or the idle init).
/// Builds the sandbox; on success the first process runs (the command, or the idle init). In
/// `start` mode also returns the cgroup v1 out-of-memory eventfd.
fn launch(parsed: &Parsed, mode: &Mode<'_>) -> io::Result<(Started, Option<OwnedFd>)> {
    let plan = &parsed.sandbox;
    let filter = seccomp::filter()?;
    let template = rootfs::ensure_template(&plan.template_dir)?;
    // Created once per sandbox and kept across starts (the library removes them with the
    // sandbox); the first process joins them itself, before anything else.
    cgroup::create(plan).map_err(|e| io::Error::other(format!("cgroup: {e}")))?;
    let oom = match mode {
        Mode::Start => cgroup::oom_events_v1(&plan.cgroups)?,
        Mode::Run(_) => None,
    };
    let (go_r, go_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (rep_r, rep_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    match sys::clone_process(NAMESPACES)? {
        Forked::Child => {
            drop(go_w);
            drop(rep_r);
            drop(oom);
            // Still the helper's host identity here (the id maps come later): join the cgroups
            // (joining oneself is the cheap path on cgroup v1), make them the root of a new
            // cgroup namespace, and open the workspace.
            let early = cgroup::join_self(&plan.cgroups)
                .and_then(|()| Ok(nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)?))
                .and_then(|()| rootfs::open_sources(plan, &template));
            let sources = match early {
                Ok(w) => w,
                Err(e) => {
                    let _ = fs::File::from(rep_w).write_all(format!("early setup: {e}").as_bytes());
                    sys::exit_now(crate::EXIT_SANDBOX_FAILURE)
                }
            };
            child(parsed, mode, go_r, rep_w, sources, &filter)
        }
        Forked::Parent { pid, pidfd } => {
            drop(go_r);
            drop(rep_w);
            let kill = |e: io::Error| {
                let _ = sys::pidfd_signal(&pidfd, libc::SIGKILL);
                let _ = waitpid(Pid::from_raw(pid), None);
                e
            };
            write_id_maps(pid, plan).map_err(|e| kill(io::Error::other(format!("id maps: {e}"))))?;
            let mut go = fs::File::from(go_w);
            go.write_all(b"g").map_err(&kill)?;
            drop(go);
            let mut msg = String::new();
            fs::File::from(rep_r).read_to_string(&mut msg).map_err(&kill)?;
            let ok = match mode {
                Mode::Start => msg == "ok",
                Mode::Run(_) => msg.is_empty(),
            };
            if !ok {
                let msg = if msg.is_empty() { "sandbox process died during setup".to_owned() } else { msg };
                return Err(kill(io::Error::other(msg)));
            }
            Ok((Started { pid, pidfd }, oom))
        }
    }
}

pub(crate) fn signal_fd() -> io::Result<SignalFd> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGHUP);
    mask.thread_block()?;
    Ok(SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)?)
}

/// Mode `run`: build a sandbox, run one command in it as its first process, tear it down.
pub(crate) fn run(parsed: Parsed) -> i32 {
    let host = HostSide { plan: &parsed.sandbox };
    let result = (|| -> io::Result<i32> {
        let signals = signal_fd()?;
        prepare_volume(&parsed.sandbox)?;
        let (started, _) = launch(&parsed, &Mode::Run(&parsed.command))?;
        let deadline =
            (parsed.command.timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(parsed.command.timeout_ms));
        wait_command(&started, deadline, &signals)
    })();
    let teardown = host.teardown();
    match (result, teardown) {
        (Ok(code), Ok(())) => code,
        (Ok(code), Err(e)) => {
            eprintln!("clawden-sandbox: teardown: {e}");
            code
        }
        (Err(e), _) => {
            eprintln!("clawden-sandbox: {e}");
            crate::EXIT_SANDBOX_FAILURE
        }
    }
}

/// Waits for a command until `deadline`; past it the command (and, as it is the first process
/// of its PID namespace, everything it started) is killed and the result is 124.
pub(crate) fn wait_command(started: &Started, deadline: Option<Instant>, signals: &SignalFd) -> io::Result<i32> {
    let mut timed_out = false;
    loop {
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()).as_millis() as u64);
        if timeout == Some(0) {
            timed_out = true;
            let _ = sys::pidfd_signal(&started.pidfd, libc::SIGKILL);
            break;
        }
        let ready = sys::poll_readable(&[started.pidfd.as_raw_fd(), signals.as_raw_fd()], timeout)?;
        if ready[0] != 0 {
            break;
        }
        if ready[1] != 0 {
            // Interrupted by the operator: stop the command, report like a shell would.
            let sig = signals.read_signal().ok().flatten().map(|s| s.ssi_signo as i32);
            let _ = sys::pidfd_signal(&started.pidfd, libc::SIGKILL);
            let _ = waitpid(Pid::from_raw(started.pid), None);
            return Ok(128 + sig.unwrap_or(libc::SIGTERM));
        }
    }
    let status = waitpid(Pid::from_raw(started.pid), None)?;
    Ok(if timed_out { crate::EXIT_TIMEOUT } else { exit_code(status) })
}

/// Mode `start`: build a sandbox with an idle first process, report `ready PID USERNS`, then
/// watch it until stopped.
pub(crate) fn start(parsed: Parsed) -> i32 {
    let host = HostSide { plan: &parsed.sandbox };
    let mut stdout = io::stdout().lock();
    let setup = (|| -> io::Result<(Started, SignalFd, Option<OwnedFd>)> {
        let signals = signal_fd()?;
        prepare_volume(&parsed.sandbox)?;
        let (started, oom) = launch(&parsed, &Mode::Start)?;
        Ok((started, signals, oom))
    })();
    let (started, signals, oom) = match setup {
        Ok(s) => s,
        Err(e) => {
            let _ = host.teardown();
            let _ = writeln!(stdout, "error {e}");
            return crate::EXIT_SANDBOX_FAILURE;
        }
    };
    let userns = fs::metadata(format!("/proc/{}/ns/user", started.pid)).map(|m| m.ino());
    match userns {
        Ok(ino) => {
            let _ = writeln!(stdout, "ready {} {ino}", started.pid);
            let _ = stdout.flush();
        }
        Err(e) => {
            let _ = sys::pidfd_signal(&started.pidfd, libc::SIGKILL);
            let _ = waitpid(Pid::from_raw(started.pid), None);
            let _ = host.teardown();
            let _ = writeln!(stdout, "error {e}");
            return crate::EXIT_SANDBOX_FAILURE;
        }
    }
    drop(stdout);
    watch(&started, &signals, oom.as_ref());
    let _ = sys::pidfd_signal(&started.pidfd, libc::SIGKILL);
    let _ = waitpid(Pid::from_raw(started.pid), None);
    match host.teardown() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("clawden-sandbox: teardown: {e}");
            1
        }
    }
}

/// Returns when the sandbox must stop: a `stop` line or end of file on stdin, a termination
/// signal, the sandbox's first process dying, or (cgroup v1) an out-of-memory event, which
/// takes the whole sandbox down as `memory.oom.group` does on v2.
fn watch(started: &Started, signals: &SignalFd, oom: Option<&OwnedFd>) {
    let mut fds = vec![0, started.pidfd.as_raw_fd(), signals.as_raw_fd()];
    if let Some(oom) = oom {
        fds.push(oom.as_raw_fd());
    }
    loop {
        let Ok(ready) = sys::poll_readable(&fds, None) else {
            return;
        };
        if ready[0] != 0 {
            let mut buf = [0u8; 64];
            // Unbuffered on purpose: poll must see whatever is left unread.
            match nix::unistd::read(0, &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) if buf[..n].starts_with(b"stop") => return,
                Ok(_) => {}
            }
        }
        if ready[1] != 0 || ready[2] != 0 {
            return;
        }
        if ready.get(3).copied().unwrap_or(0) != 0 {
            return;
        }
    }
}
