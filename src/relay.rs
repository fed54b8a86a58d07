//! Relay: bytes both ways until both directions are finished, in one thread with one mio loop.
//!
//! Each direction is a `Flow` from one descriptor to another through a bounded buffer — a
//! pipe for splice(2) when both ends allow it, memory otherwise — and one small function,
//! `Flow::pump`, moves every direction. A full buffer stops reading its source, so memory
//! stays bounded whatever the speeds. An end of stream on a socket is passed on as
//! shutdown(SHUT_WR), never as a close: a backend may answer long after the client's
//! half-close.
//!
//! TCP's urgent byte stays in the stream (SO_OOBINLINE): a proxy cannot pass its urgency on,
//! but it must not lose the byte. splice(2) stops short at the urgent mark, so there the
//! flow reads past it with read(2).
//!
//! mio is edge-triggered: readiness is remembered per descriptor (`Port`) and forgotten only
//! when a call says WouldBlock.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::client::{End, Kind, Nonblocking};
use crate::error::{Error, os_message};
use crate::log::{Ending, Log};
use crate::runtime::Runtime;
use crate::sys;

/// Memory buffer per direction when splice cannot be used.
const COPY_BUFFER: usize = 64 * 1024;
/// What a new pipe holds on Linux. Should the user's pipe quota have made it smaller, splice
/// reports the pipe full early, which `Flow::pump` handles like any full pipe.
const DEFAULT_PIPE: usize = 64 * 1024;
/// A pipe that fills up is grown to this once: bulk transfers need fewer, larger splices.
const BIG_PIPE: usize = 1024 * 1024;
/// Rounds of read+write one direction may take before the other gets a turn.
const ROUNDS: usize = 16;
const SIGNAL: Token = Token(1000);

#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub to_backend: u64,
    pub to_client: u64,
}

/// Why a direction stopped early.
enum Stop {
    Reset(&'static str),
    Failed(Error),
}

/// One descriptor as the loop sees it.
struct Port {
    fd: RawFd,
    kind: Kind,
    /// The inherited descriptor behind a private reopening (see client.rs).
    inherited: RawFd,
    /// Flags to put back on a shared open file before letting go of it (see client.rs).
    shared_flags: Option<i32>,
    side: &'static str,
    readable: bool,
    writable: bool,
    /// Urgent data has arrived (EPOLLPRI) at some point: a splice that finds nothing may be
    /// at its mark.
    urgent: bool,
}

impl Port {
    fn new(end: End, side: &'static str) -> Port {
        // epoll refuses regular files and /dev/null; they never block, so they are always ready.
        let ready = end.kind == Kind::Plain;
        Port {
            fd: end.fd,
            kind: end.kind,
            inherited: end.inherited,
            shared_flags: end.shared_flags,
            side,
            readable: ready,
            writable: ready,
            urgent: false,
        }
    }

    fn backend(fd: RawFd) -> Port {
        Port::new(
            End {
                fd,
                kind: Kind::Socket,
                inherited: fd,
                shared_flags: None,
            },
            "backend",
        )
    }

    fn splices(&self) -> bool {
        matches!(self.kind, Kind::Socket | Kind::Pipe)
    }
}

enum Buffer {
    Pipe {
        read: OwnedFd,
        write: OwnedFd,
        len: usize,
        capacity: usize,
        grown: bool,
    },
    Memory {
        data: Box<[u8]>,
        start: usize,
        end: usize,
    },
}

impl Buffer {
    /// A pipe for splice(2).
    fn pipe() -> io::Result<Buffer> {
        let (read, write) = sys::pipe()?;
        Ok(Buffer::Pipe {
            read,
            write,
            len: 0,
            capacity: DEFAULT_PIPE,
            grown: false,
        })
    }

