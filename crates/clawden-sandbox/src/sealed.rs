//! Sealed workspaces: a stopped sandbox's workspace exists only as an encrypted archive.
//!
//! Sealing walks the workspace from a directory descriptor, opening every entry beneath it with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV)`
//! and `O_NOFOLLOW`: symbolic links are archived as links (never followed), hard links as
//! separate copies, and devices, FIFOs and sockets are skipped. The tar stream goes straight
//! into [`clawden_crypto::stream::StreamSealer`] and then into a temporary file beside the
//! sealed one, which is synced and renamed over it only when complete: a failed seal keeps the
//! previous one.
//!
//! Unsealing decrypts and unpacks in one pass into a fresh, empty workspace, creating each entry
//! with the same `openat2` rules and `O_EXCL`; entry names must be plain relative names. Any
//! error (tampering, truncation, a wrong key) leaves the sealed file as it was; the caller
//! discards the partly filled workspace.

use crate::error::{Error, Result};
use clawden_crypto::stream::{StreamError, StreamOpener, StreamSealer};
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstat, fstatat, mkdirat, Mode, SFlag};
use nix::unistd::{fchown, fchownat, Gid, Uid};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Deepest directory nesting archived.
const MAX_DEPTH: usize = 128;
/// Most entries in one workspace archive.
const MAX_ENTRIES: u64 = 1_000_000;
/// Name of the sealed file in a sandbox's volume directory.
pub(crate) const SEALED_NAME: &str = "workspace.sealed";

/// Who owns the workspace on the host: the sandbox's root and the size of its id range.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Owner {
    pub uid: u32,
    pub gid: u32,
    pub count: u32,
}

impl Owner {
    /// Host id → id relative to the sandbox (stored in the archive, so a new uid range after a
    /// restore still maps files to the same users inside).
    fn inside(&self, host: u32, base: u32) -> u64 {
        match host.checked_sub(base) {
            Some(rel) if rel < self.count => u64::from(rel),
            _ => 0,
        }
    }

    fn host_uid(&self, inside: u64) -> Uid {
        Uid::from_raw(self.uid + if inside < u64::from(self.count) { inside as u32 } else { 0 })
    }

    fn host_gid(&self, inside: u64) -> Gid {
        Gid::from_raw(self.gid + if inside < u64::from(self.count) { inside as u32 } else { 0 })
    }
}

/// Counts of one seal or unseal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SealStats {
    /// Regular files.
    pub files: u64,
    /// Directories (the root not counted).
    pub dirs: u64,
    /// Symbolic links (stored as links, never followed).
    pub symlinks: u64,
    /// Devices, FIFOs and sockets left out.
    pub skipped: u64,
    /// Bytes of file content.
    pub bytes: u64,
}

fn nix_io(context: &'static str) -> impl FnOnce(nix::errno::Errno) -> Error {
    move |e| Error::Io { context, source: e.into() }
}

fn strict() -> ResolveFlag {
    ResolveFlag::RESOLVE_BENEATH
        | ResolveFlag::RESOLVE_NO_SYMLINKS
        | ResolveFlag::RESOLVE_NO_MAGICLINKS
        | ResolveFlag::RESOLVE_NO_XDEV
}

/// Opens one plain name beneath `dir`, never through a link.
fn open_child(dir: &OwnedFd, name: &OsStr, flags: OFlag, mode: Mode) -> Result<OwnedFd> {
    let extra = if flags.contains(OFlag::O_PATH) { OFlag::O_CLOEXEC } else { OFlag::O_CLOEXEC | OFlag::O_NOCTTY };
    let how = OpenHow::new().flags(flags | extra | OFlag::O_NOFOLLOW).mode(mode).resolve(strict());
    match openat2(dir.as_raw_fd(), Path::new(name), how) {
        // SAFETY: openat2 returned a new descriptor that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(nix::errno::Errno::EXDEV) | Err(nix::errno::Errno::ELOOP) => {
            Err(Error::PathOutsideWorkspace(PathBuf::from(name)))
        }
        Err(e) => Err(Error::Io { context: "opening a workspace entry", source: e.into() }),
    }
}

