//! dynproxy: one process per connection. The session is a pipeline, and so is this file:
//! where the client is → the command line → the sandbox → the target → resolve → the address
//! policy → connect → PROXY header → relay → the session line → the exit status. Each stage
//! is a module of the library.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::unreachable,
        clippy::todo
    )
)]

use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::SocketAddr as UnixAddr;
use std::process::ExitCode;
use std::time::Instant;

use dynproxy::cli::{self, Args, Parsed};
use dynproxy::client::{Client, Nonblocking};
use dynproxy::connect::{self, Backend};
use dynproxy::error::Error;
use dynproxy::log::{Ending, Log, LogMode, Summary};
use dynproxy::policy::Policy;
use dynproxy::relay::{Relay, Totals, Waiter};
use dynproxy::resolve::{self, Family};
use dynproxy::sandbox::Unix;
use dynproxy::target::Target;
use dynproxy::{proxy_header, runtime, sandbox, srv, sys};

/// A session's start-up allocations cost an add each, not a trip through musl's mmap/munmap.
#[global_allocator]
static ALLOCATOR: dynproxy::alloc::Arena = dynproxy::alloc::Arena::new();

/// Run by the C library before Rust's runtime, which would hide a closed fd 0 or 1 behind
/// /dev/null: the client's bytes must not vanish there behind a success (src/client.rs).
// SAFETY: .init_array holds pointers to functions taking nothing, called once at start;
// this one only polls fds 0-2 without waiting and stores into an atomic.
#[used]
#[unsafe(link_section = ".init_array")]
static NOTE_CLOSED_STDIO: extern "C" fn() = sys::note_closed_stdio;

fn main() -> ExitCode {
    let started = Instant::now();
    // The client first: until we know whether fd 2 is the client, nothing may be logged.
    let client = match Client::from_environment() {
        Ok(client) => client,
        Err(error) => return refuse(&error),
    };
    if client.stderr_is_client {
        // Our log never writes there then, but Rust's panic and out-of-memory handlers do.
        let _ = sys::point_at_dev_null(&[2]);
    }
    let args = match cli::parse() {
        Parsed::Run(args) => args,
        Parsed::Print(text) => {
            // Not print!: a closed stdout (`dynproxy --help | head -1`) must not panic.
            let _ = std::io::stdout().write_all(text.as_bytes());
            return ExitCode::SUCCESS;
        }
        Parsed::Usage(message) => {
            let mut log = Log::new(LogMode::Auto, false, client.stderr, client.stderr_is_client);
            log.error(&message);
            return Error::Usage(message).exit_code();
        }
    };
    let mut log = Log::new(
        args.log,
        args.verbose,
        client.stderr,
        client.stderr_is_client,
    );
    // Reopening the client's pipes or terminal privately opens files: before the sandbox.
    let stream = client.nonblocking();
    // Read now: the sandbox leaves the session no file to open.
    let system = match args.target {
        Target::Name { .. } | Target::Srv(_) => resolve::System::read(),
        _ => resolve::System::default(),
    };
    confine(&args, &mut log);
    let (ending, totals, backend) = session(&args, &system, &client, &stream, &mut log);
    let status = ending.exit_code();
    let signal = if let Ending::Signal(signal) = ending {
        Some(signal)
    } else {
        None
    };
    log.session(&Summary {
        client: client.describe(),
        target: args.target.to_string(),
        backend,
        to_backend: totals.to_backend,
        to_client: totals.to_client,
        duration: started.elapsed(),
        ending,
    });
    if let Some(signal) = signal {
        sys::die_by_signal(signal);
    }
    status
}

/// The sandbox (src/sandbox.rs), sized to what the rest of this session needs: the ports of
/// resolving a name, the backend's port, or its unix socket.
fn confine(args: &Args, log: &mut Log) {
    let mut dns_ports: Vec<u16> = args.nameservers.iter().map(|a| a.port()).collect();
    if dns_ports.is_empty() {
        dns_ports.push(53); // resolv.conf's servers
    }
    let (tcp_ports, unix) = match &args.target {
        Target::Name { port, .. } => {
            dns_ports.push(*port);
            (Some(dns_ports), Unix::No)
        }
        // The backends' ports are DNS's to say.
        Target::Srv(_) => (None, Unix::No),
        Target::Addr(address) => (Some(vec![address.port()]), Unix::No),
        Target::Path(_) => (Some(vec![]), Unix::Path),
        Target::Abstract(_) => (Some(vec![]), Unix::Abstract),
    };
    let needs = sandbox::Needs {
        tcp_ports: tcp_ports.as_deref(),
        unix,
    };
    for note in sandbox::restrict(&needs) {
        log.step(format_args!("sandbox: {note}"));
    }
}

