//! Host-side access to a workspace that never follows a link out of it: every open goes through
//! `openat2` with `RESOLVE_BENEATH`, and opens are non-blocking so a FIFO planted by the sandbox
//! cannot hang the server.

use crate::error::{Error, Result};
use nix::fcntl::AtFlags;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, mkdirat, Mode, SFlag};
use nix::unistd::{fchown, fchownat, Gid, Uid};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path};

fn resolve_flags() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS | ResolveFlag::RESOLVE_NO_XDEV
}

/// The plain names of a relative path; anything else (absolute, `..`, empty) is refused.
fn components(path: &Path) -> Result<Vec<&std::ffi::OsStr>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return Err(Error::PathOutsideWorkspace(path.to_path_buf())),
        }
    }
    if out.is_empty() {
        return Err(Error::PathOutsideWorkspace(path.to_path_buf()));
    }
    Ok(out)
}

fn open_at(dir: &OwnedFd, name: &Path, flags: OFlag, mode: Mode, path: &Path) -> Result<OwnedFd> {
    // openat2 refuses O_PATH with anything but O_DIRECTORY, O_NOFOLLOW and O_CLOEXEC.
    let extra = if flags.contains(OFlag::O_PATH) { OFlag::O_CLOEXEC } else { OFlag::O_CLOEXEC | OFlag::O_NOCTTY };
    let how = OpenHow::new().flags(flags | extra).mode(mode).resolve(resolve_flags());
    match openat2(dir.as_raw_fd(), name, how) {
        // SAFETY: openat2 returned a new descriptor that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(nix::errno::Errno::EXDEV) | Err(nix::errno::Errno::ELOOP) => {
            Err(Error::PathOutsideWorkspace(path.to_path_buf()))
        }
        Err(e) => Err(Error::Io { context: "opening a workspace file", source: e.into() }),
    }
}

fn open_root(root: &Path) -> Result<OwnedFd> {
    let f = File::open(root).map_err(Error::io("opening the workspace"))?;
    Ok(OwnedFd::from(f))
}

fn require_regular(fd: &OwnedFd, path: &Path) -> Result<u64> {
    let st =
        fstat(fd.as_raw_fd()).map_err(|e| Error::Io { context: "inspecting a workspace file", source: e.into() })?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFREG {
        return Err(Error::PathOutsideWorkspace(path.to_path_buf()));
    }
    Ok(st.st_size as u64)
}

/// Reads `path` (relative to the workspace root `root`), at most `max` bytes.
pub(crate) fn read_beneath(root: &Path, path: &Path, max: u64) -> Result<Vec<u8>> {
    components(path)?;
    let dir = open_root(root)?;
    let fd = open_at(&dir, path, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty(), path)?;
    let size = require_regular(&fd, path)?;
    if size > max {
        return Err(Error::FileTooLarge { limit: max });
    }
    let mut out = Vec::with_capacity(size as usize);
    File::from(fd).take(max + 1).read_to_end(&mut out).map_err(Error::io("reading a workspace file"))?;
    if out.len() as u64 > max {
        return Err(Error::FileTooLarge { limit: max });
    }
    Ok(out)
}

/// Writes `path` (relative to the workspace root), creating missing parent directories; new
/// files and directories belong to the sandbox's root (`uid`, `gid` on the host).
pub(crate) fn write_beneath(root: &Path, path: &Path, data: &[u8], uid: u32, gid: u32) -> Result<()> {
    let names = components(path)?;
    let Some((last, parents)) = names.split_last() else {
        return Err(Error::PathOutsideWorkspace(path.to_path_buf()));
    };
    let mut dir = open_root(root)?;
    let owner = (Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    for name in parents {
        let name = Path::new(name);
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
        let next = match open_at(&dir, name, flags, Mode::empty(), path) {
            Ok(fd) => fd,
            Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                mkdirat(Some(dir.as_raw_fd()), name, Mode::from_bits_truncate(0o755))
                    .map_err(|e| Error::Io { context: "creating a workspace directory", source: e.into() })?;
                fchownat(Some(dir.as_raw_fd()), name, owner.0, owner.1, AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(|e| Error::Io { context: "creating a workspace directory", source: e.into() })?;
                open_at(&dir, name, flags, Mode::empty(), path)?
            }
            Err(e) => return Err(e),
        };
        dir = next;
    }
    let how_flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW;
    let fd = open_at(&dir, Path::new(last), how_flags, Mode::from_bits_truncate(0o644), path)?;
    require_regular(&fd, path)?;
    fchown(fd.as_raw_fd(), owner.0, owner.1)
        .map_err(|e| Error::Io { context: "writing a workspace file", source: e.into() })?;
    let mut file = File::from(fd);
    file.set_len(0).map_err(Error::io("writing a workspace file"))?;
    file.write_all(data).map_err(Error::io("writing a workspace file"))?;
    Ok(())
}
