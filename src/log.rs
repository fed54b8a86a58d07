//! Where log lines go, and the one line that sums up a session.
//!
//! Never a byte into the client: under systemd's `StandardInput=socket` without
//! `StandardError=`, fd 2 IS the client's socket, so every choice below checks that first.

use std::env;
use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::os::unix::net::UnixDatagram;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use syslog::{Facility, Formatter3164, Logger, LoggerBackend};

use crate::error::Error;
use crate::sys::FileId;

/// The most of a value from input (a target, a name, a path) a session line quotes: input is
/// the caller's, and a line is no place for 100 kB of it.
pub const MAX_QUOTE: usize = 256;
/// The longest line written, in bytes, whatever it quotes (clap's messages quote the command
/// line whole). Also below PIPE_BUF, so one write stays one line on a shared pipe.
pub const MAX_LINE: usize = 2048;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogMode {
    /// stderr when it is a terminal, a pipe, a file or the journal (the session line then
    /// an entry of the journal's, with DYNPROXY_* fields); syslog otherwise
    Auto,
    /// syslog (/dev/log), facility daemon
    Syslog,
    /// stderr, unless stderr is the client's socket (then syslog)
    Stderr,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Error,
    Info,
    Debug,
}

/// systemd-journald's socket for entries of many fields (its "native protocol").
pub const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

enum Sink {
    /// `journal`: stderr is systemd's journal stream, which reads a `<N>` priority prefix.
    /// `native`: then also journald's own socket, for the session line's fields.
    Stderr {
        journal: bool,
        native: Option<UnixDatagram>,
    },
    /// Connected at the first line, so sessions that log to stderr never pay for it.
    Syslog(Option<Logger<LoggerBackend, Formatter3164>>),
}

pub struct Log {
    sink: Sink,
    verbose: bool,
}

/// The syslog daemon's socket (/dev/log), if one listens.
fn syslog_logger() -> Option<Logger<LoggerBackend, Formatter3164>> {
    syslog::unix(Formatter3164 {
        facility: Facility::LOG_DAEMON,
        hostname: None,
        process: "dynproxy".into(),
        pid: std::process::id(),
    })
    .ok()
}

impl Log {
    /// `stderr_is_client`: fd 2 reaches the client, so it must not be written to at all.
    pub fn new(mode: LogMode, verbose: bool, stderr: FileId, stderr_is_client: bool) -> Log {
        let journal = is_journal_stream(&stderr);
        let human = !stderr.is_socket() && (!stderr.is_char_device() || crate::sys::is_tty(2));
        let to_stderr = !stderr_is_client
            && match mode {
                LogMode::Stderr => true,
                LogMode::Syslog => false,
                LogMode::Auto => journal || human,
            };
        let sink = if to_stderr {
            // Connected now, before the sandbox (src/sandbox.rs), which lets a session open a
            // unix socket only to a unix backend. None: the stream carries every line.
            let native = journal
                .then(|| {
                    let socket = UnixDatagram::unbound().ok()?;
                    socket.connect(JOURNAL_SOCKET).ok()?;
                    // A journald too busy to take the entry now gets the line by the stream.
                    socket.set_nonblocking(true).ok().map(|()| socket)
                })
                .flatten();
            Sink::Stderr { journal, native }
        } else {
            // Connected now, before the sandbox (src/sandbox.rs), which lets a session open
            // a unix socket only to a unix backend.
            Sink::Syslog(syslog_logger())
        };
        Log { sink, verbose }
    }

    /// A step of the session, logged with -v only.
    pub fn step(&mut self, message: fmt::Arguments<'_>) {
        if self.verbose {
            self.write(Level::Debug, &message.to_string());
        }
    }

    pub fn error(&mut self, message: &str) {
        self.write(Level::Error, message);
    }

    /// The session line; to the journal, an entry whose fields say the same (DYNPROXY_*),
    /// or, if journald's socket will not take it, the line on the stream as ever.
    pub fn session(&mut self, summary: &Summary) {
        let level = match summary.ending {
            Ending::Failed(_) => Level::Error,
            _ => Level::Info,
        };
        let line = summary.to_string();
        if let Sink::Stderr {
            native: Some(socket),
            ..
        } = &self.sink
        {
            let entry = journal_entry(summary, &clip(&line, MAX_LINE), level.priority());
            if socket.send(&entry).is_ok() {
                wait_until_handled(socket);
                return;
            }
        }
        self.write(level, &line);
    }

