//! Where the client is: every way dynproxy is started hands it the connection differently.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::process::{Command, Stdio};

use crate::support::backend;
use crate::support::launch::{Launcher, Stdio3, assert_exit, collect, free_port, output};
use crate::support::{TempDir, dynproxy, wait_exit};

fn round_trip(mut stream: impl Read + Write, close: impl FnOnce(&mut dyn Write)) -> String {
    stream.write_all(b"ping\n").unwrap();
    close(&mut stream);
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    reply
}

#[test]
fn inetd_style_client_on_fds_0_and_1() {
    let echo = backend::echo("127.0.0.1");
    let launcher = Launcher::inetd(&[echo.address.to_string()]);
    let stream = launcher.connect();
    let half_close = stream.try_clone().unwrap();
    let reply = round_trip(stream, |_| half_close.shutdown(Shutdown::Write).unwrap());
    assert_eq!(reply, "ping\n");
    assert!(launcher.sessions(1)[0].contains("end=closed"));
}

#[test]
fn systemd_style_client_on_fd_3_with_listen_fds() {
    let echo = backend::echo("127.0.0.1");
    let launcher = Launcher::systemd(&[echo.address.to_string()]);
    let stream = launcher.connect();
    let half_close = stream.try_clone().unwrap();
    let reply = round_trip(stream, |_| half_close.shutdown(Shutdown::Write).unwrap());
    assert_eq!(reply, "ping\n");
    let line = &launcher.sessions(1)[0];
    assert!(line.contains("client=127.0.0.1:"), "{line}");
}

#[test]
fn client_socket_on_fds_0_1_and_2_like_standard_input_socket() {
    let echo = backend::echo("127.0.0.1");
    let (mut proxy, client) = Stdio3::unix(&[echo.address.to_string()]);
    let half_close = client.try_clone().unwrap();
    let reply = round_trip(client, |_| half_close.shutdown(Shutdown::Write).unwrap());
    assert_eq!(
        reply, "ping\n",
        "the client must get the backend's bytes and nothing else"
    );
    assert!(proxy.wait().success());
}

