//! The smallest async runtime hickory's name-server pool needs for one lookup, and the
//! connection attempts that go on while its slower answer comes: one thread, mio for the
//! sockets, a list for the timers, a list for the tasks.
//!
//! hickory has no synchronous API; it asks for a `RuntimeProvider` — UDP and TCP sockets
//! that can be polled, timers, and a way to spawn background tasks (one per connection to a
//! name server, moving its queries and answers). tokio's runtime did the job, but building
//! and dropping it cost each session more than everything here (docs/bench-history.md, and
//! `bench/ab` to measure it again).
//!
//! # Contract
//! What it supports:
//! - One `Runtime` per thread at a time (a second is refused), driving one future with
//!   `block_on`, plus the tasks spawned meanwhile (hickory's, through `Provider`).
//! - Futures wait for the runtime's own sockets and timers, or for a wake from any thread
//!   (which interrupts epoll at once through a `mio::Waker`). A future that waits only for
//!   another thread must also hold a timer of the runtime: with neither a timer nor a socket
//!   to wait for, `block_on` returns an error instead of sleeping for ever.
//! - Fairness: each round polls the main future if woken, then every woken task once, then
//!   wakes whoever waits for a due timer. When nothing is woken it sleeps in epoll until a
//!   socket is ready or the next timer is due; while something is, it still looks at epoll
//!   (without sleeping) every `BUSY_ROUNDS` rounds. So a task that keeps waking itself is
//!   polled at most once after a timer fell due, and at most `BUSY_ROUNDS` times after a
//!   socket turned ready, before their waiters are woken.
//! - Dropping the `Runtime` ends every task it holds and so closes every socket they held.
//!   `into_poll` does the same and gives back its epoll with nothing registered, which
//!   `Runtime::on` may have lent it: the relay's, so that a session makes one epoll. A TCP
//!   connection made with `Connecting` leaves the runtime with `into_stream`, out of epoll.
//!
//! What it does not do: run more than one thread or more than one `block_on` at a time,
//! let a `Runtime` or its sockets move to another thread (they are not `Send`), or keep
//! timers and sockets made by another runtime.
//!
//! Its one rule inside: no waker is cloned, woken or dropped while the reactor is borrowed —
//! a waker may run code that looks at the reactor again. Wakers are taken out and used
//! after the borrow ends (a test checks every path with a waker that reports a borrow).
//!
//! hickory's `Time` has no receiver, so the runtime's state cannot travel with a handle: it
//! is the thread's (`REACTOR`), for as long as `Runtime` lives.
//!
//! mio is edge-triggered: an event says only that something changed, once. So every socket
//! operation is tried first and waits only after the kernel said "would block"; whatever
//! came before that, the attempt itself has seen, and whatever comes after raises a new event.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::io::{self, IoSlice, Read, Write};
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::net::{Shutdown, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use hickory_resolver::net::runtime::{DnsTcpStream, DnsUdpSocket, RuntimeProvider, Spawn, Time};
use mio::event::Source;
use mio::net::{TcpStream, UdpSocket};
use mio::{Events, Interest, Token};

/// What hickory waits for when it opens a TCP connection to a name server and gives no
/// bound of its own (hickory's own default).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

thread_local! {
    /// Never dropped by the thread: a `Runtime` empties it when it ends, and a value without
    /// drop glue spares the C library's thread-exit bookkeeping (a malloc, system calls).
    static REACTOR: RefCell<ManuallyDrop<Reactor>> =
        const { RefCell::new(ManuallyDrop::new(Reactor::EMPTY)) };
}

/// `f` on the thread's reactor. Never call a waker or drop one inside `f`: that may run code
/// that looks at the reactor again; hand it out and let the caller do it.
fn with_reactor<T>(f: impl FnOnce(&mut Reactor) -> T) -> T {
    REACTOR.with(|reactor| f(&mut reactor.borrow_mut()))
}

/// `with_reactor` for destructors, which may run while the reactor is in use or already
/// gone (at thread exit): then there is nothing to take back, and None.
fn with_reactor_if_free<T>(f: impl FnOnce(&mut Reactor) -> Option<T>) -> Option<T> {
    REACTOR
        .try_with(|reactor| f(&mut *reactor.try_borrow_mut().ok()?))
        .ok()
        .flatten()
}

/// What the futures of one lookup wait for, and the tasks they spawned.
struct Reactor {
    /// None while no `Runtime` lives on this thread.
    poll: Option<mio::Poll>,
    /// By token: who waits for each registered socket (None: a free token).
    sockets: Vec<Option<Waiting>>,
    timers: Vec<Timer>,
    next_timer: u64,
    /// Spawned and not yet taken over by `Runtime::block_on`.
    spawned: Vec<Task>,
}

impl Reactor {
    const EMPTY: Reactor = Reactor {
        poll: None,
        sockets: Vec::new(),
        timers: Vec::new(),
        next_timer: 0,
        spawned: Vec::new(),
    };
}

impl Default for Reactor {
    fn default() -> Reactor {
        Reactor::EMPTY
    }
}

#[derive(Default)]
struct Waiting {
    read: Option<Waker>,
    write: Option<Waker>,
}

struct Timer {
    id: u64,
    deadline: Instant,
    waker: Waker,
}

#[derive(Clone, Copy)]
enum Direction {
    Read,
    Write,
}

/// The token of the runtime's own `mio::Waker`; sockets take theirs from 0 up.
const ALARM: Token = Token(usize::MAX);

/// Rounds in a row with something woken, between two looks at epoll. A look costs a system
/// call (and often a futile read after it), and a lookup's busy stretches are shorter than
/// this: it only bounds how long a task that keeps waking itself can hide a ready socket.
const BUSY_ROUNDS: u32 = 16;

/// Runs on this thread what `Provider` hands hickory; dropping it closes every socket and
/// ends every task the lookup left behind.
pub struct Runtime {
    /// Spawned tasks, each with its "poll me again".
    tasks: Vec<(Task, Arc<Flag>)>,
    alarm: Arc<Alarm>,
    /// The state is the thread's: the runtime must not leave it.
    _this_thread: PhantomData<*const ()>,
}

impl Runtime {
    /// The thread's runtime, on an epoll of its own; one at a time.
    pub fn new() -> io::Result<Runtime> {
        Runtime::on(mio::Poll::new()?)
    }

    /// The thread's runtime on `poll`, an epoll with nothing registered that the caller
    /// lends (the relay's: a session needs only one) and takes back with `into_poll`.
    pub fn on(poll: mio::Poll) -> io::Result<Runtime> {
        with_reactor(|reactor| {
            if reactor.poll.is_some() {
                return Err(io::Error::other(
                    "a DNS runtime already runs on this thread",
                ));
            }
            let waker = mio::Waker::new(poll.registry(), ALARM)?;
            reactor.poll = Some(poll);
            Ok(Arc::new(Alarm {
                asleep: AtomicBool::new(false),
                waker: Mutex::new(Some(waker)),
            }))
        })
        .map(|alarm| Runtime {
            tasks: Vec::new(),
            alarm,
            _this_thread: PhantomData,
        })
    }

    /// Runs `future`, and every task spawned meanwhile, until `future` is done.
    pub fn block_on<F: Future>(&mut self, future: F) -> io::Result<F::Output> {
        let mut future = pin!(future);
        let main = Flag::raised(&self.alarm);
        let mut events = Events::with_capacity(16);
        let mut busy_rounds = 0;
        loop {
            if main.take() {
                let waker = Waker::from(main.clone());
                if let Poll::Ready(output) = future.as_mut().poll(&mut Context::from_waker(&waker))
                {
                    return Ok(output);
                }
            }
            self.run_tasks();
            busy_rounds = self.wait(&main, &mut events, busy_rounds)?;
        }
    }

    /// Takes over the tasks spawned since the last round and polls every task woken.
    fn run_tasks(&mut self) {
        let spawned = with_reactor(|reactor| std::mem::take(&mut reactor.spawned));
        let spawned = spawned
            .into_iter()
            .map(|task| (task, Flag::raised(&self.alarm)));
        self.tasks.extend(spawned);
        self.tasks.retain_mut(|(task, flag)| {
            if !flag.take() {
                return true;
            }
            let waker = Waker::from(flag.clone());
            let mut cx = Context::from_waker(&waker);
            task.as_mut().poll(&mut cx).is_pending()
        });
    }

    /// The end of every round (`busy_rounds` in a row had something woken before it): wakes
    /// whoever waits for a due timer, and for a ready socket if it sleeps in epoll or it is
    /// time for a look there (see the contract above). Returns the new `busy_rounds`.
    fn wait(&self, main: &Flag, events: &mut Events, busy_rounds: u32) -> io::Result<u32> {
        let busy = busy_rounds + 1;
        if self.anyone_woken(main) && busy % BUSY_ROUNDS != 0 {
            wake_timers(Instant::now());
            return Ok(busy);
        }
        // Said before the last look at the flags: a wake from another thread after that look
        // sees it and rings the alarm; one before it raised a flag that the look sees.
        self.alarm.asleep.store(true, Ordering::SeqCst);
        let woken = self.anyone_woken(main);
        let timeout = if woken {
            Some(Duration::ZERO)
        } else {
            next_deadline()
        };
        if timeout.is_none() && !anyone_waits_for_a_socket() {
            self.alarm.asleep.store(false, Ordering::SeqCst);
            // Nothing could ever wake the lookup: better an error than a hang.
            return Err(io::Error::other("the DNS lookup waits for nothing"));
        }
        // Borrowed while asleep: nothing else runs on this thread meanwhile.
        let polled = with_reactor(|reactor| match &mut reactor.poll {
            Some(poll) => poll.poll(events, timeout),
            None => Err(io::Error::other("no DNS runtime on this thread")),
        });
        self.alarm.asleep.store(false, Ordering::SeqCst);
        match polled {
            Ok(()) => {}
            // A signal: whatever was ready is still ready at the next round's look.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        wake_sockets(events);
        wake_timers(Instant::now());
        Ok(if woken { busy } else { 0 })
    }

    fn anyone_woken(&self, main: &Flag) -> bool {
        main.is_raised() || self.tasks.iter().any(|(_, flag)| flag.is_raised()) || has_spawned()
    }
}

impl Runtime {
    /// Ends the runtime as dropping it does, and gives back its epoll with nothing left
    /// registered: every socket of the lookup and the alarm's eventfd are closed.
    pub fn into_poll(mut self) -> io::Result<mio::Poll> {
        let mut left = self.end();
        let poll = left.poll.take();
        // Closes the sockets of tasks spawned but never run; every other socket closed with
        // its task in `end` (a socket kept past the runtime would stay in epoll, under a
        // token of the relay's: `Connecting::into_stream` takes its socket out).
        drop(left);
        poll.ok_or_else(|| io::Error::other("the runtime has no epoll"))
    }

    /// Closes what the runtime holds; returns the reactor's state, still to be dropped.
    fn end(&mut self) -> Reactor {
        // Tasks hold sockets and timers, whose drop looks at the reactor: not while it is
        // borrowed.
        self.tasks.clear();
        let left = with_reactor(std::mem::take);
        let alarm = self
            .alarm
            .waker
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        drop(alarm);
        left
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        drop(self.end());
    }
}

/// How a wake from another thread reaches a runtime asleep in epoll.
struct Alarm {
    /// The runtime is in (or about to enter) epoll_wait: a wake must ring.
    asleep: AtomicBool,
    /// Taken (and its eventfd closed) when the runtime is dropped: wakers outlive it in
    /// whatever state the lookup leaves behind, and must not hold a descriptor.
    waker: Mutex<Option<mio::Waker>>,
}

/// A task's (or the lookup's) "poll me again".
struct Flag {
    raised: AtomicBool,
    alarm: Arc<Alarm>,
}

impl Flag {
    fn raised(alarm: &Arc<Alarm>) -> Arc<Flag> {
        Arc::new(Flag {
            raised: AtomicBool::new(true),
            alarm: alarm.clone(),
        })
    }

    fn take(&self) -> bool {
        self.raised.swap(false, Ordering::SeqCst)
    }

    fn is_raised(&self) -> bool {
        self.raised.load(Ordering::SeqCst)
    }
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    /// Raises the flag, then rings only if the runtime sleeps: a wake on the runtime's own
    /// thread (the usual one) never finds it asleep and costs no system call. SeqCst pairs
    /// with `Runtime::wait`: either it sees the flag, or this sees it asleep.
    fn wake_by_ref(self: &Arc<Self>) {
        self.raised.store(true, Ordering::SeqCst);
        if self.alarm.asleep.load(Ordering::SeqCst) {
            let waker = self.alarm.waker.lock().unwrap_or_else(|e| e.into_inner());
            // Failure leaves the wake to the runtime's next event or deadline; the waker has
            // no way to report it.
            let _ = waker.as_ref().map(mio::Waker::wake);
        }
    }
}

fn anyone_waits_for_a_socket() -> bool {
    let waiting = |w: &Waiting| w.read.is_some() || w.write.is_some();
    with_reactor(|reactor| reactor.sockets.iter().flatten().any(waiting))
}

fn has_spawned() -> bool {
    with_reactor(|reactor| !reactor.spawned.is_empty())
}

fn next_deadline() -> Option<Duration> {
    let first = with_reactor(|reactor| reactor.timers.iter().map(|timer| timer.deadline).min())?;
    Some(first.saturating_duration_since(Instant::now()))
}

fn wake_sockets(events: &Events) {
    let mut woken = Vec::new();
    with_reactor(|reactor| {
        for event in events {
            let Some(Some(waiting)) = reactor.sockets.get_mut(event.token().0) else {
                continue;
            };
            // Errors and hang-ups are readiness too: the next call returns them.
            let broken = event.is_error() || event.is_read_closed() || event.is_write_closed();
            if event.is_readable() || broken {
                woken.extend(waiting.read.take());
            }
            if event.is_writable() || broken {
                woken.extend(waiting.write.take());
            }
        }
    });
    woken.into_iter().for_each(Waker::wake);
}

fn wake_timers(now: Instant) {
    let due: Vec<Timer> = with_reactor(|reactor| {
        let (due, later) = std::mem::take(&mut reactor.timers)
            .into_iter()
            .partition(|timer| timer.deadline <= now);
        reactor.timers = later;
        due
    });
    due.into_iter().for_each(|timer| timer.waker.wake());
}

/// A socket registered with the thread's runtime.
struct Registered<S> {
    socket: S,
    token: Slot,
}

/// A registered socket's token: free again when dropped.
struct Slot(Token);

impl<S: Source> Registered<S> {
    fn new(mut socket: S) -> io::Result<Registered<S>> {
        with_reactor(|reactor| {
            let free = reactor.sockets.iter().position(Option::is_none);
            let index = free.unwrap_or(reactor.sockets.len());
            let token = Token(index);
            let Some(poll) = &reactor.poll else {
                return Err(io::Error::other("no DNS runtime on this thread"));
            };
            let interest = Interest::READABLE | Interest::WRITABLE;
            poll.registry().register(&mut socket, token, interest)?;
            if index == reactor.sockets.len() {
                reactor.sockets.push(None);
            }
            reactor.sockets[index] = Some(Waiting::default());
            Ok(Registered {
                socket,
                token: Slot(token),
            })
        })
    }

    /// The socket, out of epoll and of the reactor's books.
    fn into_inner(mut self) -> io::Result<S> {
        with_reactor(|reactor| match &reactor.poll {
            Some(poll) => poll.registry().deregister(&mut self.socket),
            None => Ok(()),
        })?;
        Ok(self.socket)
    }
}

impl<S> Registered<S> {
    /// Tries `op`; if it would block, waits for the socket to be ready in `direction`.
    fn poll_io<T>(
        &self,
        cx: &mut Context<'_>,
        direction: Direction,
        mut op: impl FnMut(&S) -> io::Result<T>,
    ) -> Poll<io::Result<T>> {
        loop {
            match op(&self.socket) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return match self.wait(direction, cx.waker()) {
                        Ok(()) => Poll::Pending,
                        Err(e) => Poll::Ready(Err(e)),
                    };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return Poll::Ready(result),
            }
        }
    }

    fn wait(&self, direction: Direction, waker: &Waker) -> io::Result<()> {
        // Cloned before the borrow: cloning a waker may run code that looks at the reactor.
        let waker = waker.clone();
        let replaced = with_reactor(|reactor| {
            let Some(Some(waiting)) = reactor.sockets.get_mut(self.token.0.0) else {
                return Err(io::Error::other("a socket outside the DNS runtime"));
            };
            let slot = match direction {
                Direction::Read => &mut waiting.read,
                Direction::Write => &mut waiting.write,
            };
            Ok(slot.replace(waker))
        })?;
        // Dropped only now: dropping a waker may run code that looks at the reactor.
        drop(replaced);
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // Closing the socket (or `into_inner`) takes it out of epoll; its token becomes free.
        let freed = with_reactor_if_free(|reactor| reactor.sockets.get_mut(self.0.0)?.take());
        drop(freed);
    }
}

/// Sleeps until a deadline, in the thread's runtime.
pub struct Sleep {
    /// None: too far away to be represented, so never.
    deadline: Option<Instant>,
    /// The timer's id once it has been polled.
    id: Option<u64>,
}

impl Sleep {
    fn new(duration: Duration) -> Sleep {
        Sleep {
            deadline: Instant::now().checked_add(duration),
            id: None,
        }
    }

    pub fn until(deadline: Instant) -> Sleep {
        Sleep {
            deadline: Some(deadline),
            id: None,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(deadline) = self.deadline else {
            return Poll::Pending;
        };
        if Instant::now() >= deadline {
            return Poll::Ready(());
        }
        let waker = cx.waker().clone();
        let (id, replaced) = with_reactor(|reactor| {
            if let Some(timer) = self
                .id
                .and_then(|id| reactor.timers.iter_mut().find(|t| t.id == id))
            {
                return (timer.id, Some(std::mem::replace(&mut timer.waker, waker)));
            }
            reactor.next_timer += 1;
            let id = reactor.next_timer;
            reactor.timers.push(Timer {
                id,
                deadline,
                waker,
            });
            (id, None)
        });
        // Dropped only now: dropping a waker may run code that looks at the reactor.
        drop(replaced);
        self.id = Some(id);
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        let Some(id) = self.id else { return };
        let removed = with_reactor_if_free(|reactor| {
            let index = reactor.timers.iter().position(|timer| timer.id == id)?;
            Some(reactor.timers.swap_remove(index))
        });
        drop(removed);
    }
}

/// `future`'s output, or None if `duration` passes first.
pub async fn timeout<F: Future>(duration: Duration, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut sleep = Sleep::new(duration);
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        Pin::new(&mut sleep).poll(cx).map(|()| None)
    })
    .await
}

