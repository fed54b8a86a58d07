//! Where the client is: the connection systemd hands over on fd 3 (LISTEN_FDS), or fds 0
//! and 1 as an inetd, `StandardInput=socket` or a shell gives them — a socket, pipes, a
//! terminal, /dev/null or regular files.

use std::env;
use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

use crate::error::Error;
use crate::sys::{self, FileId};

/// How a descriptor behaves, which decides how the relay may wait on it and move bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Socket,
    Pipe,
    Tty,
    /// Regular files, /dev/null and other devices: epoll refuses them (and files and
    /// /dev/null never block), so they are read and written as if always ready.
    Plain,
}

/// One readable or writable descriptor of the client.
#[derive(Clone, Copy, Debug)]
pub struct End {
    pub fd: RawFd,
    pub kind: Kind,
    /// The inherited descriptor behind `fd` when `fd` is a private reopening of it.
    pub inherited: RawFd,
    /// The file status flags to put back before letting go of `fd`: set when O_NONBLOCK had
    /// to go on an open file we share with our parent (it could not be reopened).
    pub shared_flags: Option<i32>,
}

#[derive(Debug)]
pub struct Client {
    pub input: End,
    pub output: End,
    /// The peer's address for IP clients, for the log line and the PROXY header.
    pub remote: Option<SocketAddr>,
    /// What fd 2 is, for the log to decide whether it may write there.
    pub stderr: FileId,
    /// fd 2 is the client's socket (systemd's StandardInput=socket without StandardError=,
    /// or inetd). A terminal or pipe shared with stdout is a person or a program that asked
    /// for both streams in one place, not a peer that must never see a log line.
    pub stderr_is_client: bool,
}

const SYSTEMD_FD: RawFd = 3;

impl Client {
    pub fn from_environment() -> Result<Client, Error> {
        let [(stdin, stdin_closed), (stdout, stdout_closed), (stderr, _)] =
            [stdio_fd(0)?, stdio_fd(1)?, stdio_fd(2)?];
        let stdio = [stdin, stdout, stderr];
        let closed = [stdin_closed, stdout_closed];
        let (input, output, ids) = match systemd_socket()? {
            Some(fd) => {
                let id = sys::fstat(fd)
                    .map_err(|e| Error::Usage(format!("LISTEN_FDS=1 but fd 3 is unusable: {e}")))?;
                if !id.is_socket() {
                    return Err(Error::Usage("LISTEN_FDS=1 but fd 3 is not a socket".into()));
                }
                let end = End::new(fd, Kind::Socket);
                (end, end, vec![id])
            }
            None => {
                let [input, output] = stdio_ends(&stdio, closed)?;
                (input, output, vec![stdio[0], stdio[1]])
            }
        };
        let remote = match input.kind {
            Kind::Socket => match sys::peer_address(input.fd) {
                Ok(remote) => remote,
                // Only a socket without a peer can be a listening one (Accept=no): asking
                // only then saves every session a system call.
                Err(_) if sys::is_listening(input.fd) => {
                    return Err(Error::Usage(
                        "the client socket is a listening socket: the .socket unit needs Accept=yes"
                            .into(),
                    ));
                }
                Err(_) => None,
            },
            _ => None,
        };
        Ok(Client {
            input,
            output,
            remote,
            stderr: stdio[2],
            stderr_is_client: stdio[2].is_socket()
                && ids.iter().any(|id| id.same_object(&stdio[2])),
        })
    }

    /// One socket both ways: the usual case under systemd and inetd.
    pub fn is_one_socket(&self) -> bool {
        self.input.fd == self.output.fd
    }

    /// How the log line names the client.
    pub fn describe(&self) -> String {
        match (self.remote, self.input.kind) {
            (Some(addr), _) => addr.to_string(),
            (None, Kind::Socket) => "unix".into(),
            (None, _) => "stdio".into(),
        }
    }

    /// (client address, address it connected to), for the PROXY header; None unless IP.
    pub fn addresses(&self) -> Option<(SocketAddr, SocketAddr)> {
        let local = sys::local_address(self.input.fd).ok().flatten()?;
        Some((self.remote?, local))
    }

