//! The one error type of a session, and the only place that maps it to an exit status.

use std::fmt;
use std::io;
use std::process::ExitCode;

/// Why a session could not do its job. Each variant is one documented exit status
/// (sysexits.h numbers, which systemd and inetd logs show as-is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The command line or the environment systemd set up is wrong: 64 (EX_USAGE).
    Usage(String),
    /// The name does not exist, or has no address of the family asked for: 68 (EX_NOHOST).
    NoAddress(String),
    /// Every address refused, failed or timed out: 69 (EX_UNAVAILABLE).
    Unavailable(String),
    /// Every address the target came to is refused by the address policy: 77 (EX_NOPERM).
    Refused(String),
    /// Reading or writing a peer failed in a way that is not a plain reset: 74 (EX_IOERR).
    Io(String),
    /// DNS is failing for now (timeout, SERVFAIL, REFUSED, a garbled answer): 75 (EX_TEMPFAIL).
    DnsTemporary(String),
}

impl Error {
    pub fn exit_status(&self) -> u8 {
        match self {
            Error::Usage(_) => 64,
            Error::NoAddress(_) => 68,
            Error::Unavailable(_) => 69,
            Error::Io(_) => 74,
            Error::DnsTemporary(_) => 75,
            Error::Refused(_) => 77,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(self.exit_status())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(m)
            | Error::NoAddress(m)
            | Error::Unavailable(m)
            | Error::Io(m)
            | Error::DnsTemporary(m)
            | Error::Refused(m) => f.write_str(m),
        }
    }
}

/// An OS error as people read it: "Connection refused", without Rust's "(os error 111)".
pub fn os_message(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}
