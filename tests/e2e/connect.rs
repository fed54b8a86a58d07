//! Connecting: every address is tried, Happy Eyeballs style; one dead address never fails a
//! session that another can serve; unix and abstract sockets work too.

use std::process::Stdio;

use crate::support::TempDir;
use crate::support::backend::{self, BlackHole, Refusing, echo_conn, serve, serve_unix};
use crate::support::dns::{DnsServer, Record};
use crate::support::launch::{Launcher, assert_exit, run};

fn a(ip: &str) -> Record {
    Record::A(ip.parse().unwrap())
}

fn echo_through(launcher: &Launcher, payload: &[u8]) -> Vec<u8> {
    backend::say(&mut launcher.connect(), payload)
}

#[test]
fn fails_over_past_a_refusing_address() {
    let listeners = backend::same_port(&["127.0.0.3"]);
    let port = listeners[0].local_addr().unwrap().port();
    let refusing = Refusing::on("127.0.0.2", port).expect("the port is free on 127.0.0.2 too");
    let dead = refusing.address;
    let good = serve(listeners.into_iter().next().unwrap(), echo_conn);
    let dns = DnsServer::start();
    dns.set("app.test", &[a("127.0.0.2"), a("127.0.0.3")]);
    let launcher = Launcher::inetd(&[dns.arg(), "-v".into(), format!("app.test:{port}")]);
    assert_eq!(echo_through(&launcher, b"hello"), b"hello");
    assert_eq!(good.accepted(), 1);
    // The session line comes last down the same pipe: once it is in, every step line is.
    launcher.sessions(1);
    let log = launcher.log().join("\n");
    assert!(
        log.contains(&format!("{dead}: Connection refused")),
        "{log}"
    );
}

#[test]
fn fails_over_past_a_black_holed_address() {
    let listeners = backend::same_port(&["127.0.0.2", "127.0.0.3"]);
    let port = listeners[0].local_addr().unwrap().port();
    let mut it = listeners.into_iter();
    let hole = BlackHole::new(it.next().unwrap());
    let good = serve(it.next().unwrap(), echo_conn);
    let dns = DnsServer::start();
    dns.set(
        "app.test",
        &[a(&hole.address.ip().to_string()), a("127.0.0.3")],
    );
    let launcher = Launcher::inetd(&[dns.arg(), "-v".into(), format!("app.test:{port}")]);
    assert_eq!(echo_through(&launcher, b"hello"), b"hello");
    assert_eq!(good.accepted(), 1);
    // The session line comes last down the same pipe: once it is in, every step line is.
    launcher.sessions(1);
    let log = launcher.log().join("\n");
    assert!(
        log.contains(&format!("connecting to {}", hole.address)),
        "{log}"
    );
    assert!(
        launcher.sessions(1)[0].contains("backend=127.0.0.3:"),
        "{log}"
    );
}

#[test]
fn every_address_failing_exits_69_with_each_error() {
    let refusing = backend::refusing_on(&["127.0.0.2", "127.0.0.3"]);
    let port = refusing[0].address.port();
    let dns = DnsServer::start();
    dns.set("app.test", &[a("127.0.0.2"), a("127.0.0.3")]);
    let out = run(&[dns.arg(), format!("app.test:{port}")], Stdio::null());
    let stderr = assert_exit(&out, 69);
    assert!(
        stderr.contains(&format!("127.0.0.2:{port}: Connection refused")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("127.0.0.3:{port}: Connection refused")),
        "{stderr}"
    );
}

#[test]
fn connect_timeout_bounds_a_black_hole_and_exits_69() {
    let hole = BlackHole::new(backend::same_port(&["127.0.0.2"]).remove(0));
    let out = run(
        &[
            "--connect-timeout=0.5".to_string(),
            hole.address.to_string(),
        ],
        Stdio::null(),
    );
    let stderr = assert_exit(&out, 69);
    assert!(stderr.contains("no answer within 0.5s"), "{stderr}");
}

#[test]
fn unix_socket_target() {
    let dir = TempDir::new();
    let path = dir.join("backend.sock");
    serve_unix(backend::unix_path(&path), echo_conn);
    let launcher = Launcher::inetd(&[path.to_str().unwrap()]);
    assert_eq!(echo_through(&launcher, b"over unix"), b"over unix");
}

#[test]
fn abstract_socket_target() {
    let name = format!("dynproxy-test-{}", std::process::id());
    serve_unix(backend::unix_abstract(&name), echo_conn);
    let launcher = Launcher::inetd(&[format!("@{name}")]);
    assert_eq!(echo_through(&launcher, b"abstract"), b"abstract");
}

#[test]
fn missing_unix_socket_exits_69() {
    let dir = TempDir::new();
    let path = dir.join("nobody-home.sock");
    let out = run(&[path.to_str().unwrap()], Stdio::null());
    let stderr = assert_exit(&out, 69);
    assert!(stderr.contains("No such file or directory"), "{stderr}");
}

#[test]
fn ipv6_literal_target() {
    let echo = backend::echo("::1");
    let launcher = Launcher::inetd(&[echo.address.to_string()]);
    assert_eq!(echo_through(&launcher, b"v6"), b"v6");
}