/// What hickory is given to reach its name servers: sockets, timers and tasks of the
/// thread's `Runtime`.
#[derive(Clone, Copy, Default)]
pub struct Provider;

impl RuntimeProvider for Provider {
    type Handle = Provider;
    type Timer = Clock;
    type Udp = Udp;
    type Tcp = Tcp;

    fn create_handle(&self) -> Provider {
        Provider
    }

    fn connect_tcp(
        &self,
        server: SocketAddr,
        bind: Option<SocketAddr>,
        wait_for: Option<Duration>,
    ) -> Pin<Box<dyn Send + Future<Output = io::Result<Tcp>>>> {
        Box::pin(async move {
            if bind.is_some() {
                // dynproxy never asks hickory for a source address.
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "a DNS connection from a chosen address",
                ));
            }
            let attempt = Connecting::start(server)?;
            let connected = poll_fn(|cx| attempt.poll_connected(cx));
            match timeout(wait_for.unwrap_or(CONNECT_TIMEOUT), connected).await {
                // hickory writes a query as its length and then the message: without
                // TCP_NODELAY the second part could wait for the server's delayed ACK.
                Some(result) => result
                    .and_then(|()| attempt.0.socket.set_nodelay(true))
                    .map(|()| Tcp(attempt.0)),
                None => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "TCP connect timed out",
                )),
            }
        })
    }

    fn bind_udp(
        &self,
        local: SocketAddr,
        _server: SocketAddr,
    ) -> Pin<Box<dyn Send + Future<Output = io::Result<Udp>>>> {
        Box::pin(async move { Ok(Udp(Registered::new(UdpSocket::bind(local)?)?)) })
    }
}

