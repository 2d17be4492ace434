//! What the library asks the helper to do, as command-line arguments.
//!
//! The helper is a fresh process, so everything it needs travels in `argv` as `--name=value`
//! words, with the command after `--`. Nothing secret is ever part of a plan.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

/// A cgroup the sandbox lives in: one per v1 controller, or a single v2 directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CgroupDir {
    /// `None` for cgroup v2, else the v1 controller (`memory`, `pids`, `cpu`).
    pub controller: Option<String>,
    /// The directory of the sandbox's cgroup.
    pub dir: PathBuf,
}

/// How to build the sandbox itself (modes `start` and `run`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SandboxPlan {
    pub host_uid: u32,
    pub host_gid: u32,
    /// Number of ids mapped (1 when unprivileged).
    pub id_count: u32,
    /// Running without host root: `setgroups` is denied and only our own uid is mapped.
    pub unprivileged: bool,
    pub workspace: PathBuf,
    /// An ext4 image to mount on `workspace` first.
    pub image: Option<PathBuf>,
    pub quota_bytes: u64,
    pub cgroups: Vec<CgroupDir>,
    pub memory_bytes: u64,
    pub swap_bytes: u64,
    pub pids: u32,
    pub cpu_millicores: u32,
    pub tmp_bytes: u64,
    pub hostname: String,
    /// A host directory where the helper keeps the root template (see `helper::rootfs`).
    pub template_dir: PathBuf,
}

/// One command to run (modes `run` and `exec`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CommandPlan {
    pub timeout_ms: u64,
    pub cwd: String,
    pub env: Vec<OsString>,
    pub open_files: u64,
    pub pids: u32,
    pub argv: Vec<OsString>,
}

/// Where an `exec` finds its sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Target {
    pub init_pid: i32,
    /// Inode of the sandbox's user namespace, so a recycled pid is never entered.
    pub userns_ino: u64,
    pub cgroups: Vec<CgroupDir>,
}

/// A malformed plan. Only the library writes plans, so this means a version mismatch or a caller
/// invoking the helper by hand.
#[derive(Debug)]
pub(crate) struct PlanError(pub String);

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bad helper arguments: {}", self.0)
    }
}

fn word(name: &str, value: impl AsRef<OsStr>) -> OsString {
    let mut w = OsString::from(format!("--{name}="));
    w.push(value.as_ref());
    w
}

fn cgroup_word(c: &CgroupDir) -> OsString {
    let mut v = OsString::from(c.controller.as_deref().unwrap_or(""));
    v.push(":");
    v.push(&c.dir);
    word("cgroup", v)
}

impl SandboxPlan {
    pub fn to_args(&self, out: &mut Vec<OsString>) {
        out.push(word("uid", self.host_uid.to_string()));
        out.push(word("gid", self.host_gid.to_string()));
        out.push(word("ids", self.id_count.to_string()));
        if self.unprivileged {
            out.push(word("unprivileged", "1"));
        }
        out.push(word("workspace", &self.workspace));
        if let Some(image) = &self.image {
            out.push(word("image", image));
        }
        out.push(word("quota", self.quota_bytes.to_string()));
        for c in &self.cgroups {
            out.push(cgroup_word(c));
        }
        out.push(word("memory", self.memory_bytes.to_string()));
        out.push(word("swap", self.swap_bytes.to_string()));
        out.push(word("pids", self.pids.to_string()));
        out.push(word("cpu", self.cpu_millicores.to_string()));
        out.push(word("tmp", self.tmp_bytes.to_string()));
        out.push(word("hostname", &self.hostname));
        out.push(word("templates", &self.template_dir));
    }
}

impl CommandPlan {
    pub fn to_args(&self, out: &mut Vec<OsString>) {
        out.push(word("timeout-ms", self.timeout_ms.to_string()));
        out.push(word("cwd", &self.cwd));
        for e in &self.env {
            out.push(word("env", e));
        }
        out.push(word("nofile", self.open_files.to_string()));
        out.push(word("nproc", self.pids.to_string()));
        out.push(OsString::from("--"));
        out.extend(self.argv.iter().cloned());
    }
}

impl Target {
    pub fn to_args(&self, out: &mut Vec<OsString>) {
        out.push(word("pid", self.init_pid.to_string()));
        out.push(word("userns", self.userns_ino.to_string()));
        for c in &self.cgroups {
            out.push(cgroup_word(c));
        }
    }
}

/// Everything a helper invocation said, parsed once.
#[derive(Debug, Default)]
pub(crate) struct Parsed {
    pub sandbox: SandboxPlan,
    pub command: CommandPlan,
    pub target: Target,
}

fn num<T: std::str::FromStr>(name: &str, v: &OsStr) -> Result<T, PlanError> {
    v.to_str().and_then(|s| s.parse().ok()).ok_or_else(|| PlanError(format!("--{name} wants a number")))
}

