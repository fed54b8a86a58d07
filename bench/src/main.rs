//! dynbench: the benchmark's backend and load generator, compiled so that neither is the
//! bottleneck (a Python client tops out near 5k connections/s on the benchmark machine).
//!
//! ```text
//! dynbench backend ADDR              serve: the first byte of a connection picks its mode —
//!                                      'e' echo (that byte included), 's' + u64: read that
//!                                      many bytes and answer 8 bytes, 'g' + u64: send that many
//! Transfers never half-close, so proxies that mishandle half-close can be measured too.
//! dynbench latency ADDR COUNT        sequential connect + 1-byte echo + close, µs each
//! dynbench rate ADDR CONC SECS       connect + 1-byte echo + close as fast as CONC threads can;
//!                                      µs each too
//! dynbench upload|download|echo ADDR BYTES   one bulk transfer: seconds, and seconds for each
//!                                      INTERVAL bytes (the sender's for upload, else the
//!                                      receiver's)
//! dynbench hold ADDR COUNT           open COUNT echo sessions, report, hold until stdin closes
//! dynbench burst ADDR COUNT          open COUNT connections at once, each sending one byte:
//!                                      seconds until every echo is back (all served)
//! dynbench stdio-echo                copy stdin to stdout: the least a per-connection program
//!                                      can do, started like a proxy to measure the floor
//! ```
//! Every command prints one JSON object on stdout.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const CHUNK: usize = 256 * 1024;
/// Bulk transfers report how long each slice of this size took, for a distribution of rates.
const INTERVAL: u64 = 32 * 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(60);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_else(|| usage());
    let number = |i: usize| arg(i).parse::<u64>().unwrap_or_else(|_| usage());
    let result = match arg(0).as_str() {
        "backend" => backend(&arg(1)),
        "latency" => latency(address(&arg(1)), number(2)),
        "rate" => rate(address(&arg(1)), number(2), number(3)),
        "upload" => upload(address(&arg(1)), number(2)),
        "download" => download(address(&arg(1)), number(2)),
        "echo" => echo(address(&arg(1)), number(2)),
        "hold" => hold(address(&arg(1)), number(2)),
        "burst" => burst(address(&arg(1)), number(2)),
        "stdio-echo" => stdio_echo(),
        _ => usage(),
    };
    if let Err(e) = result {
        eprintln!("dynbench: {e}");
        std::process::exit(1);
    }
}

fn usage() -> ! {
    eprintln!("usage: dynbench backend|latency|rate|upload|download|echo|hold|burst ADDR ...");
    std::process::exit(64);
}

fn address(text: &str) -> SocketAddr {
    text.parse().unwrap_or_else(|_| usage())
}

fn connect(to: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&to, TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    Ok(stream)
}

/// connect, send one byte, read it back, close.
fn one_echo(to: SocketAddr) -> io::Result<()> {
    let mut stream = connect(to)?;
    stream.write_all(b"e")?;
    let mut byte = [0u8];
    stream.read_exact(&mut byte)?;
    if byte[0] != b'e' {
        return Err(io::Error::other("wrong echo"));
    }
    Ok(())
}

fn backend(listen: &str) -> io::Result<()> {
    let listener = TcpListener::bind(listen)?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let _ = thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || {
                let _ = serve(stream);
            });
    }
    Ok(())
}

fn serve(mut stream: TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut mode = [0u8];
    stream.read_exact(&mut mode)?;
    let mut buf = vec![0u8; CHUNK];
    match mode[0] {
        b'e' => {
            stream.write_all(&mode)?;
            loop {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                stream.write_all(&buf[..n])?;
            }
            stream.shutdown(Shutdown::Write)
        }
        b's' => {
            let mut len = [0u8; 8];
            stream.read_exact(&mut len)?;
            let count = read_exactly(&mut stream, u64::from_be_bytes(len), &mut Progress::new())?;
            stream.write_all(&count.to_be_bytes())
        }
        b'g' => {
            let mut len = [0u8; 8];
            stream.read_exact(&mut len)?;
            send(
                &mut stream,
                u64::from_be_bytes(len),
                &buf,
                &mut Progress::new(),
            )?;
            stream.shutdown(Shutdown::Write)
        }
        _ => Ok(()),
    }
}

fn send(stream: &mut TcpStream, len: u64, buf: &[u8], progress: &mut Progress) -> io::Result<()> {
    let mut sent = 0;
    while sent < len {
        let n = (len - sent).min(buf.len() as u64) as usize;
        stream.write_all(&buf[..n])?;
        sent += n as u64;
        progress.reached(sent);
    }
    Ok(())
}

/// Reads `len` bytes (fewer only if the stream ends first); returns how many came.
fn read_exactly(stream: &mut TcpStream, len: u64, progress: &mut Progress) -> io::Result<u64> {
    let mut buf = vec![0u8; CHUNK];
    let mut count = 0u64;
    while count < len {
        let want = (len - count).min(CHUNK as u64) as usize;
        let n = stream.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        count += n as u64;
        progress.reached(count);
    }
    Ok(count)
}

fn latency(to: SocketAddr, count: u64) -> io::Result<()> {
    let mut micros = Vec::with_capacity(count as usize);
    let mut errors = 0;
    for _ in 0..count {
        let started = Instant::now();
        match one_echo(to) {
            Ok(()) => micros.push(started.elapsed().as_secs_f64() * 1e6),
            Err(_) => errors += 1,
        }
    }
    println!(
        "{{\"micros\": [{}], \"errors\": {errors}}}",
        list(&micros, 1)
    );
    Ok(())
}

fn list(values: &[f64], decimals: usize) -> String {
    let texts: Vec<String> = values.iter().map(|v| format!("{v:.decimals$}")).collect();
    texts.join(", ")
}

