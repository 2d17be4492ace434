//! The workspace quota: a per-sandbox ext4 image on a loop device, mounted on the host while the
//! sandbox runs. Writes past the image's size fail with `ENOSPC` (see docs/sandbox.md for why this
//! beats a tmpfs).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` from `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config` from `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn mkfs_binary() -> io::Result<&'static str> {
    ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4", "/usr/bin/mkfs.ext4"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "mkfs.ext4 not found (e2fsprogs)"))
}

/// Creates the image (sparse, `quota` bytes, root directory owned by the sandbox's root) unless it
/// exists already.
pub(crate) fn ensure_image(image: &Path, quota: u64, uid: u32, gid: u32) -> io::Result<()> {
    if image.exists() {
        return Ok(());
    }
    let tmp = image.with_extension("img.new");
    let file = fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
    file.set_len(quota)?;
    drop(file);
    let status = Command::new(mkfs_binary()?)
        .args(["-q", "-F", "-m", "0", "-E"])
        .arg(format!("root_owner={uid}:{gid},lazy_itable_init=1,lazy_journal_init=1"))
        .arg(&tmp)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        let _ = fs::remove_file(&tmp);
        return Err(io::Error::other(format!("mkfs.ext4 failed: {status}")));
    }
    fs::rename(&tmp, image)
}

fn is_mount_point(dir: &Path) -> bool {
    let (Ok(me), Some(Ok(parent))) = (fs::metadata(dir), dir.parent().map(fs::metadata)) else {
        return false;
    };
    me.dev() != parent.dev()
}

/// Returns the device path and an open descriptor of it: with `LO_FLAGS_AUTOCLEAR` the device
/// detaches when its last descriptor closes unless it is mounted, so keep it until the mount.
fn attach_loop(image: &fs::File) -> io::Result<(String, fs::File)> {
    let control = fs::OpenOptions::new().read(true).write(true).open("/dev/loop-control")?;
    for _ in 0..16 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a device number.
        let n = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let dev = format!("/dev/loop{n}");
        let loopdev = fs::OpenOptions::new().read(true).write(true).open(&dev)?;
        // SAFETY: LoopConfig is plain old data; all-zero is a valid value.
        let mut config: LoopConfig = unsafe { std::mem::zeroed() };
        config.fd = image.as_raw_fd() as u32;
        config.info.flags = LO_FLAGS_AUTOCLEAR;
        // SAFETY: LOOP_CONFIGURE reads one `struct loop_config`, which we own and which has the
        // kernel's layout.
        let ret = unsafe { libc::ioctl(loopdev.as_raw_fd(), LOOP_CONFIGURE, &config) };
        if ret == 0 {
            return Ok((dev, loopdev));
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EBUSY) {
            return Err(err);
        }
        // Another process took this device between GET_FREE and CONFIGURE: try the next.
    }
    Err(io::Error::other("no free loop device"))
}

/// Attaches the image to a loop device and mounts it on `target` (`nosuid`, `nodev`). The loop
/// device detaches itself when the last mount goes away.
pub(crate) fn mount_image(image: &Path, target: &Path) -> io::Result<()> {
    fs::create_dir_all(target)?;
    if is_mount_point(target) {
        // Left over from a helper that died: never stack a second volume on it.
        unmount(target)?;
    }
    let file = fs::OpenOptions::new().read(true).write(true).open(image)?;
    let (dev, loopdev) = attach_loop(&file)?;
    drop(file);
    let dev_c = CString::new(dev.as_bytes()).map_err(io::Error::other)?;
    let target_c = CString::new(target.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOATIME;
    // SAFETY: all pointers are valid NUL-terminated strings that outlive the call.
    let ret = unsafe {
        libc::mount(dev_c.as_ptr(), target_c.as_ptr(), c"ext4".as_ptr(), flags, c"errors=remount-ro".as_ptr().cast())
    };
    if ret < 0 {
        let err = io::Error::last_os_error();
        // Closing our descriptor detaches the unmounted device (AUTOCLEAR).
        drop(loopdev);
        return Err(err);
    }
    drop(loopdev);
    let lost = target.join("lost+found");
    if lost.exists() {
        // Owned by host root, so it would show up as an unwritable directory in the workspace.
        let _ = fs::remove_dir(lost);
    }
    Ok(())
}

/// Detaches the volume mounted on `target`, if any.
pub(crate) fn unmount(target: &Path) -> io::Result<()> {
    if !is_mount_point(target) {
        return Ok(());
    }
    let target_c = CString::new(target.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: a valid NUL-terminated path.
    let ret = unsafe { libc::umount2(target_c.as_ptr(), libc::MNT_DETACH) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
