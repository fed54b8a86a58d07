//! Sandbox: what a session gives up, once the client is found and the command line read,
//! before it reads a byte of DNS or of the client. Cheap system calls of its own instead of
//! the mount namespaces systemd would build for each connection (units/README.md says which
//! unit setting each layer stands in for):
//! - no new privileges, no child processes, no core dumps (but no RLIMIT_FSIZE: the only
//!   files a session can write are those open before, such as a log file an inetd made its
//!   stderr, and a limit would kill it with SIGXFSZ when it logs);
//! - Landlock: no file opened (resolving has read its files by then), no TCP connection but
//!   to the ports the session needs, no TCP port bound, no signal and no abstract unix
//!   socket outside the session's own domain;
//! - seccomp: only the system calls a session makes from here on — none that opens a file
//!   or stats one by path, which Landlock would not stop from telling a file's size and
//!   times (a unix socket the session holds, its log's, can still tell by connecting whether
//!   a path exists) — with their arguments checked where a call can do more than the
//!   session needs (no executable memory, IPv4 and IPv6 sockets and unix ones only for a unix backend, ioctls
//!   and signals to itself only). Anything else fails with EPERM, as systemd's
//!   `SystemCallErrorNumber=EPERM` would, so a mistake shows as an error, not a crash.
//!
//! Each layer is the kernel's to give: a kernel without Landlock (or with an older ABI) or
//! without seccomp leaves that layer out or smaller, which `restrict` reports for the -v log;
//! it never fails the session.

use crate::sys::{self, landlock};

/// What the rest of the session needs of the system.
pub struct Needs<'a> {
    /// TCP ports it connects to (the backend's, the name servers'); None when DNS is yet
    /// to say (an SRV target's ports), and any port may be reached.
    pub tcp_ports: Option<&'a [u16]>,
    /// The backend is a unix socket, if it is one.
    pub unix: Unix,
}

/// A unix backend: Landlock does not guard connecting to a socket by path, so a session
/// may open a unix socket at all only when its backend is one (seccomp).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Unix {
    No,
    Path,
    /// Outside the session's Landlock domain, so not scoped away.
    Abstract,
}

/// Applies every layer the kernel offers. Returns what was left out and why, for the log.
pub fn restrict(needs: &Needs<'_>) -> Vec<String> {
    let mut left_out = Vec::new();
    if let Err(e) = sys::set_no_new_privs() {
        // Without it neither Landlock nor an unprivileged seccomp filter can be installed.
        left_out.push(format!("no_new_privs: {e}"));
        return left_out;
    }
    if let Err(e) = sys::no_children_no_core_dumps() {
        left_out.push(format!("resource limits: {e}"));
    }
    match sys::landlock_abi() {
        Ok(abi) => {
            if let Err(e) = apply_landlock(abi, needs) {
                left_out.push(format!("Landlock: {e}"));
            } else if abi < NET_ABI {
                left_out.push(format!("Landlock ABI {abi}: no TCP or scope rules"));
            } else if abi < SCOPE_ABI {
                left_out.push(format!("Landlock ABI {abi}: no scope rules"));
            }
        }
        Err(e) => left_out.push(format!("Landlock: {e}")),
    }
    match filter(needs.unix != Unix::No) {
        Some(filter) => {
            if let Err(e) = sys::set_seccomp_filter(filter.program()) {
                left_out.push(format!("seccomp: {e}"));
            }
        }
        None => left_out.push("seccomp: no filter for this architecture, or too long".to_owned()),
    }
    left_out
}

/// The Landlock ABI that brought TCP rules (4) and scopes (6).
const NET_ABI: u32 = 4;
const SCOPE_ABI: u32 = 6;

/// Every filesystem right the kernel's ABI knows: handled, hence denied unless a rule
/// allows it.
fn handled_fs(abi: u32) -> u64 {
    let mut rights = (1 << 13) - 1; // ABI 1: execute through make_sym
    if abi >= 2 {
        rights |= 1 << 13; // refer
    }
    if abi >= 3 {
        rights |= 1 << 14; // truncate
    }
    if abi >= 5 {
        rights |= 1 << 15; // ioctl_dev
    }
    rights
}

