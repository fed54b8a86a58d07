//! Logging: one line per session with what an admin needs, never a byte in the client's
//! socket, syslog when stderr is the client, the journal's priorities when it is the journal.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use crate::support::backend;
use crate::support::dns::{DnsServer, Record};
use crate::support::launch::{Launcher, Stdio3};
use crate::support::{WAIT, dynproxy, wait_exit, wait_for};

#[test]
fn session_line_names_client_target_backend_bytes_duration_and_end() {
    let echo = backend::echo("127.0.0.1");
    let dns = DnsServer::start();
    dns.set("app.test", &[Record::A("127.0.0.1".parse().unwrap())]);
    let target = format!("app.test:{}", echo.address.port());
    let launcher = Launcher::inetd(&[dns.arg(), target.clone()]);
    let mut stream = launcher.connect();
    backend::say(&mut stream, b"12345");
    let line = &launcher.sessions(1)[0];
    let client = stream.local_addr().unwrap();
    for field in [
        format!("client={client}"),
        format!("target={target}"),
        format!("backend={}", echo.address),
        "to_backend=5".to_string(),
        "to_client=5".to_string(),
        "duration=".to_string(),
        "end=closed".to_string(),
    ] {
        assert!(line.contains(&field), "{field} missing from {line}");
    }
}

#[test]
fn verbose_logs_every_step() {
    let echo = backend::echo("127.0.0.1");
    let dns = DnsServer::start();
    dns.set("app.test", &[Record::A("127.0.0.1".parse().unwrap())]);
    let launcher = Launcher::inetd(&[
        dns.arg(),
        "-v".into(),
        format!("app.test:{}", echo.address.port()),
    ]);
    let mut stream = launcher.connect();
    backend::say(&mut stream, b"");
    launcher.sessions(1);
    let log = launcher.log().join("\n");
    for step in [
        "resolving app.test via",
        "app.test has 127.0.0.1",
        "connecting to 127.0.0.1:",
        "connected to 127.0.0.1:",
    ] {
        assert!(log.contains(step), "{step:?} missing from\n{log}");
    }
}

#[test]
fn stderr_that_is_the_client_gets_nothing_and_syslog_gets_the_line() {
    let dns = DnsServer::start();
    // A session that fails has the most to say: -v steps and an error line.
    let (mut proxy, mut client) = Stdio3::unix(&[dns.arg(), "-v".into(), "nowhere.test:80".into()]);
    crate::support::assert_receives_nothing(&mut client);
    assert_eq!(proxy.wait().code(), Some(68));
    let messages = wait_for("the session line in syslog", || {
        let messages = proxy.syslog();
        messages
            .iter()
            .any(|m| m.contains("session "))
            .then_some(messages)
    });
    let line = messages.iter().find(|m| m.contains("session ")).unwrap();
    // RFC 3164: facility daemon (3) × 8 + severity err (3) = 27; the tag names us.
    assert!(line.starts_with("<27>"), "{line}");
    assert!(line.contains("dynproxy["), "{line}");
    assert!(
        line.contains("client=unix") && line.contains("status=68"),
        "{line}"
    );
}

#[test]
fn usage_error_under_standard_input_socket_goes_to_syslog_not_the_client() {
    let (mut proxy, mut client) = Stdio3::unix(&["--no-such-option", "127.0.0.1:80"]);
    crate::support::assert_receives_nothing(&mut client);
    assert_eq!(proxy.wait().code(), Some(64));
    let messages = wait_for("the usage error in syslog", || {
        let messages = proxy.syslog();
        (!messages.is_empty()).then_some(messages)
    });
    assert!(
        messages.join("\n").contains("--no-such-option"),
        "{messages:?}"
    );
}

#[test]
fn explicit_stderr_logging_still_never_writes_into_the_client() {
    let echo = backend::echo("127.0.0.1");
    let (mut proxy, mut client) = Stdio3::unix(&["--log=stderr", "-v", &echo.address.to_string()]);
    let got = backend::say(&mut client, b"data");
    assert!(proxy.wait().success());
    assert_eq!(got, b"data", "the echo and nothing else");
    wait_for("the session line in syslog instead", || {
        proxy.syslog().into_iter().find(|m| m.contains("session "))
    });
}

