//! The bridge from inside a sandbox to the proxy: a TCP listener on the sandbox's loopback,
//! created *in* the sandbox's network namespace by a short-lived thread of this process and then
//! held here. Only processes in that namespace can connect to it, so the listener a connection
//! arrives on names the sandbox; nothing the sandbox sends can claim another identity.

use crate::sys;
use nix::sched::CloneFlags;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;

/// Opens `127.0.0.1:port` inside the network namespace of the sandbox whose first process is
/// `init_pid` (checked against its user-namespace inode, as warm execs do).
pub(super) fn listen_in_sandbox(init_pid: i32, userns_ino: u64, port: u16) -> io::Result<TcpListener> {
    // A fresh thread changes namespace and then ends: no thread of the async runtime ever
    // leaves the host's network namespace.
    std::thread::Builder::new()
        .name("clawden-egress-bridge".into())
        .spawn(move || -> io::Result<TcpListener> {
            let pidfd = sys::pidfd_open(init_pid)?;
            let ino = std::fs::metadata(format!("/proc/{init_pid}/ns/user"))?.ino();
            if ino != userns_ino {
                return Err(io::Error::other("the sandbox is gone (user namespace changed)"));
            }
            sys::pidfd_signal(&pidfd, 0)?;
            nix::sched::setns(&pidfd, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })?
        .join()
        .map_err(|_| io::Error::other("the egress bridge thread panicked"))?
}