fn apply_landlock(abi: u32, needs: &Needs<'_>) -> std::io::Result<()> {
    let net = abi >= NET_ABI;
    let mut scoped = 0;
    if abi >= SCOPE_ABI {
        scoped = landlock::SCOPE_SIGNAL;
        if needs.unix != Unix::Abstract {
            scoped |= landlock::SCOPE_ABSTRACT_UNIX_SOCKET;
        }
    }
    let attr = landlock::RulesetAttr {
        handled_access_fs: handled_fs(abi),
        handled_access_net: match (net, needs.tcp_ports) {
            (false, _) => 0,
            (true, Some(_)) => landlock::ACCESS_NET_BIND_TCP | landlock::ACCESS_NET_CONNECT_TCP,
            (true, None) => landlock::ACCESS_NET_BIND_TCP,
        },
        scoped,
    };
    // The kernel refuses fields it does not know unless they are left out of the size.
    let size = if abi >= SCOPE_ABI { 24 } else { 16 };
    // Every filesystem right handled and none granted: no file at all.
    let ruleset = sys::landlock_ruleset(&attr, size)?;
    if net {
        for &port in needs.tcp_ports.unwrap_or_default() {
            sys::landlock_allow_port(&ruleset, port, landlock::ACCESS_NET_CONNECT_TCP)?;
        }
    }
    sys::landlock_restrict_self(&ruleset)
}

/// Classic BPF, as seccomp runs it (linux/filter.h, linux/bpf_common.h).
mod bpf {
    pub const LD_W_ABS: u16 = 0x20;
    pub const AND_K: u16 = 0x54;
    pub const JEQ_K: u16 = 0x15;
    pub const JGE_K: u16 = 0x35;
    pub const JSET_K: u16 = 0x45;
    pub const RET_K: u16 = 0x06;
    /// Offsets in `struct seccomp_data`: the call's number, its architecture, its arguments
    /// (the low 32 bits, little-endian).
    pub const NR: u32 = 0;
    pub const ARCH: u32 = 4;
    pub fn arg(i: u32) -> u32 {
        16 + 8 * i
    }
}

const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const DENY: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

