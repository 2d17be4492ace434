//! The helper: the single-threaded process the library re-executes to build and enter
//! sandboxes. The async server never forks; it spawns `<helper> __sandbox-init MODE ARGS…`.

pub(crate) mod cgroup;
mod command;
mod confine;
mod enter;
mod monitor;
mod rootfs;
mod seccomp;
mod volume;

use crate::sys;
use std::ffi::OsString;

/// The first argument that makes a binary act as the sandbox helper: `clawden __sandbox-init …`.
pub const HELPER_SUBCOMMAND: &str = "__sandbox-init";

/// Entry point of the sandbox helper. `args` are the arguments *after*
/// [`HELPER_SUBCOMMAND`]; the return value is the process exit code.
///
/// The binary must call this first thing in `main`, before starting any thread or async
/// runtime (entering a user namespace requires a single-threaded process, and the helper
/// refuses to run otherwise):
///
/// ```no_run
/// // First thing in `main`:
/// let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
/// if args.get(1).is_some_and(|a| a == clawden_sandbox::HELPER_SUBCOMMAND) {
///     std::process::exit(clawden_sandbox::helper_main(&args[2..]));
/// }
/// // … the normal program …
/// ```
///
/// Modes (the library writes the arguments; nobody needs to type them):
/// * `start …` builds a sandbox with an idle first process, prints `ready PID USERNS-INODE`,
///   and keeps it until `stop` or end of file on stdin;
/// * `exec …` runs one command inside a running sandbox;
/// * `run …` builds a sandbox, runs one command as its first process, and tears it down.
pub fn helper_main(args: &[OsString]) -> i32 {
    if !sys::is_single_threaded() {
        eprintln!("clawden-sandbox: the helper must run single-threaded; call helper_main before starting threads");
        return crate::EXIT_SANDBOX_FAILURE;
    }
    // Nor any signal the parent ignored (SIGPIPE stays ignored in the helper itself, so that a
    // vanished server cannot kill a monitor before its teardown; children reset it).
    sys::default_signal_dispositions();
    // Nothing the parent left open may reach a sandbox.
    if let Err(e) = sys::close_from(3) {
        eprintln!("clawden-sandbox: closing inherited descriptors: {e}");
        return crate::EXIT_SANDBOX_FAILURE;
    }
    let Some((mode, rest)) = args.split_first() else {
        eprintln!("clawden-sandbox: usage: {HELPER_SUBCOMMAND} start|exec|run ARGS…");
        return crate::EXIT_SANDBOX_FAILURE;
    };
    let parsed = match crate::plan::parse(rest) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("clawden-sandbox: {e}");
            return crate::EXIT_SANDBOX_FAILURE;
        }
    };
    match mode.to_str() {
        Some("start") => monitor::start(parsed),
        Some("run") => monitor::run(parsed),
        Some("exec") => enter::exec(parsed),
        _ => {
            eprintln!("clawden-sandbox: unknown helper mode {mode:?}");
            crate::EXIT_SANDBOX_FAILURE
        }
    }
}