    fn write(&mut self, level: Level, message: &str) {
        let message = &*clip(message, MAX_LINE);
        match &mut self.sink {
            Sink::Stderr { journal, .. } => {
                let line = if *journal {
                    format!("<{}>{message}\n", level.priority())
                } else {
                    format!("dynproxy: {message}\n")
                };
                // One write per line: lines of concurrent sessions sharing a pipe do not mix
                // (a pipe takes a write of up to PIPE_BUF, 4096 bytes, whole).
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
            Sink::Syslog(logger) => {
                // No syslog daemon: nowhere safe is left to report to, and the client must not
                // see it, so the line is dropped.
                if let Some(logger) = logger {
                    let _ = match level {
                        Level::Error => logger.err(message),
                        Level::Info => logger.info(message),
                        Level::Debug => logger.debug(message),
                    };
                }
            }
        }
    }
}

/// Waits, a fifth of a second at most, until journald has handled the entry just sent.
/// Handling it, journald reads the sender's unit from /proc/PID; a process gone by then
/// would leave the entry without _SYSTEMD_UNIT (systemd issue 2913), and `journalctl -u`
/// blind. Nothing says when that is done, but journald takes one datagram from its socket
/// per turn of its loop and handles it before taking the next: so an empty datagram, which
/// it drops, sent after the entry, and nothing left unread of either (SIOCOUTQ), mean the
/// entry has been handled. (Waiting for the entry alone to be taken left one entry in about
/// fifteen without its unit.)
fn wait_until_handled(socket: &UnixDatagram) {
    use std::os::fd::AsRawFd;
    if socket.send(&[]).is_err() {
        return;
    }
    for _ in 0..2_000 {
        match crate::sys::unread_by_peer(socket.as_raw_fd()) {
            Ok(0) | Err(_) => return,
            Ok(_) => std::thread::sleep(Duration::from_micros(100)),
        }
    }
}

impl Level {
    /// syslog's numbers, which the journal keeps as PRIORITY.
    fn priority(self) -> u8 {
        match self {
            Level::Error => 3,
            Level::Info => 6,
            Level::Debug => 7,
        }
    }
}

/// A journal entry in journald's native protocol (systemd's JOURNAL_NATIVE_PROTOCOL): one
/// datagram of fields, `NAME=value` lines, or for a value holding a newline the name, a
/// newline, the value's length (64 bits, little-endian), the value and a newline.
fn journal_entry(summary: &Summary, line: &str, priority: u8) -> Vec<u8> {
    let mut entry = Vec::with_capacity(512);
    let mut add = |name: &str, value: &str| {
        entry.extend_from_slice(name.as_bytes());
        if value.contains('\n') {
            entry.push(b'\n');
            entry.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            entry.push(b'=');
        }
        entry.extend_from_slice(value.as_bytes());
        entry.push(b'\n');
    };
    add("MESSAGE", line);
    add("PRIORITY", &priority.to_string());
    add("SYSLOG_IDENTIFIER", "dynproxy");
    add("DYNPROXY_CLIENT", &clip(&summary.client, MAX_QUOTE));
    add("DYNPROXY_TARGET", &clip(&summary.target, MAX_QUOTE));
    if let Some(backend) = &summary.backend {
        add("DYNPROXY_BACKEND", &clip(backend, MAX_QUOTE));
    }
    add("DYNPROXY_TO_BACKEND", &summary.to_backend.to_string());
    add("DYNPROXY_TO_CLIENT", &summary.to_client.to_string());
    add(
        "DYNPROXY_DURATION_USEC",
        &summary.duration.as_micros().to_string(),
    );
    let end = match &summary.ending {
        Ending::Closed => "closed",
        Ending::Idle => "idle",
        Ending::Reset(_) => "reset",
        Ending::Signal(_) => "signal",
        Ending::Failed(_) => "error",
    };
    add("DYNPROXY_END", end);
    if let Some(status) = summary.ending.status() {
        add("DYNPROXY_STATUS", &status.to_string());
    }
    entry
}

/// systemd sets JOURNAL_STREAM=DEV:INODE for the stream it connects to stderr.
fn is_journal_stream(stderr: &FileId) -> bool {
    let Ok(value) = env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.split_once(':') else {
        return false;
    };
    dev.parse() == Ok(stderr.dev) && ino.parse() == Ok(stderr.ino)
}

/// How a session ended.
#[derive(Debug)]
pub enum Ending {
    /// Both directions finished: each side closed its sending half.
    Closed,
    /// No byte moved either way for --exit-idle-time.
    Idle,
    /// A peer reset the connection (or closed it while data was still flowing to it).
    Reset(&'static str),
    /// A stop signal (SIGTERM, SIGINT, SIGHUP) arrived.
    Signal(i32),
    Failed(Error),
}

impl Ending {
    /// 0 for every ending but a failure, whose status is its error's (see error.rs). A stop
    /// signal is not a status: dynproxy dies of that signal once the line is logged.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            Ending::Failed(error) => error.exit_code(),
            _ => ExitCode::SUCCESS,
        }
    }