fn open_dir_root(root: &Path) -> Result<OwnedFd> {
    let how = OpenHow::new().flags(OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC);
    match openat2(libc::AT_FDCWD, root, how) {
        // SAFETY: openat2 returned a new descriptor that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd) }),
        Err(e) => Err(Error::Io { context: "opening the workspace", source: e.into() }),
    }
}

fn list(dir: &OwnedFd) -> Result<Vec<OsString>> {
    let dup = dir.try_clone().map_err(Error::io("listing a workspace directory"))?;
    let mut d = nix::dir::Dir::from_fd(std::os::fd::IntoRawFd::into_raw_fd(dup))
        .map_err(nix_io("listing a workspace directory"))?;
    let mut names = Vec::new();
    for entry in d.iter() {
        let entry = entry.map_err(nix_io("listing a workspace directory"))?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_os_string());
        }
    }
    names.sort();
    Ok(names)
}

fn header_for(st: &libc::stat, owner: &Owner, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    // setuid and setgid bits are dropped: the volume is nosuid anyway.
    h.set_mode(st.st_mode & 0o1777);
    h.set_uid(owner.inside(st.st_uid, owner.uid));
    h.set_gid(owner.inside(st.st_gid, owner.gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
}

struct Walker<'a, W: Write> {
    out: tar::Builder<W>,
    owner: &'a Owner,
    stats: SealStats,
    entries: u64,
    /// Most file content bytes archived (the workspace quota).
    budget: u64,
}

impl<W: Write> Walker<'_, W> {
    /// Archives the entries of `dir`. What the sandbox can shape — nesting, entry count, sparse
    /// files larger than the quota, entries swapped for links or FIFOs mid-walk — is skipped
    /// (and counted), never a reason for the seal to fail: a failed seal would leave the
    /// workspace in plaintext. Only errors writing the archive fail it.
    fn walk(&mut self, dir: &OwnedFd, rel: &Path, depth: usize) -> Result<()> {
        let names = match list(dir) {
            Ok(n) => n,
            Err(_) => {
                self.stats.skipped += 1;
                return Ok(());
            }
        };
        for name in names {
            self.entries += 1;
            if self.entries > MAX_ENTRIES {
                self.stats.skipped += 1;
                continue;
            }
            let path = rel.join(&name);
            let Ok(st) = fstatat(Some(dir.as_raw_fd()), Path::new(&name), AtFlags::AT_SYMLINK_NOFOLLOW) else {
                self.stats.skipped += 1;
                continue;
            };
            let kind = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT;
            if kind == SFlag::S_IFDIR {
                if depth >= MAX_DEPTH {
                    self.stats.skipped += 1;
                    continue;
                }
                let Ok(child) = open_child(dir, &name, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()) else {
                    self.stats.skipped += 1;
                    continue;
                };
                let Ok(st) = fstat(child.as_raw_fd()) else {
                    self.stats.skipped += 1;
                    continue;
                };
                let mut h = header_for(&st, self.owner, tar::EntryType::Directory);
                self.out.append_data(&mut h, &path, io::empty()).map_err(Error::io("archiving the workspace"))?;
                self.stats.dirs += 1;
                self.walk(&child, &path, depth + 1)?;
            } else if kind == SFlag::S_IFREG {
                // Non-blocking: an entry swapped for a FIFO after the stat cannot hang us.
                let Ok(fd) = open_child(dir, &name, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()) else {
                    self.stats.skipped += 1;
                    continue;
                };
                let regular = fstat(fd.as_raw_fd())
                    .ok()
                    .filter(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG);
                let Some(st) = regular else {
                    self.stats.skipped += 1;
                    continue;
                };
                let size = st.st_size as u64;
                // Sparse files can claim far more than the quota holds; they would turn the seal
                // into a disk-filling read of zeros.
                if size > self.budget.saturating_sub(self.stats.bytes) {
                    self.stats.skipped += 1;
                    continue;
                }
                let mut h = header_for(&st, self.owner, tar::EntryType::Regular);
                h.set_size(size);
                // Exactly `size` bytes even if the file changes meanwhile (padded or cut).
                let body = File::from(fd).take(size).chain(io::repeat(0)).take(size);
                self.out.append_data(&mut h, &path, body).map_err(Error::io("archiving the workspace"))?;
                self.stats.files += 1;
                self.stats.bytes += size;
            } else if kind == SFlag::S_IFLNK {
                let Ok(target) = nix::fcntl::readlinkat(Some(dir.as_raw_fd()), Path::new(&name)) else {
                    self.stats.skipped += 1;
                    continue;
                };
                let mut h = header_for(&st, self.owner, tar::EntryType::Symlink);
                self.out
                    .append_link(&mut h, &path, Path::new(&target))
                    .map_err(Error::io("archiving the workspace"))?;
                self.stats.symlinks += 1;
            } else {
                self.stats.skipped += 1;
            }
        }
        Ok(())
    }
}

