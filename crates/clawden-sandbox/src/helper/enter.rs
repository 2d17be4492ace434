//! Mode `exec`: run one command in a sandbox that is already running (a warm exec).
//!
//! The helper joins the sandbox's cgroups and enters all its namespaces at once through a pidfd
//! of its first process. A PID namespace cannot be unshared by a process that has just entered
//! one, so the helper forks a small *waiter* inside the sandbox, which opens a PID namespace of
//! its own and forks the command as its first process: when the command ends or is killed,
//! everything it started ends with it. The waiter passes the exit code back to the helper; if the
//! helper or the waiter die, the parent-death signal takes the command down too.

use super::monitor::{exit_code, signal_fd, wait_command, Started};
use super::{cgroup, command, confine, seccomp};
use crate::plan::Parsed;
use crate::sys::{self, Forked};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::waitpid;
use nix::unistd::{Gid, Pid, Uid};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

fn enter(parsed: &Parsed) -> io::Result<()> {
    let target = &parsed.target;
    let pidfd = sys::pidfd_open(target.init_pid).map_err(|e| ctx("finding the sandbox", e))?;
    // The pid could have been recycled: accept it only if it still owns the sandbox's user
    // namespace, and only if the process our pidfd names is still alive after that check.
    let ino = std::fs::metadata(format!("/proc/{}/ns/user", target.init_pid))
        .map_err(|e| ctx("finding the sandbox", e))?
        .ino();
    if ino != target.userns_ino {
        return Err(io::Error::other("the sandbox is gone (user namespace changed)"));
    }
    sys::pidfd_signal(&pidfd, 0).map_err(|e| ctx("finding the sandbox", e))?;
    cgroup::join_self(&target.cgroups).map_err(|e| ctx("joining the cgroups", e))?;
    let all = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWCGROUP;
    nix::sched::setns(&pidfd, all).map_err(|e| ctx("entering the namespaces", e.into()))?;
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))?;
    // Refused when the sandbox was made unprivileged (setgroups denied); then there is nothing
    // to drop that the kernel would honour inside anyway.
    let _ = nix::unistd::setgroups(&[]);
    // Until exec, nothing in the sandbox may inspect this process or its children (they came
    // from the host).
    nix::sys::prctl::set_dumpable(false)?;
    Ok(())
}

fn ctx(what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// In a freshly forked child: die with the parent, and make sure the parent did not die before
/// that was arranged (`alive` is the read end of a pipe only the parent still writes to).
fn tie_to_parent(alive: OwnedFd) {
    if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() {
        sys::exit_now(crate::EXIT_SANDBOX_FAILURE);
    }
    match sys::poll_readable(&[alive.as_raw_fd()], Some(0)) {
        Ok(ready) if ready[0] == 0 => {}
        _ => sys::exit_now(crate::EXIT_SANDBOX_FAILURE),
    }
}

fn liveness_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?)
}

/// The command: first process of the waiter's PID namespace. Never returns.
fn command_process(parsed: &Parsed, prepared: &command::Prepared, filter: &seccompiler::BpfProgram) -> ! {
    let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
        sys::write_stderr(format!("clawden-sandbox: {what}: {e}\n").as_bytes());
        sys::exit_now(crate::EXIT_SANDBOX_FAILURE)
    };
    if let Err(e) = nix::unistd::setsid() {
        fail("setsid", &e);
    }
    if let Err(e) = nix::unistd::chdir(parsed.command.cwd.as_str()) {
        fail("cwd", &e);
    }
    confine::reset_signals();
    if let Err(e) = sys::close_from(3) {
        fail("closing descriptors", &e);
    }
    let limits = confine::ProcessLimits {
        open_files: parsed.command.open_files.max(64),
        processes: u64::from(parsed.command.pids.max(1)),
    };
    if let Err(e) = confine::confine(limits, filter) {
        fail("confining", &e);
    }
    prepared.exec()
}

/// The waiter: opens the command's PID namespace, forks the command, relays its exit code.
fn waiter(parsed: &Parsed, prepared: &command::Prepared, filter: &seccompiler::BpfProgram) -> ! {
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWPID) {
        sys::write_stderr(format!("clawden-sandbox: new PID namespace: {e}\n").as_bytes());
        sys::exit_now(crate::EXIT_SANDBOX_FAILURE);
    }
    let Ok((alive_r, alive_w)) = liveness_pipe() else {
        sys::exit_now(crate::EXIT_SANDBOX_FAILURE);
    };
    match sys::clone_process(0) {
        Ok(Forked::Child) => {
            drop(alive_w);
            tie_to_parent(alive_r);
            command_process(parsed, prepared, filter)
        }
        Ok(Forked::Parent { pid, .. }) => {
            drop(alive_r);
            // The waiter needs no privilege to wait.
            let _ = sys::drop_all_capabilities();
            let code = match waitpid(Pid::from_raw(pid), None) {
                Ok(status) => exit_code(status),
                Err(_) => crate::EXIT_SANDBOX_FAILURE,
            };
            drop(alive_w);
            sys::exit_now(code)
        }
        Err(e) => {
            sys::write_stderr(format!("clawden-sandbox: fork: {e}\n").as_bytes());
            sys::exit_now(crate::EXIT_SANDBOX_FAILURE)
        }
    }
}

/// Runs the exec; returns the command's exit code (124 on timeout, 125 on helper failure).
pub(crate) fn exec(parsed: Parsed) -> i32 {
    let result = (|| -> io::Result<i32> {
        let signals = signal_fd()?;
        let filter = seccomp::filter()?;
        enter(&parsed)?;
        let prepared = command::prepare(&parsed.command).map_err(io::Error::other)?;
        let deadline =
            (parsed.command.timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(parsed.command.timeout_ms));
        let (alive_r, alive_w) = liveness_pipe()?;
        match sys::clone_process(0)? {
            Forked::Child => {
                drop(alive_w);
                tie_to_parent(alive_r);
                waiter(&parsed, &prepared, &filter)
            }
            Forked::Parent { pid, pidfd } => {
                drop(alive_r);
                let code = wait_command(&Started { pid, pidfd }, deadline, &signals);
                drop(alive_w);
                code
            }
        }
    })();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("clawden-sandbox: {e}");
            crate::EXIT_SANDBOX_FAILURE
        }
    }
}