    /// The exit status, if the process exits: one ended by a stop signal dies of it.
    pub fn status(&self) -> Option<u8> {
        match self {
            Ending::Failed(error) => Some(error.exit_status()),
            Ending::Signal(_) => None,
            _ => Some(0),
        }
    }
}

/// The one line every session logs when it ends.
pub struct Summary {
    pub client: String,
    pub target: String,
    pub backend: Option<String>,
    pub to_backend: u64,
    pub to_client: u64,
    pub duration: Duration,
    pub ending: Ending,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "session client={} target={} backend={} to_backend={} to_client={} duration={:.3}s end=",
            field(&clip(&self.client, MAX_QUOTE)),
            field(&clip(&self.target, MAX_QUOTE)),
            field(&clip(self.backend.as_deref().unwrap_or("-"), MAX_QUOTE)),
            self.to_backend,
            self.to_client,
            self.duration.as_secs_f64(),
        )?;
        match &self.ending {
            Ending::Closed => f.write_str("closed"),
            Ending::Idle => f.write_str("idle"),
            Ending::Reset(by) => write!(f, "reset reason={}", quoted(&format!("reset by {by}"))),
            Ending::Signal(signal) => write!(f, "signal reason={}", quoted(signal_name(*signal))),
            Ending::Failed(error) => write!(
                f,
                "error status={} reason={}",
                error.exit_status(),
                quoted(&error.to_string())
            ),
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        _ => "signal",
    }
}

/// `text` if it has at most `max` bytes; otherwise as much of it as fits in `max` bytes with
/// its length said after it ("…[100002 bytes]").
pub fn clip(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let note = format!("…[{} bytes]", text.len());
    let mut end = max.saturating_sub(note.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{note}", &text[..end]).into()
}

/// A value as-is when it is one plain word, quoted otherwise (unix paths may hold spaces).
fn field(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' && c != '=');
    if plain {
        value.to_owned()
    } else {
        quoted(value)
    }
}

fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Milliseconds since `since`, for -v lines.
pub fn millis(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

/// Items written with ", " between them. `format_args!` evaluates its arguments at once, so a
/// -v line's lists are built lazily, when (and only if) the line is written.
pub struct Joined<I>(pub I);

impl<I, T> fmt::Display for Joined<I>
where
    I: Iterator<Item = T> + Clone,
    T: fmt::Display,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, item) in self.0.clone().enumerate() {
            if index > 0 {
                f.write_str(", ")?;
            }
            item.fmt(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_field_with_a_newline_is_sent_with_its_length() {
        let summary = Summary {
            client: "/run/odd\nname".into(),
            target: "db.test:5432".into(),
            backend: None,
            to_backend: 1,
            to_client: 2,
            duration: Duration::from_micros(1500),
            ending: Ending::Failed(Error::NoAddress("db.test has no address".into())),
        };
        let entry = journal_entry(&summary, "the line", 3);
        let mut expected_client = b"DYNPROXY_CLIENT\n".to_vec();
        expected_client.extend_from_slice(&13u64.to_le_bytes());
        expected_client.extend_from_slice(b"/run/odd\nname\n");
        let text = String::from_utf8_lossy(&entry);
        assert!(
            entry
                .windows(expected_client.len())
                .any(|w| w == expected_client)
        );
        for line in [
            "MESSAGE=the line\n",
            "PRIORITY=3\n",
            "DYNPROXY_TARGET=db.test:5432\n",
            "DYNPROXY_DURATION_USEC=1500\n",
            "DYNPROXY_END=error\n",
            "DYNPROXY_STATUS=68\n",
        ] {
            assert!(text.contains(line), "{line:?} in {text:?}");
        }
        assert!(!text.contains("DYNPROXY_BACKEND"), "no backend reached");
    }
}
