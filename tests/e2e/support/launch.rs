//! Starting dynproxy the ways it is started in production: by systemd-socket-activate
//! (inetd style on fds 0/1, or systemd style on fd 3 with LISTEN_FDS), and by hand with the
//! client socket on fds 0, 1 and 2 — as systemd's StandardInput=socket does it.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::{TempDir, WAIT, dynproxy, wait_exit, wait_for};

/// systemd-socket-activate listening on a loopback TCP port, starting dynproxy per connection.
pub struct Launcher {
    child: Child,
    pub address: SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// `--inetd`: the connection on fds 0 and 1.
    Inetd,
    /// The connection on fd 3, with LISTEN_FDS=1 and LISTEN_PID.
    Systemd,
}

impl Launcher {
    pub fn inetd<S: AsRef<OsStr>>(args: &[S]) -> Launcher {
        Launcher::start(Style::Inetd, "127.0.0.1", args, &[])
    }

    pub fn systemd<S: AsRef<OsStr>>(args: &[S]) -> Launcher {
        Launcher::start(Style::Systemd, "127.0.0.1", args, &[])
    }

    /// Listens on `ip` (127.0.0.1 or ::1), passing `env` (NAME=VALUE) to each dynproxy.
    pub fn start<S: AsRef<OsStr>>(style: Style, ip: &str, args: &[S], env: &[&str]) -> Launcher {
        for _ in 0..50 {
            let address: SocketAddr = (ip.parse::<std::net::IpAddr>().unwrap(), free_port()).into();
            let mut command = Command::new("systemd-socket-activate");
            command.arg("--accept");
            if style == Style::Inetd {
                command.arg("--inetd");
            }
            for var in env {
                command.arg(format!("--setenv={var}"));
            }
            command
                .arg(format!("--listen={address}"))
                .arg(dynproxy())
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .process_group(0);
            let mut child = command
                .spawn()
                .expect("systemd-socket-activate is installed");
            let stderr = child.stderr.take().unwrap();
            let lines = Arc::new(Mutex::new(Vec::new()));
            let (ready_tx, ready_rx) = mpsc::channel();
            let collected = lines.clone();
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if line.starts_with("Listening on") {
                        let _ = ready_tx.send(true);
                    }
                    collected.lock().unwrap().push(line);
                }
                let _ = ready_tx.send(false);
            });
            if ready_rx.recv_timeout(WAIT) == Ok(true) {
                return Launcher {
                    child,
                    address,
                    lines,
                };
            }
            kill_group(&mut child);
        }
        panic!("systemd-socket-activate never managed to listen");
    }

    pub fn connect(&self) -> TcpStream {
        let stream =
            TcpStream::connect_timeout(&self.address, WAIT).expect("connect to the launcher");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream
    }

    /// What dynproxy processes wrote to stderr (systemd-socket-activate's own lines left out).
    pub fn log(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.starts_with("dynproxy: "))
            .cloned()
            .collect()
    }

    /// A client whose session is past its start and relaying (a byte echoed through it;
    /// the backend must echo), and that session's process ID.
    pub fn relaying_session(&self) -> (TcpStream, u32) {
        let mut client = self.connect();
        client.write_all(b"x").unwrap();
        let mut echoed = [0u8];
        client.read_exact(&mut echoed).unwrap();
        let sessions = self.sessions_running();
        assert_eq!(sessions.len(), 1, "one session, relaying");
        (client, sessions[0])
    }

    /// The dynproxy processes it has started that are still running.
    pub fn sessions_running(&self) -> Vec<u32> {
        let pid = self.child.id();
        let children =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        children
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    }

    /// How many descriptors the launcher has open.
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }

    /// Waits for `n` session lines and returns them.
    pub fn sessions(&self, n: usize) -> Vec<String> {
        wait_for(&format!("{n} session lines"), || {
            let sessions: Vec<String> = self
                .log()
                .into_iter()
                .filter(|l| l.contains(" session "))
                .collect();
            (sessions.len() >= n).then_some(sessions)
        })
    }
}

impl Drop for Launcher {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

/// Kills the launcher and every session it started (they share its process group).
fn kill_group(child: &mut Child) {
    // SAFETY: kill(2) with a negative pid signals the process group we created for the child.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let _ = child.wait();
}

/// Ports below Linux's ephemeral range (32768-60999), so that no outgoing connection of a
/// parallel test can take one between our choice and the launcher's bind; spread by pid.
pub fn free_port() -> u16 {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let spread = (std::process::id() as usize * 7919 + n * 104_729) % 12_000;
    let port = 20_000 + spread as u16;
    match TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => port,
        Err(_) => free_port(),
    }
}

/// dynproxy with one client socket on fds 0, 1 and 2, as systemd's StandardInput=socket
/// gives it, in a private mount namespace whose /dev holds only `null` and `log`, a socket
/// the test reads: the one place its log may go.
pub struct Stdio3 {
    pub child: Child,
    syslog: UnixDatagram,
    _dir: TempDir,
}

impl Stdio3 {
    /// The client is one end of a unix socket pair.
    pub fn unix<S: AsRef<OsStr>>(args: &[S]) -> (Stdio3, UnixStream) {
        let (client, server) = UnixStream::pair().unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        (Stdio3::start(server.into(), args), client)
    }

    /// The client is a TCP connection to `ip`, accepted by the test.
    pub fn tcp<S: AsRef<OsStr>>(ip: &str, args: &[S]) -> (Stdio3, TcpStream) {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        let (server, _) = listener.accept().unwrap();
        (Stdio3::start(server.into(), args), client)
    }