/// A TCP connection being set up, its socket in the thread's runtime.
pub struct Connecting(Registered<TcpStream>);

impl Connecting {
    /// Starts connecting (a non-blocking connect(2)); errors are those of socket(2) and
    /// connect(2), such as no route or no descriptor left.
    pub fn start(address: SocketAddr) -> io::Result<Connecting> {
        Registered::new(TcpStream::connect(address)?).map(Connecting)
    }

    /// Ready once the connection is set up or has failed, and how.
    pub fn poll_connected(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_io(cx, Direction::Write, connect_result)
    }

    /// The socket, out of the runtime: it outlives it.
    pub fn into_stream(self) -> io::Result<TcpStream> {
        self.0.into_inner()
    }
}

/// A non-blocking connect is over when the socket turns writable; SO_ERROR says how, and a
/// socket not yet connected after all was a spurious event (mio's TcpStream::connect).
fn connect_result(stream: &TcpStream) -> io::Result<()> {
    if let Some(error) = stream.take_error()? {
        return Err(error);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Err(io::ErrorKind::WouldBlock.into()),
        Err(e) => Err(e),
    }
}

impl Spawn for Provider {
    fn spawn_bg(&mut self, future: impl Future<Output = ()> + Send + 'static) {
        with_reactor(|reactor| reactor.spawned.push(Box::pin(future)));
    }
}

