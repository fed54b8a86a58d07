//! Connect: every address, Happy Eyeballs style (RFC 8305) — families interleaved, a new
//! attempt every 250 ms while earlier ones are still pending, the first to succeed wins and
//! the rest are closed. One dead or black-holed address never fails a session that another
//! address can serve.

use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::SocketAddr as UnixAddr;
use std::time::{Duration, Instant};

use mio::net::{TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Token};

use crate::error::{Error, os_message};
use crate::log::{Log, millis};
use crate::sys;

/// RFC 8305's recommended Connection Attempt Delay.
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);
/// How long to wait between tries while a unix socket's listen queue is full.
const MAX_BACKLOG_PAUSE: Duration = Duration::from_millis(50);

/// A connected backend socket and how the log names the address it reached.
pub struct Backend {
    pub fd: OwnedFd,
    pub address: String,
}

/// One address being tried.
struct Attempt {
    address: SocketAddr,
    stream: TcpStream,
    started: Instant,
}

pub fn connect_tcp(
    addresses: &[SocketAddr],
    timeout: Duration,
    log: &mut Log,
) -> Result<Backend, Error> {
    let order = interleave(addresses);
    let io_error = |e: io::Error| Error::Io(format!("cannot wait for connections: {e}"));
    let mut poll = Poll::new().map_err(io_error)?;
    let mut events = Events::with_capacity(8);
    let deadline = Instant::now() + timeout;
    let mut pending: Vec<Option<Attempt>> = Vec::with_capacity(order.len());
    let mut failures = Vec::new();
    let mut next_start = Instant::now();
    loop {
        let now = Instant::now();
        let in_flight = pending.iter().flatten().count();
        if pending.len() < order.len() && (now >= next_start || in_flight == 0) {
            let address = order[pending.len()];
            log.step(format_args!("connecting to {address}"));
            let token = Token(pending.len());
            let attempt = match start(&poll, address, token) {
                Ok(attempt) => Some(attempt),
                // Ours, not the address's: no other address would fare better.
                Err(e) if sys::is_out_of_descriptors(&e) => return Err(no_socket(&e)),
                Err(e) => {
                    let message = failed(address, &e, now);
                    log.step(format_args!("{message}"));
                    failures.push(message);
                    None
                }
            };
            // A failure at once (no route, say) lets the next address start at once too.
            next_start = if attempt.is_some() {
                now + ATTEMPT_DELAY
            } else {
                now
            };
            pending.push(attempt);
            continue;
        }
        if in_flight == 0 {
            return Err(give_up(&failures));
        }
        if now >= deadline {
            for attempt in pending.iter().flatten() {
                failures.push(format!(
                    "{}: no answer within {:.1}s",
                    attempt.address,
                    timeout.as_secs_f64()
                ));
            }
            for address in &order[pending.len()..] {
                failures.push(format!("{address}: not tried"));
            }
            return Err(give_up(&failures));
        }
        let wake = if pending.len() < order.len() {
            next_start.min(deadline)
        } else {
            deadline
        };
        match poll.poll(&mut events, Some(wake.saturating_duration_since(now))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_error(e)),
        }
        for event in &events {
            let Some(slot) = pending.get_mut(event.token().0) else {
                continue;
            };
            let Some(outcome) = slot.as_ref().and_then(|a| finished(&a.stream)) else {
                continue;
            };
            let Some(attempt) = slot.take() else {
                continue;
            };
            match outcome {
                Ok(()) => {
                    log.step(format_args!(
                        "connected to {} in {:.1} ms",
                        attempt.address,
                        millis(attempt.started)
                    ));
                    let _ = attempt.stream.set_nodelay(true);
                    return Ok(Backend {
                        address: attempt.address.to_string(),
                        fd: attempt.stream.into(),
                    });
                }
                Err(e) => {
                    let message = failed(attempt.address, &e, attempt.started);
                    log.step(format_args!("{message}"));
                    failures.push(message);
                    // A refusal is an answer: the next address need not wait its turn.
                    next_start = Instant::now();
                }
            }
        }
    }
}

fn start(poll: &Poll, address: SocketAddr, token: Token) -> io::Result<Attempt> {
    let mut stream = TcpStream::connect(address)?;
    poll.registry()
        .register(&mut stream, token, Interest::WRITABLE)?;
    Ok(Attempt {
        address,
        stream,
        started: Instant::now(),
    })
}

/// None while the connection is still being set up; mio's documented way to tell.
fn finished(stream: &TcpStream) -> Option<io::Result<()>> {
    match stream.take_error() {
        Ok(Some(e)) | Err(e) => return Some(Err(e)),
        Ok(None) => {}
    }
    match stream.peer_addr() {
        Ok(_) => Some(Ok(())),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
        Err(e) => Some(Err(e)),
    }
}

/// IPv6 first (RFC 6724's default preference), then the families alternate; duplicates go.
fn interleave(addresses: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut v6 = addresses.iter().filter(|a| a.is_ipv6());
    let mut v4 = addresses.iter().filter(|a| a.is_ipv4());
    let mut order: Vec<SocketAddr> = Vec::with_capacity(addresses.len());
    loop {
        let (a, b) = (v6.next(), v4.next());
        if a.is_none() && b.is_none() {
            return order;
        }
        for address in a.into_iter().chain(b) {
            if !order.contains(address) {
                order.push(*address);
            }
        }
    }
}

/// A unix stream socket, by path or abstract name. A full listen queue is waited out (as a
/// blocking connect would) until the timeout; any other error is final.
pub fn connect_unix(
    address: &UnixAddr,
    name: &str,
    timeout: Duration,
    log: &mut Log,
) -> Result<Backend, Error> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    log.step(format_args!("connecting to {name}"));
    loop {
        match UnixStream::connect_addr(address) {
            Ok(stream) => {
                log.step(format_args!(
                    "connected to {name} in {:.1} ms",
                    millis(started)
                ));
                return Ok(Backend {
                    fd: stream.into(),
                    address: name.to_owned(),
                });
            }
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock && started.elapsed() + pause < timeout =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(MAX_BACKLOG_PAUSE);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                return Err(Error::Unavailable(format!(
                    "{name}: listen queue still full after {:.1}s",
                    timeout.as_secs_f64()
                )));
            }
            Err(e) if sys::is_out_of_descriptors(&e) => return Err(no_socket(&e)),
            Err(e) => return Err(Error::Unavailable(format!("{name}: {}", os_message(&e)))),
        }
    }
}

/// No descriptor left for a socket: an I/O failure of ours, which no other address would
/// fare better with, not the backend's (69).
fn no_socket(error: &io::Error) -> Error {
    Error::Io(format!("cannot open a socket: {}", os_message(error)))
}

fn failed(address: SocketAddr, error: &io::Error, started: Instant) -> String {
    format!(
        "{address}: {} after {:.1} ms",
        os_message(error),
        millis(started)
    )
}

fn give_up(failures: &[String]) -> Error {
    Error::Unavailable(format!(
        "no address accepted the connection: {}",
        failures.join("; ")
    ))
}