/// Connects and relays; returns how it ended, the byte counts and the backend reached.
fn session(
    args: &Args,
    system: &resolve::System,
    client: &Client,
    stream: &Nonblocking,
    log: &mut Log,
) -> (Ending, Totals, Option<String>) {
    let waiter = match Waiter::new() {
        Ok(waiter) => waiter,
        Err(error) => return (Ending::Failed(error), Totals::default(), None),
    };
    let (backend, waiter) = match connect_backend(args, system, waiter, log) {
        Ok(connected) => connected,
        Err(error) => return (Ending::Failed(error), Totals::default(), None),
    };
    let preface = args
        .proxy_protocol
        .map(|version| proxy_header::encode(version, client.addresses()));
    if client.remote.is_some() {
        // Small writes from the client must not wait on Nagle twice (once here).
        let _ = sys::set_nodelay(client.input.fd);
    }
    keep_alive(args, client, &backend, log);
    let relay = Relay {
        waiter,
        client: stream,
        backend: &backend.fd,
        preface,
        idle_timeout: args.exit_idle_time,
    };
    let (ending, totals) = relay.run(log);
    (ending, totals, Some(backend.address))
}

/// The addresses of `found` that `policy` lets a name reach (src/policy.rs), and those still
/// to come, checked the same way when they come. When every address known is refused and
/// another answer is still on its way, that answer decides; when all are refused: 77.
async fn permitted(
    policy: &Policy,
    host: &str,
    found: resolve::Found,
    log: &mut Log,
) -> Result<(Vec<SocketAddr>, Option<resolve::Later>), Error> {
    let (mut addresses, mut refusals) = screen(policy, found.addresses);
    let mut later = found.later;
    if addresses.is_empty() {
        if let Some(pending) = later.take() {
            match pending.await {
                Ok(more) => {
                    let (kept, refused) = screen(policy, more);
                    addresses = kept;
                    refusals.extend(refused);
                }
                Err(why) => refusals.push(format!("no other address ({why})")),
            }
        }
    }
    for why in &refusals {
        log.step(format_args!("{why}"));
    }
    if addresses.is_empty() {
        return Err(Error::Refused(format!(
            "{host}: every address refused: {}",
            refusals.join("; ")
        )));
    }
    let later = later.map(|pending| {
        let policy = policy.clone();
        let screened: resolve::Later = Box::pin(async move {
            let (kept, refused) = screen(&policy, pending.await?);
            if kept.is_empty() && !refused.is_empty() {
                return Err(refused.join("; "));
            }
            Ok(kept)
        });
        screened
    });
    Ok((addresses, later))
}

/// `addresses` parted by `policy` for a name: those it may reach, and why each other is not.
fn screen(policy: &Policy, addresses: Vec<SocketAddr>) -> (Vec<SocketAddr>, Vec<String>) {
    let mut refused = Vec::new();
    let kept = addresses
        .into_iter()
        .filter(|a| match policy.refuses(a.ip(), true) {
            Some(why) => {
                refused.push(why);
                false
            }
            None => true,
        })
        .collect();
    (kept, refused)
}

/// Keepalive and the user timeout (`--keepalive`) on each TCP side: a peer that vanished
/// without a reset would otherwise hold the session for ever.
fn keep_alive(args: &Args, client: &Client, backend: &Backend, log: &mut Log) {
    let Some(probes) = args.keepalive.0 else {
        return;
    };
    let backend_is_tcp = !matches!(args.target, Target::Path(_) | Target::Abstract(_));
    for (side, fd, tcp) in [
        ("backend", backend.fd.as_raw_fd(), backend_is_tcp),
        ("client", client.input.fd, client.remote.is_some()),
    ] {
        if !tcp {
            continue;
        }
        let (idle, interval, count) = (probes.idle, probes.interval, probes.count);
        if let Err(e) = sys::set_keepalive(fd, idle, interval, count, probes.bound()) {
            log.step(format_args!("no keepalive on the {side}: {e}"));
        }
    }
}