/// When each INTERVAL of a transfer's bytes was done.
struct Progress {
    started: Instant,
    last: Instant,
    next: u64,
    seconds: Vec<f64>,
}

impl Progress {
    fn new() -> Progress {
        let now = Instant::now();
        Progress {
            started: now,
            last: now,
            next: INTERVAL,
            seconds: Vec::new(),
        }
    }

    fn reached(&mut self, total: u64) {
        while total >= self.next {
            let now = Instant::now();
            self.seconds.push((now - self.last).as_secs_f64());
            self.last = now;
            self.next += INTERVAL;
        }
    }

    fn report(&self, bytes: u64) {
        println!(
            "{{\"bytes\": {bytes}, \"seconds\": {:.4}, \"interval_bytes\": {INTERVAL}, \"intervals\": [{}]}}",
            self.started.elapsed().as_secs_f64(),
            list(&self.seconds, 6)
        );
    }
}

fn rate(to: SocketAddr, concurrency: u64, seconds: u64) -> io::Result<()> {
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let errors = errors.clone();
            thread::spawn(move || {
                let mut micros = Vec::new();
                while Instant::now() < deadline {
                    let began = Instant::now();
                    match one_echo(to) {
                        Ok(()) => micros.push(began.elapsed().as_secs_f64() * 1e6),
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                micros
            })
        })
        .collect();
    let mut micros = Vec::new();
    for worker in workers {
        micros.extend(worker.join().unwrap_or_default());
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{{\"connections\": {}, \"errors\": {}, \"seconds\": {elapsed:.3}, \"micros\": [{}]}}",
        micros.len(),
        errors.load(Ordering::Relaxed),
        list(&micros, 1)
    );
    Ok(())
}

fn upload(to: SocketAddr, bytes: u64) -> io::Result<()> {
    let mut progress = Progress::new();
    let mut stream = connect(to)?;
    stream.write_all(b"s")?;
    stream.write_all(&bytes.to_be_bytes())?;
    send(&mut stream, bytes, &vec![7u8; CHUNK], &mut progress)?;
    let mut count = [0u8; 8];
    stream.read_exact(&mut count)?;
    if u64::from_be_bytes(count) != bytes {
        return Err(io::Error::other("the backend counted another size"));
    }
    progress.report(bytes);
    Ok(())
}

fn download(to: SocketAddr, bytes: u64) -> io::Result<()> {
    let mut progress = Progress::new();
    let mut stream = connect(to)?;
    stream.write_all(b"g")?;
    stream.write_all(&bytes.to_be_bytes())?;
    if read_exactly(&mut stream, bytes, &mut progress)? != bytes {
        return Err(io::Error::other("short download"));
    }
    progress.report(bytes);
    Ok(())
}

fn echo(to: SocketAddr, bytes: u64) -> io::Result<()> {
    let mut progress = Progress::new();
    let mut stream = connect(to)?;
    let mut writer = stream.try_clone()?;
    let sender = thread::spawn(move || -> io::Result<()> {
        writer.write_all(b"e")?;
        send(&mut writer, bytes, &vec![5u8; CHUNK], &mut Progress::new())
    });
    let received = read_exactly(&mut stream, bytes + 1, &mut progress)?;
    sender
        .join()
        .map_err(|_| io::Error::other("sender panicked"))??;
    if received != bytes + 1 {
        return Err(io::Error::other("short echo"));
    }
    progress.report(bytes);
    Ok(())
}

fn hold(to: SocketAddr, count: u64) -> io::Result<()> {
    let mut held = Vec::with_capacity(count as usize);
    let mut failed = 0;
    for _ in 0..count {
        let session = connect(to).and_then(|mut s| {
            s.write_all(b"e")?;
            let mut byte = [0u8];
            s.read_exact(&mut byte)?;
            Ok(s)
        });
        match session {
            Ok(stream) => held.push(stream),
            Err(_) => failed += 1,
        }
    }
    println!("{{\"held\": {}, \"failed\": {failed}}}", held.len());
    io::stdout().flush()?;
    let mut rest = Vec::new();
    io::stdin().read_to_end(&mut rest)?;
    Ok(())
}

/// Every connection is opened and has sent its byte before any echo is awaited, so the
/// proxy sees COUNT sessions start at once; the echoes are read in order, so the time after
/// the last read is when the slowest was served. A session not served within BURST_WAIT
/// counts as failed. The caller raises RLIMIT_NOFILE.
fn burst(to: SocketAddr, count: u64) -> io::Result<()> {
    const BURST_WAIT: Duration = Duration::from_secs(300);
    let started = Instant::now();
    let mut open = Vec::with_capacity(count as usize);
    let mut failed = 0;
    for _ in 0..count {
        let sent = connect(to).and_then(|mut s| {
            s.write_all(b"e")?;
            Ok(s)
        });
        match sent {
            Ok(stream) => open.push(stream),
            Err(_) => failed += 1,
        }
    }
    let opened = started.elapsed().as_secs_f64();
    let mut served = 0;
    for mut stream in open {
        let left = BURST_WAIT.saturating_sub(started.elapsed());
        let mut byte = [0u8];
        let echoed = !left.is_zero()
            && stream.set_read_timeout(Some(left)).is_ok()
            && stream.read_exact(&mut byte).is_ok();
        if echoed {
            served += 1;
        } else {
            failed += 1;
        }
    }
    println!(
        "{{\"served\": {served}, \"failed\": {failed}, \"opened_seconds\": {opened:.3}, \"seconds\": {:.3}}}",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn stdio_echo() -> io::Result<()> {
    let mut buf = [0u8; 4096];
    let (mut input, mut output) = (io::stdin().lock(), io::stdout().lock());
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        output.write_all(&buf[..n])?;
        output.flush()?;
    }
}
