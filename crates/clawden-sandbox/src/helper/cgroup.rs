//! Creating, joining and removing a sandbox's cgroups (v2, or v1 with one directory per
//! controller).

use crate::plan::{CgroupDir, SandboxPlan};
use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

const CPU_PERIOD_US: u64 = 100_000;

fn write_file(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new().write(true).open(path)?;
    f.write_all(value.as_bytes()).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

fn write_in(dir: &Path, file: &str, value: &str) -> io::Result<()> {
    write_file(&dir.join(file), value)
}

/// Enables the controllers in every cgroup v2 ancestor of `dir` below the mount root.
fn enable_v2_controllers(dir: &Path) {
    let mut ancestors: Vec<&Path> = dir.ancestors().skip(1).collect();
    ancestors.reverse();
    for a in ancestors {
        if a.join("cgroup.subtree_control").exists() {
            // Already-enabled controllers and cgroups we may not change are fine to skip: the
            // limits written below fail loudly if a controller is really missing.
            let _ = write_in(a, "cgroup.subtree_control", "+memory +pids +cpu");
        }
    }
}

/// Creates the sandbox's cgroups (or reuses them from an earlier start) and writes its limits.
pub(crate) fn create(plan: &SandboxPlan) -> io::Result<()> {
    for c in &plan.cgroups {
        if c.controller.is_none() {
            enable_v2_controllers(&c.dir);
        }
        match fs::create_dir_all(&c.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let cpu_quota = u64::from(plan.cpu_millicores) * CPU_PERIOD_US / 1000;
        match c.controller.as_deref() {
            None => {
                write_in(&c.dir, "memory.max", &plan.memory_bytes.to_string())?;
                write_in(&c.dir, "memory.swap.max", &plan.swap_bytes.to_string())?;
                // One OOM kill takes the whole sandbox down, as on v1 below.
                write_in(&c.dir, "memory.oom.group", "1")?;
                write_in(&c.dir, "pids.max", &plan.pids.to_string())?;
                write_in(&c.dir, "cpu.max", &format!("{cpu_quota} {CPU_PERIOD_US}"))?;
            }
            Some("memory") => {
                write_in(&c.dir, "memory.limit_in_bytes", &plan.memory_bytes.to_string())?;
                let memsw = c.dir.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write_file(&memsw, &(plan.memory_bytes + plan.swap_bytes).to_string())?;
                }
                if plan.swap_bytes == 0 {
                    // Best effort: the memsw limit above already forbids swap where it exists.
                    let _ = write_in(&c.dir, "memory.swappiness", "0");
                }
            }
            Some("pids") => write_in(&c.dir, "pids.max", &plan.pids.to_string())?,
            Some("cpu") => {
                write_in(&c.dir, "cpu.cfs_period_us", &CPU_PERIOD_US.to_string())?;
                write_in(&c.dir, "cpu.cfs_quota_us", &cpu_quota.to_string())?;
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Moves the calling (single-threaded) process into every cgroup of the sandbox.
///
/// On cgroup v1 it writes `0` to `tasks`: moving only the calling thread lets the kernel skip
/// the global threadgroup lock, whose first writer waits for an RCU grace period (milliseconds).
pub(crate) fn join_self(dirs: &[CgroupDir]) -> io::Result<()> {
    for c in dirs {
        let file = if c.controller.is_some() { "tasks" } else { "cgroup.procs" };
        write_in(&c.dir, file, "0")?;
    }
    Ok(())
}

/// On cgroup v1, asks the memory controller for an eventfd that becomes readable when the
/// sandbox hits its memory limit, so that the monitor can kill the whole sandbox (v1 has no
/// `memory.oom.group`).
pub(crate) fn oom_events_v1(dirs: &[CgroupDir]) -> io::Result<Option<OwnedFd>> {
    let Some(mem) = dirs.iter().find(|c| c.controller.as_deref() == Some("memory")) else {
        return Ok(None);
    };
    let control = fs::File::open(mem.dir.join("memory.oom_control"))?;
    // SAFETY: plain system call with integer arguments.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if efd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: eventfd returned a new descriptor that nothing else owns.
    let efd = unsafe { OwnedFd::from_raw_fd(efd) };
    write_in(&mem.dir, "cgroup.event_control", &format!("{} {}", efd.as_raw_fd(), control.as_raw_fd()))?;
    // The registration holds its own reference to the control file.
    Ok(Some(efd))
}

fn procs(dir: &Path) -> Vec<libc::pid_t> {
    fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Kills whatever is left in the sandbox's cgroups and removes them.
pub(crate) fn remove(dirs: &[CgroupDir]) -> io::Result<()> {
    for c in dirs {
        if !c.dir.exists() {
            continue;
        }
        let mut last = None;
        for _ in 0..200 {
            for pid in procs(&c.dir) {
                // SAFETY: plain system call; these pids are members of the sandbox's own cgroup.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                }
            }
            match fs::remove_dir(&c.dir) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Some(e) = last {
            return Err(e);
        }
    }
    Ok(())
}
