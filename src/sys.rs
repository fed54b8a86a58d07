//! Thin, safe wrappers around the few libc calls the standard library does not offer.
//!
//! Every `unsafe` block of the program lives here, one small block per call (the allocator,
//! src/alloc.rs, has the only others: implementing `GlobalAlloc` is unsafe by definition). The
//! descriptors passed in are raw because most of them are inherited (0, 1, 3) and are never
//! closed by this program; the ones it creates are `OwnedFd`s held by their stage.

use std::ffi::CString;
use std::io;
use std::mem::{self, MaybeUninit};
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// Turns a libc return value into `io::Result`, reading errno on -1.
fn check<T: Copy + PartialEq + From<i8>>(ret: T) -> io::Result<T> {
    if ret == T::from(-1) {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// What an open descriptor refers to, from fstat(2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
}

impl FileId {
    pub fn is_socket(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFSOCK
    }
    pub fn is_fifo(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFIFO
    }
    pub fn is_char_device(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFCHR
    }
    /// Same open object (socket, pipe, file), whatever descriptor number reaches it.
    pub fn same_object(&self, other: &FileId) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }
}

pub fn fstat(fd: RawFd) -> io::Result<FileId> {
    let mut st = MaybeUninit::<libc::stat>::uninit();
    // SAFETY: fstat writes a whole `struct stat` into the buffer we own; any fd value is allowed.
    check(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat returned 0, so it initialised the struct.
    let st = unsafe { st.assume_init() };
    Ok(FileId {
        dev: st.st_dev,
        ino: st.st_ino,
        mode: st.st_mode,
    })
}

pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

pub fn get_flags(fd: RawFd) -> io::Result<i32> {
    // SAFETY: F_GETFL takes no argument and only reads the file status flags.
    check(unsafe { libc::fcntl(fd, libc::F_GETFL) })
}

pub fn set_flags(fd: RawFd, flags: i32) -> io::Result<()> {
    // SAFETY: F_SETFL takes an int argument and changes only the file status flags.
    check(unsafe { libc::fcntl(fd, libc::F_SETFL, flags) }).map(drop)
}

/// Points `fd` at the open file of `with` (dup2), closing what `fd` referred to.
pub fn replace_fd(with: &OwnedFd, fd: RawFd) -> io::Result<()> {
    // SAFETY: dup2 on two descriptor numbers; `with` is open for the duration of the call.
    check(unsafe { libc::dup2(with.as_raw_fd(), fd) }).map(drop)
}

pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most buf.len() bytes into memory we borrow mutably.
    let n = check(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })?;
    Ok(n as usize)
}

pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads at most buf.len() bytes from memory we borrow.
    let n = check(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })?;
    Ok(n as usize)
}

/// Moves up to `len` bytes between two descriptors inside the kernel; one must be a pipe.
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let flags = libc::SPLICE_F_MOVE | libc::SPLICE_F_NONBLOCK;
    // SAFETY: null offsets mean "current position"; no user memory is involved.
    let n = check(unsafe {
        libc::splice(
            from,
            std::ptr::null_mut(),
            to,
            std::ptr::null_mut(),
            len,
            flags,
        )
    })?;
    Ok(n as usize)
}

/// A non-blocking, close-on-exec pipe: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are new and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Asks for a pipe of `size` bytes; returns the size the kernel granted.
pub fn set_pipe_size(fd: RawFd, size: usize) -> io::Result<usize> {
    let size = i32::try_from(size).unwrap_or(i32::MAX);
    // SAFETY: F_SETPIPE_SZ takes an int argument and only resizes the pipe's ring.
    let granted = check(unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, size) })?;
    Ok(granted as usize)
}

pub fn shutdown_write(fd: RawFd) -> io::Result<()> {
    // SAFETY: shutdown only changes the socket's state.
    check(unsafe { libc::shutdown(fd, libc::SHUT_WR) }).map(drop)
}

