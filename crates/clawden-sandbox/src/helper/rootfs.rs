//! The sandbox's file system.
//!
//! The root is a *template* directory prepared once on the host (mount points, symlinks, the
//! synthetic `/etc`, empty device-node files), bound read-only. On it go read-only binds of the
//! system directories, a fresh `/proc`, the device nodes and a private `pts`, a private `/tmp`
//! and the workspace; then `pivot_root` and the old root is detached. Preparing the template once
//! keeps file creation out of every start: creating a dozen files on a fresh tmpfs cost more
//! than all the bind mounts together.

use crate::plan::SandboxPlan;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};
use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the new root is assembled: over `/tmp` of the sandbox's own mount namespace (the
/// host's `/tmp` is untouched).
const NEW_ROOT: &str = "/tmp";

/// Bump when the template's layout changes.
const TEMPLATE_VERSION: u32 = 1;

/// System directories bound read-only (or recreated as the same symlink on merged-/usr hosts).
const SYSTEM_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib64", "lib32", "libx32"];

/// Small host `/etc` files a program may need and that hold no secret: copied into the template.
const ETC_COPIED: &[&str] = &["ld.so.cache", "protocols", "services", "ssl/openssl.cnf"];

/// Host `/etc` entries recreated as the same symlink, or bound read-only (directories). Not
/// `/etc/ssl` as a whole: it holds `private/`.
const ETC_MIRRORED: &[&str] = &["localtime", "os-release", "alternatives", "ssl/certs"];

/// Device nodes bound from the host `/dev`.
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// Empty directories of the root.
const ROOT_DIRS: &[&str] =
    &["proc", "dev", "dev/pts", "tmp", "workspace", "root", "home", "run", "var", "mnt", "etc", "etc/ssl"];

fn err(what: &str, path: &Path, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what} {}: {e}", path.display()))
}

