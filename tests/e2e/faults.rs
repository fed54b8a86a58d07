//! Faults: DNS servers that are down, silent, slow or hostile; each ends with the documented
//! exit status within the resolve timeout, and never a panic.

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::WAIT;
use crate::support::backend;
use crate::support::dns::{Behaviour, DnsServer, Record};
use crate::support::launch::{ByHand, assert_exit, pause, run, run_with_input};

/// Runs a session against `dns` for `name` with a 1 s resolve timeout: (status, stderr).
fn resolve_with(dns_arg: &str, name: &str) -> (Option<i32>, String) {
    resolve_within(1, dns_arg, name)
}

fn resolve_within(seconds: u32, dns_arg: &str, name: &str) -> (Option<i32>, String) {
    let args = [
        dns_arg.to_string(),
        format!("--resolve-timeout={seconds}"),
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
    // Held, and connected elsewhere: the port stays ours, and the kernel answers datagrams
    // from anyone else with "port unreachable", as when no server runs.
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
    closed.connect("127.0.0.1:9").unwrap();
    let port = closed.local_addr().unwrap().port();
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
    assert_exit(&out, 0);
    assert!(dns.tcp_queries() >= 1, "the answer must have come over TCP");
}

#[test]
fn cname_loop_fails_cleanly() {
    let dns = DnsServer::start();
    dns.set("ping.test", &[Record::Cname("pong.test".into())]);
    dns.set("pong.test", &[Record::Cname("ping.test".into())]);
    // Followed hop by hop, each over TCP once it no longer fits in UDP: a slow machine must
    // not turn the answer into a timeout (75).
    let (code, stderr) = resolve_within(20, &dns.arg(), "ping.test");
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
    assert_exit(&out, 0);
    assert_eq!(echo.accepted(), 1);
}

// Backends that misbehave.

#[test]
fn a_backend_that_accepts_and_closes_at_once_ends_the_session() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = backend::serve(listener, drop);
    let (proxy, mut client) = ByHand::start(&[backend.address.to_string()]);
    let _ = client.write_all(b"anyone there?");
    let mut got = Vec::new();
    let _ = client.read_to_end(&mut got);
    assert!(got.is_empty());
    drop(client);
    let (status, stderr) = proxy.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("end=closed") || stderr.contains("end=reset"),
        "{stderr}"
    );
}

#[test]
fn a_stalled_transfer_ends_at_exit_idle_time() {
    // The backend reads nothing: the client's writes stop when the buffers fill, and then
    // no byte moves either way.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = backend::serve(listener, |stream| {
        pause(60_000);
        drop(stream);
    });
    let (proxy, client) = ByHand::start(&["--exit-idle-time=1", &backend.address.to_string()]);
    let mut writer = client.try_clone().unwrap();
    std::thread::spawn(move || {
        let chunk = vec![1u8; 64 * 1024];
        while writer.write_all(&chunk).is_ok() {}
    });
    let (status, stderr) = proxy.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("end=idle"), "{stderr}");
}

// The process itself.

#[test]
fn sigpipe_never_kills_it() {
    // The client goes away while the backend streams: the next write gets EPIPE, which
    // must end the session like a reset, not kill the process with SIGPIPE.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = backend::serve(listener, |mut stream| {
        let chunk = vec![2u8; 64 * 1024];
        while stream.write_all(&chunk).is_ok() {}
    });
    let (proxy, mut client) = ByHand::start(&[backend.address.to_string()]);
    let mut first = [0u8; 1024];
    client.read_exact(&mut first).unwrap();
    drop(client);
    let (status, stderr) = proxy.finish();
    assert_eq!(status.signal(), None, "killed by a signal: {stderr}");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("reset by client"), "{stderr}");
}

#[test]
fn a_terminal_on_stdin_and_stdout_works() {
    // `script` runs dynproxy on a pseudo-terminal, as when it is typed at a shell prompt.
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = backend::serve(listener, move |mut stream| {
        let mut line = Vec::new();
        let _ = stream.read_to_end(&mut line);
        tx.lock().unwrap().send(line).unwrap();
    });
    let command = format!("{} {}", crate::support::dynproxy(), backend.address);
    // A line, then the terminal's end-of-file character (Ctrl-D).
    let out = run_with_input(
        Command::new("script").args(["--quiet", "--return", "--command", &command, "/dev/null"]),
        b"typed at a terminal\n\x04",
    );
    let received = rx
        .recv_timeout(WAIT)
        .expect("the backend got the line and an end of stream");
    assert_eq!(received, b"typed at a terminal\n");
    assert_exit(&out, 0);
}

/// A session under RLIMIT_NOFILE `limit`, its client a socket on fds 0 and 1: (exit status,
/// what came back to the client, stderr).
fn session_with_descriptor_limit(limit: u32, backend: &str) -> (Option<i32>, Vec<u8>, String) {
    let (mut client, session) = std::os::unix::net::UnixStream::pair().unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let session = std::os::fd::OwnedFd::from(session);
    let mut child = Command::new("sh")
        .args(["-c", r#"ulimit -n "$1" && exec "$0" "$2""#])
        .arg(crate::support::dynproxy())
        .arg(limit.to_string())
        .arg(backend)
        .stdin(Stdio::from(session.try_clone().unwrap()))
        .stdout(Stdio::from(session))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A session that fails at once may be gone before these: then they fail, and nothing
    // comes back, which the caller sees.
    let _ = client.write_all(b"ping");
    let _ = client.shutdown(std::net::Shutdown::Write);
    let mut reply = Vec::new();
    let _ = client.read_to_end(&mut reply);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = crate::support::wait_exit(&mut child);
    (status.code(), reply, stderr)
}

#[test]
fn a_session_that_could_connect_under_a_descriptor_limit_also_relays() {
    let echo = backend::echo("127.0.0.1");
    let mut relayed_at = None;
    for limit in 3..=16 {
        let accepted_before = echo.accepted();
        let (code, reply, stderr) = session_with_descriptor_limit(limit, &echo.address.to_string());
        let connected = echo.accepted() > accepted_before;
        if connected {
            assert_eq!(
                (code, &reply[..]),
                (Some(0), &b"ping"[..]),
                "limit {limit}: {stderr}"
            );
            relayed_at.get_or_insert(limit);
        } else if !stderr.contains("error while loading shared libraries") {
            // (A dynamically linked build cannot even start at the lowest limits.)
            assert_eq!(code, Some(74), "limit {limit}: {stderr}");
            // The C library's words for EMFILE differ (glibc: "Too many open files").
            let said = ["open files", "file descriptors"]
                .iter()
                .any(|w| stderr.contains(w));
            assert!(said, "limit {limit}: {stderr}");
        }
    }
    let lowest = relayed_at.expect("some limit lets a session connect");
    // The relay copies instead of splicing when no descriptor is left for a pipe: the lowest
    // limit is what connecting needs, not what splicing would.
    assert!(
        lowest <= 7,
        "the first session to relay needed {lowest} descriptors"
    );
}
