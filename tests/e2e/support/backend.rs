//! Real backends on loopback: echo servers, servers that say who they are, servers with a
//! custom script, and addresses that refuse or never answer.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr as UnixAddr, UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// A stream a backend handler can half-close.
pub trait Conn: Read + Write + Send + 'static {
    fn close_write(&self);
}

impl Conn for TcpStream {
    fn close_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

impl Conn for UnixStream {
    fn close_write(&self) {
        let _ = self.shutdown(Shutdown::Write);
    }
}

/// Sends `bytes`, half-closes, and returns everything the other side sent until its end:
/// one whole exchange, as a client sees it.
pub fn say<C: Conn>(conn: &mut C, bytes: &[u8]) -> Vec<u8> {
    conn.write_all(bytes).unwrap();
    conn.close_write();
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).unwrap();
    reply
}

/// A banner backend's whole exchange, as a client sees it: the backend's name, then the
/// echo of "ping" sent and half-closed.
pub fn exchange(mut stream: impl Conn) -> (String, String) {
    let name = read_banner(&mut stream);
    let echo = say(&mut stream, b"ping");
    (name, String::from_utf8(echo).unwrap())
}

/// Sends `bytes` to an echo and reads as many back, without ending the stream.
pub fn echoed<C: Read + Write>(conn: &mut C, bytes: &[u8]) -> Vec<u8> {
    conn.write_all(bytes).unwrap();
    let mut back = vec![0u8; bytes.len()];
    conn.read_exact(&mut back).unwrap();
    back
}

/// A listening backend that runs a handler per connection, each in its own thread.
pub struct Backend {
    pub address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    /// How many connections it has accepted.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Serves `listener` with `handler`.
pub fn serve<F>(listener: TcpListener, handler: F) -> Backend
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (count, halt, handler) = (accepted.clone(), stop.clone(), Arc::new(handler));
    listener.set_nonblocking(true).unwrap();
    thread::spawn(move || {
        while !halt.load(Ordering::SeqCst) {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).unwrap();
                    count.fetch_add(1, Ordering::SeqCst);
                    let handler = handler.clone();
                    thread::spawn(move || handler(stream));
                }
                Err(_) => thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    Backend {
        address,
        accepted,
        stop,
    }
}

/// Serves a unix listener with `handler`; the listener lives until the test process ends.
pub fn serve_unix<F>(listener: UnixListener, handler: F)
where
    F: Fn(UnixStream) + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = handler.clone();
            thread::spawn(move || handler(stream));
        }
    });
}

pub fn unix_path(path: &Path) -> UnixListener {
    UnixListener::bind(path).unwrap()
}

pub fn unix_abstract(name: &str) -> UnixListener {
    UnixListener::bind_addr(&UnixAddr::from_abstract_name(name).unwrap()).unwrap()
}

/// An echo server on `ip` (127.x.y.z or ::1), any free port.
pub fn echo(ip: &str) -> Backend {
    serve(TcpListener::bind((ip, 0)).unwrap(), echo_conn)
}

/// Echoes until the client's end of stream, then ends its own.
pub fn echo_conn<C: Conn>(mut conn: C) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if conn.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
    conn.close_write();
}

/// Says `name` and a newline, then echoes: tells a test which backend it reached.
pub fn banner(name: &'static str) -> impl Fn(TcpStream) + Send + Sync + 'static {
    move |mut conn: TcpStream| {
        if conn.write_all(format!("{name}\n").as_bytes()).is_ok() {
            echo_conn(conn);
        }
    }
}

/// The name a `banner` backend says first, read byte by byte so that nothing after the
/// newline is taken from the stream.
pub fn read_banner(stream: &mut impl Read) -> String {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while stream.read(&mut byte).expect("read the banner") == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8(line).expect("a banner is text")
}

/// Listeners on the same free port of several loopback addresses, for a name whose
/// answer lists them all (a target has one port).
pub fn same_port(ips: &[&str]) -> Vec<TcpListener> {
    on_one_port(
        ips,
        |ip, port| TcpListener::bind((ip, port)).ok(),
        |l| l.local_addr().unwrap().port(),
    )
}

/// `bind(ip, port)` on every one of `ips` with one port number, the first one's free port;
/// tried again from the start when another address has that port taken.
fn on_one_port<T>(
    ips: &[&str],
    bind: impl Fn(&str, u16) -> Option<T>,
    port_of: impl Fn(&T) -> u16,
) -> Vec<T> {
    'retry: loop {
        let first = bind(ips[0], 0).expect("a free port");
        let port = port_of(&first);
        let mut all = vec![first];
        for ip in &ips[1..] {
            match bind(ip, port) {
                Some(bound) => all.push(bound),
                None => continue 'retry,
            }
        }
        return all;
    }
}

/// A port on which nothing listens, so connections are refused at once, held by a socket
/// that is bound and never listens: no other test can take the port while this lives.
pub struct Refusing {
    pub address: SocketAddr,
    _socket: socket2::Socket,
}

impl Refusing {
    /// `port` 0: any free port. None if the port is taken.
    pub fn on(ip: &str, port: u16) -> Option<Refusing> {
        let address: SocketAddr = (ip.parse::<std::net::IpAddr>().unwrap(), port).into();
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(address),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        socket.bind(&address.into()).ok()?;
        let address = socket.local_addr().unwrap().as_socket().unwrap();
        Some(Refusing {
            address,
            _socket: socket,
        })
    }
}

/// Refusing ports on each of `ips`, all with the same port number (a target has one port).
pub fn refusing_on(ips: &[&str]) -> Vec<Refusing> {
    on_one_port(ips, Refusing::on, |r| r.address.port())
}

/// A listener whose accept queue is full and never drained: the kernel drops new SYNs, so
/// a connect there hangs as it would toward a black-holed address.
pub struct BlackHole {
    pub address: SocketAddr,
    _listener: TcpListener,
    _queued: Vec<TcpStream>,
}

impl BlackHole {
    pub fn new(listener: TcpListener) -> BlackHole {
        // SAFETY: listen(2) on a socket we own; backlog 0 leaves room for one queued connection.
        assert_eq!(unsafe { libc::listen(listener.as_raw_fd(), 0) }, 0);
        let address = listener.local_addr().unwrap();
        let mut queued = Vec::new();
        for _ in 0..8 {
            match TcpStream::connect_timeout(&address, Duration::from_millis(300)) {
                Ok(stream) => queued.push(stream),
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    return BlackHole {
                        address,
                        _listener: listener,
                        _queued: queued,
                    };
                }
                Err(e) => panic!("filling the accept queue of {address}: {e}"),
            }
        }
        panic!("the accept queue of {address} never filled up");
    }
}
