//! Escape attempts for the escape test suite. The tests copy this program into a sandbox's
//! workspace and run one attempt per exec; it prints one line, `allowed …` when the kernel let
//! the attempt through and `denied errno=N` when it did not, and exits 0 (2 on bad usage).
//!
//! Attempts are harmless by construction even when allowed (a reboot attempt only toggles
//! Ctrl-Alt-Del handling, a clock attempt sets the clock to the time it just read), and they are
//! bounded in count and time. Never part of a release.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

fn report(ret: libc::c_long) {
    if ret < 0 {
        let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        println!("denied errno={errno}");
    } else {
        println!("allowed ret={ret}");
    }
}

fn attempt(name: &str, arg: Option<&str>) -> Result<(), String> {
    match name {
        "ptrace" => {
            // SAFETY: fork in a single-threaded program; the child only calls pause and _exit.
            let child = unsafe { libc::fork() };
            if child == 0 {
                // SAFETY: async-signal-safe calls only.
                unsafe {
                    libc::pause();
                    libc::_exit(0);
                }
            }
            // SAFETY: PTRACE_ATTACH with integer arguments.
            let ret = unsafe { libc::ptrace(libc::PTRACE_ATTACH, child, 0, 0) };
            report(ret);
            // SAFETY: killing and reaping our own child.
            unsafe {
                libc::kill(child, libc::SIGKILL);
                libc::waitpid(child, std::ptr::null_mut(), 0);
            }
        }
        "mount" => {
            // SAFETY: valid NUL-terminated strings.
            let ret =
                unsafe { libc::mount(c"none".as_ptr(), c"/tmp".as_ptr(), c"tmpfs".as_ptr(), 0, std::ptr::null()) };
            report(ret.into());
        }
        "unshare-user" => {
            // SAFETY: plain system call.
            report(unsafe { libc::unshare(libc::CLONE_NEWUSER) }.into());
        }
        "clone-user" => {
            // SAFETY: fork-like clone; the child exits at once without touching memory.
            let ret = unsafe {
                libc::syscall(libc::SYS_clone, (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong, 0, 0, 0, 0)
            };
            if ret == 0 {
                // SAFETY: _exit in the child.
                unsafe { libc::_exit(0) };
            }
            if ret > 0 {
                // SAFETY: reaping our own child.
                unsafe { libc::waitpid(ret as libc::pid_t, std::ptr::null_mut(), 0) };
            }
            report(ret);
        }
        "raw-socket" => {
            // SAFETY: plain system call.
            let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
            report(fd.into());
        }
        "packet-socket" => {
            // SAFETY: plain system call.
            let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
            report(fd.into());
        }
        "connect" => {
            let addr: SocketAddr =
                arg.ok_or("connect needs HOST:PORT")?.parse().map_err(|e| format!("bad address: {e}"))?;
            match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                Ok(_) => println!("allowed connected"),
                Err(e) => println!("denied errno={} ({e})", e.raw_os_error().unwrap_or(0)),
            }
        }
        "io-uring" => {
            let mut params = [0u8; 120];
            // SAFETY: io_uring_setup writes at most sizeof(struct io_uring_params) = 120 bytes.
            let ret = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4, params.as_mut_ptr()) };
            report(ret);
        }
        "tiocsti" => {
            let c = b'x';
            // SAFETY: TIOCSTI reads one byte from a pointer we own.
            let ret = unsafe { libc::ioctl(0, libc::TIOCSTI, &c as *const u8) };
            report(ret.into());
        }
        "bpf" => {
            // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries.
            let mut attr = [0u32; 32];
            attr[0] = 2; // BPF_MAP_TYPE_ARRAY
            attr[1] = 4;
            attr[2] = 4;
            attr[3] = 1;
            // SAFETY: the kernel reads `size` bytes of attr, which we own.
            let ret = unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_mut_ptr(), std::mem::size_of_val(&attr)) };
            report(ret);
        }
        "perf" => {
            // struct perf_event_attr (size 128): type=PERF_TYPE_SOFTWARE, size, config=CPU_CLOCK.
            let mut attr = [0u8; 128];
            attr[0..4].copy_from_slice(&1u32.to_ne_bytes());
            attr[4..8].copy_from_slice(&128u32.to_ne_bytes());
            // SAFETY: the kernel reads `size` bytes of attr, which we own.
            let ret = unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_mut_ptr(), 0, -1, -1, 0) };
            report(ret);
        }
        "userfaultfd" => {
            // SAFETY: plain system call.
            report(unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC) });
        }
        "keyctl" => {
            // KEYCTL_GET_KEYRING_ID (0) of KEY_SPEC_SESSION_KEYRING (-3), without creating it.
            // SAFETY: plain system call.
            report(unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 0) });
        }
        "reboot" => {
            // LINUX_REBOOT_CMD_CAD_OFF: only disables Ctrl-Alt-Del, never reboots.
            // SAFETY: plain system call.
            report(unsafe { libc::syscall(libc::SYS_reboot, 0xfee1_deadu32, 672_274_793, 0u32, 0) });
        }
        "clock-settime" => {
            let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: writes into `now`, then reads it; setting the time just read changes
            // nothing even if allowed.
            let ret = unsafe {
                libc::clock_gettime(libc::CLOCK_REALTIME, &mut now);
                libc::clock_settime(libc::CLOCK_REALTIME, &now)
            };
            report(ret.into());
        }
        "forkbomb" => {
            let limit: u32 = arg.unwrap_or("1000").parse().map_err(|_| "bad count")?;
            let mut children = Vec::new();
            let mut errno = 0;
            for _ in 0..limit {
                // SAFETY: fork in a single-threaded program; the child only sleeps and exits.
                let pid = unsafe { libc::fork() };
                if pid == 0 {
                    // SAFETY: async-signal-safe calls only.
                    unsafe {
                        libc::sleep(30);
                        libc::_exit(0);
                    }
                }
                if pid < 0 {
                    errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
                    break;
                }
                children.push(pid);
            }
            println!("forked {} errno={errno}", children.len());
            let _ = std::io::stdout().flush();
            for pid in children {
                // SAFETY: killing and reaping our own children.
                unsafe {
                    libc::kill(pid, libc::SIGKILL);
                    libc::waitpid(pid, std::ptr::null_mut(), 0);
                }
            }
        }
        "membomb" => {
            let mib: usize = arg.unwrap_or("1024").parse().map_err(|_| "bad size")?;
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            for i in 0..mib {
                // Touch every page so the memory is really charged.
                hoard.push(vec![i as u8 | 1; 1 << 20]);
            }
            println!("allowed {} MiB", hoard.len());
        }
        "create-file" => {
            let path = arg.ok_or("create-file needs a path")?;
            std::fs::write(path, b"x").map_err(|e| format!("create: {e}"))?;
            // SAFETY: these calls cannot fail.
            let (uid, euid) = unsafe { (libc::getuid(), libc::geteuid()) };
            println!("created uid={uid} euid={euid}");
        }
        _ => return Err(format!("unknown attempt {name}")),
    }
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(name) = args.get(1) else {
        eprintln!("usage: clawden-sandbox-attempt NAME [ARG]");
        std::process::exit(2);
    };
    if let Err(e) = attempt(name, args.get(2).map(String::as_str)) {
        eprintln!("{e}");
        std::process::exit(2);
    }
}
