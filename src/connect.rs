//! Connect: every address, Happy Eyeballs style (RFC 8305) — families interleaved, a new
//! attempt every 250 ms while earlier ones are still pending, the first to succeed wins and
//! the rest are closed. One dead or black-holed address never fails a session that another
//! address can serve, and addresses that DNS gives late join those still to try.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::os::unix::net::SocketAddr as UnixAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use mio::net::UnixStream;

use crate::error::{Error, os_message};
use crate::log::{Joined, Log, millis};
use crate::resolve::Later;
use crate::runtime::{Connecting, Sleep};
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
    connecting: Connecting,
    started: Instant,
}

/// Connects to the first of `addresses` to accept within `timeout`, and of those `later`
/// brings while it runs (a DNS answer that came after the resolution delay, RFC 8305
/// section 3); runs on the thread's runtime. The error lists what each address did.
pub async fn connect_tcp(
    addresses: &[SocketAddr],
    mut later: Option<Later>,
    timeout: Duration,
    log: &mut Log,
) -> Result<Backend, Error> {
    let deadline = Instant::now() + timeout;
    let mut eyeballs = Eyeballs::new(addresses);
    let mut alarm: Option<(Instant, Sleep)> = None;
    poll_fn(|cx| {
        loop {
            let now = Instant::now();
            if let Some(Poll::Ready(more)) = later.as_mut().map(|l| l.as_mut().poll(cx)) {
                later = None;
                eyeballs.join(more, log);
            }
            if let Some(won) = eyeballs.poll_attempts(now, cx, log) {
                return Poll::Ready(connected(won, log));
            }
            match eyeballs.start_due(now, log) {
                // Polled at the top of the loop: that also arms its wake-up.
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
            if eyeballs.attempts.is_empty() && later.is_none() {
                return Poll::Ready(Err(give_up(&eyeballs.failures)));
            }
            if now >= deadline {
                return Poll::Ready(Err(eyeballs.timed_out(timeout, later.is_some())));
            }
            let wake = eyeballs.next_start(deadline);
            let sleep = match &mut alarm {
                Some((at, sleep)) if *at == wake => sleep,
                alarm => &mut alarm.insert((wake, Sleep::until(wake))).1,
            };
            if Pin::new(sleep).poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    })
    .await
}

/// The state of one `connect_tcp`: what is still to try, in flight, tried, and what failed.
struct Eyeballs {
    to_try: Vec<SocketAddr>,
    tried: Vec<SocketAddr>,
    attempts: Vec<Attempt>,
    failures: Vec<String>,
    /// When the next address may start though attempts are still in flight.
    next_start: Instant,
}

impl Eyeballs {
    fn new(addresses: &[SocketAddr]) -> Eyeballs {
        let to_try = interleave(addresses, true);
        Eyeballs {
            tried: Vec::with_capacity(to_try.len()),
            to_try,
            attempts: Vec::new(),
            failures: Vec::new(),
            next_start: Instant::now(),
        }
    }

    /// What a late query brought joins what is still to try.
    fn join(&mut self, more: Result<Vec<SocketAddr>, String>, log: &mut Log) {
        match more {
            Ok(found) => {
                log.step(format_args!(
                    "{} join the addresses to try",
                    Joined(found.iter())
                ));
                join(&mut self.to_try, &found, &self.tried);
            }
            Err(why) => {
                let message = format!("no more addresses: {why}");
                log.step(format_args!("{message}"));
                self.failures.push(message);
            }
        }
    }

    /// The first attempt in flight to have connected, if any; failed ones are noted, and
    /// each one still pending wakes the task when it is done.
    fn poll_attempts(
        &mut self,
        now: Instant,
        cx: &mut Context<'_>,
        log: &mut Log,
    ) -> Option<Attempt> {
        let mut i = 0;
        while i < self.attempts.len() {
            match self.attempts[i].connecting.poll_connected(cx) {
                Poll::Pending => i += 1,
                Poll::Ready(Ok(())) => return Some(self.attempts.swap_remove(i)),
                Poll::Ready(Err(e)) => {
                    let attempt = self.attempts.swap_remove(i);
                    self.fail(failed(attempt.address, &e, attempt.started), log);
                    // A refusal is an answer: the next address need not wait its turn.
                    self.next_start = now;
                }
            }
        }
        None
    }

    /// Starts the next address if its turn has come (its delay passed, or nothing else in
    /// flight); true if it did, or it failed at once. Running out of descriptors is an
    /// error of ours, not the address's: no other address would fare better.
    fn start_due(&mut self, now: Instant, log: &mut Log) -> Result<bool, Error> {
        if self.to_try.is_empty() || (now < self.next_start && !self.attempts.is_empty()) {
            return Ok(false);
        }
        let address = self.to_try.remove(0);
        self.tried.push(address);
        log.step(format_args!("connecting to {address}"));
        match Connecting::start(address) {
            Ok(connecting) => {
                self.attempts.push(Attempt {
                    address,
                    connecting,
                    started: now,
                });
                self.next_start = now + ATTEMPT_DELAY;
            }
            Err(e) if sys::is_out_of_descriptors(&e) => return Err(no_socket(&e)),
            Err(e) => {
                self.fail(failed(address, &e, now), log);
                // A failure at once (no route, say) lets the next address start at once.
                self.next_start = now;
            }
        }
        Ok(true)
    }

    fn fail(&mut self, message: String, log: &mut Log) {
        log.step(format_args!("{message}"));
        self.failures.push(message);
    }

    /// When to look again if nothing wakes the task before.
    fn next_start(&self, deadline: Instant) -> Instant {
        if self.to_try.is_empty() {
            deadline
        } else {
            self.next_start.min(deadline)
        }
    }

    /// The error at the deadline: every address's fate.
    fn timed_out(&mut self, timeout: Duration, query_pending: bool) -> Error {
        let seconds = timeout.as_secs_f64();
        for attempt in &self.attempts {
            let message = format!("{}: no answer within {seconds:.1}s", attempt.address);
            self.failures.push(message);
        }
        let untried = self
            .to_try
            .iter()
            .map(|address| format!("{address}: not tried"));
        self.failures.extend(untried);
        if query_pending {
            self.failures
                .push("a DNS query still unanswered".to_owned());
        }
        give_up(&self.failures)
    }
}

fn connected(attempt: Attempt, log: &mut Log) -> Result<Backend, Error> {
    let stream = attempt
        .connecting
        .into_stream()
        .map_err(|e| Error::Io(format!("cannot take the connection: {}", os_message(&e))))?;
    log.step(format_args!(
        "connected to {} in {:.1} ms",
        attempt.address,
        millis(attempt.started)
    ));
    let _ = stream.set_nodelay(true);
    Ok(Backend {
        address: attempt.address.to_string(),
        fd: stream.into(),
    })
}

/// The families alternate, `v6_first` saying which leads (IPv6 by RFC 6724's default
/// preference); duplicates go.
fn interleave(addresses: &[SocketAddr], v6_first: bool) -> Vec<SocketAddr> {
    let mut lead = addresses.iter().filter(|a| a.is_ipv6() == v6_first);
    let mut other = addresses.iter().filter(|a| a.is_ipv6() != v6_first);
    let mut order: Vec<SocketAddr> = Vec::with_capacity(addresses.len());
    loop {
        let (a, b) = (lead.next(), other.next());
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

/// Addresses that came late join those still to try (RFC 8305, section 3), the families
/// still alternating after the last address tried; one already tried is not tried again.
fn join(to_try: &mut Vec<SocketAddr>, found: &[SocketAddr], tried: &[SocketAddr]) {
    let mut all = std::mem::take(to_try);
    all.extend(found.iter().filter(|address| !tried.contains(address)));
    let v6_first = tried.last().is_none_or(SocketAddr::is_ipv4);
    *to_try = interleave(&all, v6_first);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addresses(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn ipv6_leads_and_the_families_alternate() {
        let given = addresses(&["10.0.0.1:1", "10.0.0.2:1", "[fd00::1]:1", "10.0.0.1:1"]);
        assert_eq!(
            interleave(&given, true),
            addresses(&["[fd00::1]:1", "10.0.0.1:1", "10.0.0.2:1"])
        );
    }

    #[test]
    fn late_addresses_join_alternating_after_the_last_tried() {
        // [fd00::1] was tried, [fd00::2] waits; A's answer brings two IPv4 addresses and
        // one already tried, which is not tried again.
        let tried = addresses(&["[fd00::1]:1"]);
        let mut to_try = addresses(&["[fd00::2]:1"]);
        let found = addresses(&["10.0.0.1:1", "10.0.0.2:1", "[fd00::1]:1"]);
        join(&mut to_try, &found, &tried);
        assert_eq!(
            to_try,
            addresses(&["10.0.0.1:1", "[fd00::2]:1", "10.0.0.2:1"])
        );
    }

    #[test]
    fn late_ipv6_addresses_lead_after_an_ipv4_attempt() {
        let tried = addresses(&["10.0.0.1:1"]);
        let mut to_try = addresses(&["10.0.0.2:1"]);
        join(&mut to_try, &addresses(&["[fd00::1]:1"]), &tried);
        assert_eq!(to_try, addresses(&["[fd00::1]:1", "10.0.0.2:1"]));
    }
}