/// How a system call's arguments are checked.
#[derive(Clone, Copy)]
enum Check {
    Any,
    /// Argument `.0` has none of the bits `.1` (PROT_EXEC).
    Lacks(u32, u32),
    /// Argument `.0` is one of `.1`.
    OneOf(u32, &'static [u32]),
    /// Argument `.0` is this process's ID (a thread ID: it has one thread).
    Itself(u32),
    /// socket(2): AF_INET, AF_INET6 and, for a unix backend, AF_UNIX; SOCK_STREAM or
    /// SOCK_DGRAM (flags aside).
    Socket,
}

const EXEC: u32 = libc::PROT_EXEC as u32;

/// The system calls a session makes once restricted, with the checks of their arguments.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
const CALLS: &[(libc::c_long, Check)] = &[
    // Files already open, and memory.
    (libc::SYS_read, Check::Any),
    (libc::SYS_readv, Check::Any),
    (libc::SYS_write, Check::Any),
    (libc::SYS_writev, Check::Any),
    (libc::SYS_close, Check::Any),
    // An open descriptor's only: glibc 2.33 and later make fstat(3) a newfstatat, which
    // is not here (nothing calls either after the sandbox).
    (libc::SYS_fstat, Check::Any),
    (libc::SYS_lseek, Check::Any),
    (libc::SYS_fcntl, Check::Any),
    (libc::SYS_dup3, Check::Any),
    (libc::SYS_mmap, Check::Lacks(2, EXEC)),
    (libc::SYS_mprotect, Check::Lacks(2, EXEC)),
    (libc::SYS_munmap, Check::Any),
    (libc::SYS_mremap, Check::Any),
    (libc::SYS_brk, Check::Any),
    (libc::SYS_madvise, Check::Any),
    // Sockets, pipes, and waiting for them.
    (libc::SYS_socket, Check::Socket),
    (libc::SYS_connect, Check::Any),
    (libc::SYS_bind, Check::Any),
    (libc::SYS_getsockname, Check::Any),
    (libc::SYS_getpeername, Check::Any),
    (libc::SYS_getsockopt, Check::Any),
    (libc::SYS_setsockopt, Check::Any),
    (libc::SYS_shutdown, Check::Any),
    (libc::SYS_sendto, Check::Any),
    (libc::SYS_recvfrom, Check::Any),
    (libc::SYS_sendmsg, Check::Any),
    (libc::SYS_recvmsg, Check::Any),
    (libc::SYS_sendmmsg, Check::Any),
    (libc::SYS_recvmmsg, Check::Any),
    (libc::SYS_pipe2, Check::Any),
    (libc::SYS_splice, Check::Any),
    (
        libc::SYS_ioctl,
        Check::OneOf(
            1,
            &[
                libc::FIONREAD as u32,
                sys::SIOCATMARK as u32,
                sys::SIOCOUTQ as u32,
            ],
        ),
    ),
    (libc::SYS_epoll_create1, Check::Any),
    (libc::SYS_epoll_ctl, Check::Any),
    (libc::SYS_epoll_pwait, Check::Any),
    (libc::SYS_eventfd2, Check::Any),
    (libc::SYS_signalfd4, Check::Any),
    (libc::SYS_ppoll, Check::Any),
    // Time, randomness, the process itself.
    (libc::SYS_clock_gettime, Check::Any),
    (libc::SYS_clock_nanosleep, Check::Any),
    (libc::SYS_nanosleep, Check::Any),
    (libc::SYS_gettimeofday, Check::Any),
    (libc::SYS_getrandom, Check::Any),
    (libc::SYS_futex, Check::Any),
    (libc::SYS_sched_yield, Check::Any),
    (libc::SYS_getpid, Check::Any),
    (libc::SYS_gettid, Check::Any),
    (libc::SYS_uname, Check::Any),
    (libc::SYS_rt_sigaction, Check::Any),
    (libc::SYS_rt_sigprocmask, Check::Any),
    (libc::SYS_rt_sigreturn, Check::Any),
    (libc::SYS_sigaltstack, Check::Any),
    // Dying of a stop signal: raise(3) signals the calling thread, no other.
    (libc::SYS_tkill, Check::Itself(0)),
    (libc::SYS_tgkill, Check::Itself(0)),
    (libc::SYS_restart_syscall, Check::Any),
    (libc::SYS_exit, Check::Any),
    (libc::SYS_exit_group, Check::Any),
];

/// The older calls that x86_64's C libraries still make.
#[cfg(target_arch = "x86_64")]
const ARCH_CALLS: &[(libc::c_long, Check)] = &[
    (libc::SYS_poll, Check::Any),
    (libc::SYS_epoll_wait, Check::Any),
    (libc::SYS_pipe, Check::Any),
    (libc::SYS_dup2, Check::Any),
];
#[cfg(target_arch = "aarch64")]
const ARCH_CALLS: &[(libc::c_long, Check)] = &[];

/// The longest program: classic BPF's jumps reach 255 instructions ahead at most, and every
/// path ends at one of the two returns at the end.
const MAX_PROGRAM: usize = 256;

/// A seccomp program: `len` instructions of `insns`.
pub struct Filter {
    insns: [libc::sock_filter; MAX_PROGRAM],
    len: usize,
}

impl Filter {
    fn program(&self) -> &[libc::sock_filter] {
        &self.insns[..self.len]
    }
}

/// The seccomp program: the architecture checked, then the call's number looked up in a
/// balanced tree of comparisons, EPERM where it is not found; each call runs one path of
/// about a dozen instructions. Installing it costs what the kernel's compiler takes per
/// instruction, hence a tree whose paths share two returns rather than a list of calls; and
/// it is written into a buffer on the stack, not the heap, whose fresh pages would cost
/// more than the writing.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn filter(unix: bool) -> Option<Filter> {
    let mut calls = [(0u32, Check::Any); CALLS.len() + ARCH_CALLS.len()];
    for (slot, &(number, check)) in calls.iter_mut().zip(CALLS.iter().chain(ARCH_CALLS)) {
        *slot = (u32::try_from(number).ok()?, check);
    }
    calls.sort_unstable_by_key(|&(number, _)| number);
    let mut w = Writer::default();
    w.put(LD_W_ABS, bpf::ARCH, To::Next(0), To::Next(0))?;
    w.put(JEQ_K, AUDIT_ARCH, To::Next(1), To::Next(0))?;
    w.put(
        RET_K,
        libc::SECCOMP_RET_KILL_PROCESS,
        To::Next(0),
        To::Next(0),
    )?;
    w.put(LD_W_ABS, bpf::NR, To::Next(0), To::Next(0))?;
    // Numbers past the last listed call are refused at once: among them x86_64's x32 ABI
    // (bit 30), which shares the architecture, and a hundred-odd calls the kernel would
    // otherwise walk the whole tree for when it works out, on installing the filter, which
    // calls are always allowed.
    let past_last = calls.last()?.0 + 1;
    w.put(JGE_K, past_last, To::Deny, To::Next(0))?;
    let facts = Facts {
        pid: std::process::id(),
        unix,
    };
    w.lookup(&calls, facts)?;
    w.finish()
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
fn filter(_unix: bool) -> Option<Filter> {
    None
}

use bpf::{AND_K, JEQ_K, JGE_K, JSET_K, LD_W_ABS, RET_K};

/// What the checks depend on besides the call: this process, and whether it may open unix
/// sockets.
#[derive(Clone, Copy)]
struct Facts {
    pid: u32,
    unix: bool,
}

/// Where a jump goes: this many instructions ahead, or to the final ALLOW or DENY.
#[derive(Clone, Copy)]
enum To {
    Next(u8),
    Allow,
    Deny,
}

/// Writes a program; jumps to ALLOW and DENY are resolved by `finish`, which appends them.
struct Writer {
    insns: [(u16, u32, To, To); MAX_PROGRAM],
    len: usize,
}

impl Default for Writer {
    fn default() -> Writer {
        Writer {
            insns: [(0, 0, To::Next(0), To::Next(0)); MAX_PROGRAM],
            len: 0,
        }
    }
}

impl Writer {
    /// Appends an instruction; None if the program is full. Returns its index.
    fn put(&mut self, code: u16, k: u32, jt: To, jf: To) -> Option<usize> {
        let slot = self.insns.get_mut(self.len)?;
        *slot = (code, k, jt, jf);
        self.len += 1;
        Some(self.len - 1)
    }

