//! Faults: DNS servers that are down, silent, slow or hostile; each ends with the documented
//! exit status within the resolve timeout, and never a panic.

use std::net::UdpSocket;
use std::process::Stdio;
use std::time::Duration;

use crate::support::backend;
use crate::support::dns::{Behaviour, DnsServer, Record};
use crate::support::launch::run;

/// Runs a session against `dns` for `name` with a 1 s resolve timeout: (status, stderr).
fn resolve_with(dns_arg: &str, name: &str) -> (Option<i32>, String) {
    let args = [
        dns_arg.to_string(),
        "--resolve-timeout=1".into(),
        format!("{name}:80"),
    ];
    let out = run(&args, Stdio::null());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "{stderr}");
    (out.status.code(), stderr)
}

fn misbehaving(behaviour: Behaviour) -> (Option<i32>, String) {
    let dns = DnsServer::start();
    dns.set("app.test", &[Record::A("127.0.0.1".parse().unwrap())]);
    dns.behave(behaviour);
    resolve_with(&dns.arg(), "app.test")
}

#[test]
fn dns_server_down_exits_75() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, stderr) = resolve_with(&format!("--nameserver=127.0.0.1:{port}"), "app.test");
    assert_eq!(code, Some(75), "{stderr}");
}

#[test]
fn dns_answering_after_the_timeout_exits_75() {
    let (code, stderr) = misbehaving(Behaviour::Slow(Duration::from_secs(3)));
    assert_eq!(code, Some(75), "{stderr}");
}

#[test]
fn garbage_reply_exits_75() {
    let (code, stderr) = misbehaving(Behaviour::Garbage);
    assert_eq!(code, Some(75), "{stderr}");
}

#[test]
fn reply_with_the_wrong_id_exits_75() {
    let (code, stderr) = misbehaving(Behaviour::WrongId);
    assert_eq!(code, Some(75), "{stderr}");
}

#[test]
fn cut_off_record_exits_75() {
    let (code, stderr) = misbehaving(Behaviour::CutOff);
    assert_eq!(code, Some(75), "{stderr}");
}

#[test]
fn bad_rdlength_exits_75() {
    let (code, stderr) = misbehaving(Behaviour::BadRdLength);
    assert_eq!(code, Some(75), "{stderr}");
}

#[test]
fn compression_pointer_loop_exits_75() {
    let (code, stderr) = misbehaving(Behaviour::PointerLoop);
    assert_eq!(code, Some(75), "{stderr}");
}

#[test]
fn truncated_udp_reply_falls_back_to_tcp() {
    let echo = backend::echo("127.0.0.1");
    let dns = DnsServer::start();
    dns.set("big.test", &[Record::A("127.0.0.1".parse().unwrap())]);
    dns.behave(Behaviour::TruncateUdp);
    let args = [
        dns.arg(),
        "-4".into(),
        format!("big.test:{}", echo.address.port()),
    ];
    let out = run(&args, Stdio::null());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dns.tcp_queries() >= 1, "the answer must have come over TCP");
}

#[test]
fn cname_loop_fails_cleanly() {
    let dns = DnsServer::start();
    dns.set("ping.test", &[Record::Cname("pong.test".into())]);
    dns.set("pong.test", &[Record::Cname("ping.test".into())]);
    let (code, stderr) = resolve_with(&dns.arg(), "ping.test");
    assert_eq!(code, Some(68), "a loop leads to no address: {stderr}");
}

#[test]
fn very_long_cname_chain_in_one_answer_is_followed() {
    // 60 links do not fit in 512 bytes: the answer comes truncated, then whole over TCP.
    let echo = backend::echo("127.0.0.1");
    let dns = DnsServer::start();
    for i in 0..60 {
        dns.set(
            &format!("c{i}.test"),
            &[Record::Cname(format!("c{}.test", i + 1))],
        );
    }
    dns.set("c60.test", &[Record::A("127.0.0.1".parse().unwrap())]);
    let args = [
        dns.arg(),
        "-4".into(),
        format!("c0.test:{}", echo.address.port()),
    ];
    let out = run(&args, Stdio::null());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(echo.accepted(), 1);
}
