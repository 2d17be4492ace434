//! The sandbox's file system: a tmpfs root holding read-only binds of the system directories, a
//! synthetic `/etc`, a fresh `/proc`, a minimal `/dev`, a private `/tmp` and the workspace; then
//! `pivot_root` and the old root detached.

use crate::plan::SandboxPlan;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the new root is assembled: a tmpfs mounted over `/tmp` of the sandbox's own mount
/// namespace (the host's `/tmp` is untouched).
const NEW_ROOT: &str = "/tmp";

/// System directories bound read-only (or recreated as the same symlink on merged-/usr hosts).
const SYSTEM_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib64", "lib32", "libx32"];

/// Small host `/etc` files a program may need and that hold no secret: copied (a copy is
/// cheaper than a bind mount and its remount).
const ETC_COPIED: &[&str] = &["ld.so.cache", "protocols", "services", "ssl/openssl.cnf"];

/// Host `/etc` entries recreated as the same symlink or bound read-only (directories). Not
/// `/etc/ssl` as a whole: it holds `private/`.
const ETC_MIRRORED: &[&str] = &["localtime", "os-release", "alternatives", "ssl/certs"];

/// Device nodes bound from the host `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

fn err(what: &str, path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what} {}: {e}", path.display()))
}

fn bind(src: &Path, dst: &Path, extra: MsFlags) -> io::Result<()> {
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| err("bind", dst, e))?;
    // A remount must keep the flags the kernel locked on the source (atime, noexec…) or a user
    // namespace refuses it.
    let locked = statvfs(src).map(|s| s.flags()).unwrap_or(FsFlags::empty());
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | extra;
    for (st, ms) in [
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
    ] {
        if locked.contains(st) {
            flags |= ms;
        }
    }
    mount(None::<&str>, dst, None::<&str>, flags, None::<&str>).map_err(|e| err("remount", dst, e))
}

fn bind_ro(src: &Path, dst: &Path) -> io::Result<()> {
    bind(src, dst, MsFlags::MS_RDONLY | MsFlags::MS_NODEV)
}

/// Recreates `host` under the new root: the same symlink, or a read-only bind of the directory
/// or file. Missing entries are skipped.
fn mirror(host: &Path, root: &Path) -> io::Result<()> {
    let Ok(meta) = fs::symlink_metadata(host) else {
        return Ok(());
    };
    let rel = host.strip_prefix("/").unwrap_or(host);
    let dst = root.join(rel);
    if meta.file_type().is_symlink() {
        let target = fs::read_link(host)?;
        symlink(&target, &dst).map_err(|e| err("symlink", &dst, e))
    } else if meta.is_dir() {
        fs::create_dir(&dst).map_err(|e| err("mkdir", &dst, e))?;
        bind_ro(host, &dst)
    } else {
        fs::write(&dst, b"").map_err(|e| err("create", &dst, e))?;
        bind_ro(host, &dst)
    }
}

fn write_etc(root: &Path, hostname: &str) -> io::Result<()> {
    let etc = root.join("etc");
    fs::create_dir(&etc)?;
    // Synthetic account and name files: nothing about the host's users leaks in.
    let files: [(&str, String); 6] = [
        (
            "passwd",
            "root:x:0:0:root:/workspace:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n".into(),
        ),
        ("group", "root:x:0:\nnogroup:x:65534:\n".into()),
        (
            "hosts",
            format!("127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost\n"),
        ),
        ("hostname", format!("{hostname}\n")),
        ("resolv.conf", String::new()),
        ("nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n".into()),
    ];
    for (name, content) in files {
        fs::write(etc.join(name), content)?;
    }
    fs::create_dir(etc.join("ssl"))?;
    for name in ETC_COPIED {
        let host = Path::new("/etc").join(name);
        if host.is_file() {
            fs::copy(&host, etc.join(name)).map_err(|e| err("copy", &host, e))?;
        }
    }
    for name in ETC_MIRRORED {
        mirror(&Path::new("/etc").join(name), root)?;
    }
    Ok(())
}

