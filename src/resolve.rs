//! Resolve: the backend's addresses, looked up afresh for this session: /etc/hosts first
//! (hosts.rs), then DNS with hickory-resolver, from /etc/resolv.conf (servers, search, ndots,
//! timeout, attempts).
//!
//! hickory has no synchronous API, so a small runtime of dynproxy's own (runtime.rs) lives
//! for the lookup only and is gone before the relay starts: no threads, no timers left behind.

use std::fmt;
use std::fs;
use std::future::{Future, poll_fn};
use std::net::{IpAddr, SocketAddr};
use std::pin::pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use hickory_resolver::Resolver;
use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::system_conf::parse_resolv_conf;

use crate::error::Error;
use crate::hosts;
use crate::log::{Joined, Log, millis};
use crate::runtime::{self, Provider, Runtime};

const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Once one family has answered with addresses, the other gets this long to follow
/// (RFC 8305's Resolution Delay): a server that drops AAAA queries must not stall the session.
const RESOLUTION_DELAY: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

impl Family {
    pub fn allows(self, ip: IpAddr) -> bool {
        match self {
            Family::Any => true,
            Family::V4 => ip.is_ipv4(),
            Family::V6 => ip.is_ipv6(),
        }
    }
}

pub struct Options<'a> {
    /// Replace resolv.conf's servers with these.
    pub nameservers: &'a [SocketAddr],
    /// The whole lookup's bound; resolv.conf's timeout × attempts when None.
    pub timeout: Option<Duration>,
    pub family: Family,
}

/// The result of asking for one record type.
enum Answer {
    Addresses(Vec<IpAddr>),
    /// NXDOMAIN (true) or no record of this type (false).
    Missing {
        nxdomain: bool,
    },
    /// A timeout, SERVFAIL, REFUSED, an unusable reply: worth retrying later.
    Failed(String),
}

pub fn resolve(host: &str, options: &Options<'_>, log: &mut Log) -> Result<Vec<IpAddr>, Error> {
    let started = Instant::now();
    let mut pinned = hosts::lookup(&fs::read(hosts::PATH).unwrap_or_default(), host);
    pinned.retain(|ip| options.family.allows(*ip));
    if !pinned.is_empty() {
        log.step(format_args!(
            "{host} has {} in {}",
            Joined(pinned.iter()),
            hosts::PATH
        ));
        return Ok(pinned);
    }
    let (config, mut resolver_options) = system_config(options.nameservers)?;
    let bound = options.timeout.unwrap_or(
        resolver_options.timeout * u32::try_from(resolver_options.attempts.max(1)).unwrap_or(1),
    );
    resolver_options.timeout = resolver_options.timeout.min(bound);
    // One lookup per process: a cache (moka, sized for 8192 answers by default) is pure cost.
    resolver_options.cache_size = 0;
    // Let the kernel pick the UDP source port in one bind(), instead of hickory drawing random
    // ports and retrying; under SELinux those draws would also be name_bind denials.
    resolver_options.os_port_selection = true;
    // Read above, as the C library reads it (hosts.rs).
    resolver_options.use_hosts_file = ResolveHosts::Never;
    log.step(format_args!(
        "resolving {host} via {} (giving up after {:.1}s)",
        servers(&config),
        bound.as_secs_f64()
    ));
    let mut runtime =
        Runtime::new().map_err(|e| Error::Io(format!("cannot start the DNS runtime: {e}")))?;
    let resolver = Resolver::builder_with_config(config, Provider)
        .with_options(resolver_options)
        .build()
        .map_err(|e| Error::DnsTemporary(format!("cannot set up DNS: {e}")))?;
    let family = options.family;
    let answers = runtime.block_on(runtime::timeout(bound, lookup(&resolver, host, family)));
    // Tearing down hickory's state (its cache, its server pool) costs about 40 µs that every
    // session would pay for nothing: its memory is the process's until exit anyway. The
    // runtime is dropped, which ends hickory's tasks and closes every descriptor they held.
    std::mem::forget(resolver);
    drop(runtime);
    let answers = answers
        .map_err(|e| Error::Io(format!("DNS runtime: {e}")))?
        .ok_or_else(|| {
            Error::DnsTemporary(format!(
                "no answer for {host} within {:.1}s",
                bound.as_secs_f64()
            ))
        })?;
    let addresses = conclude(host, family, answers)?;
    log.step(format_args!(
        "{host} has {} in {:.1} ms",
        Joined(addresses.iter()),
        millis(started)
    ));
    Ok(addresses)
}