    /// How far from instruction `from` the next one to be written is.
    fn skip_to_here(&self, from: usize) -> Option<To> {
        u8::try_from(self.len - from - 1).ok().map(To::Next)
    }

    /// Finds the accumulator's call number among `calls` (sorted) and goes on with its
    /// check, or denies.
    fn lookup(&mut self, calls: &[(u32, Check)], facts: Facts) -> Option<()> {
        if calls.len() > 4 {
            let (low, high) = calls.split_at(calls.len() / 2);
            let split = self.put(JGE_K, high.first()?.0, To::Next(0), To::Next(0))?;
            self.lookup(low, facts)?;
            self.insns[split].2 = self.skip_to_here(split)?;
            return self.lookup(high, facts);
        }
        for (i, &(number, check)) in calls.iter().enumerate() {
            let last = i + 1 == calls.len();
            if let Check::Any = check {
                let otherwise = if last { To::Deny } else { To::Next(0) };
                self.put(JEQ_K, number, To::Allow, otherwise)?;
                continue;
            }
            let test = self.put(JEQ_K, number, To::Next(0), To::Next(0))?;
            self.check(check, facts)?;
            self.insns[test].3 = if last {
                To::Deny
            } else {
                self.skip_to_here(test)?
            };
        }
        Some(())
    }