    /// Makes the descriptors non-blocking for the relay without leaving O_NONBLOCK on an
    /// open file that the parent (a shell, a terminal) still uses: pipes and terminals are
    /// reopened privately; sockets get the flag, and it is put back when the result drops.
    pub fn nonblocking(&self) -> Nonblocking {
        let mut reopened = Vec::new();
        let input = adopt(self.input, false, &mut reopened);
        let output = if self.is_one_socket() {
            input
        } else {
            adopt(self.output, true, &mut reopened)
        };
        Nonblocking {
            input,
            output,
            _reopened: reopened,
        }
    }
}

impl End {
    fn new(fd: RawFd, kind: Kind) -> End {
        End {
            fd,
            kind,
            inherited: fd,
            shared_flags: None,
        }
    }
}

/// The client's descriptors as the relay uses them. Dropping it puts back the flags it
/// changed on shared open files and closes the private reopenings.
#[derive(Debug)]
pub struct Nonblocking {
    pub input: End,
    pub output: End,
    _reopened: Vec<OwnedFd>,
}

impl Drop for Nonblocking {
    fn drop(&mut self) {
        let output = (self.output.fd != self.input.fd).then_some(self.output);
        for end in std::iter::once(self.input).chain(output) {
            if let Some(flags) = end.shared_flags {
                let _ = sys::set_flags(end.fd, flags);
            }
        }
    }
}

/// `end`, non-blocking: a private reopening (kept in `reopened`) or, failing that, the
/// shared open file with O_NONBLOCK, its old flags noted in `shared_flags`.
fn adopt(end: End, write: bool, reopened: &mut Vec<OwnedFd>) -> End {
    if end.kind == Kind::Plain {
        return end;
    }
    if matches!(end.kind, Kind::Pipe | Kind::Tty) {
        if let Ok(fd) = reopen(end.fd, write) {
            let private = End {
                fd: fd.as_raw_fd(),
                ..end
            };
            reopened.push(fd);
            return private;
        }
    }
    if let Ok(flags) = sys::get_flags(end.fd) {
        if flags & libc::O_NONBLOCK == 0 && sys::set_flags(end.fd, flags | libc::O_NONBLOCK).is_ok()
        {
            return End {
                shared_flags: Some(flags),
                ..end
            };
        }
    }
    end
}

/// A new open file description of the same pipe or terminal, so that O_NONBLOCK on it is
/// ours alone (fcntl on an inherited descriptor would change the parent's file too).
fn reopen(fd: RawFd, write: bool) -> std::io::Result<OwnedFd> {
    let file = OpenOptions::new()
        .read(!write)
        .write(write)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(format!("/proc/self/fd/{fd}"))?;
    Ok(file.into())
}

/// The client's ends on fds 0 and 1 (`closed`: which of the two were closed at start). A
/// socket carries both directions when the other descriptor was closed: the bytes going
/// that way must not vanish into /dev/null behind a success. A closed fd 1 with no socket
/// on fd 0 leaves the backend's bytes nowhere to go: a usage error.
fn stdio_ends(stdio: &[FileId; 3], closed: [bool; 2]) -> Result<[End; 2], Error> {
    let kinds = [kind_of(0, &stdio[0]), kind_of(1, &stdio[1])];
    let one_socket = kinds[0] == Kind::Socket && stdio[0].same_object(&stdio[1]);
    match closed {
        _ if one_socket => Ok([End::new(0, Kind::Socket); 2]),
        [false, true] if kinds[0] == Kind::Socket => Ok([End::new(0, Kind::Socket); 2]),
        [true, false] if kinds[1] == Kind::Socket => Ok([End::new(1, Kind::Socket); 2]),
        [_, true] => Err(Error::Usage(
            "fd 1 is closed and fd 0 is no socket: the backend's bytes would have nowhere to go"
                .into(),
        )),
        _ => Ok([End::new(0, kinds[0]), End::new(1, kinds[1])]),
    }
}

/// What fd 0, 1 or 2 is, and whether it was closed. A closed one is pointed at /dev/null
/// first, because otherwise the next socket opened would take its number and a log line
/// meant for stderr could reach a backend.
fn stdio_fd(fd: RawFd) -> Result<(FileId, bool), Error> {
    if let Ok(id) = sys::fstat(fd) {
        // Rust's runtime may have pointed it at /dev/null already (see src/main.rs).
        return Ok((id, sys::closed_at_start(fd)));
    }
    let null = File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| {
            Error::Io(format!(
                "fd {fd} is closed and /dev/null cannot be opened: {e}"
            ))
        })?;
    // The lowest free number is `fd` itself: it stays open for the life of the process.
    let opened = null.into_raw_fd();
    let id = sys::fstat(opened).map_err(|e| Error::Io(format!("/dev/null: {e}")))?;
    Ok((id, true))
}

