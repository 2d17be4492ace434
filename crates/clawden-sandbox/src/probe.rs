//! What isolation the running kernel offers, so that the server fails closed and
//! `security-audit` can explain why tools are off.

use crate::config::BackendConfig;
use crate::plan::CgroupDir;
use std::fs;
use std::path::{Path, PathBuf};

/// Which cgroup interface enforces the limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupVersion {
    /// The unified hierarchy, with memory, pids and cpu controllers available.
    V2,
    /// Separate v1 hierarchies for memory, pids and cpu.
    V1,
}

/// The cgroup controllers this process can use for sandboxes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupSupport {
    /// The interface that will be used, if any offers all of memory, pids and cpu.
    pub version: Option<CgroupVersion>,
    /// Controllers available to this process on cgroup v2.
    pub v2_controllers: Vec<String>,
    /// Controllers mounted as cgroup v1 hierarchies.
    pub v1_controllers: Vec<String>,
    /// (controller, directory of this process's own cgroup) for each usable hierarchy.
    own_dirs: Vec<(Option<String>, PathBuf)>,
}

const NEEDED: [&str; 3] = ["memory", "pids", "cpu"];

impl CgroupSupport {
    fn detect() -> Self {
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let mut v2_mount: Option<PathBuf> = None;
        let mut v1_mounts: Vec<(String, PathBuf)> = Vec::new();
        for line in mountinfo.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let Some(sep) = fields.iter().position(|f| *f == "-") else {
                continue;
            };
            let (Some(mount_point), Some(fstype), Some(opts)) =
                (fields.get(4), fields.get(sep + 1), fields.get(sep + 3))
            else {
                continue;
            };
            // Only hierarchies mounted at their root, so that our own cgroup path applies.
            if fields.get(3) != Some(&"/") {
                continue;
            }
            match *fstype {
                "cgroup2" => v2_mount = v2_mount.or_else(|| Some(PathBuf::from(mount_point))),
                "cgroup" => {
                    for c in opts.split(',').filter(|c| NEEDED.contains(c)) {
                        v1_mounts.push((c.to_owned(), PathBuf::from(mount_point)));
                    }
                }
                _ => {}
            }
        }
        let mut own_v2 = None;
        let mut own_v1: Vec<(String, String)> = Vec::new();
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
                continue;
            };
            if ctrls.is_empty() {
                own_v2 = Some(path.to_owned());
            } else {
                for c in ctrls.split(',') {
                    own_v1.push((c.to_owned(), path.to_owned()));
                }
            }
        }
        let join = |mount: &Path, own: &str| mount.join(own.trim_start_matches('/'));
        let mut support = CgroupSupport::default();
        if let (Some(mount), Some(own)) = (&v2_mount, &own_v2) {
            let dir = join(mount, own);
            support.v2_controllers = fs::read_to_string(dir.join("cgroup.controllers"))
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if NEEDED.iter().all(|n| support.v2_controllers.iter().any(|c| c == n)) {
                support.version = Some(CgroupVersion::V2);
                support.own_dirs = vec![(None, dir)];
                return support;
            }
        }
        let mut dirs = Vec::new();
        for (ctrl, mount) in &v1_mounts {
            support.v1_controllers.push(ctrl.clone());
            if let Some((_, own)) = own_v1.iter().find(|(c, _)| c == ctrl) {
                dirs.push((Some(ctrl.clone()), join(mount, own)));
            }
        }
        if NEEDED.iter().all(|n| dirs.iter().any(|(c, _)| c.as_deref() == Some(*n))) {
            support.version = Some(CgroupVersion::V1);
            support.own_dirs = dirs;
        }
        support
    }

    /// The cgroup directories of one sandbox: `<own cgroup>/<parent>/<name>` in each hierarchy.
    pub(crate) fn sandbox_dirs(&self, parent: &str, name: &str) -> Vec<CgroupDir> {
        self.own_dirs
            .iter()
            .map(|(controller, own)| CgroupDir { controller: controller.clone(), dir: own.join(parent).join(name) })
            .collect()
    }
}

/// The isolation features of this kernel and process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// The backend runs as host root (uid ranges, loop devices and cgroups need it).
    pub running_as_root: bool,
    /// User namespaces can be created by this process.
    pub user_namespaces: bool,
    /// Seccomp filters are available.
    pub seccomp: bool,
    /// The Landlock ABI version, if Landlock is enabled.
    pub landlock_abi: Option<u32>,
    /// `pidfd_open(2)` works (Linux 5.3+; 5.8+ for entering namespaces through it).
    pub pidfd: bool,
    /// Loop devices and `mkfs.ext4` are there for workspace quotas.
    pub quota_volumes: bool,
    /// Cgroup controllers for the memory, PID and CPU limits.
    pub cgroups: CgroupSupport,
    /// The host's `kernel.core_pattern` pipes core dumps to a program. That program runs as host
    /// root when any process crashes, sandboxed ones included (sandboxed processes have
    /// `RLIMIT_CORE` 0, which does not stop a pipe); `security-audit` should warn.
    pub core_pattern_pipe: bool,
}

impl Capabilities {
    /// What the configuration requires but this kernel lacks; empty means sandboxes can start.
    pub fn missing(&self, config: &BackendConfig) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if !self.user_namespaces {
            missing.push("user namespaces");
        }
        if !self.seccomp {
            missing.push("seccomp filters");
        }
        if !self.pidfd {
            missing.push("pidfd (Linux 5.8 or later)");
        }
        if config.require_cgroups && self.cgroups.version.is_none() {
            missing.push("cgroup controllers memory, pids and cpu");
        }
        if config.require_quota && !self.quota_volumes {
            missing.push("workspace quota volumes (root, loop devices, mkfs.ext4)");
        }
        if config.require_landlock && self.landlock_abi.is_none() {
            missing.push("Landlock");
        }
        missing
    }
}

fn read_number(path: &str) -> Option<i64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn landlock_abi() -> Option<u32> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute pointer and size 0 this call only returns the ABI version.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    (v > 0).then_some(v as u32)
}

/// Reports the isolation features of the running kernel. Cheap: reads `/proc` and makes two
/// harmless system calls.
pub fn probe() -> Capabilities {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let max_userns = read_number("/proc/sys/user/max_user_namespaces").unwrap_or(0);
    let unpriv = read_number("/proc/sys/kernel/unprivileged_userns_clone").unwrap_or(1);
    let user_namespaces = Path::new("/proc/self/ns/user").exists() && max_userns > 0 && (root || unpriv != 0);
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let seccomp =
        status.lines().any(|l| l.starts_with("Seccomp_filters:")) || status.lines().any(|l| l.starts_with("Seccomp:"));
    // SAFETY: getpid cannot fail.
    let me = unsafe { libc::getpid() };
    let pidfd = crate::sys::pidfd_open(me).is_ok();
    let quota_volumes = root
        && Path::new("/dev/loop-control").exists()
        && ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4", "/usr/bin/mkfs.ext4"].iter().any(|p| Path::new(p).exists());
    Capabilities {
        running_as_root: root,
        user_namespaces,
        seccomp,
        landlock_abi: landlock_abi(),
        pidfd,
        quota_volumes,
        cgroups: CgroupSupport::detect(),
        core_pattern_pipe: fs::read_to_string("/proc/sys/kernel/core_pattern")
            .is_ok_and(|p| p.trim_start().starts_with('|')),
    }
}
