//! The seccomp filter every sandboxed process runs under: a denylist of the system calls that
//! reach kernel attack surface or host state a tool never needs.

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen as Len, SeccompCmpOp as Op, SeccompCondition as Cond, SeccompFilter,
    SeccompRule, TargetArch,
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

/// The syscalls refused only for some arguments (compiled by seccompiler).
fn conditional_rules() -> io::Result<BTreeMap<i64, Vec<SeccompRule>>> {
    let mut map: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
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
        rule(vec![cond(1, Len::Dword, Op::Eq, libc::TIOCSTI)?])?,
        rule(vec![cond(1, Len::Dword, Op::Eq, libc::TIOCLINUX)?])?,
    ];
    map.insert(libc::SYS_ioctl, ioctl);
    Ok(map)
}

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_KILL_PROCESS: u32 = 0x8000_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;
const X32_SYSCALL_BIT: u32 = 0x4000_0000;
const SECCOMP_DATA_NR: u32 = 0;
const SECCOMP_DATA_ARCH: u32 = 4;

/// Where a jump of the hand-built part of the program goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Label {
    Next,
    Deny,
    Kill,
    NoSys,
    Continue,
}

/// An instruction whose jump targets are still labels.
#[derive(Clone, Copy, Debug)]
struct Insn {
    code: u16,
    jt: Label,
    jf: Label,
    k: u32,
}

fn stmt(code: u16, k: u32) -> Insn {
    Insn { code, jt: Label::Next, jf: Label::Next, k }
}

fn jump(code: u16, k: u32, jt: Label, jf: Label) -> Insn {
    Insn { code, jt, jf, k }
}

/// A binary search over the sorted denied syscall numbers (the syscall number is loaded):
/// a few comparisons per syscall instead of one per denied call. The kernel emulates the filter
/// for every syscall number when it is installed (to cache the always-allowed ones), so a short
/// path matters for the start-up time of every sandboxed process.
/// `upper` records, for each branch block, the block where its upper half starts.
fn search(sorted: &[u32], out: &mut Vec<Vec<Insn>>, upper: &mut Vec<(usize, usize)>) {
    if sorted.len() <= 3 {
        let mut block: Vec<Insn> = sorted.iter().map(|&nr| jump(BPF_JMP_JEQ_K, nr, Label::Deny, Label::Next)).collect();
        block.push(jump(BPF_JMP_JA, 0, Label::Continue, Label::Continue));
        out.push(block);
        return;
    }
    let mid = sorted.len() / 2;
    // `jge mid`: false falls into the lower half right after, true jumps over it.
    let branch = out.len();
    out.push(Vec::new());
    search(&sorted[..mid], out, upper);
    let upper_start = out.len();
    search(&sorted[mid..], out, upper);
    // The true branch is patched to the upper half once the layout is known.
    out[branch] = vec![jump(BPF_JMP_JGE_K, sorted[mid], Label::Next, Label::Next)];
    upper.push((branch, upper_start));
}

fn offset(from: usize, to: usize) -> io::Result<u8> {
    u8::try_from(to - from - 1).map_err(|_| io::Error::other("seccomp jump too far"))
}

/// Compiles the filter: architecture check (anything but x86_64 kills the process), x32 syscall
/// numbers kill the process, `clone3` answers `ENOSYS`, the unconditional denylist answers
/// `EPERM` through a binary search, and the argument-dependent rules come last, compiled by
/// seccompiler (which ends in "allow").
pub(crate) fn filter() -> io::Result<BpfProgram> {
    let conditional = SeccompFilter::new(
        conditional_rules()?,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        TargetArch::x86_64,
    )
    .map_err(io::Error::other)?;
    let tail: BpfProgram = conditional.try_into().map_err(io::Error::other)?;

    let mut denied: Vec<u32> = DENIED.iter().map(|&n| n as u32).collect();
    denied.sort_unstable();
    denied.dedup();

    let mut blocks: Vec<Vec<Insn>> = vec![vec![
        stmt(BPF_LD_W_ABS, SECCOMP_DATA_ARCH),
        jump(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, Label::Next, Label::Kill),
        stmt(BPF_LD_W_ABS, SECCOMP_DATA_NR),
        jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, Label::Kill, Label::Next),
        jump(BPF_JMP_JEQ_K, libc::SYS_clone3 as u32, Label::NoSys, Label::Next),
    ]];
    let mut upper = Vec::new();
    search(&denied, &mut blocks, &mut upper);

    // Lay the blocks out and resolve labels.
    let mut starts = Vec::with_capacity(blocks.len());
    let mut flat: Vec<(usize, Insn)> = Vec::new();
    for (b, block) in blocks.iter().enumerate() {
        starts.push(flat.len());
        for insn in block {
            flat.push((b, *insn));
        }
    }
    let deny = flat.len();
    let kill = deny + 1;
    let nosys = deny + 2;
    let cont = deny + 3;
    let target = |at: usize, label: Label| -> io::Result<u8> {
        match label {
            Label::Next => Ok(0),
            Label::Deny => offset(at, deny),
            Label::Kill => offset(at, kill),
            Label::NoSys => offset(at, nosys),
            Label::Continue => offset(at, cont),
        }
    };
    let mut program: BpfProgram = Vec::with_capacity(cont + tail.len());
    for (at, (block, insn)) in flat.iter().enumerate() {
        let mut jt = target(at, insn.jt)?;
        let jf = target(at, insn.jf)?;
        let mut k = insn.k;
        if let Some(&(_, upper_block)) = upper.iter().find(|(b, _)| b == block) {
            jt = offset(at, starts[upper_block])?;
        }
        if insn.code == BPF_JMP_JA {
            // Unconditional jumps carry their offset in `k`.
            k = u32::from(jt);
            jt = 0;
        }
        program.push(seccompiler::sock_filter { code: insn.code, jt, jf, k });
    }
    program.push(seccompiler::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_ERRNO | libc::EPERM as u32 });
    program.push(seccompiler::sock_filter { code: BPF_RET_K, jt: 0, jf: 0, k: SECCOMP_RET_KILL_PROCESS });
    program.push(seccompiler::sock_filter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k: SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
    });
    program.extend(tail);
    Ok(program)
}

