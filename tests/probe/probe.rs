//! The tests' probe: what a compromised session could try, tried. Started in dynproxy's
//! place — by hand, by systemd-socket-activate or by the shipped units under a real systemd
//! — it first applies dynproxy's own sandbox (src/sandbox.rs) unless given `--no-sandbox`,
//! then makes each attempt and prints one line per attempt on stdout:
//! `NAME: blocked (why)` or `NAME: ALLOWED`. The tests read those lines.
//!
//! `probe [--no-sandbox] [NAME...]` runs the named attempts only (all without names).
//! Every attempt is harmless if it succeeds: files it creates are removed, what it sets is
//! set to the value it already had, a child it forks exits at once. `exec` goes last: if it
//! succeeds, the shell it becomes prints the ALLOWED line.

use std::ffi::CString;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use dynproxy::sandbox;

type Attempt = fn() -> io::Result<()>;

const ATTEMPTS: &[(&str, Attempt)] = &[
    ("write /", || write_in("/")),
    ("write /etc", || write_in("/etc")),
    ("write /tmp", || write_in("/tmp")),
    ("write /var/tmp", || write_in("/var/tmp")),
    ("write /dev/shm", || write_in("/dev/shm")),
    ("write /run", || write_in("/run")),
    ("read /root", || list("/root")),
    ("read /home", || list("/home")),
    ("read /etc/shadow", || read("/etc/shadow")),
    ("read another process's /proc", || read("/proc/1/cmdline")),
    // Landlock guards opening a file, not looking it up: its size and times still tell.
    ("see when /etc/shadow changed", || {
        std::fs::metadata("/etc/shadow").map(drop)
    }),
    ("write /proc/sys", write_proc_sys),
    ("create a cgroup", || {
        let path = format!("/sys/fs/cgroup/dynproxy-probe-{}", std::process::id());
        std::fs::create_dir(&path)?;
        std::fs::remove_dir(&path)
    }),
    ("read /dev/kmsg", read_kmsg),
    ("load a module", load_module),
    ("ptrace the parent", ptrace_parent),
    ("signal the parent", signal_parent),
    ("open a raw socket", || {
        socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP)
    }),
    ("open a packet socket", || {
        socket(libc::AF_PACKET, libc::SOCK_RAW, 0)
    }),
    ("open a netlink socket", || {
        socket(libc::AF_NETLINK, libc::SOCK_RAW, 0)
    }),
    ("listen on a TCP port", listen),
    ("connect to a unix socket", connect_unix),
    ("become root", become_root),
    ("create a user namespace", || unshare(libc::CLONE_NEWUSER)),
    ("create a mount namespace", || unshare(libc::CLONE_NEWNS)),
    ("set the clock", set_clock),
    ("set the hostname", set_hostname),
    ("start a process", fork),
    ("map executable memory", map_executable),
    ("exec a shell", exec_shell),
];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sandboxed = !args.iter().any(|a| a == "--no-sandbox");
    let names: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let mut out = io::stdout();
    if sandboxed {
        let needs = sandbox::Needs {
            tcp_ports: Some(&[]),
            unix: sandbox::Unix::No,
        };
        let started = std::time::Instant::now();
        let notes = sandbox::restrict(&needs);
        let took = started.elapsed();
        let _ = writeln!(out, "# sandbox applied in {} us", took.as_micros());
        for note in notes {
            let _ = writeln!(out, "# sandbox: {note}");
        }
    }
    for (name, attempt) in ATTEMPTS {
        if !names.is_empty() && !names.iter().any(|n| n == name) {
            continue;
        }
        // The line's start goes out first: `exec` ends it from the shell, if it gets there.
        let _ = write!(out, "{name}: ");
        let _ = out.flush();
        let _ = match attempt() {
            Ok(()) => writeln!(out, "ALLOWED"),
            Err(e) => writeln!(out, "blocked ({e})"),
        };
        let _ = out.flush();
    }
}

fn check(ret: libc::c_long) -> io::Result<libc::c_long> {
    if ret == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn write_in(dir: &str) -> io::Result<()> {
    let path = format!("{dir}/dynproxy-probe-{}", std::process::id());
    std::fs::File::create(&path)?;
    std::fs::remove_file(&path)
}

fn list(dir: &str) -> io::Result<()> {
    std::fs::read_dir(dir)?.next().transpose().map(drop)
}

fn read(path: &str) -> io::Result<()> {
    std::fs::read(path).map(drop)
}

/// Writes the NIS domain name back unchanged.
fn write_proc_sys() -> io::Result<()> {
    let path = "/proc/sys/kernel/domainname";
    let current = std::fs::read(path).unwrap_or_else(|_| b"(none)\n".to_vec());
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(&current)
}

fn read_kmsg() -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut kmsg = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/kmsg")?;
    let mut record = [0u8; 8192];
    match io::Read::read(&mut kmsg, &mut record) {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(()),
        other => other.map(drop),
    }
}