#[test]
fn journal_stream_gets_priority_prefixes() {
    // systemd's StandardError=journal: stderr is a stream socket named by JOURNAL_STREAM.
    let echo = backend::echo("127.0.0.1");
    let (journal, stderr) = UnixStream::pair().unwrap();
    journal.set_read_timeout(Some(WAIT)).unwrap();
    let meta = std::fs::metadata(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&stderr)
    ))
    .unwrap();
    let mut child = Command::new(dynproxy())
        .arg(echo.address.to_string())
        .env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(OwnedFd::from(stderr)))
        .spawn()
        .unwrap();
    assert!(wait_exit(&mut child).success());
    let mut text = String::new();
    (&journal).read_to_string(&mut text).unwrap();
    assert!(text.starts_with("<6>session "), "{text}");
}

#[test]
fn syslog_line_names_a_tcp_client_under_standard_input_socket() {
    let echo = backend::echo("127.0.0.1");
    let (mut proxy, mut client) = Stdio3::tcp("127.0.0.1", &[echo.address.to_string()]);
    assert_eq!(backend::say(&mut client, b"x"), b"x");
    assert!(proxy.wait().success());
    let line = wait_for("the session line in syslog", || {
        proxy.syslog().into_iter().find(|m| m.contains("session "))
    });
    // RFC 3164: facility daemon (3) × 8 + severity info (6) = 30.
    assert!(line.starts_with("<30>"), "{line}");
    let client_address = client.local_addr().unwrap();
    assert!(line.contains(&format!("client={client_address}")), "{line}");
}

#[test]
fn log_syslog_sends_lines_to_syslog_even_when_stderr_could_take_them() {
    let echo = backend::echo("127.0.0.1");
    let (mut proxy, mut client) =
        Stdio3::unix_with_stderr_piped(&["--log=syslog", &echo.address.to_string()]);
    assert_eq!(backend::say(&mut client, b"x"), b"x");
    assert!(proxy.wait().success());
    let mut stderr = String::new();
    proxy
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(stderr.is_empty(), "{stderr}");
    wait_for("the session line in syslog", || {
        proxy.syslog().into_iter().find(|m| m.contains("session "))
    });
}

#[test]
fn at_a_terminal_errors_and_steps_are_shown_on_it() {
    // fds 0, 1 and 2 are one terminal, as when dynproxy is typed at a shell prompt: that
    // is a person, not a client socket that must not see log lines.
    let refusing = backend::Refusing::on("127.0.0.1", 0).unwrap();
    let refused = refusing.address;
    let command = format!("{} -v {refused}", dynproxy());
    let out = crate::support::launch::run_with_input(
        Command::new("script").args(["--quiet", "--return", "--command", &command, "/dev/null"]),
        b"",
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains(&format!("dynproxy: connecting to {refused}")),
        "{shown}"
    );
    assert!(shown.contains("end=error status=69"), "{shown}");
}

#[test]
fn stderr_that_is_the_client_is_pointed_at_dev_null_for_the_session() {
    // Nothing of ours writes there, but a panic or failed allocation message would.
    let echo = backend::echo("127.0.0.1");
    let (mut proxy, mut client) = Stdio3::tcp("127.0.0.1", &[echo.address.to_string()]);
    backend::echoed(&mut client, b"ping");
    let fd2 = std::fs::read_link(format!("/proc/{}/fd/2", proxy.child.id())).unwrap();
    assert_eq!(fd2, std::path::Path::new("/dev/null"));
    client.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(proxy.wait().success());
}

#[test]
fn a_huge_target_is_quoted_in_part_with_its_length() {
    let huge = format!("{}.test:80", "a".repeat(100_000));
    for args in [vec![huge.clone()], vec!["-4".into(), huge]] {
        let out = crate::support::launch::run(&args, Stdio::null());
        assert_eq!(out.status.code(), Some(64));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.len() <= 2100, "{} bytes of log", stderr.len());
        assert!(stderr.contains("bytes]"), "the cut is said: {stderr}");
    }
}