/// The backend, connected; the waiter comes back from lending its epoll to the runtime.
fn connect_backend(
    args: &Args,
    system: &resolve::System,
    waiter: Waiter,
    log: &mut Log,
) -> Result<(Backend, Waiter), Error> {
    let family = match (args.ipv4_only, args.ipv6_only) {
        (true, _) => Family::V4,
        (_, true) => Family::V6,
        _ => Family::Any,
    };
    let timeout = args.connect_timeout;
    let policy = Policy {
        allow: args.allow.clone(),
        deny: args.deny.clone(),
    };
    let options = resolve::Options {
        system,
        nameservers: &args.nameservers,
        timeout: args.resolve_timeout,
        family,
    };
    let unix = match &args.target {
        Target::Addr(address) if !family.allows(address.ip()) => {
            return Err(Error::Usage(format!(
                "{address} is not of the address family that -4/-6 asks for"
            )));
        }
        Target::Addr(address) => {
            if let Some(why) = policy.refuses(address.ip(), false) {
                return Err(Error::Refused(why));
            }
            return waiter.run_first(connect::connect_tcp(&[*address], None, timeout, log));
        }
        Target::Name { host, port } => {
            return waiter.run_first(async {
                let found = resolve::resolve(host, *port, &options, log).await?;
                let (addresses, later) = permitted(&policy, host, found, log).await?;
                connect::connect_tcp(&addresses, later, timeout, log).await
            });
        }
        Target::Srv(name) => {
            return waiter.run_first(async {
                let hosts = srv::resolve(name, &options, log).await?;
                connect_srv(hosts, &options, &policy, timeout, log).await
            });
        }
        Target::Path(path) => UnixAddr::from_pathname(path),
        Target::Abstract(name) => UnixAddr::from_abstract_name(name),
    };
    let name = args.target.to_string();
    let address = unix.map_err(|e| Error::Usage(format!("{name}: {e}")))?;
    let backend = connect::connect_unix(&address, &name, timeout, log)?;
    Ok((backend, waiter))
}

/// The most hosts of one SRV name a session tries: each may cost a lookup, and a reply
/// may list thousands.
const MAX_SRV_HOSTS: usize = 16;

/// The first of an SRV name's hosts (in RFC 2782's order) that connects, each looked up and
/// screened as a HOST:PORT target would be. They share one connect timeout, each taking an
/// equal part of what is left, so that a host that never answers leaves time for those
/// after it. `backend` names the host and port reached. When none connects: 77 if every
/// address of every host was refused by the policy, 75 if DNS failed for every host, 69
/// otherwise.
async fn connect_srv(
    hosts: Vec<srv::Host>,
    options: &resolve::Options<'_>,
    policy: &Policy,
    timeout: std::time::Duration,
    log: &mut Log,
) -> Result<Backend, Error> {
    let deadline = Instant::now() + timeout;
    if hosts.len() > MAX_SRV_HOSTS {
        log.step(format_args!(
            "trying the first {MAX_SRV_HOSTS} of {} hosts",
            hosts.len()
        ));
    }
    let count = hosts.len().min(MAX_SRV_HOSTS);
    let mut failures = Vec::new();
    for (tried, host) in hosts.into_iter().take(count).enumerate() {
        let label = host.label();
        let share = deadline.saturating_duration_since(Instant::now()) / (count - tried) as u32;
        match connect_host(&host, share, options, policy, log).await {
            Ok(mut backend) => {
                backend.address = label;
                return Ok(backend);
            }
            Err(error) => {
                log.step(format_args!("{label}: {error}"));
                failures.push(error);
            }
        }
    }
    let all = |kind: fn(&Error) -> bool| !failures.is_empty() && failures.iter().all(kind);
    let why = failures
        .iter()
        .map(Error::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    Err(if all(|e| matches!(e, Error::Refused(_))) {
        Error::Refused(why)
    } else if all(|e| matches!(e, Error::DnsTemporary(_))) {
        Error::DnsTemporary(why)
    } else {
        Error::Unavailable(why)
    })
}

/// One SRV host within `time`: its addresses (the additional section's, or looked up),
/// screened, then connected.
async fn connect_host(
    host: &srv::Host,
    time: std::time::Duration,
    options: &resolve::Options<'_>,
    policy: &Policy,
    log: &mut Log,
) -> Result<Backend, Error> {
    let started = Instant::now();
    let found = if host.glue.is_empty() {
        runtime::timeout(time, resolve::resolve(&host.name, host.port, options, log))
            .await
            .ok_or_else(|| Error::DnsTemporary(format!("{}: no answer in time", host.name)))??
    } else {
        let glue = host.glue.iter().map(|ip| SocketAddr::new(*ip, host.port));
        resolve::Found {
            addresses: glue.collect(),
            later: None,
        }
    };
    let (addresses, later) = permitted(policy, &host.name, found, log).await?;
    let left = time.saturating_sub(started.elapsed());
    connect::connect_tcp(&addresses, later, left, log).await
}

/// The client could not even be found: say so wherever is safe, and exit.
fn refuse(error: &Error) -> ExitCode {
    if let Ok(stderr) = sys::fstat(2) {
        // fd 2 may be the client's socket: `Auto` writes to no socket but the journal's.
        Log::new(LogMode::Auto, false, stderr, false).error(&error.to_string());
    }
    error.exit_code()
}
