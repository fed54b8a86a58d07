//! --proxy-protocol: the header, exact per the HAProxy spec, before any client byte.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::sync::mpsc;

use crate::support::WAIT;
use crate::support::backend::{self, serve};
use crate::support::launch::{ByHand, Launcher, Style};

/// A backend that reports everything it received, then closes.
fn recording_backend() -> (crate::support::backend::Backend, mpsc::Receiver<Vec<u8>>) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let backend = serve(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        move |mut stream: TcpStream| {
            let mut received = Vec::new();
            let _ = stream.read_to_end(&mut received);
            tx.lock().unwrap().send(received).unwrap();
        },
    );
    (backend, rx)
}

/// Sends "payload" through a launcher listening on `ip`; returns what the backend got and
/// the client's (source, destination).
fn through_launcher(ip: &str, version: &str) -> (Vec<u8>, SocketAddr, SocketAddr) {
    let (backend, received) = recording_backend();
    let args = [
        format!("--proxy-protocol={version}"),
        backend.address.to_string(),
    ];
    let launcher = Launcher::start(Style::Inetd, ip, &args, &[]);
    let mut stream = launcher.connect();
    backend::say(&mut stream, b"payload");
    let got = received.recv_timeout(WAIT).unwrap();
    (got, stream.local_addr().unwrap(), launcher.address)
}

fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend_from_slice(&[command, family]);
    header.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
    header.extend_from_slice(addresses);
    header
}

fn ports(source: SocketAddr, destination: SocketAddr) -> Vec<u8> {
    [
        source.port().to_be_bytes(),
        destination.port().to_be_bytes(),
    ]
    .concat()
}

#[test]
fn v1_tcp4_header_comes_first() {
    let (got, source, destination) = through_launcher("127.0.0.1", "v1");
    let expected = format!(
        "PROXY TCP4 {} {} {} {}\r\npayload",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    );
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

#[test]
fn v1_tcp6_header_comes_first() {
    let (got, source, destination) = through_launcher("::1", "v1");
    let expected = format!(
        "PROXY TCP6 ::1 ::1 {} {}\r\npayload",
        source.port(),
        destination.port()
    );
    assert_eq!(String::from_utf8_lossy(&got), expected);
}

#[test]
fn v2_tcp4_header_comes_first() {
    let (got, source, destination) = through_launcher("127.0.0.1", "v2");
    let mut addresses = vec![127, 0, 0, 1, 127, 0, 0, 1];
    addresses.extend(ports(source, destination));
    let mut expected = v2(0x21, 0x11, &addresses);
    expected.extend_from_slice(b"payload");
    assert_eq!(got, expected);
}

#[test]
fn v2_tcp6_header_comes_first() {
    let (got, source, destination) = through_launcher("::1", "v2");
    let one = std::net::Ipv6Addr::LOCALHOST.octets();
    let mut addresses = [one, one].concat();
    addresses.extend(ports(source, destination));
    let mut expected = v2(0x21, 0x21, &addresses);
    expected.extend_from_slice(b"payload");
    assert_eq!(got, expected);
}

fn through_unix_client(version: &str) -> Vec<u8> {
    let (backend, received) = recording_backend();
    let (proxy, mut client) = ByHand::start(&[
        format!("--proxy-protocol={version}"),
        backend.address.to_string(),
    ]);
    client.write_all(b"payload").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let got = received.recv_timeout(WAIT).unwrap();
    let (status, stderr) = proxy.finish();
    assert!(status.success(), "{stderr}");
    got
}

#[test]
fn v1_unknown_for_a_unix_client() {
    assert_eq!(through_unix_client("v1"), b"PROXY UNKNOWN\r\npayload");
}

#[test]
fn v2_local_for_a_unix_client() {
    let mut expected = v2(0x20, 0x00, &[]);
    expected.extend_from_slice(b"payload");
    assert_eq!(through_unix_client("v2"), expected);
}
