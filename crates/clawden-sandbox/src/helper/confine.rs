//! The last steps before a sandboxed program runs: limits, no new privileges, no capabilities,
//! Landlock, seccomp — in that order, because each later step needs the earlier ones.

use super::seccomp;
use crate::sys;
use landlock::{path_beneath_rules, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, ABI};
use nix::sys::resource::{setrlimit, Resource};
use seccompiler::BpfProgram;
use std::io;

/// The Landlock ABI the rules are written for; older kernels get the subset they know.
const LANDLOCK_ABI: ABI = ABI::V5;

/// Per-process limits (the cgroup limits apply to the sandbox as a whole).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcessLimits {
    pub open_files: u64,
    pub processes: u64,
}

fn set_rlimits(limits: ProcessLimits) -> io::Result<()> {
    setrlimit(Resource::RLIMIT_NOFILE, limits.open_files, limits.open_files)?;
    // Counted per user namespace, so this is a second fence behind the pids cgroup.
    setrlimit(Resource::RLIMIT_NPROC, limits.processes, limits.processes)?;
    setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
    setrlimit(Resource::RLIMIT_MEMLOCK, 64 << 10, 64 << 10)?;
    Ok(())
}

/// Read-only everywhere; read-write only in `/workspace`, `/tmp` and the device nodes.
fn landlock() -> io::Result<()> {
    let all = AccessFs::from_all(LANDLOCK_ABI);
    let read = AccessFs::from_read(LANDLOCK_ABI);
    let result = Ruleset::default()
        .handle_access(all)
        .and_then(|r| r.create())
        .and_then(|r| r.add_rules(path_beneath_rules(["/"], read)))
        .and_then(|r| r.add_rules(path_beneath_rules(["/workspace", "/tmp", "/dev"], all)))
        .and_then(|r| r.add_rules(path_beneath_rules(["/proc"], read | AccessFs::WriteFile)))
        .and_then(|r| r.restrict_self());
    result.map(|_| ()).map_err(io::Error::other)
}

/// Undoes what the helper changed about signals, since an exec'd program inherits both ignored
/// dispositions and the blocked mask: Rust ignores `SIGPIPE`, and the helper blocks the
/// termination signals it reads through a signalfd. (Handlers are reset by `execve` itself.)
pub(crate) fn reset_signals() {
    // SAFETY: installing the default disposition is always sound.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // SAFETY: an empty, initialised set; the old mask is not wanted.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Confines the calling process for good. Only `execve` of the command should follow.
pub(crate) fn confine(limits: ProcessLimits, filter: &BpfProgram) -> io::Result<()> {
    set_rlimits(limits)?;
    nix::sys::prctl::set_no_new_privs()?;
    sys::drop_all_capabilities()?;
    // Best effort: a kernel without Landlock still has the mount namespace and seccomp, and
    // `probe()` reports the gap (`require_landlock` makes the backend refuse to start instead).
    let _ = landlock();
    seccomp::install(filter)
}