fn bind(src: &Path, dst: &Path, extra: MsFlags) -> io::Result<()> {
    mount(Some(src), dst, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| err("bind", dst, e))?;
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

fn host_kind(host: &Path) -> Option<fs::Metadata> {
    fs::symlink_metadata(host).ok()
}

/// What the template depends on: its version and the host files it copies or mirrors.
fn template_stamp() -> u64 {
    let mut h = DefaultHasher::new();
    TEMPLATE_VERSION.hash(&mut h);
    let etc = |n: &&str| Path::new("/etc").join(n);
    let paths = SYSTEM_DIRS
        .iter()
        .map(|d| Path::new("/").join(d))
        .chain(ETC_COPIED.iter().map(etc))
        .chain(ETC_MIRRORED.iter().map(etc));
    for p in paths {
        p.hash(&mut h);
        if let Some(m) = host_kind(&p) {
            (m.file_type().is_symlink(), m.is_dir(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()).hash(&mut h);
        }
    }
    h.finish()
}

/// Returns the template directory for the current host files under `base`, building it first if
/// needed (into a temporary name, then renamed: concurrent starts never see half a template).
pub(crate) fn ensure_template(base: &Path) -> io::Result<PathBuf> {
    let dir = base.join(format!("root-{:016x}", template_stamp()));
    if dir.is_dir() {
        return Ok(dir);
    }
    fs::create_dir_all(base)?;
    let tmp = base.join(format!(".root-{}", std::process::id()));
    let _ = fs::remove_dir_all(&tmp);
    build_template(&tmp).map_err(|e| err("building the root template", &tmp, e))?;
    match fs::rename(&tmp, &dir) {
        Ok(()) => Ok(dir),
        Err(_) if dir.is_dir() => {
            let _ = fs::remove_dir_all(&tmp);
            Ok(dir)
        }
        Err(e) => Err(e),
    }
}

fn build_template(t: &Path) -> io::Result<()> {
    fs::create_dir(t)?;
    fs::set_permissions(t, fs::Permissions::from_mode(0o755))?;
    for d in ROOT_DIRS {
        fs::create_dir(t.join(d))?;
    }
    // System directories: the same symlink, or a mount point for a bind.
    for d in SYSTEM_DIRS {
        mirror_point(&Path::new("/").join(d), &t.join(d))?;
    }
    for name in ETC_MIRRORED {
        mirror_point(&Path::new("/etc").join(name), &t.join("etc").join(name))?;
    }
    // Synthetic account and name files: nothing about the host's users leaks in.
    let files: [(&str, &str); 6] = [
        ("passwd", "root:x:0:0:root:/workspace:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        ("group", "root:x:0:\nnogroup:x:65534:\n"),
        ("hosts", "127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost\n"),
        ("hostname", "sandbox\n"),
        ("resolv.conf", ""),
        ("nsswitch.conf", "passwd: files\ngroup: files\nhosts: files\n"),
    ];
    for (name, content) in files {
        fs::write(t.join("etc").join(name), content)?;
    }
    for name in ETC_COPIED {
        let host = Path::new("/etc").join(name);
        if host.is_file() {
            fs::copy(&host, t.join("etc").join(name))?;
        }
    }
    for name in DEVICES {
        fs::write(t.join("dev").join(name), b"")?;
    }
    for (name, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("shm", "/tmp"),
    ] {
        symlink(target, t.join("dev").join(name))?;
    }
    Ok(())
}

/// In the template: the same symlink as `host`, an empty directory to bind a host directory
/// on, or nothing when the host has neither.
fn mirror_point(host: &Path, dst: &Path) -> io::Result<()> {
    let Some(meta) = host_kind(host) else {
        return Ok(());
    };
    if meta.file_type().is_symlink() {
        symlink(fs::read_link(host)?, dst)
    } else if meta.is_dir() {
        fs::create_dir(dst)
    } else {
        Ok(())
    }
}

/// Binds `host` on its mount point in the new root if the template made one (a directory).
fn bind_if_dir(host: &Path, dst: &Path) -> io::Result<()> {
    let is_dir_point = fs::symlink_metadata(dst).is_ok_and(|m| m.is_dir());
    if is_dir_point && host.is_dir() {
        bind_ro(host, dst)?;
    }
    Ok(())
}

/// Descriptors opened while the process still has the host identity it was cloned with: the
/// sandbox's root may not walk the host paths, and `/tmp`, where they may well be, gets covered.
#[derive(Debug)]
pub(crate) struct Sources {
    workspace: fs::File,
    template: fs::File,
}

fn open_dir(path: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
        .open(path)
        .map_err(|e| err("open", path, e))
}

/// Opens the workspace and the root template (see [`Sources`]).
pub(crate) fn open_sources(plan: &SandboxPlan, template: &Path) -> io::Result<Sources> {
    Ok(Sources { workspace: open_dir(&plan.workspace)?, template: open_dir(template)? })
}

fn fd_path(f: &fs::File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

/// Builds the file system and switches into it. Runs in the sandbox's new mount namespace as
/// its root.
pub(crate) fn build(plan: &SandboxPlan, sources: Sources) -> io::Result<()> {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .map_err(|e| err("make private", Path::new("/"), e))?;
    let root = Path::new(NEW_ROOT);
    bind_ro(&fd_path(&sources.template), root)?;

    for d in SYSTEM_DIRS {
        bind_if_dir(&Path::new("/").join(d), &root.join(d))?;
    }
    for name in ETC_MIRRORED {
        bind_if_dir(&Path::new("/etc").join(name), &root.join("etc").join(name))?;
    }

    // `hidepid=invisible`: processes a sandboxed program may not ptrace do not even show up.
    // That hides the sandbox's idle init and the helpers that enter it (both non-dumpable),
    // whose command lines name host paths.
    let proc_dir = root.join("proc");
    mount(
        Some("proc"),
        &proc_dir,
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("hidepid=invisible"),
    )
    .map_err(|e| err("mount proc", &proc_dir, e))?;

    let dev = root.join("dev");
    for name in DEVICES {
        // A plain bind: flags on a device node's own mount change nothing that matters (it
        // cannot be executed, and nothing inside may remount).
        let (src, dst) = (Path::new("/dev").join(name), dev.join(name));
        mount(Some(&src), &dst, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(|e| err("bind", &dst, e))?;
    }
    let pts = dev.join("pts");
    mount(
        Some("devpts"),
        &pts,
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )
    .map_err(|e| err("mount devpts", &pts, e))?;

    let tmp = root.join("tmp");
    mount(
        Some("tmpfs"),
        &tmp,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some(format!("mode=1777,size={}", plan.tmp_bytes.max(4096)).as_str()),
    )
    .map_err(|e| err("mount tmpfs", &tmp, e))?;

    let ws = root.join("workspace");
    bind(&fd_path(&sources.workspace), &ws, MsFlags::MS_NODEV)?;
    drop(sources);

    nix::unistd::chdir(root)?;
    nix::unistd::pivot_root(".", ".").map_err(|e| err("pivot_root", root, e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| err("detach old root", root, e))?;
    nix::unistd::chdir("/")?;
    Ok(())
}