fn build_dev(root: &Path) -> io::Result<()> {
    let dev = root.join("dev");
    fs::create_dir(&dev)?;
    mount(
        Some("tmpfs"),
        &dev,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("mode=0755,size=64k,nr_inodes=64"),
    )
    .map_err(|e| err("mount tmpfs", &dev, e))?;
    for name in DEVICES {
        let dst = dev.join(name);
        fs::write(&dst, b"")?;
        // A plain bind: flags on a device node's own mount change nothing that matters (it
        // cannot be executed, and nothing inside may remount).
        let src = Path::new("/dev").join(name);
        mount(
            Some(&src),
            &dst,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| err("bind", &dst, e))?;
    }
    let pts = dev.join("pts");
    fs::create_dir(&pts)?;
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(|e| err("mount devpts", &pts, e))?;
    for (name, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("shm", "/tmp"),
    ] {
        symlink(target, dev.join(name))?;
    }
    // Nothing may create files in /dev afterwards.
    mount(
        None::<&str>,
        &dev,
        None::<&str>,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| err("remount ro", &dev, e))
}

/// Opens the workspace in the new mount namespace while the process still has the host
/// identity it was cloned with (the sandbox's root may lack the right to walk the host path), and
/// before `/tmp`, where the host path may well be, gets covered below.
pub(crate) fn open_workspace(plan: &SandboxPlan) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(&plan.workspace)
        .map_err(|e| err("open", &plan.workspace, e))
}

/// Builds the file system and switches into it. Runs in the sandbox's new mount namespace as
/// its root; `workspace` comes from [`open_workspace`].
pub(crate) fn build(plan: &SandboxPlan, workspace: fs::File) -> io::Result<()> {
    let workspace_src = PathBuf::from(format!("/proc/self/fd/{}", workspace.as_raw_fd()));

    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| err("make private", Path::new("/"), e))?;
    let root = Path::new(NEW_ROOT);
    mount(
        Some("tmpfs"),
        root,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("mode=0755,size=1m,nr_inodes=4096"),
    )
    .map_err(|e| err("mount tmpfs", root, e))?;

    for d in SYSTEM_DIRS {
        mirror(&Path::new("/").join(d), root)?;
    }
    write_etc(root, &plan.hostname)?;

    let proc_dir = root.join("proc");
    fs::create_dir(&proc_dir)?;
    // `hidepid=invisible`: processes a sandboxed program may not ptrace do not even show up.
    // That hides the sandbox's idle init and the helpers that enter it (both non-dumpable),
    // whose command lines name host paths.
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("hidepid=invisible"),
    )
    .map_err(|e| err("mount proc", &proc_dir, e))?;

    build_dev(root)?;

    let tmp = root.join("tmp");
    fs::create_dir(&tmp)?;
    mount(
        Some("tmpfs"),
        &tmp,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(format!("mode=1777,size={}", plan.tmp_bytes.max(4096)).as_str()),
    )
    .map_err(|e| err("mount tmpfs", &tmp, e))?;

    let ws = root.join("workspace");
    fs::create_dir(&ws)?;
    bind(&workspace_src, &ws, MsFlags::MS_NODEV)?;
    drop(workspace);

    for d in ["root", "home", "run", "var", "mnt"] {
        fs::create_dir(root.join(d))?;
    }
    fs::set_permissions(root, fs::Permissions::from_mode(0o755))?;

    nix::unistd::chdir(root)?;
    nix::unistd::pivot_root(".", ".").map_err(|e| err("pivot_root", root, e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detach old root", root, e))?;
    nix::unistd::chdir("/")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_BIND
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV,
        None::<&str>,
    )
    .map_err(|e| err("remount ro", Path::new("/"), e))?;
    Ok(())
}