/// resolv.conf as glibc reads it: a missing file or one without servers means 127.0.0.1.
fn system_config(nameservers: &[SocketAddr]) -> Result<(ResolverConfig, ResolverOpts), Error> {
    let mut text = fs::read(RESOLV_CONF).unwrap_or_default();
    if !has_nameserver(&text) {
        text.extend_from_slice(b"\nnameserver 127.0.0.1\n");
    }
    let (config, options) = parse_resolv_conf(&text)
        .map_err(|e| Error::DnsTemporary(format!("cannot use {RESOLV_CONF}: {e}")))?;
    if nameservers.is_empty() {
        return Ok((config, options));
    }
    let (domain, search, _) = config.into_parts();
    let servers = nameservers.iter().map(|addr| {
        let mut server = NameServerConfig::udp_and_tcp(addr.ip());
        for connection in &mut server.connections {
            connection.port = addr.port();
        }
        server
    });
    let config = ResolverConfig::from_parts(domain, search, servers.collect());
    Ok((config, options))
}

fn has_nameserver(resolv_conf: &[u8]) -> bool {
    resolv_conf
        .split(|&b| b == b'\n')
        .any(|line| line.trim_ascii_start().starts_with(b"nameserver"))
}

async fn lookup(resolver: &Resolver<Provider>, host: &str, family: Family) -> Vec<Answer> {
    match family {
        Family::V4 => vec![ask(resolver, host, RecordType::A).await],
        Family::V6 => vec![ask(resolver, host, RecordType::AAAA).await],
        Family::Any => {
            let mut v6 = pin!(ask(resolver, host, RecordType::AAAA));
            let mut v4 = pin!(ask(resolver, host, RecordType::A));
            let (first, v6_first) = poll_fn(|cx| match v6.as_mut().poll(cx) {
                Poll::Ready(answer) => Poll::Ready((answer, true)),
                Poll::Pending => v4.as_mut().poll(cx).map(|answer| (answer, false)),
            })
            .await;
            let second = if v6_first { v4 } else { v6 };
            let second = match first {
                Answer::Addresses(_) => runtime::timeout(RESOLUTION_DELAY, second)
                    .await
                    .unwrap_or(Answer::Missing { nxdomain: false }),
                _ => second.await,
            };
            vec![first, second]
        }
    }
}

async fn ask(resolver: &Resolver<Provider>, host: &str, record_type: RecordType) -> Answer {
    match resolver.lookup(host, record_type).await {
        Ok(lookup) => {
            let addresses: Vec<IpAddr> = lookup
                .answers()
                .iter()
                .filter(|record| record.record_type() == record_type)
                .filter_map(|record| match &record.data {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
                    _ => None,
                })
                .collect();
            if addresses.is_empty() {
                Answer::Missing { nxdomain: false }
            } else {
                Answer::Addresses(addresses)
            }
        }
        Err(NetError::Dns(DnsError::NoRecordsFound(none))) => Answer::Missing {
            nxdomain: none.response_code == ResponseCode::NXDomain,
        },
        Err(e) => Answer::Failed(format!("{record_type} query failed: {e}")),
    }
}

/// Addresses if any family has some; else a temporary failure if any query failed (the name
/// may well exist); else the name has no address.
fn conclude(host: &str, family: Family, answers: Vec<Answer>) -> Result<Vec<IpAddr>, Error> {
    let mut addresses = Vec::new();
    let mut failure = None;
    let mut nxdomain = false;
    for answer in answers {
        match answer {
            Answer::Addresses(found) => addresses.extend(found),
            Answer::Missing { nxdomain: nx } => nxdomain |= nx,
            Answer::Failed(why) => failure = Some(why),
        }
    }
    addresses.retain(|ip| family.allows(*ip));
    if !addresses.is_empty() {
        return Ok(addresses);
    }
    if let Some(why) = failure {
        return Err(Error::DnsTemporary(format!("cannot resolve {host}: {why}")));
    }
    if nxdomain {
        return Err(Error::NoAddress(format!("{host}: no such name (NXDOMAIN)")));
    }
    let which = match family {
        Family::Any => "address",
        Family::V4 => "IPv4 address",
        Family::V6 => "IPv6 address",
    };
    Err(Error::NoAddress(format!("{host} has no {which}")))
}

fn servers(config: &ResolverConfig) -> impl fmt::Display + '_ {
    Joined(config.name_servers().iter().map(|server| {
        let port = server.connections.first().map_or(53, |c| c.port);
        SocketAddr::new(server.ip, port)
    }))
}