/// An empty image: the loader rejects it (EINVAL, ENOEXEC) if the call gets that far,
/// which is what counts; refused before that, the error is EPERM.
fn load_module() -> io::Result<()> {
    let params = c"";
    // SAFETY: init_module reads `len` (0) bytes of the image and the NUL-terminated params.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_init_module,
            params.as_ptr(),
            0usize,
            params.as_ptr(),
        )
    };
    match check(ret) {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Err(e),
        _ => Ok(()),
    }
}

/// PTRACE_SEIZE leaves the tracee running; detached at once if it worked.
fn ptrace_parent() -> io::Result<()> {
    // SAFETY: getppid has no arguments.
    let parent = unsafe { libc::getppid() };
    // SAFETY: ptrace with integer arguments; SEIZE does not stop the tracee.
    check(unsafe { libc::ptrace(libc::PTRACE_SEIZE, parent, 0, 0) })?;
    // SAFETY: as above; lets go of the tracee.
    unsafe { libc::ptrace(libc::PTRACE_DETACH, parent, 0, 0) };
    Ok(())
}

/// Signal 0: the permission check without a signal.
fn signal_parent() -> io::Result<()> {
    // SAFETY: getppid has no arguments; kill with signal 0 delivers nothing.
    check(unsafe { libc::kill(libc::getppid(), 0) }.into()).map(drop)
}

fn socket(family: i32, kind: i32, protocol: i32) -> io::Result<()> {
    // SAFETY: socket with integer arguments; the descriptor is owned below.
    let fd = check(unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, protocol) }.into())?;
    // SAFETY: a new descriptor nobody else owns.
    drop(unsafe { OwnedFd::from_raw_fd(fd as i32) });
    Ok(())
}

fn listen() -> io::Result<()> {
    std::net::TcpListener::bind("127.0.0.1:0").map(drop)
}

/// PROBE_UNIX_SOCKET names one that listens (the journal's, by default: under systemd
/// anyone may write to it).
fn connect_unix() -> io::Result<()> {
    let path = std::env::var("PROBE_UNIX_SOCKET")
        .unwrap_or_else(|_| "/run/systemd/journal/stdout".to_owned());
    std::os::unix::net::UnixStream::connect(path).map(drop)
}

fn become_root() -> io::Result<()> {
    // SAFETY: setuid with an integer argument.
    check(unsafe { libc::setuid(0) }.into()).map(drop)
}

fn unshare(flags: i32) -> io::Result<()> {
    // SAFETY: unshare with integer flags changes only this process's namespaces.
    check(unsafe { libc::unshare(flags) }.into()).map(drop)
}

/// Sets the clock to what it reads (a few microseconds back, if it works).
fn set_clock() -> io::Result<()> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the struct we own.
    check(unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) }.into())?;
    // SAFETY: clock_settime reads the struct we own.
    check(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &now) }.into()).map(drop)
}

/// Sets the hostname to what it is.
fn set_hostname() -> io::Result<()> {
    let mut name = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    check(unsafe { libc::gethostname(name.as_mut_ptr().cast(), name.len()) }.into())?;
    let len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
    // SAFETY: sethostname reads `len` bytes of the buffer we own.
    check(unsafe { libc::sethostname(name.as_ptr().cast(), len) }.into()).map(drop)
}

fn fork() -> io::Result<()> {
    // SAFETY: the child only calls _exit.
    let pid = check(unsafe { libc::fork() }.into())?;
    if pid == 0 {
        // SAFETY: ends the child at once.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: waitpid writes the status we own.
    unsafe { libc::waitpid(pid as i32, &mut status, 0) };
    Ok(())
}

fn map_executable() -> io::Result<()> {
    let protection = libc::PROT_READ | libc::PROT_EXEC;
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    // SAFETY: a new anonymous mapping overlaps nothing; it is unmapped at once.
    let memory = unsafe { libc::mmap(std::ptr::null_mut(), 4096, protection, flags, -1, 0) };
    if memory == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the mapping made just above.
    unsafe { libc::munmap(memory, 4096) };
    Ok(())
}

/// On success this process becomes the shell, which finishes the line.
fn exec_shell() -> io::Result<()> {
    let shell = CString::new("/bin/sh").map_err(io::Error::other)?;
    let args = [
        c"sh".as_ptr(),
        c"-c".as_ptr(),
        c"echo ALLOWED".as_ptr(),
        std::ptr::null(),
    ];
    // SAFETY: execv reads the NUL-terminated path and the NULL-terminated argument list.
    unsafe { libc::execv(shell.as_ptr(), args.as_ptr()) };
    Err(io::Error::last_os_error())
}