    /// The instructions that follow a matching call number; each path ends in ALLOW or DENY.
    fn check(&mut self, check: Check, facts: Facts) -> Option<()> {
        let load = |w: &mut Writer, arg| w.put(LD_W_ABS, bpf::arg(arg), To::Next(0), To::Next(0));
        match check {
            // `lookup` lets these through with the number's match alone.
            Check::Any => return None,
            Check::Lacks(arg, bits) => {
                load(self, arg)?;
                self.put(JSET_K, bits, To::Deny, To::Allow)?;
            }
            Check::OneOf(arg, values) => {
                load(self, arg)?;
                for (i, &value) in values.iter().enumerate() {
                    let otherwise = if i + 1 == values.len() {
                        To::Deny
                    } else {
                        To::Next(0)
                    };
                    self.put(JEQ_K, value, To::Allow, otherwise)?;
                }
            }
            Check::Itself(arg) => {
                load(self, arg)?;
                self.put(JEQ_K, facts.pid, To::Allow, To::Deny)?;
            }
            Check::Socket => {
                load(self, 0)?;
                if facts.unix {
                    self.put(JEQ_K, libc::AF_UNIX as u32, To::Next(2), To::Next(0))?;
                }
                self.put(JEQ_K, libc::AF_INET as u32, To::Next(1), To::Next(0))?;
                self.put(JEQ_K, libc::AF_INET6 as u32, To::Next(0), To::Deny)?;
                load(self, 1)?;
                self.put(AND_K, 0xf, To::Next(0), To::Next(0))?;
                self.put(JEQ_K, libc::SOCK_STREAM as u32, To::Allow, To::Next(0))?;
                self.put(JEQ_K, libc::SOCK_DGRAM as u32, To::Allow, To::Deny)?;
            }
        }
        Some(())
    }

    /// Appends the two returns and turns every jump into an offset; None if one is too long.
    fn finish(mut self) -> Option<Filter> {
        let allow = self.put(RET_K, ALLOW, To::Next(0), To::Next(0))?;
        self.put(RET_K, DENY, To::Next(0), To::Next(0))?;
        let mut filter = Filter {
            insns: [libc::sock_filter {
                code: 0,
                jt: 0,
                jf: 0,
                k: 0,
            }; MAX_PROGRAM],
            len: self.len,
        };
        for (at, (&(code, k, jt, jf), out)) in self.insns[..self.len]
            .iter()
            .zip(filter.insns.iter_mut())
            .enumerate()
        {
            let offset = |to| match to {
                To::Next(n) => Some(n),
                To::Allow => u8::try_from(allow.checked_sub(at + 1)?).ok(),
                To::Deny => u8::try_from(allow.checked_sub(at)?).ok(),
            };
            *out = libc::sock_filter {
                code,
                jt: offset(jt)?,
                jf: offset(jf)?,
                k,
            };
        }
        Some(filter)
    }
}

#[cfg(all(test, any(target_arch = "x86_64", target_arch = "aarch64")))]
mod tests {
    use super::*;

    /// Runs `program` as the kernel would for a call (number, arguments) of `arch`.
    fn run(program: &[libc::sock_filter], arch: u32, number: u32, args: [u32; 6]) -> u32 {
        let word = |offset: u32| match offset {
            bpf::NR => number,
            bpf::ARCH => arch,
            offset => args[((offset - 16) / 8) as usize],
        };
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let insn = program[pc];
            pc += 1;
            let jump = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
            match insn.code {
                bpf::LD_W_ABS => a = word(insn.k),
                bpf::AND_K => a &= insn.k,
                bpf::JEQ_K => pc += jump(a == insn.k),
                bpf::JGE_K => pc += jump(a >= insn.k),
                bpf::JSET_K => pc += jump(a & insn.k != 0),
                bpf::RET_K => return insn.k,
                code => panic!("unexpected instruction {code:#x}"),
            }
        }
    }

    fn call(number: libc::c_long, args: [u32; 6]) -> u32 {
        run(
            filter(false).unwrap().program(),
            AUDIT_ARCH,
            number as u32,
            args,
        )
    }

