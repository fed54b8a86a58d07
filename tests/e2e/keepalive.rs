//! A peer that vanishes without a reset — a host powered off, a partition, a replaced load
//! balancer node — ends its session within `--keepalive`'s bound, with its line, and the
//! other side sees the end. The peers sit in network namespaces of the test's own.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::process::{Command, Stdio};

use crate::support::backend::{self, echo_conn, serve};
use crate::support::launch::{ByHand, pause};
use crate::support::netns::{FAR, Link, NEAR};
use crate::support::{WAIT, dynproxy, wait_exit};

/// Probes after 1 s of silence, 1 s apart, 2 unanswered: a silent peer is dead after 3 s,
/// and so is one that leaves data unacknowledged for 3 s.
const SHORT: &str = "--keepalive=1,1,2";

/// A session in the near namespace to an echo backend in the far one, "ping" relayed.
fn session_to_the_far_backend(link: &Link) -> (ByHand, std::os::unix::net::UnixStream) {
    let backend = link.in_far(|| serve(TcpListener::bind((FAR, 0)).unwrap(), echo_conn));
    let (session, mut client) = ByHand::spawn(
        Command::new("nsenter")
            .args(["-t", &link.near_pid().to_string(), "-n", "--"])
            .arg(dynproxy())
            .args([SHORT, &backend.address.to_string()]),
    );
    // The backend outlives this function: its listener thread stops when dropped, but the
    // connection it serves goes on.
    std::mem::forget(backend);
    client.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    client.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping");
    (session, client)
}

#[test]
fn a_backend_that_vanishes_ends_the_session_with_its_line() {
    let link = Link::new();
    let (session, client) = session_to_the_far_backend(&link);
    link.silence_far();
    assert_the_backend_vanished(session, client);
}

#[test]
fn data_sent_into_a_black_hole_ends_the_session_at_the_user_timeout() {
    // Keepalive sends no probe while data is unacknowledged: only TCP_USER_TIMEOUT ends
    // this (without it, retransmissions go on for about a quarter of an hour).
    let link = Link::new();
    let (session, mut client) = session_to_the_far_backend(&link);
    link.silence_far();
    client.write_all(b"into the void").unwrap();
    assert_the_backend_vanished(session, client);
}

/// The client sees the end, and the session's line says the backend vanished (74).
fn assert_the_backend_vanished(session: ByHand, mut client: std::os::unix::net::UnixStream) {
    let mut rest = Vec::new();
    client
        .read_to_end(&mut rest)
        .expect("the client sees the end");
    let (status, stderr) = session.finish();
    assert_eq!(status.code(), Some(74), "{stderr}");
    assert!(stderr.contains("end=error status=74"), "{stderr}");
    assert!(stderr.contains("the backend vanished"), "{stderr}");
}

#[test]
fn a_client_that_vanishes_ends_the_session_with_its_line() {
    let link = Link::new();
    let echo = backend::echo("127.0.0.1");
    // The client connects from the far namespace to a listener in the near one; dynproxy
    // gets the accepted socket, as from systemd.
    let listener = link.in_near(|| TcpListener::bind((NEAR, 0)).unwrap());
    let address = listener.local_addr().unwrap();
    let mut client = link.in_far(|| TcpStream::connect(address).unwrap());
    client.set_read_timeout(Some(WAIT)).unwrap();
    let accepted = OwnedFd::from(listener.accept().unwrap().0);
    let mut child = Command::new(dynproxy())
        .args([SHORT, &echo.address.to_string()])
        .stdin(Stdio::from(accepted.try_clone().unwrap()))
        .stdout(Stdio::from(accepted))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    client.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    client.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping");
    link.silence_far();
    let mut stderr = String::new();
    // Bounded: dynproxy's exit closes the pipe; wait_exit kills it after WAIT otherwise.
    let reader = child.stderr.take().unwrap();
    let reading = std::thread::spawn(move || {
        let mut reader = reader;
        let mut text = String::new();
        let _ = reader.read_to_string(&mut text);
        text
    });
    let status = wait_exit(&mut child);
    stderr.push_str(&reading.join().unwrap());
    assert_eq!(status.code(), Some(74), "{stderr}");
    assert!(stderr.contains("the client vanished"), "{stderr}");
}

#[test]
fn a_healthy_idle_session_outlives_the_keepalive_bound() {
    let link = Link::new();
    let (session, mut client) = session_to_the_far_backend(&link);
    // Well past 3 s of silence: the backend's kernel answers every probe.
    pause(5_000);
    client.write_all(b"pong").unwrap();
    let mut echoed = [0u8; 4];
    client.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"pong");
    client.shutdown(Shutdown::Write).unwrap();
    let (status, stderr) = session.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("end=closed"), "{stderr}");
}
