//! Host uid ranges for sandboxes: each key gets its own range, recorded on disk so that the
//! same member finds the same owner on its workspace files after a restart.

use crate::config::{BackendConfig, SandboxKey};
use crate::error::{Error, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs;

/// The host identity of a sandbox's root and how many ids are mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HostIds {
    pub uid: u32,
    pub gid: u32,
    pub count: u32,
    pub unprivileged: bool,
}

/// The most ranges handed out (so that base + slots × range stays below 2³²).
fn max_slots(config: &BackendConfig) -> u32 {
    let room = u32::MAX - config.uid_base;
    (room / config.uid_range.max(1)).saturating_sub(1)
}

/// Returns the range of `key`, allocating one on first use. Unprivileged, the sandbox maps to
/// the caller's own ids (the only ones an unprivileged process may map).
pub(crate) fn host_ids(config: &BackendConfig, key: &SandboxKey, root: bool) -> Result<HostIds> {
    if !root {
        // SAFETY: getuid/getgid cannot fail.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        return Ok(HostIds { uid, gid, count: 1, unprivileged: true });
    }
    let dir = config.state_dir.join("uid-ranges");
    fs::create_dir_all(&dir).map_err(Error::io("creating the uid range records"))?;
    let lock = fs::File::create(dir.join(".lock")).map_err(Error::io("locking the uid range records"))?;
    let _lock = Flock::lock(lock, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::Io { context: "locking the uid range records", source: e.into() })?;
    let by_key = dir.join(key.name());
    let slot = match fs::read_to_string(&by_key) {
        Ok(s) => s.trim().parse::<u32>().map_err(|_| Error::InvalidConfig("corrupt uid range record"))?,
        Err(_) => {
            let taken: std::collections::HashSet<u32> = fs::read_dir(&dir)
                .map_err(Error::io("reading the uid range records"))?
                .filter_map(|e| e.ok())
                .filter_map(|e| fs::read_to_string(e.path()).ok())
                .filter_map(|s| s.trim().parse().ok())
                .collect();
            let slot = (0..max_slots(config)).find(|s| !taken.contains(s)).ok_or(Error::NoFreeUidRange)?;
            fs::write(&by_key, slot.to_string()).map_err(Error::io("recording a uid range"))?;
            slot
        }
    };
    let uid = config.uid_base + slot * config.uid_range;
    Ok(HostIds { uid, gid: uid, count: config.uid_range, unprivileged: false })
}

/// Forgets the range of `key` (after its workspace is deleted).
pub(crate) fn release(config: &BackendConfig, key: &SandboxKey) {
    let _ = fs::remove_file(config.state_dir.join("uid-ranges").join(key.name()));
}