/// Parses the words after the mode. Unknown words are refused.
pub(crate) fn parse(args: &[OsString]) -> Result<Parsed, PlanError> {
    let mut p = Parsed::default();
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_bytes();
        i += 1;
        if a == b"--" {
            p.command.argv = args[i..].to_vec();
            break;
        }
        let Some(rest) = a.strip_prefix(b"--") else {
            return Err(PlanError(format!("unexpected word {:?}", args[i - 1])));
        };
        let eq =
            rest.iter().position(|&b| b == b'=').ok_or_else(|| PlanError(format!("{:?} has no value", args[i - 1])))?;
        let name = String::from_utf8_lossy(&rest[..eq]).into_owned();
        let value = OsStr::from_bytes(&rest[eq + 1..]);
        match name.as_str() {
            "uid" => p.sandbox.host_uid = num(&name, value)?,
            "gid" => p.sandbox.host_gid = num(&name, value)?,
            "ids" => p.sandbox.id_count = num(&name, value)?,
            "unprivileged" => p.sandbox.unprivileged = value == "1",
            "workspace" => p.sandbox.workspace = PathBuf::from(value),
            "image" => p.sandbox.image = Some(PathBuf::from(value)),
            "quota" => p.sandbox.quota_bytes = num(&name, value)?,
            "cgroup" => {
                let b = value.as_bytes();
                let colon = b
                    .iter()
                    .position(|&c| c == b':')
                    .ok_or_else(|| PlanError("--cgroup wants CONTROLLER:DIR".into()))?;
                let controller = String::from_utf8_lossy(&b[..colon]).into_owned();
                let dir = PathBuf::from(OsStr::from_bytes(&b[colon + 1..]));
                let c = CgroupDir { controller: (!controller.is_empty()).then_some(controller), dir };
                p.sandbox.cgroups.push(c.clone());
                p.target.cgroups.push(c);
            }
            "memory" => p.sandbox.memory_bytes = num(&name, value)?,
            "swap" => p.sandbox.swap_bytes = num(&name, value)?,
            "pids" => p.sandbox.pids = num(&name, value)?,
            "cpu" => p.sandbox.cpu_millicores = num(&name, value)?,
            "tmp" => p.sandbox.tmp_bytes = num(&name, value)?,
            "hostname" => p.sandbox.hostname = value.to_string_lossy().into_owned(),
            "templates" => p.sandbox.template_dir = PathBuf::from(value),
            "timeout-ms" => p.command.timeout_ms = num(&name, value)?,
            "cwd" => p.command.cwd = value.to_string_lossy().into_owned(),
            "env" => p.command.env.push(value.to_owned()),
            "nofile" => p.command.open_files = num(&name, value)?,
            "nproc" => p.command.pids = num(&name, value)?,
            "pid" => p.target.init_pid = num(&name, value)?,
            "userns" => p.target.userns_ino = num(&name, value)?,
            _ => return Err(PlanError(format!("unknown option --{name}"))),
        }
    }
    Ok(p)
}

/// Turns an `OsString` into bytes for C calls.
pub(crate) fn bytes(s: &OsStr) -> Vec<u8> {
    s.to_owned().into_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_survives_the_trip_through_argv() {
        let sandbox = SandboxPlan {
            host_uid: 165536,
            host_gid: 165536,
            id_count: 65536,
            unprivileged: false,
            workspace: PathBuf::from("/data/v/workspace"),
            image: Some(PathBuf::from("/data/v/workspace.img")),
            quota_bytes: 1 << 30,
            cgroups: vec![CgroupDir {
                controller: Some("memory".into()),
                dir: PathBuf::from("/sys/fs/cgroup/memory/clawden/x"),
            }],
            memory_bytes: 1,
            swap_bytes: 0,
            pids: 3,
            cpu_millicores: 500,
            tmp_bytes: 9,
            hostname: "sandbox".into(),
            template_dir: PathBuf::from("/data/state/templates"),
        };
        let command = CommandPlan {
            timeout_ms: 5,
            cwd: "/workspace".into(),
            env: vec!["PATH=/usr/bin".into(), "A=b=c".into()],
            open_files: 64,
            pids: 3,
            argv: vec!["sh".into(), "--".into(), "--cwd=/x".into()],
        };
        let mut args = Vec::new();
        sandbox.to_args(&mut args);
        command.to_args(&mut args);
        let parsed = parse(&args).expect("round trip");
        assert_eq!(parsed.sandbox, sandbox);
        assert_eq!(parsed.command, command);
    }

    #[test]
    fn unknown_words_are_refused() {
        assert!(parse(&["--nope=1".into()]).is_err());
        assert!(parse(&["loose".into()]).is_err());
        assert!(parse(&["--pids=many".into()]).is_err());
    }
}
