//! The relay: lossless both ways at once, half-closes passed on in either direction, bounded
//! memory against a slow reader, idle expiry, resets and stop signals end a session promptly.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::support::backend::{self, serve};
use crate::support::data;
use crate::support::launch::{ByHand, Launcher, Style, assert_exit, output, pause};
use crate::support::{WAIT, rss_kib, wait_for};

const MIB: u64 = 1024 * 1024;

#[test]
fn sixty_four_mib_each_way_at_once_arrive_intact_inetd() {
    data::both_ways_through(Style::Inetd, 64 * MIB);
}

#[test]
fn sixty_four_mib_each_way_at_once_arrive_intact_fd3() {
    data::both_ways_through(Style::Systemd, 64 * MIB);
}

#[test]
fn late_reply_after_the_client_half_closes_arrives() {
    // socat gives up 0.5 s after the client's half-close; systemd-socket-proxyd at once.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = serve(listener, |mut stream: TcpStream| {
        let mut request = Vec::new();
        stream.read_to_end(&mut request).unwrap();
        pause(1500);
        stream.write_all(b"late answer to ").unwrap();
        stream.write_all(&request).unwrap();
    });
    let launcher = Launcher::inetd(&[backend.address.to_string()]);
    let reply = backend::say(&mut launcher.connect(), b"question");
    assert_eq!(reply, b"late answer to question");
}

#[test]
fn client_keeps_sending_after_the_backend_half_closes() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = serve(listener, move |mut stream: TcpStream| {
        stream.write_all(b"greeting").unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = String::new();
        stream.read_to_string(&mut rest).unwrap();
        tx.lock().unwrap().send(rest).unwrap();
    });
    let launcher = Launcher::inetd(&[backend.address.to_string()]);
    let mut stream = launcher.connect();
    let mut greeting = String::new();
    stream.read_to_string(&mut greeting).unwrap();
    assert_eq!(
        greeting, "greeting",
        "the backend's end of stream reaches the client"
    );
    stream
        .write_all(b"sent after the backend's half-close")
        .unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    assert_eq!(
        rx.recv_timeout(WAIT).unwrap(),
        "sent after the backend's half-close"
    );
    assert!(launcher.sessions(1)[0].contains("end=closed"));
}

/// Counts what a backend writes toward a client that reads nothing.
fn flooding_backend() -> (backend::Backend, Arc<AtomicU64>) {
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = serve(listener, move |mut stream: TcpStream| {
        let chunk = vec![7u8; 64 * 1024];
        while counter.load(Ordering::SeqCst) < 1024 * MIB {
            match stream.write(&chunk) {
                Ok(n) => counter.fetch_add(n as u64, Ordering::SeqCst),
                Err(_) => return,
            };
        }
    });
    (backend, written)
}

/// Counts what a client that reads nothing writes toward dynproxy, from a thread of its own.
fn flood_from(client: &UnixStream) -> Arc<AtomicU64> {
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    let mut writer = client.try_clone().unwrap();
    thread::spawn(move || {
        let chunk = vec![9u8; 64 * 1024];
        while let Ok(n) = writer.write(&chunk) {
            counter.fetch_add(n as u64, Ordering::SeqCst);
        }
    });
    written
}

/// Waits until `counter` has not moved for a second: the writer is blocked.
fn wait_stalled(counter: &AtomicU64) -> u64 {
    let mut last = (u64::MAX, Instant::now());
    wait_for("the writer to be blocked", || {
        let now = counter.load(Ordering::SeqCst);
        if now != last.0 {
            last = (now, Instant::now());
            return None;
        }
        (last.1.elapsed() > Duration::from_secs(1)).then_some(now)
    })
}

#[test]
fn a_client_that_reads_nothing_keeps_memory_bounded() {
    let (backend, written) = flooding_backend();
    let (proxy, _client) = ByHand::start(&[backend.address.to_string()]);
    let stalled_at = wait_stalled(&written);
    let rss = rss_kib(proxy.child.id()).expect("dynproxy is running");
    assert!(
        stalled_at < 64 * MIB,
        "the backend could write {stalled_at} bytes: nothing stopped reading"
    );
    assert!(rss < 16 * 1024, "dynproxy holds {rss} KiB");
}

