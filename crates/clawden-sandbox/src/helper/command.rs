//! Turning a command plan into the C strings `execve` needs, before any fork.

use crate::plan::{bytes, CommandPlan};
use crate::sys;
use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// A command ready for `execve`: owned strings and the pointer arrays into them.
#[derive(Debug)]
pub(crate) struct Prepared {
    path: CString,
    _argv: Vec<CString>,
    _env: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    env_ptrs: Vec<*const libc::c_char>,
}

const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";

fn cstring(b: Vec<u8>) -> Result<CString, String> {
    CString::new(b).map_err(|_| "argument contains a NUL byte".to_owned())
}

/// Finds `name` on `PATH` the way a shell would; names with a `/` are taken as they are.
fn resolve(name: &[u8], path_var: &[u8]) -> Vec<u8> {
    if name.contains(&b'/') {
        return name.to_vec();
    }
    for dir in path_var.split(|&b| b == b':') {
        let mut candidate = if dir.is_empty() { b".".to_vec() } else { dir.to_vec() };
        candidate.push(b'/');
        candidate.extend_from_slice(name);
        let p = Path::new(std::ffi::OsStr::from_bytes(&candidate));
        if p.is_file() {
            return candidate;
        }
    }
    name.to_vec()
}

/// Builds the program path, arguments and the clean environment. Must run where the sandbox's
/// file system is visible (after `setns` or `pivot_root`) so that `PATH` resolves inside it.
pub(crate) fn prepare(plan: &CommandPlan) -> Result<Prepared, String> {
    let Some(first) = plan.argv.first() else {
        return Err("no command given".to_owned());
    };
    let mut env: Vec<OsString> = plan.env.clone();
    if !env.iter().any(|e| e.as_bytes().starts_with(b"PATH=")) {
        env.push(OsString::from(format!("PATH={DEFAULT_PATH}")));
    }
    let path_var =
        env.iter().rev().find_map(|e| e.as_bytes().strip_prefix(b"PATH=").map(<[u8]>::to_vec)).unwrap_or_default();
    let path = cstring(resolve(first.as_bytes(), &path_var))?;
    let argv = plan.argv.iter().map(|a| cstring(bytes(a))).collect::<Result<Vec<_>, _>>()?;
    let env = env.iter().map(|e| cstring(bytes(e))).collect::<Result<Vec<_>, _>>()?;
    let mut argv_ptrs: Vec<_> = argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Vec<_> = env.iter().map(|e| e.as_ptr()).collect();
    env_ptrs.push(std::ptr::null());
    Ok(Prepared { path, _argv: argv, _env: env, argv_ptrs, env_ptrs })
}

impl Prepared {
    /// Replaces the process with the command; on failure reports on stderr and exits 127 (not
    /// found) or 126 (not executable), as shells do.
    pub(crate) fn exec(&self) -> ! {
        let err = sys::execve(&self.path, &self.argv_ptrs, &self.env_ptrs);
        sys::write_stderr(b"clawden-sandbox: cannot execute ");
        sys::write_stderr(self.path.as_bytes());
        sys::write_stderr(b": ");
        sys::write_stderr(err.to_string().as_bytes());
        sys::write_stderr(b"\n");
        let code = if err.raw_os_error() == Some(libc::ENOENT) { 127 } else { 126 };
        sys::exit_now(code)
    }
}