/// hickory's timers, from the thread's runtime.
pub struct Clock;

#[async_trait::async_trait]
impl Time for Clock {
    async fn delay_for(duration: Duration) {
        Sleep::new(duration).await;
    }

    async fn timeout<F: 'static + Future + Send>(
        duration: Duration,
        future: F,
    ) -> io::Result<F::Output> {
        timeout(duration, future)
            .await
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "future timed out"))
    }
}

pub struct Udp(Registered<UdpSocket>);

impl DnsUdpSocket for Udp {
    type Time = Clock;

    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        self.0
            .poll_io(cx, Direction::Read, |socket| socket.recv_from(buf))
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.0
            .poll_io(cx, Direction::Write, |socket| socket.send_to(buf, target))
    }
}

pub struct Tcp(Registered<TcpStream>);

impl DnsTcpStream for Tcp {
    type Time = Clock;
}

impl futures_io::AsyncRead for Tcp {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.0
            .poll_io(cx, Direction::Read, |mut stream| stream.read(buf))
    }
}

impl futures_io::AsyncWrite for Tcp {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0
            .poll_io(cx, Direction::Write, |mut stream| stream.write(buf))
    }

    /// hickory hands the length prefix and the message together: one segment, not two.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.0.poll_io(cx, Direction::Write, |mut stream| {
            stream.write_vectored(bufs)
        })
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.0.socket.shutdown(Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    fn loopback() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    /// Runs `test` on a thread of its own (so with a runtime of its own) and fails if it
    /// takes more than 30 s: a lost wake-up must fail the test, not hang it.
    fn bounded<T: Send + 'static>(test: impl FnOnce() -> T + Send + 'static) -> T {
        let (done, result) = mpsc::channel();
        std::thread::spawn(move || done.send(test()));
        result
            .recv_timeout(Duration::from_secs(30))
            .expect("the runtime hung (or the test panicked)")
    }

    /// `future`'s output if it is done within 10 s. Unlike `timeout`, the deadline is looked
    /// at first: a future that could finish only because it was polled again at the deadline
    /// (its wake-up lost) counts as too late.
    async fn woken_in_time<F: Future>(future: F) -> Option<F::Output> {
        let mut future = pin!(future);
        let mut deadline = Sleep::new(Duration::from_secs(10));
        poll_fn(|cx| {
            if Pin::new(&mut deadline).poll(cx).is_ready() {
                return Poll::Ready(None);
            }
            future.as_mut().poll(cx).map(Some)
        })
        .await
    }

    /// Spawns a task that wakes itself on every poll, as a busy task would, and records when
    /// it was polled.
    fn spawn_busy_task() -> Arc<std::sync::Mutex<Vec<Instant>>> {
        let polls = Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = polls.clone();
        Provider.spawn_bg(poll_fn(move |cx| {
            recorded.lock().unwrap().push(Instant::now());
            cx.waker().wake_by_ref();
            Poll::<()>::Pending
        }));
        polls
    }

    /// How many times the busy task was polled at or after `instant`.
    fn polls_since(polls: &std::sync::Mutex<Vec<Instant>>, instant: Instant) -> usize {
        polls
            .lock()
            .unwrap()
            .iter()
            .filter(|&&t| t >= instant)
            .count()
    }

    #[test]
    fn a_due_timer_fires_while_another_task_keeps_waking_itself() {
        let polls_after_the_deadline = bounded(|| {
            let mut runtime = Runtime::new().unwrap();
            let polls = spawn_busy_task();
            let mut sleep = Sleep::new(Duration::from_millis(20));
            let deadline = sleep.deadline.unwrap();
            runtime
                .block_on(poll_fn(|cx| Pin::new(&mut sleep).poll(cx)))
                .unwrap();
            polls_since(&polls, deadline)
        });
        // The fairness bound: a timer is looked at after every round of polls, so the busy
        // task runs at most once between the deadline and the sleeper's wake-up.
        assert!(polls_after_the_deadline <= 1, "{polls_after_the_deadline}");
    }

    #[test]
    fn a_ready_socket_is_noticed_while_another_task_keeps_waking_itself() {
        let (mut sender, receiver) = mio::net::UnixStream::pair().unwrap();
        let sent = Arc::new(std::sync::Mutex::new(None));
        let sent_at = sent.clone();
        let (polls, sent_at) = bounded(move || {
            let mut runtime = Runtime::new().unwrap();
            let polls = spawn_busy_task();
            let receiver = Registered::new(receiver).unwrap();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(20));
                sender.write_all(b"x").unwrap();
                // A unix socket's bytes are in the receiver's queue (and epoll told) by now.
                *sent_at.lock().unwrap() = Some(Instant::now());
                sender
            });
            let mut byte = [0u8];
            let read =
                poll_fn(|cx| receiver.poll_io(cx, Direction::Read, |mut s| s.read(&mut byte)));
            assert_eq!(runtime.block_on(read).unwrap().unwrap(), 1);
            (polls, sent)
        });
        let sent_at = sent_at.lock().unwrap().expect("the byte was sent");
        let busy_polls = polls_since(&polls, sent_at);
        assert!(busy_polls <= BUSY_ROUNDS as usize, "{busy_polls}");
    }

    #[test]
    fn a_wake_from_another_thread_interrupts_the_poll() {
        let woken = bounded(|| {
            let mut runtime = Runtime::new().unwrap();
            let done = Arc::new(AtomicBool::new(false));
            let mut handed_over = false;
            let woken_by_the_thread = poll_fn(|cx| {
                if done.load(Ordering::SeqCst) {
                    return Poll::Ready(());
                }
                if !handed_over {
                    handed_over = true;
                    let (waker, done) = (cx.waker().clone(), done.clone());
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(20));
                        done.store(true, Ordering::SeqCst);
                        waker.wake();
                    });
                }
                Poll::Pending
            });
            // Asleep in epoll until the 10 s deadline unless the thread's wake interrupts it.
            runtime
                .block_on(woken_in_time(woken_by_the_thread))
                .unwrap()
        });
        assert_eq!(woken, Some(()), "the wake was noticed only at the deadline");
    }

    /// A waker that records whether it was ever cloned, woken or dropped while the reactor
    /// was borrowed (code run then could not look at the reactor), and passes each wake on.
    mod inspecting {
        use super::*;
        use std::task::{RawWaker, RawWakerVTable};

        pub struct Inspector {
            pub inner: Waker,
            pub in_borrow: AtomicBool,
        }

        fn check(inspector: &Inspector) {
            let free = REACTOR.with(|reactor| reactor.try_borrow_mut().is_ok());
            if !free {
                inspector.in_borrow.store(true, Ordering::SeqCst);
            }
        }

        static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake_by_ref, drop);

        fn raw(inspector: Arc<Inspector>) -> RawWaker {
            RawWaker::new(Arc::into_raw(inspector).cast(), &VTABLE)
        }

        /// # Safety
        /// `data` comes from `raw`: an `Arc<Inspector>` this waker owns one count of.
        unsafe fn inspector(data: *const ()) -> Arc<Inspector> {
            // SAFETY: as the function's contract says.
            unsafe { Arc::from_raw(data.cast()) }
        }

        unsafe fn clone(data: *const ()) -> RawWaker {
            // SAFETY: the vtable's data is always from `raw`; the count is kept (forget).
            let inspector = std::mem::ManuallyDrop::new(unsafe { inspector(data) });
            check(&inspector);
            raw(Arc::clone(&inspector))
        }

        unsafe fn wake(data: *const ()) {
            // SAFETY: as in `clone`; waking consumes this waker's count.
            let inspector = unsafe { inspector(data) };
            check(&inspector);
            inspector.inner.wake_by_ref();
        }

        unsafe fn wake_by_ref(data: *const ()) {
            // SAFETY: as in `clone`.
            let inspector = std::mem::ManuallyDrop::new(unsafe { inspector(data) });
            check(&inspector);
            inspector.inner.wake_by_ref();
        }

        unsafe fn drop(data: *const ()) {
            // SAFETY: as in `clone`; dropping consumes this waker's count.
            let inspector = unsafe { inspector(data) };
            check(&inspector);
        }

        pub fn waker(inspector: &Arc<Inspector>) -> Waker {
            // SAFETY: the vtable's functions keep RawWaker's contract: each owns one count of
            // the Arc, clone adds one, wake and drop give theirs back.
            unsafe { Waker::from_raw(raw(inspector.clone())) }
        }
    }

    #[test]
    fn no_waker_is_cloned_woken_or_dropped_while_the_reactor_is_borrowed() {
        let in_borrow = bounded(|| {
            let mut runtime = Runtime::new().unwrap();
            let (mut sender, receiver) = mio::net::UnixStream::pair().unwrap();
            let receiver = Registered::new(receiver).unwrap();
            let mut sleep = Sleep::new(Duration::from_millis(10));
            let mut long_sleep = Sleep::new(Duration::from_secs(60));
            let mut inspector = None;
            let mut got = 0;
            let mut byte = [0u8];
            runtime
                .block_on(poll_fn(|cx| {
                    let inspector = inspector.get_or_insert_with(|| {
                        Arc::new(inspecting::Inspector {
                            inner: cx.waker().clone(),
                            in_borrow: AtomicBool::new(false),
                        })
                    });
                    let waker = inspecting::waker(inspector);
                    let mut cx = Context::from_waker(&waker);
                    // Each is waited for twice: the second wait replaces the first waker.
                    let _ = Pin::new(&mut long_sleep).poll(&mut cx);
                    if Pin::new(&mut sleep).poll(&mut cx).is_pending() {
                        return Poll::Pending;
                    }
                    match receiver.poll_io(&mut cx, Direction::Read, |mut s| s.read(&mut byte)) {
                        Poll::Ready(result) => got += result.unwrap(),
                        Poll::Pending if got == 0 => sender.write_all(b"x").unwrap(),
                        Poll::Pending => {}
                    }
                    if got == 0 {
                        Poll::Pending
                    } else {
                        Poll::Ready(())
                    }
                }))
                .unwrap();
            drop(long_sleep);
            drop(receiver);
            inspector.unwrap().in_borrow.load(Ordering::SeqCst)
        });
        assert!(
            !in_borrow,
            "a waker ran code while the reactor was borrowed"
        );
    }

    #[test]
    fn a_timeout_ends_a_future_that_never_finishes() {
        let (result, waited) = bounded(|| {
            let mut runtime = Runtime::new().unwrap();
            let started = Instant::now();
            let never = std::future::pending::<()>();
            let result = runtime.block_on(timeout(Duration::from_millis(20), never));
            (result.unwrap(), started.elapsed())
        });
        assert_eq!(result, None);
        assert!(waited >= Duration::from_millis(20));
    }

    #[test]
    fn a_datagram_sent_later_by_a_spawned_task_wakes_the_receiver() {
        let received = bounded(|| {
            let mut runtime = Runtime::new().unwrap();
            runtime.block_on(async {
                let receiver = Provider.bind_udp(loopback(), loopback()).await.unwrap();
                let sender = Provider.bind_udp(loopback(), loopback()).await.unwrap();
                let to = receiver.0.socket.local_addr().unwrap();
                // The receiver waits first: only the reactor can tell it the datagram came.
                Provider.spawn_bg(async move {
                    Clock::delay_for(Duration::from_millis(10)).await;
                    sender.send_to(b"answer", to).await.unwrap();
                });
                let mut buf = [0u8; 16];
                let (n, _) = woken_in_time(receiver.recv_from(&mut buf))
                    .await
                    .expect("the datagram did not wake the receiver")
                    .unwrap();
                buf[..n].to_vec()
            })
        });
        assert_eq!(received.unwrap(), b"answer");
    }

    #[test]
    fn a_tcp_connection_carries_bytes_both_ways() {
        use futures_io::{AsyncRead, AsyncWrite};
        let listener = std::net::TcpListener::bind(loopback()).unwrap();
        let server = listener.local_addr().unwrap();
        let peer = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut question = [0u8; 8];
            stream.read_exact(&mut question).unwrap();
            // After a while: the reply must wake a reader that is already waiting.
            std::thread::sleep(Duration::from_millis(10));
            stream.write_all(b"reply").unwrap();
            question
        });
        let reply = bounded(move || {
            let mut runtime = Runtime::new().unwrap();
            runtime.block_on(async {
                let wait = Some(Duration::from_secs(10));
                let mut tcp = Provider.connect_tcp(server, None, wait).await.unwrap();
                let written = poll_fn(|cx| Pin::new(&mut tcp).poll_write(cx, b"question")).await;
                assert_eq!(written.unwrap(), 8);
                let mut buf = [0u8; 16];
                let read = poll_fn(|cx| Pin::new(&mut tcp).poll_read(cx, &mut buf));
                let n = woken_in_time(read)
                    .await
                    .expect("the reply did not wake the reader");
                buf[..n.unwrap()].to_vec()
            })
        });
        assert_eq!(peer.join().unwrap(), *b"question");
        assert_eq!(reply.unwrap(), b"reply");
    }

    #[test]
    fn a_refused_tcp_connection_is_an_error() {
        // Bound and never listening: the port refuses, and nobody else can take it meanwhile.
        let refusing =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        refusing.bind(&loopback().into()).unwrap();
        let server = refusing.local_addr().unwrap().as_socket().unwrap();
        let result = bounded(move || {
            let mut runtime = Runtime::new().unwrap();
            let wait = Some(Duration::from_secs(10));
            let connect = Provider.connect_tcp(server, None, wait);
            runtime.block_on(connect).unwrap().map(drop)
        });
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn a_lent_epoll_comes_back_empty_and_a_connection_taken_out_stays_open() {
        // Two connections made in the runtime: one dropped, one taken out with
        // `into_stream`. Bytes then arriving on both must raise no event in the epoll given
        // back — the relay reuses it, with tokens of its own — and the one taken out still
        // carries them.
        let listener = std::net::TcpListener::bind(loopback()).unwrap();
        let server = listener.local_addr().unwrap();
        let (taken, events_after) = bounded(move || {
            let mut runtime = Runtime::on(mio::Poll::new().unwrap()).unwrap();
            let taken = runtime
                .block_on(async {
                    let first = Connecting::start(server).unwrap();
                    let second = Connecting::start(server).unwrap();
                    poll_fn(|cx| first.poll_connected(cx)).await.unwrap();
                    poll_fn(|cx| second.poll_connected(cx)).await.unwrap();
                    first.into_stream().unwrap()
                })
                .unwrap();
            let mut poll = runtime.into_poll().unwrap();
            for _ in 0..2 {
                let _ = listener.accept().unwrap().0.write_all(b"still open");
            }
            let mut events = Events::with_capacity(4);
            poll.poll(&mut events, Some(Duration::from_millis(200)))
                .unwrap();
            (taken, events.iter().count())
        });
        assert_eq!(events_after, 0, "events from the runtime's sockets");
        let mut taken = std::net::TcpStream::from(std::os::fd::OwnedFd::from(taken));
        taken.set_nonblocking(false).unwrap();
        let mut got = [0u8; 10];
        taken.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"still open");
    }

    #[test]
    fn a_lookup_that_waits_for_nothing_is_an_error_not_a_hang() {
        let result = bounded(|| {
            let mut runtime = Runtime::new().unwrap();
            runtime
                .block_on(std::future::pending::<()>())
                .map_err(|e| e.to_string())
        });
        assert_eq!(result, Err("the DNS lookup waits for nothing".to_string()));
    }

    #[test]
    fn a_second_runtime_on_the_same_thread_is_refused() {
        let (second, after_the_first) = bounded(|| {
            let first = Runtime::new().unwrap();
            let second = Runtime::new().map(drop).map_err(|e| e.to_string());
            drop(first);
            (second, Runtime::new().map(drop).is_ok())
        });
        assert_eq!(
            second,
            Err("a DNS runtime already runs on this thread".to_string())
        );
        assert!(after_the_first);
    }

    #[test]
    fn dropping_the_runtime_ends_the_tasks_it_still_holds() {
        struct OnDrop(Arc<AtomicBool>);
        impl Drop for OnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::SeqCst);
            }
        }
        let (after_block_on, after_drop) = bounded(|| {
            let ended = Arc::new(AtomicBool::new(false));
            let guard = OnDrop(ended.clone());
            let mut runtime = Runtime::new().unwrap();
            let lookup = async move {
                Provider.spawn_bg(async move {
                    let _guard = guard;
                    std::future::pending::<()>().await;
                });
                // Long enough for the task to have started.
                Clock::delay_for(Duration::from_millis(5)).await;
            };
            runtime.block_on(lookup).unwrap();
            let after_block_on = ended.load(Ordering::SeqCst);
            drop(runtime);
            (after_block_on, ended.load(Ordering::SeqCst))
        });
        assert!(!after_block_on);
        assert!(after_drop);
    }
}