#[test]
fn a_backend_that_reads_nothing_keeps_memory_bounded() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = serve(listener, |stream: TcpStream| {
        pause(60_000);
        drop(stream);
    });
    let (proxy, client) = ByHand::start(&[backend.address.to_string()]);
    let written = flood_from(&client);
    let stalled_at = wait_stalled(&written);
    let rss = rss_kib(proxy.child.id()).expect("dynproxy is running");
    assert!(
        stalled_at < 64 * MIB,
        "the client could write {stalled_at} bytes"
    );
    assert!(rss < 16 * 1024, "dynproxy holds {rss} KiB");
}

#[test]
fn idle_session_ends_after_exit_idle_time_with_status_0() {
    let echo = backend::echo("127.0.0.1");
    // Long enough that the round trip below finishes well inside it on a loaded machine.
    let (proxy, mut client) = ByHand::start(&["--exit-idle-time=2", &echo.address.to_string()]);
    client.write_all(b"one").unwrap();
    let mut buf = [0u8; 3];
    client.read_exact(&mut buf).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap(); // returns once the idle session ends
    let (status, stderr) = proxy.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("end=idle"), "{stderr}");
}

/// Closing then resets the connection instead of ending it.
fn set_linger_zero(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    set_option(stream, libc::SO_LINGER, &linger);
}

/// A SOL_SOCKET option.
fn set_option<T>(stream: &TcpStream, name: i32, value: &T) {
    // SAFETY: setsockopt reads a T that lives across the call.
    let ret = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            (value as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    assert_eq!(ret, 0);
}

/// The urgent byte in line, where a plain read shows it.
fn keep_urgent_inline(stream: &TcpStream) {
    set_option(stream, libc::SO_OOBINLINE, &1i32);
}

#[test]
fn a_backend_reset_ends_the_session() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = serve(listener, |mut stream: TcpStream| {
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).unwrap();
        set_linger_zero(&stream);
    });
    let (proxy, mut client) = ByHand::start(&[backend.address.to_string()]);
    client.write_all(b"hello").unwrap();
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    let (status, stderr) = proxy.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("end=reset"), "{stderr}");
    assert!(stderr.contains("reset by backend"), "{stderr}");
}

#[test]
fn a_client_reset_ends_the_session_and_closes_the_backend() {
    let (closed_tx, closed_rx) = mpsc::channel();
    let closed_tx = std::sync::Mutex::new(closed_tx);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = serve(listener, move |mut stream: TcpStream| {
        // Longer than the test waits: a close that only this timeout brings must fail it.
        stream.set_read_timeout(Some(2 * WAIT)).unwrap();
        let mut sink = Vec::new();
        let result = stream
            .read_to_end(&mut sink)
            .map(drop)
            .map_err(|e| e.kind());
        closed_tx.lock().unwrap().send(result).unwrap();
    });
    let launcher = Launcher::inetd(&[backend.address.to_string()]);
    let mut stream = launcher.connect();
    stream.write_all(&[1u8; 100_000]).unwrap();
    set_linger_zero(&stream);
    drop(stream);
    let closed = closed_rx
        .recv_timeout(WAIT)
        .expect("the backend connection was never closed");
    assert!(
        matches!(closed, Ok(()) | Err(std::io::ErrorKind::ConnectionReset)),
        "{closed:?}"
    );
    let line = &launcher.sessions(1)[0];
    assert!(line.contains("end=reset"), "{line}");
}