fn stream_error(e: StreamError) -> Error {
    match e {
        StreamError::Io(source) => Error::Io { context: "reading or writing a sealed workspace", source },
        other => Error::Sealed(other),
    }
}

/// Archives and encrypts the workspace at `root` into `sealed`, atomically replacing it.
pub(crate) fn seal(
    root: &Path,
    sealed: &Path,
    key: &[u8; 32],
    ad: &[u8],
    owner: &Owner,
    budget: u64,
) -> Result<SealStats> {
    let dir = open_dir_root(root)?;
    let parent = sealed.parent().ok_or(Error::InvalidConfig("the sealed file has no parent directory"))?;
    let tmp = parent.join(format!(".{SEALED_NAME}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags_nofollow()
        .open(&tmp)
        .map_err(Error::io("creating the sealed workspace"))?;
    let result = (|| {
        let sealer = StreamSealer::new(key, ad, BufWriter::with_capacity(256 << 10, file)).map_err(stream_error)?;
        let mut walker =
            Walker { out: tar::Builder::new(sealer), owner, stats: SealStats::default(), entries: 0, budget };
        walker.walk(&dir, Path::new(""), 0)?;
        let stats = walker.stats;
        let sealer = walker.out.into_inner().map_err(Error::io("archiving the workspace"))?;
        let writer = sealer.finish().map_err(stream_error)?;
        let file = writer
            .into_inner()
            .map_err(|e| Error::Io { context: "writing the sealed workspace", source: e.into_error() })?;
        file.sync_all().map_err(Error::io("syncing the sealed workspace"))?;
        Ok(stats)
    })();
    match result {
        Ok(stats) => {
            std::fs::rename(&tmp, sealed).map_err(Error::io("replacing the sealed workspace"))?;
            if let Ok(d) = File::open(parent) {
                let _ = d.sync_all();
            }
            Ok(stats)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

trait NoFollow {
    fn custom_flags_nofollow(&mut self) -> &mut Self;
}

impl NoFollow for std::fs::OpenOptions {
    fn custom_flags_nofollow(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).mode(0o600)
    }
}

/// The plain names of an archived path; anything else means the archive is not ours.
fn archive_names(path: &Path) -> Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return Err(Error::MalformedArchive(format!("entry {path:?} is not a plain relative path"))),
        }
    }
    if out.is_empty() {
        return Err(Error::MalformedArchive("an entry with an empty path".into()));
    }
    Ok(out)
}

/// Decrypts `sealed` and unpacks it into the empty workspace `root`. Returns `Ok(None)` when
/// there is no sealed file yet (a new workspace).
pub(crate) fn unseal(
    sealed: &Path,
    root: &Path,
    key: &[u8; 32],
    ad: &[u8],
    owner: &Owner,
) -> Result<Option<SealStats>> {
    let file = match std::fs::OpenOptions::new().read(true).custom_flags_nofollow().open(sealed) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Io { context: "opening the sealed workspace", source: e }),
    };
    let opener = StreamOpener::new(key, ad, BufReader::with_capacity(256 << 10, file)).map_err(stream_error)?;
    let root_fd = open_dir_root(root)?;
    let mut archive = tar::Archive::new(opener);
    let mut stats = SealStats::default();
    let mut count = 0u64;
    let entries = archive.entries().map_err(unseal_error)?;
    for entry in entries {
        let mut entry = entry.map_err(unseal_error)?;
        count += 1;
        if count > MAX_ENTRIES {
            return Err(Error::MalformedArchive("too many entries".into()));
        }
        let path = entry.path().map_err(unseal_error)?.into_owned();
        let names = archive_names(&path)?;
        let Some((last, parents)) = names.split_last() else {
            return Err(Error::MalformedArchive("an entry with an empty path".into()));
        };
        let mut dir = root_fd.try_clone().map_err(Error::io("unsealing the workspace"))?;
        for p in parents {
            dir = open_child(&dir, p, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty())?;
        }
        let h = entry.header();
        let mode = Mode::from_bits_truncate(h.mode().map_err(unseal_error)? & 0o1777);
        let uid = owner.host_uid(h.uid().map_err(unseal_error)?);
        let gid = owner.host_gid(h.gid().map_err(unseal_error)?);
        match h.entry_type() {
            tar::EntryType::Directory => {
                mkdirat(Some(dir.as_raw_fd()), Path::new(last), mode).map_err(nix_io("unsealing a directory"))?;
                fchownat(Some(dir.as_raw_fd()), Path::new(last), Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(nix_io("unsealing a directory"))?;
                stats.dirs += 1;
            }
            tar::EntryType::Regular => {
                let fd = open_child(&dir, last, OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL, mode)?;
                fchown(fd.as_raw_fd(), Some(uid), Some(gid)).map_err(nix_io("unsealing a file"))?;
                let mut f = File::from(fd);
                let n = io::copy(&mut entry, &mut f).map_err(unseal_error)?;
                // The mode given to open is filtered by the umask; set it exactly.
                nix::sys::stat::fchmod(f.as_raw_fd(), mode).map_err(nix_io("unsealing a file"))?;
                stats.files += 1;
                stats.bytes += n;
            }
            tar::EntryType::Symlink => {
                let target = h
                    .link_name()
                    .map_err(unseal_error)?
                    .ok_or_else(|| Error::MalformedArchive("a link without a target".into()))?
                    .into_owned();
                nix::unistd::symlinkat(target.as_path(), Some(dir.as_raw_fd()), Path::new(last))
                    .map_err(nix_io("unsealing a link"))?;
                fchownat(Some(dir.as_raw_fd()), Path::new(last), Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(nix_io("unsealing a link"))?;
                stats.symlinks += 1;
            }
            other => return Err(Error::MalformedArchive(format!("unexpected entry type {other:?}"))),
        }
    }
    // The archive's end marker may sit before the final chunk: read to the authenticated end,
    // so a stream cut right after the marker is refused too.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(unseal_error)?;
    Ok(Some(stats))
}

fn unseal_error(e: io::Error) -> Error {
    // The tar reader wraps the decryptor's errors in its own (private) type: walk the sources to
    // find ours and name it clearly.
    let mut cur: Option<&(dyn std::error::Error + 'static)> = e.get_ref().map(|inner| inner as _);
    let mut depth = 0;
    while let (Some(err), true) = (cur, depth < 8) {
        if let Some(s) = err.downcast_ref::<StreamError>() {
            return Error::Sealed(match s {
                StreamError::BadHeader => StreamError::BadHeader,
                StreamError::UnsupportedVersion(v) => StreamError::UnsupportedVersion(*v),
                StreamError::Authentication { chunk } => StreamError::Authentication { chunk: *chunk },
                StreamError::Truncated => StreamError::Truncated,
                StreamError::Io(io) => StreamError::Io(io::Error::new(io.kind(), io.to_string())),
            });
        }
        cur = match err.downcast_ref::<io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as _),
            None => err.source(),
        };
        depth += 1;
    }
    Error::MalformedArchive(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [3u8; 32];

    fn owner() -> Owner {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        Owner { uid, gid, count: 1 }
    }

    #[test]
    fn a_workspace_round_trips_without_following_links_or_keeping_fifos() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("a/b")).expect("mkdir");
        std::fs::write(src.join("a/b/file.txt"), b"workspace marker 12345").expect("write");
        std::fs::write(src.join("top"), vec![7u8; 200_000]).expect("write");
        std::os::unix::fs::symlink("/etc/shadow", src.join("shadow-link")).expect("symlink");
        nix::unistd::mkfifo(&src.join("fifo"), Mode::from_bits_truncate(0o600)).expect("fifo");
        let sealed = dir.path().join(SEALED_NAME);
        let stats = seal(&src, &sealed, &KEY, b"ad", &owner(), 1 << 30).expect("seal");
        assert_eq!((stats.files, stats.dirs, stats.symlinks, stats.skipped), (2, 2, 1, 1));
        let bytes = std::fs::read(&sealed).expect("read");
        assert!(!bytes.windows(22).any(|w| w == b"workspace marker 12345"));

        let dst = dir.path().join("dst");
        std::fs::create_dir(&dst).expect("mkdir");
        unseal(&sealed, &dst, &KEY, b"ad", &owner()).expect("unseal").expect("stats");
        assert_eq!(std::fs::read(dst.join("a/b/file.txt")).expect("read"), b"workspace marker 12345");
        assert_eq!(std::fs::read(dst.join("top")).expect("read").len(), 200_000);
        assert_eq!(std::fs::read_link(dst.join("shadow-link")).expect("link"), Path::new("/etc/shadow"));
        assert!(!dst.join("fifo").exists());

        // Another owner's associated data does not open it.
        let other = dir.path().join("other");
        std::fs::create_dir(&other).expect("mkdir");
        assert!(matches!(
            unseal(&sealed, &other, &KEY, b"ad2", &owner()),
            Err(Error::Sealed(StreamError::Authentication { chunk: 0 }))
        ));
    }

    #[test]
    fn a_symlinked_workspace_root_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/etc", dir.path().join("ws")).expect("symlink");
        let sealed = dir.path().join(SEALED_NAME);
        assert!(seal(&dir.path().join("ws"), &sealed, &KEY, b"ad", &owner(), 1 << 30).is_err());
        assert!(!sealed.exists());
    }

    #[test]
    fn sparse_files_past_the_quota_and_deep_nesting_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        std::fs::create_dir(&src).expect("mkdir");
        let huge = File::create(src.join("sparse")).expect("create");
        huge.set_len(1 << 40).expect("sparse 1 TiB");
        std::fs::write(src.join("small"), b"kept").expect("write");
        let mut deep = src.clone();
        for _ in 0..MAX_DEPTH + 5 {
            deep.push("d");
        }
        std::fs::create_dir_all(&deep).expect("deep");
        let sealed = dir.path().join(SEALED_NAME);
        let stats = seal(&src, &sealed, &KEY, b"ad", &owner(), 1 << 20).expect("seal");
        assert_eq!((stats.files, stats.bytes), (1, 4));
        assert_eq!(stats.skipped, 2);
        assert!(std::fs::metadata(&sealed).expect("sealed").len() < 1 << 20);
    }

    #[test]
    fn archive_paths_must_be_plain() {
        assert!(archive_names(Path::new("../x")).is_err());
        assert!(archive_names(Path::new("/etc/x")).is_err());
        assert!(archive_names(Path::new("a/../../x")).is_err());
        assert!(archive_names(Path::new("a/b")).is_ok());
    }
}