/// Installs the filter on the calling thread (it is inherited by children and kept across exec).
pub(crate) fn install(program: &BpfProgram) -> io::Result<()> {
    seccompiler::apply_filter(program).map_err(io::Error::other)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the program the way the kernel would, for the subset of instructions it contains.
    fn run(program: &BpfProgram, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
        let mut acc: u32 = 0;
        let mut pc = 0usize;
        loop {
            let i = &program[pc];
            match i.code {
                0x20 => {
                    acc = match i.k {
                        0 => nr,
                        4 => arch,
                        off if off >= 16 => {
                            let idx = ((off - 16) / 8) as usize;
                            let v = args[idx];
                            if (off - 16) % 8 == 0 {
                                v as u32
                            } else {
                                (v >> 32) as u32
                            }
                        }
                        _ => panic!("unexpected load"),
                    };
                    pc += 1;
                }
                0x05 => pc += 1 + i.k as usize,
                0x15 => pc += 1 + if acc == i.k { i.jt } else { i.jf } as usize,
                0x35 => pc += 1 + if acc >= i.k { i.jt } else { i.jf } as usize,
                0x25 => pc += 1 + if acc > i.k { i.jt } else { i.jf } as usize,
                0x45 => pc += 1 + if acc & i.k != 0 { i.jt } else { i.jf } as usize,
                0x54 => {
                    acc &= i.k;
                    pc += 1;
                }
                0x06 => return i.k,
                other => panic!("unexpected instruction {other:#x}"),
            }
        }
    }

    const ALLOW: u32 = 0x7fff_0000;
    const EPERM: u32 = SECCOMP_RET_ERRNO | libc::EPERM as u32;

    fn check(nr: libc::c_long, args: [u64; 6]) -> u32 {
        run(&filter().expect("filter"), AUDIT_ARCH_X86_64, nr as u32, args)
    }

    #[test]
    fn every_denied_syscall_gets_eperm_and_ordinary_ones_pass() {
        for &nr in DENIED {
            assert_eq!(check(nr, [0; 6]), EPERM, "syscall {nr}");
        }
        for nr in [libc::SYS_read, libc::SYS_write, libc::SYS_openat, libc::SYS_execve, libc::SYS_exit_group] {
            assert_eq!(check(nr, [0; 6]), ALLOW, "syscall {nr}");
        }
        for nr in 0..460 {
            let expected = if DENIED.contains(&nr) { EPERM } else { ALLOW };
            if [libc::SYS_clone, libc::SYS_clone3, libc::SYS_socket, libc::SYS_ioctl].contains(&nr) {
                continue;
            }
            assert_eq!(check(nr, [0; 6]), expected, "syscall {nr}");
        }
    }

    #[test]
    fn namespace_flags_raw_sockets_and_tiocsti_are_refused() {
        let fork_like = libc::SIGCHLD as u64;
        assert_eq!(check(libc::SYS_clone, [fork_like, 0, 0, 0, 0, 0]), ALLOW);
        assert_eq!(check(libc::SYS_clone, [fork_like | libc::CLONE_NEWUSER as u64, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(check(libc::SYS_clone, [libc::CLONE_NEWNET as u64, 0, 0, 0, 0, 0]), EPERM);
        assert_eq!(check(libc::SYS_clone3, [0; 6]), SECCOMP_RET_ERRNO | libc::ENOSYS as u32);
        assert_eq!(check(libc::SYS_socket, [libc::AF_INET as u64, libc::SOCK_STREAM as u64, 0, 0, 0, 0]), ALLOW);
        assert_eq!(check(libc::SYS_socket, [libc::AF_INET as u64, libc::SOCK_RAW as u64, 0, 0, 0, 0]), EPERM);
        assert_eq!(check(libc::SYS_socket, [libc::AF_PACKET as u64, libc::SOCK_DGRAM as u64, 0, 0, 0, 0]), EPERM);
        assert_eq!(check(libc::SYS_socket, [libc::AF_NETLINK as u64, libc::SOCK_RAW as u64, 0, 0, 0, 0]), ALLOW);
        assert_eq!(check(libc::SYS_ioctl, [0, libc::TIOCSTI, 0, 0, 0, 0]), EPERM);
        assert_eq!(check(libc::SYS_ioctl, [0, libc::TIOCGWINSZ, 0, 0, 0, 0]), ALLOW);
    }

    #[test]
    fn foreign_architectures_and_x32_are_killed() {
        let program = filter().expect("filter");
        assert_eq!(run(&program, 0x4000_0003, 1, [0; 6]), SECCOMP_RET_KILL_PROCESS, "i386");
        assert_eq!(run(&program, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT | 1, [0; 6]), SECCOMP_RET_KILL_PROCESS);
    }
}