#[test]
fn sigterm_mid_session_logs_the_line_and_ends_both_sides() {
    let (relaying_tx, relaying_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let channels = std::sync::Mutex::new((relaying_tx, done_tx));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = serve(listener, move |mut stream: TcpStream| {
        // Bytes that crossed the proxy prove the session is in its relay, not still connecting.
        let mut first = [0u8; 5];
        stream.read_exact(&mut first).unwrap();
        channels.lock().unwrap().0.send(()).unwrap();
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
        channels.lock().unwrap().1.send(sink.len()).unwrap();
    });
    let (proxy, mut client) = ByHand::start(&[backend.address.to_string()]);
    client.write_all(b"12345").unwrap();
    relaying_rx
        .recv_timeout(WAIT)
        .expect("the first bytes reach the backend");
    // SAFETY: kill(2) sends SIGTERM to the dynproxy child we started.
    unsafe { libc::kill(proxy.child.id() as i32, libc::SIGTERM) };
    let mut rest = Vec::new();
    let _ = client.read_to_end(&mut rest);
    assert!(
        done_rx.recv_timeout(WAIT).is_ok(),
        "the backend side was never closed"
    );
    let (status, stderr) = proxy.finish();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{stderr}");
    assert!(stderr.contains("end=signal"), "{stderr}");
}

#[test]
fn echo_round_trips_keep_order_across_many_small_writes() {
    let echo = backend::echo("127.0.0.1");
    let launcher = Launcher::inetd(&[echo.address.to_string()]);
    let mut stream = launcher.connect();
    for i in 0..200u32 {
        let message = format!("message {i}\n");
        stream.write_all(message.as_bytes()).unwrap();
        let mut reply = vec![0u8; message.len()];
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(reply, message.as_bytes());
    }
}

#[test]
fn an_io_error_toward_the_client_exits_74() {
    // /dev/full refuses every write with ENOSPC: an I/O error that is no peer's reset.
    let echo = backend::echo("127.0.0.1");
    let out = output(
        Command::new("sh")
            .args(["-c", r#"printf data | "$0" "$1" >/dev/full"#])
            .arg(crate::support::dynproxy())
            .arg(echo.address.to_string()),
    );
    let stderr = assert_exit(&out, 74);
    assert!(
        stderr.contains("writing to the client: No space left on device"),
        "{stderr}"
    );
}

/// The system calls dynproxy makes in a session between `stdin` and `stdout` and an echo
/// backend, as strace sees them.
fn traced(stdin: Stdio, stdout: Stdio) -> String {
    let echo = backend::echo("127.0.0.1");
    let dir = crate::support::TempDir::new();
    let trace = dir.join("trace");
    let mut child = std::process::Command::new("strace")
        .args(["-f", "-qq", "-e", "trace=splice,read,write", "-o"])
        .arg(&trace)
        .arg(crate::support::dynproxy())
        .arg(echo.address.to_string())
        .stdin(stdin)
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(crate::support::wait_exit(&mut child).success());
    std::fs::read_to_string(trace).unwrap()
}

#[test]
fn socket_to_socket_relays_with_splice() {
    let (mut client, server) = std::os::unix::net::UnixStream::pair().unwrap();
    client.set_read_timeout(Some(WAIT)).unwrap();
    let server = std::os::fd::OwnedFd::from(server);
    client.write_all(b"zero copy").unwrap();
    client.shutdown(Shutdown::Write).unwrap();
    let trace = traced(server.try_clone().unwrap().into(), server.into());
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"zero copy");
    assert!(trace.contains("splice("), "{trace}");
}

#[test]
fn a_regular_file_is_relayed_with_read_and_write() {
    // splice cannot be assumed between a regular file and a socket: the copy path is used.
    let dir = crate::support::TempDir::new();
    std::fs::write(dir.join("in"), b"from a file").unwrap();
    let input = std::fs::File::open(dir.join("in")).unwrap();
    let trace = traced(input.into(), Stdio::null());
    assert!(!trace.contains("splice("), "{trace}");
    assert!(trace.contains("read(0, \"from a file\""), "{trace}");
}

/// Sends one byte as TCP urgent (out-of-band) data.
fn send_urgent(stream: &TcpStream, byte: u8) {
    // SAFETY: send(2) reads one byte that lives across the call.
    let sent = unsafe {
        libc::send(
            stream.as_raw_fd(),
            (&raw const byte).cast(),
            1,
            libc::MSG_OOB,
        )
    };
    assert_eq!(sent, 1);
}

/// Through dynproxy, a client sends `before`, one urgent `!`, `after` and its end; returns
/// what the backend received up to that end (reading with the urgent byte in line), and
/// the launcher, for the session line.
fn relayed_with_urgent_byte(before: &[u8], after: &[u8]) -> (String, Launcher) {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = serve(listener, move |mut stream: TcpStream| {
        keep_urgent_inline(&stream);
        let mut received = Vec::new();
        let _ = stream.read_to_end(&mut received);
        tx.lock().unwrap().send(received).unwrap();
    });
    let launcher = Launcher::inetd(&[backend.address.to_string()]);
    let mut stream = launcher.connect();
    stream.write_all(before).unwrap();
    send_urgent(&stream, b'!');
    stream.write_all(after).unwrap();
    stream.shutdown(Shutdown::Write).unwrap();
    let got = rx.recv_timeout(WAIT).expect("the backend saw the end");
    (String::from_utf8_lossy(&got).into_owned(), launcher)
}

#[test]
fn an_urgent_byte_from_the_client_stays_in_the_stream() {
    // splice(2) stops at the urgent mark: without care the rest of the stream never moves.
    let (got, launcher) = relayed_with_urgent_byte(b"before ", b" after");
    assert_eq!(got, "before ! after");
    assert!(launcher.sessions(1)[0].contains("end=closed"));
}

#[test]
fn an_urgent_byte_right_before_the_end_is_not_lost() {
    // At the mark with the peer's end of stream behind it, splice(2) reports an end.
    let (got, _launcher) = relayed_with_urgent_byte(b"last byte urgent:", b"");
    assert_eq!(got, "last byte urgent:!");
}

#[test]
fn an_urgent_byte_from_the_backend_reaches_the_client_in_the_stream() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = serve(listener, |mut stream: TcpStream| {
        stream.write_all(b"ab").unwrap();
        send_urgent(&stream, b'!');
        stream.write_all(b"cd").unwrap();
    });
    let launcher = Launcher::inetd(&[backend.address.to_string()]);
    let mut stream = launcher.connect();
    keep_urgent_inline(&stream);
    let mut got = Vec::new();
    stream.read_to_end(&mut got).unwrap();
    assert_eq!(String::from_utf8_lossy(&got), "ab!cd");
}

#[test]
fn an_answer_the_backend_sent_before_its_reset_reaches_the_client() {
    // An HTTP server refusing a large upload: it answers, closes with the upload unread (so
    // its kernel resets the connection), and our next write to it fails. The answer is
    // already in our socket and must still be passed on.
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (gone_tx, gone_rx) = mpsc::channel();
    let channels = std::sync::Mutex::new((go_rx, gone_tx));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let backend = serve(listener, move |mut stream: TcpStream| {
        let channels = channels.lock().unwrap();
        channels.0.recv_timeout(WAIT).unwrap();
        stream.write_all(b"413 too large\n").unwrap();
        drop(stream);
        channels.1.send(()).unwrap();
    });
    let (proxy, client) = ByHand::start(&[backend.address.to_string()]);
    let written = flood_from(&client);
    wait_stalled(&written);
    // Stopped, dynproxy sees the answer and the reset arrive together, as a busy one would.
    let pid = proxy.child.id() as i32;
    // SAFETY: kill(2) sends SIGSTOP to the dynproxy child we started.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    go_tx.send(()).unwrap();
    gone_rx
        .recv_timeout(WAIT)
        .expect("the backend answered and closed");
    // SAFETY: kill(2) sends SIGCONT to the same child.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let mut reader = client;
    let mut answer = Vec::new();
    let _ = reader.read_to_end(&mut answer);
    let (status, stderr) = proxy.finish();
    assert_eq!(
        String::from_utf8_lossy(&answer),
        "413 too large\n",
        "{stderr}"
    );
    assert!(stderr.contains("reset by backend"), "{stderr}");
    assert_eq!(status.code(), Some(0), "{stderr}");
}

#[test]
fn a_hangup_the_parent_ignores_does_not_end_the_session() {
    // `nohup dynproxy …`: SIGHUP is ignored, and a blocked signal is queued even so.
    use std::os::unix::process::CommandExt;
    let echo = backend::echo("127.0.0.1");
    let mut command = Command::new(crate::support::dynproxy());
    command.arg(echo.address.to_string());
    // SAFETY: only signal(2), which is async-signal-safe, runs between fork and exec.
    unsafe {
        command.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let (proxy, mut client) = ByHand::spawn(&mut command);
    assert_eq!(backend::echoed(&mut client, b"before"), b"before");
    // SAFETY: kill(2) sends SIGHUP to the dynproxy child we started.
    unsafe { libc::kill(proxy.child.id() as i32, libc::SIGHUP) };
    assert_eq!(backend::echoed(&mut client, b"after"), b"after");
    client.shutdown(Shutdown::Write).unwrap();
    let (status, stderr) = proxy.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
}
