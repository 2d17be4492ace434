//! Mode `exec`: run one command in a sandbox that is already running (a warm exec).
//!
//! The helper joins the sandbox's cgroups, enters all its namespaces at once through a pidfd of
//! its first process, opens a PID namespace of its own for the command (so that when the command
//! ends or times out, everything it started ends with it), and forks the command, confined
//! exactly like the sandbox's first process.

use super::monitor::{signal_fd, wait_command, Started};
use super::{cgroup, command, confine, seccomp};
use crate::plan::Parsed;
use crate::sys::{self, Forked};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::unistd::{Gid, Uid};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

fn enter(parsed: &Parsed) -> io::Result<()> {
    let target = &parsed.target;
    let pidfd = sys::pidfd_open(target.init_pid)?;
    // The pid could have been recycled: accept it only if it still owns the sandbox's user
    // namespace, and only if the process our pidfd names is still alive after that check.
    let ino = std::fs::metadata(format!("/proc/{}/ns/user", target.init_pid))?.ino();
    if ino != target.userns_ino {
        return Err(io::Error::other("the sandbox is gone (user namespace changed)"));
    }
    sys::pidfd_signal(&pidfd, 0)?;
    cgroup::join(&target.cgroups, 0)?;
    let all = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWCGROUP;
    nix::sched::setns(&pidfd, all)?;
    nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))?;
    nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))?;
    // Refused when the sandbox was made unprivileged (setgroups denied); then there is nothing
    // to drop that the kernel would honour inside anyway.
    let _ = nix::unistd::setgroups(&[]);
    nix::sched::unshare(CloneFlags::CLONE_NEWPID)?;
    // Until exec, nothing in the sandbox may inspect this process (it came from the host).
    nix::sys::prctl::set_dumpable(false)?;
    Ok(())
}

/// Runs the exec; returns the command's exit code (124 on timeout, 125 on helper failure).
pub(crate) fn exec(parsed: Parsed) -> i32 {
    let result = (|| -> io::Result<i32> {
        let signals = signal_fd()?;
        let filter = seccomp::filter()?;
        enter(&parsed)?;
        let prepared = command::prepare(&parsed.command).map_err(io::Error::other)?;
        let limits = confine::ProcessLimits {
            open_files: parsed.command.open_files.max(64),
            processes: u64::from(parsed.command.pids.max(1)),
        };
        let deadline = (parsed.command.timeout_ms > 0)
            .then(|| Instant::now() + Duration::from_millis(parsed.command.timeout_ms));
        match sys::clone_process(0)? {
            Forked::Child => {
                let fail = |what: &str, e: &dyn std::fmt::Display| -> ! {
                    sys::write_stderr(format!("clawden-sandbox: {what}: {e}\n").as_bytes());
                    sys::exit_now(crate::EXIT_SANDBOX_FAILURE)
                };
                // If the helper dies (the server gave up on us), so does the command and, being
                // the first process of its PID namespace, everything it started.
                if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
                    fail("pdeathsig", &e);
                }
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
                if let Err(e) = confine::confine(limits, &filter) {
                    fail("confining", &e);
                }
                prepared.exec()
            }
            Forked::Parent { pid, pidfd } => wait_command(&Started { pid, pidfd }, deadline, &signals),
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