    #[test]
    fn exactly_the_listed_calls_are_allowed() {
        let filter = filter(false).unwrap();
        for number in 0..1024 {
            // All arguments zero: an open for reading, a socket of family 0 (refused)...
            let verdict = run(filter.program(), AUDIT_ARCH, number, [0; 6]);
            let expected = CALLS.iter().chain(ARCH_CALLS).any(|(n, check)| {
                *n as u32 == number
                    && match check {
                        Check::Any | Check::Lacks(..) => true,
                        Check::OneOf(_, values) => values.contains(&0),
                        Check::Itself(_) | Check::Socket => false,
                    }
            });
            assert_eq!(verdict == ALLOW, expected, "call {number}");
            assert!(
                verdict == ALLOW || verdict == DENY,
                "call {number}: {verdict:#x}"
            );
        }
    }

    #[test]
    fn another_architecture_is_killed_and_x32_denied() {
        let filter = filter(false).unwrap();
        let verdict = run(filter.program(), 0x4000_0003, libc::SYS_read as u32, [0; 6]);
        assert_eq!(verdict, libc::SECCOMP_RET_KILL_PROCESS);
        #[cfg(target_arch = "x86_64")]
        assert_eq!(run(filter.program(), AUDIT_ARCH, 0x4000_0000, [0; 6]), DENY);
    }

    #[test]
    fn no_file_is_opened_or_looked_up_by_path_even_for_reading() {
        let mut by_path = vec![
            libc::SYS_openat,
            libc::SYS_openat2,
            libc::SYS_newfstatat,
            libc::SYS_statx,
        ];
        #[cfg(target_arch = "x86_64")]
        by_path.extend([libc::SYS_open, libc::SYS_stat, libc::SYS_lstat]);
        for number in by_path {
            assert_eq!(call(number, [0, 0, libc::O_RDONLY as u32, 0, 0, 0]), DENY);
        }
        assert_eq!(call(libc::SYS_fstat, [0; 6]), ALLOW, "an open descriptor's");
    }

    #[test]
    fn arguments_are_checked_where_a_call_could_do_more() {
        let rw = (libc::PROT_READ | libc::PROT_WRITE) as u32;
        assert_eq!(call(libc::SYS_mmap, [0, 0, rw, 0, 0, 0]), ALLOW);
        assert_eq!(
            call(libc::SYS_mprotect, [0, 0, libc::PROT_EXEC as u32, 0, 0, 0]),
            DENY
        );
        let stream = (libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) as u32;
        for family in [libc::AF_INET, libc::AF_INET6] {
            assert_eq!(
                call(libc::SYS_socket, [family as u32, stream, 0, 0, 0, 0]),
                ALLOW
            );
        }
        let unix = [libc::AF_UNIX as u32, stream, 0, 0, 0, 0];
        assert_eq!(call(libc::SYS_socket, unix), DENY, "no unix backend");
        let with_unix = filter(true).unwrap();
        let verdict = run(
            with_unix.program(),
            AUDIT_ARCH,
            libc::SYS_socket as u32,
            unix,
        );
        assert_eq!(verdict, ALLOW, "a unix backend");
        let raw = libc::SOCK_RAW as u32;
        assert_eq!(
            call(libc::SYS_socket, [libc::AF_INET as u32, raw, 0, 0, 0, 0]),
            DENY
        );
        let netlink = libc::AF_NETLINK as u32;
        assert_eq!(
            call(
                libc::SYS_socket,
                [netlink, libc::SOCK_DGRAM as u32, 0, 0, 0, 0]
            ),
            DENY
        );
        assert_eq!(
            call(libc::SYS_ioctl, [0, libc::FIONREAD as u32, 0, 0, 0, 0]),
            ALLOW
        );
        assert_eq!(
            call(libc::SYS_ioctl, [0, libc::TIOCSTI as u32, 0, 0, 0, 0]),
            DENY
        );
        let pid = std::process::id();
        assert_eq!(call(libc::SYS_tkill, [pid, 15, 0, 0, 0, 0]), ALLOW);
        assert_eq!(call(libc::SYS_tkill, [1, 15, 0, 0, 0, 0]), DENY);
    }
}