    /// Memory, for read(2) and write(2).
    fn memory() -> Buffer {
        Buffer::Memory {
            data: vec![0; COPY_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    fn len(&self) -> usize {
        match self {
            Buffer::Pipe { len, .. } => *len,
            Buffer::Memory { start, end, .. } => end - start,
        }
    }

    fn has_room(&self) -> bool {
        match self {
            Buffer::Pipe { len, capacity, .. } => len < capacity,
            Buffer::Memory { data, start, end } => *start > 0 || *end < data.len(),
        }
    }

    /// Reads from `fd` into the free room. `urgent`: the source has had urgent data.
    fn fill(&mut self, fd: RawFd, urgent: bool) -> io::Result<usize> {
        match self {
            Buffer::Pipe {
                write,
                len,
                capacity,
                ..
            } => {
                let spliced = sys::splice(fd, write.as_raw_fd(), *capacity - *len);
                // At the urgent mark splice says "nothing yet" (or "end", if the peer has
                // closed too), however much follows the mark. An end is checked always: it
                // is final, and the urgent data's event may not have been seen yet.
                let suspect = match &spliced {
                    Ok(n) => *n == 0,
                    Err(e) => urgent && e.kind() == io::ErrorKind::WouldBlock,
                };
                let n = if suspect && sys::at_urgent_mark(fd) {
                    // In line: the next read returns the byte, and FIONREAD counts it.
                    sys::keep_urgent_inline(fd)?;
                    if *len > 0 {
                        // What came before the mark goes out first; then the pipe is empty.
                        return Err(io::ErrorKind::WouldBlock.into());
                    }
                    read_past_urgent_mark(fd, write.as_raw_fd())?
                } else {
                    spliced?
                };
                *len += n;
                Ok(n)
            }
            Buffer::Memory { data, start, end } => {
                if *end == data.len() {
                    data.copy_within(*start..*end, 0);
                    (*start, *end) = (0, *end - *start);
                }
                let n = sys::read(fd, &mut data[*end..])?;
                *end += n;
                Ok(n)
            }
        }
    }

    /// Writes what is buffered to `fd`, as much as it takes.
    fn drain(&mut self, fd: RawFd) -> io::Result<usize> {
        match self {
            Buffer::Pipe { read, len, .. } => {
                let n = sys::splice(read.as_raw_fd(), fd, *len)?;
                *len -= n;
                Ok(n)
            }
            Buffer::Memory { data, start, end } => {
                let n = sys::write(fd, &data[*start..*end])?;
                *start += n;
                if start == end {
                    (*start, *end) = (0, 0);
                }
                Ok(n)
            }
        }
    }

    /// The pipe filled up (its bytes, or its slots while the source still had more): ask
    /// for a bigger one, once. Refusal is fine (the per-user pipe quota may be spent): the
    /// pipe keeps its size.
    fn grow(&mut self) {
        if let Buffer::Pipe {
            read,
            capacity,
            grown,
            ..
        } = self
        {
            if !*grown {
                *grown = true;
                if let Ok(size) = sys::set_pipe_size(read.as_raw_fd(), BIG_PIPE) {
                    *capacity = size;
                }
            }
        }
    }

    /// Puts bytes (the PROXY header) into the empty buffer.
    fn preload(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Buffer::Pipe { write, len, .. } => {
                // An empty pipe takes a write of up to PIPE_BUF (4096) bytes whole.
                *len = sys::write(write.as_raw_fd(), bytes)?;
            }
            Buffer::Memory { data, end, .. } => {
                data[..bytes.len()].copy_from_slice(bytes);
                *end = bytes.len();
            }
        }
        Ok(())
    }
}

/// Reads the urgent byte (kept in line) and what follows it into the empty pipe.
fn read_past_urgent_mark(fd: RawFd, pipe: RawFd) -> io::Result<usize> {
    // An empty pipe takes a write of up to PIPE_BUF (4096) bytes whole.
    let mut chunk = [0u8; 4096];
    let n = sys::read(fd, &mut chunk)?;
    if n > 0 && sys::write(pipe, &chunk[..n])? != n {
        // Cannot happen (see above); were it to, the session must fail, not lose bytes.
        return Err(io::Error::other("the pipe took only part of what was read"));
    }
    Ok(n)
}

/// One direction of traffic.
struct Flow {
    from: usize,
    to: usize,
    /// None until the first byte: a direction that never carries one never pays for a buffer.
    buffer: Option<Buffer>,
    zero_copy: bool,
    /// The source has ended (read returned 0).
    eof: bool,
    /// The end of stream has been passed on to the destination.
    finished: bool,
    /// Bytes written to the destination.
    moved: u64,
}

impl Flow {
    fn new(from: usize, to: usize, ports: &[Port]) -> Flow {
        Flow {
            from,
            to,
            buffer: None,
            zero_copy: ports[from].splices() && ports[to].splices(),
            eof: false,
            finished: false,
            moved: 0,
        }
    }

    /// Moves what it can without blocking. Ok(true) when it stopped only because its turn
    /// was over, so the loop must come back without waiting for an event.
    fn pump(&mut self, ports: &mut [Port]) -> Result<bool, Stop> {
        for _ in 0..ROUNDS {
            let mut progress = false;
            let from = &ports[self.from];
            if !self.eof && from.readable && self.has_room() {
                match self.fill(from.fd, from.urgent) {
                    Ok(0) => {
                        self.eof = true;
                        progress = true;
                    }
                    Ok(_) => progress = true,
                    // With bytes in the pipe, "would block" may mean the pipe is out of slots
                    // (one per piece spliced in) rather than that the source is dry.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if self.buffered() > 0 && self.zero_copy && sys::has_input(from.fd) {
                            self.grow();
                        } else {
                            ports[self.from].readable = false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(e) => return Err(failure(e, ports[self.from].side, "reading from")),
                }
            }
            let to = &ports[self.to];
            if self.buffered() > 0 && to.writable {
                match self.drain(to.fd) {
                    Ok(n) => {
                        self.moved += n as u64;
                        progress = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        ports[self.to].writable = false;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progress = true,
                    Err(e) => return Err(failure(e, ports[self.to].side, "writing to")),
                }
            }
            if self.eof && self.buffered() == 0 && !self.finished {
                finish_writing(&ports[self.to])
                    .map_err(|e| failure(e, ports[self.to].side, "closing the stream to"))?;
                self.finished = true;
                progress = true;
            }
            if !progress {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The other side has reset and the session is about to end: passes on what can still
    /// reach this direction's destination without waiting — what is buffered, and what the
    /// reset side sent before it reset (a failed write to it leaves that queued in our
    /// socket, say an HTTP 413 answer to an upload). Bounded, for a source that is alive.
    fn salvage(&mut self, ports: &[Port]) {
        let from = &ports[self.from];
        for _ in 0..ROUNDS {
            self.flush(ports);
            // No readiness asked: the reset may have come before its event.
            if self.buffered() > 0 || self.eof {
                return;
            }
            match self.fill(from.fd, from.urgent) {
                Ok(n) if n > 0 => {}
                _ => return,
            }
        }
        self.flush(ports);
    }

    /// Writes out what is buffered, for as long as the destination takes it.
    fn flush(&mut self, ports: &[Port]) {
        let to = &ports[self.to];
        while self.buffered() > 0 && to.writable {
            match self.drain(to.fd) {
                Ok(n) => self.moved += n as u64,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Bytes read from the source and not yet written to the destination.
    fn buffered(&self) -> usize {
        self.buffer.as_ref().map_or(0, Buffer::len)
    }

    fn has_room(&self) -> bool {
        self.buffer.as_ref().is_none_or(Buffer::has_room)
    }

    fn fill(&mut self, fd: RawFd, urgent: bool) -> io::Result<usize> {
        let buffer = match self.buffer.take() {
            Some(buffer) => buffer,
            None => self.new_buffer(fd)?,
        };
        let buffer = self.buffer.insert(buffer);
        let n = buffer.fill(fd, urgent)?;
        if !buffer.has_room() {
            buffer.grow();
        }
        Ok(n)
    }

    fn drain(&mut self, fd: RawFd) -> io::Result<usize> {
        self.buffer
            .as_mut()
            .map_or(Ok(0), |buffer| buffer.drain(fd))
    }

    fn grow(&mut self) {
        if let Some(buffer) = &mut self.buffer {
            buffer.grow();
        }
    }

    /// Puts bytes (the PROXY header) ahead of anything read from the source `from`.
    fn preload(&mut self, bytes: &[u8], from: RawFd) -> io::Result<()> {
        let buffer = self.new_buffer(from)?;
        self.buffer.insert(buffer).preload(bytes)
    }

    /// A pipe when both ends splice, memory otherwise — and memory too when no descriptor is
    /// left for a pipe (RLIMIT_NOFILE): copying needs none, and a session that could connect
    /// must not fail for want of one. read(2) then needs the urgent byte kept in line from
    /// now on (see `register`), as splice would have at the mark.
    fn new_buffer(&mut self, from: RawFd) -> io::Result<Buffer> {
        if self.zero_copy {
            match Buffer::pipe() {
                Err(e) if sys::is_out_of_descriptors(&e) => {
                    self.zero_copy = false;
                    let _ = sys::keep_urgent_inline(from);
                }
                pipe => return pipe,
            }
        }
        Ok(Buffer::memory())
    }
}

/// Passes an end of stream on: a socket gets shutdown(SHUT_WR); a pipe must lose every
/// writer, so both our descriptor and the inherited one let go of it.
fn finish_writing(port: &Port) -> io::Result<()> {
    match port.kind {
        Kind::Socket => match sys::shutdown_write(port.fd) {
            Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
            result => result,
        },
        Kind::Pipe => {
            if let Some(flags) = port.shared_flags {
                // Our parent's pipe must not keep our O_NONBLOCK once we let go of it.
                let _ = sys::set_flags(port.fd, flags);
            }
            // Both, if ours is a private reopening (letting go of one twice does no harm).
            sys::let_go_of(&[port.fd, port.inherited])
        }
        Kind::Tty | Kind::Plain => Ok(()),
    }
}

fn failure(error: io::Error, side: &'static str, doing: &str) -> Stop {
    match error.raw_os_error() {
        Some(libc::ECONNRESET | libc::EPIPE) => Stop::Reset(side),
        // Keepalive probes, or data sent, went unanswered for --keepalive's bound.
        Some(libc::ETIMEDOUT) => Stop::Failed(Error::Io(format!(
            "the {side} vanished: no answer to keepalive probes or to data sent ({doing} it: {})",
            os_message(&error)
        ))),
        _ => Stop::Failed(Error::Io(format!(
            "{doing} the {side}: {}",
            os_message(&error)
        ))),
    }
}

/// What the relay waits with: its epoll and the signalfd of the stop signals. Made before
/// the backend is connected: a session whose descriptor limit let it connect must not then
/// fail for want of these (and pipes give way to copying, see `Flow::new_buffer`).
pub struct Waiter {
    poll: Poll,
    signals: sys::StopSignals,
}

impl Waiter {
    pub fn new() -> Result<Waiter, Error> {
        let io_error =
            |e: io::Error| Error::Io(format!("cannot prepare the relay: {}", os_message(&e)));
        Ok(Waiter {
            poll: Poll::new().map_err(io_error)?,
            signals: sys::StopSignals::new().map_err(io_error)?,
        })
    }

    /// Runs `stages` (resolving, connecting) on the thread's runtime, lent this waiter's
    /// epoll (a session needs one), and takes it back when they end: the runtime is gone
    /// then, and every socket the lookup opened is closed.
    pub fn run_first<T>(
        self,
        stages: impl Future<Output = Result<T, Error>>,
    ) -> Result<(T, Waiter), Error> {
        let Waiter { poll, signals } = self;
        let runtime_error = |e: io::Error| Error::Io(format!("runtime: {}", os_message(&e)));
        let mut runtime = Runtime::on(poll).map_err(runtime_error)?;
        let result = runtime.block_on(stages).map_err(runtime_error)??;
        let poll = runtime.into_poll().map_err(runtime_error)?;
        Ok((result, Waiter { poll, signals }))
    }
}

pub struct Relay<'a> {
    pub waiter: Waiter,
    pub client: &'a Nonblocking,
    pub backend: &'a OwnedFd,
    /// Sent to the backend before any client byte (the PROXY header).
    pub preface: Option<Vec<u8>>,
    pub idle_timeout: Option<Duration>,
}

impl Relay<'_> {
    pub fn run(mut self, log: &mut Log) -> (Ending, Totals) {
        let preface_len = self.preface.as_ref().map_or(0, Vec::len) as u64;
        let mut ports = vec![Port::new(self.client.input, "client")];
        if self.client.output.fd != self.client.input.fd {
            ports.push(Port::new(self.client.output, "client"));
        }
        let client_out = ports.len() - 1;
        ports.push(Port::backend(self.backend.as_raw_fd()));
        let backend = ports.len() - 1;
        let mut flows = [
            Flow::new(0, backend, &ports),
            Flow::new(backend, client_out, &ports),
        ];
        let ending = self
            .run_loop(&mut ports, &mut flows, log)
            .unwrap_or_else(Ending::Failed);
        let totals = Totals {
            to_backend: flows[0].moved.saturating_sub(preface_len),
            to_client: flows[1].moved,
        };
        (ending, totals)
    }

    fn run_loop(
        &mut self,
        ports: &mut [Port],
        flows: &mut [Flow; 2],
        log: &mut Log,
    ) -> Result<Ending, Error> {
        let io_error = |e: io::Error| Error::Io(format!("relay: {e}"));
        watch(&self.waiter, ports, flows).map_err(io_error)?;
        let Waiter { poll, signals } = &mut self.waiter;
        if let Some(preface) = &self.preface {
            flows[0]
                .preload(preface, ports[flows[0].from].fd)
                .map_err(io_error)?;
        }
        let mut events = Events::with_capacity(8);
        let mut last_activity = Instant::now();
        loop {
            let moved_before = moved(flows);
            let more = match pump_all(flows, ports) {
                Ok(more) => more,
                Err(Stop::Reset(side)) => {
                    log.step(format_args!("the {side} reset the connection"));
                    return Ok(Ending::Reset(side));
                }
                Err(Stop::Failed(error)) => return Err(error),
            };
            if flows.iter().all(|f| f.finished) {
                return Ok(Ending::Closed);
            }
            let now = Instant::now();
            if moved(flows) != moved_before {
                last_activity = now;
            }
            let idle_left = self
                .idle_timeout
                .map(|idle| (last_activity + idle).saturating_duration_since(now));
            if idle_left == Some(Duration::ZERO) {
                return Ok(Ending::Idle);
            }
            let timeout = if more {
                Some(Duration::ZERO)
            } else {
                idle_left
            };
            match poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(e)),
            }
            if let Some(signal) = note(&events, ports, signals) {
                return Ok(Ending::Signal(signal));
            }
        }
    }
}

fn moved(flows: &[Flow]) -> u64 {
    flows.iter().map(|f| f.moved).sum()
}

/// Gives each direction its turn. On a reset, what can still reach the other side is
/// passed on (`Flow::salvage`), then the reset ends the session.
fn pump_all(flows: &mut [Flow], ports: &mut [Port]) -> Result<bool, Stop> {
    let mut more = false;
    for index in 0..flows.len() {
        match flows[index].pump(ports) {
            Ok(again) => more |= again,
            Err(Stop::Reset(side)) => {
                for flow in flows.iter_mut().filter(|f| ports[f.to].side != side) {
                    flow.salvage(ports);
                }
                return Err(Stop::Reset(side));
            }
            Err(stop) => return Err(stop),
        }
    }
    Ok(more)
}

/// Registers every port, and the signalfd, with the waiter's poll; blocks the stop signals.
fn watch(waiter: &Waiter, ports: &[Port], flows: &[Flow]) -> io::Result<()> {
    for (index, port) in ports.iter().enumerate() {
        register(&waiter.poll, port, index, flows)?;
    }
    waiter.poll.registry().register(
        &mut SourceFd(&waiter.signals.as_raw_fd()),
        SIGNAL,
        Interest::READABLE,
    )?;
    waiter.signals.block()
}

/// Remembers the readiness events report; returns a stop signal if one arrived.
fn note(events: &Events, ports: &mut [Port], signals: &sys::StopSignals) -> Option<i32> {
    for event in events {
        if event.token() == SIGNAL {
            if let Some(signal) = signals.next() {
                return Some(signal);
            }
            continue;
        }
        let Some(port) = ports.get_mut(event.token().0) else {
            continue;
        };
        // Errors and hang-ups are reported as readiness: the next call returns them.
        let broken = event.is_error() || event.is_read_closed() || event.is_write_closed();
        port.readable |= event.is_readable() || broken;
        port.writable |= event.is_writable() || broken;
        port.urgent |= event.is_priority();
    }
    None
}

/// Registers a port for what the flows need of it; Plain ports are always ready instead.
fn register(poll: &Poll, port: &Port, index: usize, flows: &[Flow]) -> io::Result<()> {
    if port.kind == Kind::Plain {
        return Ok(());
    }
    let reads = flows.iter().any(|f| f.from == index);
    let writes = flows.iter().any(|f| f.to == index);
    let interest = match (reads, writes) {
        (true, true) => Interest::READABLE | Interest::WRITABLE,
        (false, true) => Interest::WRITABLE,
        _ => Interest::READABLE,
    };
    // Urgent data is announced as priority (see the module's comment): the flow must then
    // look for its mark. read(2) would skip the byte before that event is seen, so a copying
    // flow's socket keeps it in line from the start; splice stops at the mark, so a splicing
    // flow sets that once it finds itself there.
    let interest = if reads && port.kind == Kind::Socket {
        if flows.iter().any(|f| f.from == index && !f.zero_copy) {
            let _ = sys::keep_urgent_inline(port.fd);
        }
        interest | Interest::PRIORITY
    } else {
        interest
    };
    poll.registry()
        .register(&mut SourceFd(&port.fd), Token(index), interest)
}