#[test]
fn pipes_on_stdin_and_stdout_like_socat_stdio() {
    let echo = backend::echo("127.0.0.1");
    let dir = TempDir::new();
    let input = dir.join("in");
    std::fs::write(&input, b"from a pipe\n").unwrap();
    let out = output(
        Command::new("sh")
            .args(["-c", r#"cat "$1" | "$0" "$2" | cat"#])
            .arg(dynproxy())
            .arg(&input)
            .arg(echo.address.to_string()),
    );
    assert_exit(&out, 0);
    assert_eq!(out.stdout, b"from a pipe\n");
}

#[test]
fn regular_files_on_stdin_and_stdout() {
    let echo = backend::echo("127.0.0.1");
    let dir = TempDir::new();
    std::fs::write(dir.join("in"), b"from a file\n").unwrap();
    let out_file = std::fs::File::create(dir.join("out")).unwrap();
    let mut child = Command::new(dynproxy())
        .arg(echo.address.to_string())
        .stdin(std::fs::File::open(dir.join("in")).unwrap())
        .stdout(out_file)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_exit(&mut child).success());
    assert_eq!(std::fs::read(dir.join("out")).unwrap(), b"from a file\n");
}

#[test]
fn dev_null_on_stdin_and_stdout() {
    let echo = backend::echo("127.0.0.1");
    let mut child = Command::new(dynproxy())
        .arg(echo.address.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(wait_exit(&mut child).success());
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn stdin_left_blocking_for_the_parent() {
    // A shell's terminal or pipe is shared: O_NONBLOCK set on it would break the shell.
    let echo = backend::echo("127.0.0.1");
    let script = r#"printf x | { "$0" "$1" >/dev/null; status=$?; python3 -c 'import os,fcntl; print(fcntl.fcntl(0, fcntl.F_GETFL) & os.O_NONBLOCK)'; exit $status; }"#;
    let out = output(
        Command::new("sh")
            .args(["-c", script])
            .arg(dynproxy())
            .arg(echo.address.to_string()),
    );
    let stderr = assert_exit(&out, 0);
    assert_eq!(echo.accepted(), 1, "dynproxy relayed: {stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}

#[test]
fn a_shared_stdout_pipe_is_left_blocking_even_when_it_cannot_be_reopened() {
    // Without /proc the pipe cannot be reopened privately, so O_NONBLOCK goes on the open
    // file dynproxy shares with the next command of the group; it must come off again
    // before dynproxy lets go of the pipe at its end of stream.
    let echo = backend::echo("127.0.0.1");
    let script = r#"umount -l /proc && printf x | { "$0" "$1"; python3 -c 'import os,fcntl; print(fcntl.fcntl(1, fcntl.F_GETFL) & os.O_NONBLOCK)'; } | cat"#;
    let out = output(
        Command::new("unshare")
            .args(["--mount", "sh", "-c", script])
            .arg(dynproxy())
            .arg(echo.address.to_string())
            .stderr(Stdio::piped()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "x0\n", "{stderr}");
}

#[test]
fn several_listen_fds_are_a_usage_error() {
    let out = output(
        Command::new("sh")
            .args(["-c", r#"LISTEN_PID=$$ LISTEN_FDS=2 exec "$0" 127.0.0.1:9"#])
            .arg(dynproxy())
            .stdin(Stdio::null()),
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("LISTEN_FDS"));
}

/// dynproxy's exit status when LISTEN_PID is `listen_pid` (a shell expression of `$$`) and
/// LISTEN_FDS=2: 64 if it took the variables for its own, something else if not.
fn status_with_listen_pid(listen_pid: &str) -> Option<i32> {
    let script = format!(r#"LISTEN_PID="{listen_pid}" LISTEN_FDS=2 exec "$0" 127.0.0.1:9"#);
    let out = output(
        Command::new("sh")
            .args(["-c", &script])
            .arg(dynproxy())
            .stdin(Stdio::null()),
    );
    out.status.code()
}

#[test]
fn listen_pid_is_read_as_systemd_reads_it() {
    for ours in [" $$", "+$$", "$(printf '\\t')$$", "$(printf 0x%x $$)"] {
        assert_eq!(status_with_listen_pid(ours), Some(64), "LISTEN_PID={ours}");
    }
    for not_ours in ["$$ ", "-$$", "0$$x"] {
        assert_ne!(
            status_with_listen_pid(not_ours),
            Some(64),
            "LISTEN_PID={not_ours}"
        );
    }
}

#[test]
fn a_listening_socket_is_a_usage_error_accept_no() {
    // Accept=no hands over the listening socket itself: say so instead of hanging.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let child = Command::new(dynproxy())
        .arg("127.0.0.1:9")
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(listener)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = assert_exit(&collect(child), 64);
    assert!(stderr.contains("Accept=yes"), "{stderr}");
}

#[test]
fn a_listening_socket_on_fd_3_is_a_usage_error_accept_no() {
    // systemd-socket-activate without --accept passes its listening socket on fd 3.
    let port = free_port();
    let child = Command::new("systemd-socket-activate")
        .arg(format!("--listen=127.0.0.1:{port}"))
        .arg(dynproxy())
        .arg("127.0.0.1:9")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _client = crate::support::wait_for("the launcher to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let stderr = assert_exit(&collect(child), 64);
    assert!(stderr.contains("Accept=yes"), "{stderr}");
}

#[test]
fn closed_stdio_descriptors_never_receive_a_socket() {
    // With fd 2 closed, a careless program's next socket would become "stderr".
    let echo = backend::echo("127.0.0.1");
    let out = output(
        Command::new("sh")
            .args(["-c", r#"printf abc | "$0" -v "$1" 2>&-"#])
            .arg(dynproxy())
            .arg(echo.address.to_string()),
    );
    assert!(out.status.success());
    assert_eq!(
        out.stdout, b"abc",
        "log text reached the backend, which echoed it"
    );
}

#[test]
fn a_finished_session_leaves_no_process_and_no_descriptor_behind() {
    let echo = backend::echo("127.0.0.1");
    let launcher = Launcher::inetd(&[echo.address.to_string()]);
    let fds = launcher.open_fds();
    let stream = launcher.connect();
    let half_close = stream.try_clone().unwrap();
    assert_eq!(
        round_trip(stream, |_| half_close.shutdown(Shutdown::Write).unwrap()),
        "ping\n"
    );
    crate::support::wait_for("the session to exit", || {
        launcher.sessions_running().is_empty().then_some(())
    });
    assert_eq!(launcher.open_fds(), fds);
}

#[test]
fn a_socket_on_fd_0_carries_both_ways_when_fd_1_is_closed() {
    let echo = backend::echo("127.0.0.1");
    let (mut client, session) = std::os::unix::net::UnixStream::pair().unwrap();
    client.set_read_timeout(Some(crate::support::WAIT)).unwrap();
    let child = Command::new("sh")
        .args(["-c", r#"exec "$0" "$1" >&-"#])
        .arg(dynproxy())
        .arg(echo.address.to_string())
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(session)))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    client.write_all(b"ping").unwrap();
    client.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reply = Vec::new();
    client.read_to_end(&mut reply).unwrap();
    let stderr = assert_exit(&collect(child), 0);
    assert_eq!(
        reply, b"ping",
        "the backend's bytes came back on fd 0's socket"
    );
    assert!(stderr.contains("to_backend=4 to_client=4"), "{stderr}");
}

#[test]
fn a_closed_fd_1_without_a_socket_on_fd_0_is_a_usage_error() {
    let echo = backend::echo("127.0.0.1");
    let out = output(
        Command::new("sh")
            .args(["-c", r#"printf ping | "$0" "$1" >&-"#])
            .arg(dynproxy())
            .arg(echo.address.to_string())
            .stderr(Stdio::piped()),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("fd 1 is closed"), "{stderr}");
    assert_eq!(echo.accepted(), 0, "refused before connecting");
}