fn getsockopt_int(fd: RawFd, level: i32, name: i32) -> io::Result<i32> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`, which we own.
    check(unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) })?;
    Ok(value)
}

fn setsockopt_int(fd: RawFd, level: i32, name: i32, value: i32) -> io::Result<()> {
    let len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel reads `len` bytes from `value`, which lives across the call.
    check(unsafe { libc::setsockopt(fd, level, name, (&raw const value).cast(), len) }).map(drop)
}

/// True for a socket in the listening state, which systemd passes when Accept=no.
pub fn is_listening(fd: RawFd) -> bool {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN).is_ok_and(|v| v != 0)
}

pub fn set_nodelay(fd: RawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1)
}

/// Whether the next byte to read is the socket's urgent (out-of-band) byte; false for
/// anything that has no urgent data or is no socket.
pub fn at_urgent_mark(fd: RawFd) -> bool {
    let mut at: libc::c_int = 0;
    // SAFETY: SIOCATMARK writes one int into memory we own.
    let ret = unsafe { libc::ioctl(fd, SIOCATMARK, &raw mut at) };
    ret == 0 && at != 0
}

/// Whether `fd` has bytes waiting to be read (FIONREAD); true when it cannot tell.
pub fn has_input(fd: RawFd) -> bool {
    let mut waiting: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int into memory we own.
    let ret = unsafe { libc::ioctl(fd, libc::FIONREAD, &raw mut waiting) };
    ret != 0 || waiting > 0
}

/// Urgent bytes stay in the stream for read(2) instead of being set aside for MSG_OOB.
pub fn keep_urgent_inline(fd: RawFd) -> io::Result<()> {
    setsockopt_int(fd, libc::SOL_SOCKET, libc::SO_OOBINLINE, 1)
}

/// Points each of `fds` at /dev/null (opened once, for writing).
pub fn point_at_dev_null(fds: &[RawFd]) -> io::Result<()> {
    let null: OwnedFd = std::fs::File::options()
        .write(true)
        .open("/dev/null")?
        .into();
    fds.iter().try_for_each(|&fd| replace_fd(&null, fd))
}

/// Lets go of the open files behind `fds` while keeping their numbers taken (so that no
/// later descriptor lands there): each becomes the read end of a new pipe that has no
/// writer. Unlike /dev/null, it needs no file opened, which the sandbox no longer allows.
pub fn let_go_of(fds: &[RawFd]) -> io::Result<()> {
    let (read_end, _write_end) = pipe()?;
    fds.iter().try_for_each(|&fd| replace_fd(&read_end, fd))
}

type NameFn = unsafe extern "C" fn(i32, *mut libc::sockaddr, *mut libc::socklen_t) -> i32;

fn socket_name(fd: RawFd, call: NameFn) -> io::Result<Option<SocketAddr>> {
    let mut storage = MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let mut len = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getpeername/getsockname write at most `len` bytes into the storage we own.
    check(unsafe { call(fd, storage.as_mut_ptr().cast(), &mut len) })?;
    // SAFETY: the storage was zeroed, so every byte is initialised whatever the kernel wrote.
    let storage = unsafe { storage.assume_init() };
    Ok(inet_address(&storage))
}

/// The IPv4 or IPv6 address in a sockaddr_storage; None for other families (unix).
fn inet_address(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large enough for.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = u32::from_be(sin.sin_addr.s_addr).into();
            Some(SocketAddrV4::new(ip, u16::from_be(sin.sin_port)).into())
        }
        libc::AF_INET6 => {
            // SAFETY: the family says the storage holds a sockaddr_in6, which it is large enough for.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            let ip = sin6.sin6_addr.s6_addr.into();
            let port = u16::from_be(sin6.sin6_port);
            Some(SocketAddrV6::new(ip, port, sin6.sin6_flowinfo, sin6.sin6_scope_id).into())
        }
        _ => None,
    }
}

/// The address of the socket's peer, or None when it is not an IP socket.
pub fn peer_address(fd: RawFd) -> io::Result<Option<SocketAddr>> {
    socket_name(fd, libc::getpeername)
}

/// The socket's own address, or None when it is not an IP socket.
pub fn local_address(fd: RawFd) -> io::Result<Option<SocketAddr>> {
    socket_name(fd, libc::getsockname)
}

/// Which of fds 0, 1 and 2 were closed when the process started (bit n for fd n).
static CLOSED_AT_START: AtomicU8 = AtomicU8::new(0);

/// Notes which of fds 0, 1 and 2 are closed. For `.init_array` (src/main.rs): it runs before
/// Rust's runtime, which points closed ones at /dev/null and so hides that they were closed.
/// One poll(2), as Rust's runtime itself asks: a closed descriptor reports POLLNVAL.
pub extern "C" fn note_closed_stdio() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: poll reads and writes the three pollfd structs we own; it does not wait.
    if unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } < 0 {
        return;
    }
    let closed = (0..3)
        .filter(|&i| fds[i].revents & libc::POLLNVAL != 0)
        .fold(0, |bits, i| bits | 1 << i);
    CLOSED_AT_START.store(closed, Ordering::Relaxed);
}

/// Running out of descriptors (RLIMIT_NOFILE, or the system's): ours, not a peer's doing.
pub fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Whether `fd` (0, 1 or 2) was closed when the process started; false where
/// `note_closed_stdio` did not run (the library's tests).
pub fn closed_at_start(fd: RawFd) -> bool {
    (0..3).contains(&fd) && CLOSED_AT_START.load(Ordering::Relaxed) & (1 << fd) != 0
}

/// TCP keepalive on `fd` (SO_KEEPALIVE with its three numbers), and TCP_USER_TIMEOUT: how
/// long sent data may stay unacknowledged before the connection is dropped.
pub fn set_keepalive(
    fd: RawFd,
    idle: u32,
    interval: u32,
    count: u32,
    user_timeout: Duration,
) -> io::Result<()> {
    let millis = u32::try_from(user_timeout.as_millis()).unwrap_or(u32::MAX);
    let options = [
        (libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
        (libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, idle),
        (libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, interval),
        (libc::IPPROTO_TCP, libc::TCP_KEEPCNT, count),
        (libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT, millis),
    ];
    for (level, name, value) in options {
        setsockopt_int(
            fd,
            level,
            name,
            libc::c_int::try_from(value).unwrap_or(libc::c_int::MAX),
        )?;
    }
    Ok(())
}

/// Bytes sent on `fd` that the peer has not taken yet (SIOCOUTQ): for a unix datagram
/// socket, what still waits in the receiver's queue.
pub fn unread_by_peer(fd: RawFd) -> io::Result<usize> {
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ writes one int into memory we own.
    check(unsafe { libc::ioctl(fd, SIOCOUTQ, &raw mut queued) })?;
    Ok(usize::try_from(queued).unwrap_or(0))
}

/// Fills `buf` from the kernel's random pool, or leaves it as it was if that fails: what it
/// seeds (the order of SRV records of one priority) then loses its randomness, nothing else.
pub fn random(buf: &mut [u8]) {
    // SAFETY: getrandom(2) writes at most buf.len() bytes into buf.
    let _ = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), buf.len(), libc::GRND_NONBLOCK) };
}

pub fn interface_index(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated string that lives across the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

/// The signals that end a session cleanly: a service stop, Ctrl-C, a hang-up.
const STOP_SIGNALS: [i32; 3] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// The stop signals, less those our parent set to be ignored (`nohup`, a background job):
/// a blocked signal is queued even when ignored, so blocking it would make it count.
fn stop_signal_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: sigemptyset initialises the set we own.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    for signal in STOP_SIGNALS.into_iter().filter(|&s| !is_ignored(s)) {
        // SAFETY: adds a valid signal number to the initialised set we own.
        unsafe { libc::sigaddset(set.as_mut_ptr(), signal) };
    }
    // SAFETY: initialised by sigemptyset above.
    unsafe { set.assume_init() }
}

fn is_ignored(signal: i32) -> bool {
    let mut action = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: with a null new action, sigaction only writes the current one into our struct.
    let known = unsafe { libc::sigaction(signal, std::ptr::null(), action.as_mut_ptr()) } == 0;
    // SAFETY: zeroed, and filled in by the kernel when the call succeeded.
    known && unsafe { action.assume_init() }.sa_sigaction == libc::SIG_IGN
}

/// The stop signals (those not ignored) and a non-blocking signalfd that reports them once
/// they are blocked, so the relay loop sees a stop as one more event instead of dying
/// without its log line. The set is worked out once (a sigaction call per signal).
pub struct StopSignals {
    set: libc::sigset_t,
    fd: OwnedFd,
}

impl StopSignals {
    pub fn new() -> io::Result<StopSignals> {
        let set = stop_signal_set();
        // SAFETY: signalfd(-1, ...) creates a new descriptor from the set we own.
        let fd =
            check(unsafe { libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC) })?;
        // SAFETY: signalfd succeeded, so the descriptor is new and owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(StopSignals { set, fd })
    }

    /// From now on the stop signals wait in the signalfd instead of ending the process.
    pub fn block(&self) -> io::Result<()> {
        // SAFETY: sigprocmask reads the set we own; no old mask is asked for.
        check(unsafe { libc::sigprocmask(libc::SIG_BLOCK, &self.set, std::ptr::null_mut()) })?;
        Ok(())
    }

    /// The number of the next pending stop signal, if any.
    pub fn next(&self) -> Option<i32> {
        read_signal(&self.fd)
    }
}

impl AsRawFd for StopSignals {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn read_signal(fd: &OwnedFd) -> Option<i32> {
    let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
    let size = mem::size_of::<libc::signalfd_siginfo>();
    // SAFETY: the kernel writes at most `size` bytes into the struct we own.
    let n = unsafe { libc::read(fd.as_raw_fd(), info.as_mut_ptr().cast(), size) };
    if n as usize != size {
        return None;
    }
    // SAFETY: a whole siginfo was read, and the struct was zeroed before anyway.
    let info = unsafe { info.assume_init() };
    i32::try_from(info.ssi_signo).ok()
}

/// Ends the process the way the signal would have, so the parent sees the true cause.
pub fn die_by_signal(signal: i32) -> ! {
    let set = stop_signal_set();
    // SAFETY: restore the default action, then unblock; the pending signal is delivered and
    // terminates the process. exit() is only reached if that somehow did not happen.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
        libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        libc::_exit(128 + signal)
    }
}

/// From now on neither this process nor what it could exec may gain privileges (setuid
/// bits, file capabilities); required before an unprivileged seccomp filter.
pub fn set_no_new_privs() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only changes this process's flags.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
    Ok(())
}

/// Lowers to zero, soft and hard, the limit on this user's processes (no fork for an
/// unprivileged user) and on the size of a core dump (no session's memory on disk).
pub fn no_children_no_core_dumps() -> io::Result<()> {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we own.
    check(unsafe { libc::setrlimit(libc::RLIMIT_NPROC, &zero) })?;
    // SAFETY: as above.
    check(unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) })?;
    Ok(())
}

/// Installs a seccomp filter (classic BPF over `struct seccomp_data`) for this process.
/// Without forcing the speculative store bypass mitigation on it, as kernels before 5.16 do
/// for every filter unless told (that slows every later instruction, for a relay too); a
/// kernel that does not know the flag (before 4.17) is asked again without it.
pub fn set_seccomp_filter(program: &[libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len()).map_err(|_| io::Error::other("filter too long"))?;
    let program = libc::sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    let install = |flags: libc::c_ulong| {
        // SAFETY: the kernel copies the program, which lives across the call, and only
        // reads it.
        check(unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &raw const program,
            )
        })
    };
    match install(libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW) {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => install(0)?,
        result => result?,
    };
    Ok(())
}

/// The host's name, as uname(2) gives it (what /proc/sys/kernel/hostname holds).
pub fn host_name() -> Option<String> {
    let mut names = MaybeUninit::<libc::utsname>::uninit();
    // SAFETY: uname fills the struct, which lives across the call.
    check(unsafe { libc::uname(names.as_mut_ptr()) }).ok()?;
    // SAFETY: uname succeeded, so it wrote the whole struct.
    let names = unsafe { names.assume_init() };
    let name: Vec<u8> = names
        .nodename
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8(name).ok()
}

/// Landlock's structures and constants (linux/landlock.h), which the libc crate lacks.
pub mod landlock {
    pub const CREATE_RULESET_VERSION: u32 = 1;
    pub const RULE_NET_PORT: u32 = 2;
    pub const ACCESS_NET_BIND_TCP: u64 = 1 << 0;
    pub const ACCESS_NET_CONNECT_TCP: u64 = 1 << 1;
    pub const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
    pub const SCOPE_SIGNAL: u64 = 1 << 1;

    #[repr(C)]
    pub struct RulesetAttr {
        pub handled_access_fs: u64,
        pub handled_access_net: u64,
        /// Since ABI 6; a kernel before it takes the struct without this field.
        pub scoped: u64,
    }

    #[repr(C)]
    pub struct NetPortAttr {
        pub allowed_access: u64,
        pub port: u64,
    }
}

/// The Landlock ABI version the kernel offers; an error if it has none or it is off.
pub fn landlock_abi() -> io::Result<u32> {
    // SAFETY: with no attribute and the VERSION flag, the call only returns a number.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<landlock::RulesetAttr>(),
            0usize,
            landlock::CREATE_RULESET_VERSION,
        )
    };
    Ok(u32::try_from(check(abi)?).unwrap_or(0))
}

/// A new Landlock ruleset; `size` is how much of `attr` the kernel's ABI knows.
pub fn landlock_ruleset(attr: &landlock::RulesetAttr, size: usize) -> io::Result<OwnedFd> {
    let size = size.min(mem::size_of::<landlock::RulesetAttr>());
    // SAFETY: the kernel reads at most `size` bytes of the struct we own.
    let fd = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, attr, size, 0u32) };
    let fd = RawFd::try_from(check(fd)?).map_err(|_| io::Error::other("bad descriptor"))?;
    // SAFETY: the call returned a new descriptor that nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Lets the ruleset's domain have `access` (bind or connect) to TCP port `port`.
pub fn landlock_allow_port(ruleset: &OwnedFd, port: u16, access: u64) -> io::Result<()> {
    let rule = landlock::NetPortAttr {
        allowed_access: access,
        port: port.into(),
    };
    landlock_add_rule(ruleset, landlock::RULE_NET_PORT, (&raw const rule).cast())
}

fn landlock_add_rule(ruleset: &OwnedFd, kind: u32, rule: *const u8) -> io::Result<()> {
    // SAFETY: `rule` points to a live struct of the layout `kind` names; the kernel reads it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            kind,
            rule,
            0u32,
        )
    };
    check(ret)?;
    Ok(())
}

/// Puts this process in the ruleset's domain, for good (needs no_new_privs first).
pub fn landlock_restrict_self(ruleset: &OwnedFd) -> io::Result<()> {
    // SAFETY: the call only reads the descriptor and flags.
    let ret = unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) };
    check(ret)?;
    Ok(())
}

/// The socket ioctl that tells whether the read position is at the urgent mark
/// (<linux/sockios.h>; the libc crate does not name it).
pub const SIOCATMARK: libc::Ioctl = 0x8905;
/// linux/sockios.h: the same number as TIOCOUTQ.
pub const SIOCOUTQ: libc::Ioctl = 0x5411;

/// Fresh private memory of `len` bytes, read-write, zero-filled as each page is first touched.
#[cfg(not(miri))]
pub fn map_anonymous(len: usize) -> Option<*mut u8> {
    let protection = libc::PROT_READ | libc::PROT_WRITE;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    // SAFETY: a new anonymous mapping placed by the kernel overlaps nothing of ours.
    let memory = unsafe { libc::mmap(std::ptr::null_mut(), len, protection, flags, -1, 0) };
    (memory != libc::MAP_FAILED).then_some(memory.cast())
}

/// Under Miri, which has no MAP_NORESERVE: the same promise (zeroed, page aligned, never
/// given back), from the system allocator, so that Miri checks every access to it.
#[cfg(miri)]
pub fn map_anonymous(len: usize) -> Option<*mut u8> {
    let layout = std::alloc::Layout::from_size_align(len, 4096).ok()?;
    // SAFETY: the arena's size is not zero.
    let memory = unsafe { std::alloc::GlobalAlloc::alloc_zeroed(&std::alloc::System, layout) };
    (!memory.is_null()).then_some(memory)
}