/// fd 3 when systemd passed exactly one connection to this very process.
fn systemd_socket() -> Result<Option<RawFd>, Error> {
    let for_us =
        env::var("LISTEN_PID").is_ok_and(|pid| parse_pid(&pid) == Some(std::process::id()));
    if !for_us {
        return Ok(None);
    }
    // LISTEN_* stay in the environment (sd_listen_fds(0) does the same): dynproxy starts no
    // program that could take them for its own, and LISTEN_PID names this process only.
    // Changing the environment is safe only while no other thread can read it.
    let count = env::var("LISTEN_FDS").unwrap_or_default();
    if count != "1" {
        return Err(Error::Usage(format!(
            "systemd passed LISTEN_FDS={count:?}; dynproxy serves exactly one connection (Accept=yes)"
        )));
    }
    Ok(Some(SYSTEMD_FD))
}

/// A pid as systemd's `parse_pid` reads it (so as sd_listen_fds() reads LISTEN_PID): its
/// `safe_atolu` — systemd's white space skipped, its "0b"/"0o" prefixes, then strtoul in
/// base 0, whole string, no minus — and a pid is positive and fits pid_t. So leading white
/// space, a '+', "0x" hex and a leading-zero octal are taken; trailing characters are not.
fn parse_pid(text: &str) -> Option<u32> {
    let text = text.trim_start_matches([' ', '\t', '\n', '\r']);
    let (base, text) = match text.get(..2) {
        Some("0b" | "0B") => (Some(2), &text[2..]),
        Some("0o" | "0O") => (Some(8), &text[2..]),
        _ => (None, text),
    };
    // strtoul's own part: its white space (isspace), a sign, base 0's prefixes.
    let text = text.trim_start_matches([' ', '\t', '\n', '\r', '\x0b', '\x0c']);
    let (negative, text) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    let hex_digits = (text.strip_prefix("0x"))
        .or_else(|| text.strip_prefix("0X"))
        .filter(|rest| rest.starts_with(|c: char| c.is_ascii_hexdigit()));
    let (base, digits) = match (base, hex_digits) {
        (Some(base), _) => (base, text),
        (None, Some(rest)) => (16, rest),
        (None, None) if text.starts_with('0') => (8, text),
        (None, None) => (10, text),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return None;
    }
    let value = u64::from_str_radix(digits, base).ok()?;
    if negative && value != 0 {
        return None;
    }
    u32::try_from(value)
        .ok()
        .filter(|&pid| pid > 0 && pid <= i32::MAX as u32)
}

fn kind_of(fd: RawFd, id: &FileId) -> Kind {
    if id.is_socket() {
        Kind::Socket
    } else if id.is_fifo() {
        Kind::Pipe
    } else if id.is_char_device() && sys::is_tty(fd) {
        Kind::Tty
    } else {
        Kind::Plain
    }
}

#[cfg(test)]
mod tests {
    use super::parse_pid;

    /// What systemd 252's sd_listen_fds() made of LISTEN_PID for a process of pid 12768
    /// (a C program calling it through libsystemd.so.0): accepted, or not.
    #[test]
    fn listen_pid_is_read_as_systemd_reads_it() {
        let accepted = [
            "12768", "+12768", " 12768", "\t12768", "\n12768", " +12768", "0x31e0", "0o30740",
        ];
        for text in accepted {
            assert_eq!(parse_pid(text), Some(12768), "{text:?}");
        }
        for text in [
            "12768 ", "12768\n", "012768", "-12768", "", "+", "0x", "12a", "0",
        ] {
            assert_eq!(parse_pid(text), None, "{text:?}");
        }
        assert_eq!(parse_pid("030740"), Some(12768), "a leading zero is octal");
        assert_eq!(parse_pid("0b11000111100000"), Some(12768));
        assert_eq!(parse_pid("4294967296"), None, "past pid_t");
    }
}