    /// Like `unix`, but stderr is a pipe the test holds (`child.stderr`), not the client.
    pub fn unix_with_stderr_piped<S: AsRef<OsStr>>(args: &[S]) -> (Stdio3, UnixStream) {
        let (client, server) = UnixStream::pair().unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        let server = OwnedFd::from(server);
        let stdio = [server.try_clone().unwrap(), server];
        (Stdio3::spawn(stdio, Stdio::piped(), args), client)
    }

    fn start<S: AsRef<OsStr>>(socket: OwnedFd, args: &[S]) -> Stdio3 {
        let stdio = [socket.try_clone().unwrap(), socket.try_clone().unwrap()];
        Stdio3::spawn(stdio, Stdio::from(socket), args)
    }

    fn spawn<S: AsRef<OsStr>>([stdin, stdout]: [OwnedFd; 2], stderr: Stdio, args: &[S]) -> Stdio3 {
        assert!(
            super::is_root(),
            "this test needs root, for a private mount namespace"
        );
        let dir = TempDir::new();
        let syslog = UnixDatagram::bind(dir.join("log")).unwrap();
        syslog.set_nonblocking(true).unwrap();
        let child = Command::new("unshare")
            .args([
                "--mount",
                "sh",
                "-c",
                // /dev/null as on any system; /dev/log is the test's socket.
                r#"touch "$0/null" && mount --bind /dev/null "$0/null" && mount --rbind "$0" /dev && exec "$@""#,
            ])
            .arg(dir.path())
            .arg(dynproxy())
            .args(args)
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(stderr)
            .spawn()
            .unwrap();
        Stdio3 {
            child,
            syslog,
            _dir: dir,
        }
    }

    pub fn wait(&mut self) -> ExitStatus {
        wait_exit(&mut self.child)
    }

    /// Syslog messages received so far.
    pub fn syslog(&self) -> Vec<String> {
        let mut messages = Vec::new();
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = self.syslog.recv(&mut buf) {
            messages.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
        messages
    }
}

/// Runs dynproxy to completion with the given stdin, capturing stdout and stderr.
pub fn run<S: AsRef<OsStr>>(args: &[S], stdin: Stdio) -> Output {
    collect(spawn_piped(Command::new(dynproxy()).args(args), stdin))
}

/// `command` started with `stdin`, its stdout and stderr piped for `collect`.
pub fn spawn_piped(command: &mut Command, stdin: Stdio) -> Child {
    command
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs dynproxy like `run` with stdin /dev/null, in a private mount namespace whose
/// /etc/resolv.conf names only 127.0.0.1: should a bug make it resolve a name it should
/// have refused, the query still stays on loopback.
pub fn run_offline<S: AsRef<OsStr>>(args: &[S]) -> Output {
    let dir = TempDir::new();
    std::fs::write(dir.join("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    output(
        Command::new("unshare")
            .args([
                "--mount",
                "sh",
                "-c",
                r#"mount --bind "$0" "$(realpath /etc/resolv.conf)" && exec "$@""#,
            ])
            .arg(dir.join("resolv.conf"))
            .arg(dynproxy())
            .args(args),
    )
}

/// `Command::output`, bounded: stdin is /dev/null, and a child that outlives WAIT is killed
/// and fails the test instead of hanging the suite.
pub fn output(command: &mut Command) -> Output {
    collect(spawn_piped(command, Stdio::null()))
}

/// Asserts the exit status of a finished run, showing its stderr if it differs; returns
/// that stderr for further checks.
pub fn assert_exit(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    stderr
}

/// Runs `command` (a wrapper around dynproxy: unshare, script) to completion with `input`
/// on its stdin, then its end, capturing stdout and stderr.
pub fn run_with_input(command: &mut Command, input: &[u8]) -> Output {
    let mut child = spawn_piped(command, Stdio::piped());
    child.stdin.take().unwrap().write_all(input).unwrap();
    collect(child)
}

/// Waits for the child (bounded) while reading its stdout and stderr (both piped) to their
/// ends.
pub fn collect(mut child: Child) -> Output {
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let out = thread::spawn(move || read_all(stdout));
    let err = thread::spawn(move || read_all(stderr));
    let status = wait_exit(&mut child);
    Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn read_all(mut from: impl std::io::Read) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = from.read_to_end(&mut out);
    out
}

/// Gives a process a moment; used only where a test must let time pass on purpose (to show
/// that something does NOT happen), never to wait for something that should.
pub fn pause(ms: u64) {
    thread::sleep(Duration::from_millis(ms));
}

/// dynproxy with a unix-socket client on fds 0 and 1 and stderr piped to the test: for
/// checking exit statuses and messages of live sessions.
pub struct ByHand {
    pub child: Child,
    stderr: Option<thread::JoinHandle<Vec<u8>>>,
}

impl ByHand {
    pub fn start<S: AsRef<OsStr>>(args: &[S]) -> (ByHand, UnixStream) {
        ByHand::spawn(Command::new(dynproxy()).args(args))
    }

    /// Like `start`, for a dynproxy command the caller has set up (arguments, pre_exec).
    pub fn spawn(command: &mut Command) -> (ByHand, UnixStream) {
        let (client, server) = UnixStream::pair().unwrap();
        client.set_read_timeout(Some(WAIT)).unwrap();
        client.set_write_timeout(Some(WAIT)).unwrap();
        let server = OwnedFd::from(server);
        let mut child = command
            .stdin(Stdio::from(server.try_clone().unwrap()))
            .stdout(Stdio::from(server))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let stderr = Some(thread::spawn(move || read_all(stderr)));
        (ByHand { child, stderr }, client)
    }

    /// Waits for the exit; returns the status and everything written to stderr.
    pub fn finish(mut self) -> (ExitStatus, String) {
        let status = wait_exit(&mut self.child);
        let stderr = self.stderr.take().unwrap().join().unwrap();
        (status, String::from_utf8_lossy(&stderr).into_owned())
    }
}
