//! The seccomp filter every sandboxed process runs under: a denylist of the system calls that
//! reach kernel attack surface or host state a tool never needs.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond,
    SeccompFilter, SeccompRule, TargetArch,
};
use std::collections::BTreeMap;
use std::io;

/// Syscalls refused outright with `EPERM`.
const DENIED: &[libc::c_long] = &[
    // Asynchronous I/O that bypasses seccomp and has a long CVE history.
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    // Reading or writing other processes.
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_process_madvise,
    libc::SYS_pidfd_getfd,
    libc::SYS_kcmp,
    // Loading code into the kernel.
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    // Kernel keyrings are not namespaced.
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    // The mount table is fixed once the sandbox is built.
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_mount_setattr,
    OPEN_TREE_ATTR,
    // No new namespaces, no joining others.
    libc::SYS_unshare,
    libc::SYS_setns,
    // Host-wide state.
    libc::SYS_reboot,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_settimeofday,
    libc::SYS_adjtimex,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_quotactl_fd,
    libc::SYS_syslog,
    libc::SYS_vhangup,
    libc::SYS_iopl,
    libc::SYS_ioperm,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_lookup_dcookie,
    libc::SYS_uselib,
    libc::SYS_fanotify_init,
    libc::SYS_move_pages,
    libc::SYS_migrate_pages,
    libc::SYS_mbind,
    libc::SYS_set_mempolicy,
];

/// `open_tree_attr(2)` (Linux 6.15), not yet in `libc`.
const OPEN_TREE_ATTR: libc::c_long = 467;

/// The obsolete `SOCK_PACKET` socket type (deprecated in `libc`, still accepted by the kernel).
const SOCK_PACKET: u64 = 10;

/// Every namespace flag `clone(2)` accepts.
const NAMESPACE_FLAGS: &[libc::c_int] = &[
    libc::CLONE_NEWNS,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWCGROUP,
    0x80, // CLONE_NEWTIME
];

fn cond(arg: u8, len: Len, op: Op, value: u64) -> io::Result<Cond> {
    Cond::new(arg, len, op, value).map_err(io::Error::other)
}

fn rule(conds: Vec<Cond>) -> io::Result<SeccompRule> {
    SeccompRule::new(conds).map_err(io::Error::other)
}

fn rules() -> io::Result<BTreeMap<i64, Vec<SeccompRule>>> {
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &nr in DENIED {
        map.insert(nr, Vec::new());
    }
    // clone with any namespace flag (clone3 is answered ENOSYS below, so libc falls back to clone,
    // whose flags a filter can see).
    let mut clone = Vec::new();
    for &flag in NAMESPACE_FLAGS {
        let flag = flag as u64;
        clone.push(rule(vec![cond(0, Len::Qword, Op::MaskedEq(flag), flag)?])?);
    }
    map.insert(libc::SYS_clone, clone);
    // Packet sockets, and raw or packet-type IP sockets (netlink, which also uses SOCK_RAW, stays).
    let sock_type_mask = 0xf;
    let socket = vec![
        rule(vec![cond(0, Len::Dword, Op::Eq, libc::AF_PACKET as u64)?])?,
        rule(vec![
            cond(0, Len::Dword, Op::Eq, libc::AF_INET as u64)?,
            cond(1, Len::Dword, Op::MaskedEq(sock_type_mask), libc::SOCK_RAW as u64)?,
        ])?,
        rule(vec![
            cond(0, Len::Dword, Op::Eq, libc::AF_INET6 as u64)?,
            cond(1, Len::Dword, Op::MaskedEq(sock_type_mask), libc::SOCK_RAW as u64)?,
        ])?,
        rule(vec![cond(1, Len::Dword, Op::MaskedEq(sock_type_mask), SOCK_PACKET)?])?,
    ];
    map.insert(libc::SYS_socket, socket);
    // Typing into a terminal (TIOCSTI) or the console (TIOCLINUX).
    let ioctl = vec![
        rule(vec![cond(1, Len::Dword, Op::Eq, libc::TIOCSTI as u64)?])?,
        rule(vec![cond(1, Len::Dword, Op::Eq, libc::TIOCLINUX as u64)?])?,
    ];
    map.insert(libc::SYS_ioctl, ioctl);
    Ok(map)
}

const BPF_LD_W_ABS: u16 = 0x00 | 0x00 | 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> seccompiler::sock_filter {
    seccompiler::sock_filter { code, jt, jf, k }
}

/// Compiles the filter. seccompiler checks the architecture (anything but x86_64 kills the
/// process); we add two things it cannot express: the x32 ABI (same architecture, syscall
/// numbers with bit 30 set) kills the process, and `clone3` answers `ENOSYS`.
pub(crate) fn filter() -> io::Result<BpfProgram> {
    let filter = SeccompFilter::new(
        rules()?,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        TargetArch::x86_64,
    )
    .map_err(io::Error::other)?;
    let mut program: BpfProgram = filter.try_into().map_err(io::Error::other)?;
    // seccompiler's program starts with three instructions of architecture check; what follows
    // loads the syscall number itself, so instructions inserted here change no jump target.
    let prefix = [
        insn(BPF_LD_W_ABS, 0, 0, 0), // seccomp_data.nr
        insn(BPF_JMP_JGE_K, 0, 1, X32_SYSCALL_BIT),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_KILL_PROCESS),
        insn(BPF_JMP_JEQ_K, 0, 1, libc::SYS_clone3 as u32),
        insn(BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
    ];
    if program.len() < 3 {
        return Err(io::Error::other("unexpected seccomp program layout"));
    }
    program.splice(3..3, prefix);
    Ok(program)
}

/// Installs the filter on the calling thread (it is inherited by children and kept across exec).
pub(crate) fn install(program: &BpfProgram) -> io::Result<()> {
    seccompiler::apply_filter(program).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_filter_compiles_and_starts_with_the_arch_check() {
        let program = super::filter().expect("filter");
        assert_eq!(program[0].k, 4, "first loads seccomp_data.arch");
        assert!(program.len() > super::DENIED.len());
    }
}
