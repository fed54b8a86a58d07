//! Resolve: the backend's addresses, looked up afresh for this session: /etc/hosts first
//! (hosts.rs), then DNS with hickory-resolver, from /etc/resolv.conf (servers, search, ndots,
//! timeout, attempts).
//!
//! Of hickory, dynproxy uses the pool of name servers — what sends the queries, retries them,
//! falls back to TCP after a truncated answer and checks every reply — but not the `Resolver`
//! around it, whose cache, tables of special-use names and reading of /etc/hosts were a
//! quarter of a session's instructions and of no use to one lookup per process. What of it
//! a session needs is here: the search list, following CNAME chains, localhost.
//!
//! hickory has no synchronous API, so a small runtime of dynproxy's own (runtime.rs) lives
//! for the lookup and the connection attempts only (a slow family's answer joins them) and
//! is gone before the relay starts: no threads, no timers left behind.

use std::fmt;
use std::fs;
use std::future::{Future, poll_fn};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::xfer::{DnsHandle, RetryDnsHandle};
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::{DnsRequestOptions, DnsResponse, Query, ResponseCode};
use hickory_resolver::proto::rr::rdata::CNAME;
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::system_conf::parse_resolv_conf;
use hickory_resolver::{NameServerPool, PoolContext, TlsConfig};

use crate::error::Error;
use crate::hosts;
use crate::log::{Joined, Log, millis};
use crate::runtime::{self, Provider};
use crate::sys;

pub const RESOLV_CONF: &str = "/etc/resolv.conf";

/// Once A has answered with addresses, AAAA gets this long to follow before connecting
/// starts (RFC 8305's Resolution Delay): a server that drops AAAA queries must not stall the
/// session. An answer after it still joins the connection attempts (`Later`).
const RESOLUTION_DELAY: Duration = Duration::from_millis(50);

/// How many queries one name's CNAME chain may take (hickory's resolver allows 8).
const MAX_CHAIN_QUERIES: usize = 8;

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

/// What resolving reads of the machine, read before the sandbox (src/sandbox.rs) leaves the
/// session no file to open, and parsed only if DNS is asked. The default, for a target that
/// resolves nothing, has nothing read.
#[derive(Default)]
pub struct System {
    /// The hosts file; empty if missing or unreadable (it then pins nothing).
    hosts: Vec<u8>,
    /// resolv.conf; empty if missing or unreadable (its servers are then 127.0.0.1, as with
    /// glibc).
    resolv_conf: Vec<u8>,
    /// The domain of the host's name (what follows its first dot), if it has one: what glibc
    /// searches when resolv.conf has no search list.
    host_domain: Option<String>,
}

impl System {
    pub fn read() -> System {
        System {
            hosts: fs::read(hosts::PATH).unwrap_or_default(),
            resolv_conf: fs::read(RESOLV_CONF).unwrap_or_default(),
            host_domain: sys::host_name().and_then(|name| domain_of(&name)),
        }
    }
}

/// What follows the first dot of a host's name, if that is a plausible domain.
fn domain_of(host_name: &str) -> Option<String> {
    let (_, domain) = host_name.split_once('.')?;
    let plausible = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    (!domain.is_empty() && domain.chars().all(plausible)).then(|| domain.to_owned())
}

pub struct Options<'a> {
    pub system: &'a System,
    /// Replace resolv.conf's servers with these.
    pub nameservers: &'a [SocketAddr],
    /// The whole lookup's bound; resolv.conf's timeout × attempts when None.
    pub timeout: Option<Duration>,
    pub family: Family,
}

/// What a lookup found: the addresses to try now and, while the other family's query is
/// still out, what it may yet bring.
pub struct Found {
    pub addresses: Vec<SocketAddr>,
    pub later: Option<Later>,
}

/// The addresses a query still out may yet bring (RFC 8305, section 3: they join the
/// connection attempts), or why it brought none; bounded by the lookup's time.
pub type Later = Pin<Box<dyn Future<Output = Result<Vec<SocketAddr>, String>>>>;

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

/// `host`'s addresses with `port`, from the machine itself or from DNS. Runs on the
/// thread's runtime (runtime.rs), which must outlive `Found::later`.
pub async fn resolve(
    host: &str,
    port: u16,
    options: &Options<'_>,
    log: &mut Log,
) -> Result<Found, Error> {
    if let Some((addresses, source)) = local(host, &options.system.hosts, options.family) {
        log.step(format_args!(
            "{host} has {} ({source})",
            Joined(addresses.iter())
        ));
        return Ok(Found {
            addresses: with_port(addresses, port),
            later: None,
        });
    }
    ask_dns(host, port, options, log).await
}

fn with_port(addresses: Vec<IpAddr>, port: u16) -> Vec<SocketAddr> {
    let with_port = |ip| SocketAddr::new(ip, port);
    addresses.into_iter().map(with_port).collect()
}

/// What the machine itself says of `host`, never asked of DNS: /etc/hosts, then the
/// loopback addresses for localhost names (RFC 6761).
fn local(host: &str, hosts_file: &[u8], family: Family) -> Option<(Vec<IpAddr>, &'static str)> {
    let mut pinned = hosts::lookup(hosts_file, host);
    pinned.retain(|ip| family.allows(*ip));
    if !pinned.is_empty() {
        return Some((pinned, hosts::PATH));
    }
    if !is_localhost(host) {
        return None;
    }
    let mut loopback = vec![
        IpAddr::from(Ipv6Addr::LOCALHOST),
        Ipv4Addr::LOCALHOST.into(),
    ];
    loopback.retain(|ip| family.allows(*ip));
    Some((loopback, "localhost, RFC 6761"))
}

async fn ask_dns(
    host: &str,
    port: u16,
    options: &Options<'_>,
    log: &mut Log,
) -> Result<Found, Error> {
    let started = Instant::now();
    let (dns, bound) = open_dns(host, options, log)?;
    let (answers, pending) = runtime::timeout(bound, lookup(&dns, options.family))
        .await
        .ok_or_else(|| {
            Error::DnsTemporary(format!(
                "no answer for {host} within {:.1}s",
                bound.as_secs_f64()
            ))
        })?;
    let addresses = conclude(host, options.family, answers)?;
    log.step(format_args!(
        "{host} has {} in {:.1} ms{}",
        Joined(addresses.iter()),
        millis(started),
        match &pending {
            Some(pending) => format!(", {} still asked", pending.record_type),
            None => String::new(),
        }
    ));
    let later = pending.map(|pending| {
        let left = bound.saturating_sub(started.elapsed());
        pending.until(left, port)
    });
    Ok(Found {
        addresses: with_port(addresses, port),
        later,
    })
}

/// DNS as resolv.conf (or --nameserver) sets it up, for `host` under the search list, and
/// the bound of the whole lookup: resolv.conf's timeout × attempts, or --resolve-timeout.
pub(crate) fn open_dns(
    host: &str,
    options: &Options<'_>,
    log: &mut Log,
) -> Result<(Rc<Dns>, Duration), Error> {
    let (config, mut resolver_options) = system_config(options.system, options.nameservers)?;
    let bound = options.timeout.unwrap_or(
        resolver_options.timeout * u32::try_from(resolver_options.attempts.max(1)).unwrap_or(1),
    );
    resolver_options.timeout = resolver_options.timeout.min(bound);
    // Let the kernel pick the UDP source port in one bind(), instead of hickory drawing random
    // ports and retrying; under SELinux those draws would also be name_bind denials.
    resolver_options.os_port_selection = true;
    log.step(format_args!(
        "resolving {host} via {} (giving up after {:.1}s)",
        servers(&config),
        bound.as_secs_f64()
    ));
    let dns = Rc::new(Dns::new(host, config, resolver_options)?);
    // Tearing down hickory's state (its server pool) costs time every session would pay for
    // nothing: its memory is the process's until exit anyway. Dropping the runtime ends
    // hickory's tasks and closes every descriptor they held (the e2e tests
    // `a_lookup*_descriptors*` count them while the relay runs).
    std::mem::forget(Rc::clone(&dns));
    Ok((dns, bound))
}

/// `localhost` and the names under it (RFC 6761, section 6.3). Not hickory's
/// `Name::is_localhost`: that builds its tables of special-use names, which are what leaving
/// out hickory's `Resolver` saved.
fn is_localhost(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host).as_bytes();
    let tail = name.len().saturating_sub("localhost".len());
    name[tail..].eq_ignore_ascii_case(b"localhost") && (tail == 0 || name[tail - 1] == b'.')
}

/// resolv.conf as glibc reads it: a missing file or one without servers means 127.0.0.1.
fn system_config(
    system: &System,
    nameservers: &[SocketAddr],
) -> Result<(ResolverConfig, ResolverOpts), Error> {
    let mut text = Vec::new();
    // Without a domain line, the parser takes the domain from the host's name, which a
    // static build reads from /proc: a file the sandbox has closed by now. The same name,
    // from uname before the sandbox, goes first as a domain line; a search line after it
    // still wins, as the last of the two does in resolv.conf. (A name without a dot leaves
    // the parser to try /proc, which the sandbox refuses: there is no domain to find.)
    if let Some(domain) = &system.host_domain {
        if !has_directive(&system.resolv_conf, b"domain") {
            text.extend_from_slice(format!("domain {domain}\n").as_bytes());
        }
    }
    text.extend_from_slice(&system.resolv_conf);
    if !has_directive(&text, b"nameserver") {
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

/// Whether a line of resolv.conf is a `keyword` directive.
fn has_directive(resolv_conf: &[u8], keyword: &[u8]) -> bool {
    resolv_conf.split(|&b| b == b'\n').any(|line| {
        let rest = line.trim_ascii_start().strip_prefix(keyword);
        rest.and_then(|rest| rest.first())
            .is_some_and(u8::is_ascii_whitespace)
    })
}

/// What asks DNS: hickory's pool of name servers (retries, TCP after a truncated answer,
/// the checks on every reply) and, for it, the names to try in turn.
pub(crate) struct Dns {
    client: RetryDnsHandle<NameServerPool<Provider>>,
    /// The host under the search list, in the order to ask them.
    pub(crate) names: Vec<Name>,
    request: DnsRequestOptions,
}

impl Dns {
    fn new(host: &str, config: ResolverConfig, options: ResolverOpts) -> Result<Dns, Error> {
        let setup = |e: NetError| Error::DnsTemporary(format!("cannot set up DNS: {e}"));
        let host = Name::from_ascii(host).map_err(|e| setup(e.into()))?;
        let names = search_list(host, &config, options.ndots);
        // What hickory's `Resolver` would send with each query.
        let mut request = DnsRequestOptions::default();
        request.recursion_desired = options.recursion_desired;
        request.use_edns = options.edns0;
        request.edns_payload_len = options.edns_payload_len;
        request.case_randomization = options.case_randomization;
        let attempts = options.attempts;
        let context = Arc::new(PoolContext::new(options, TlsConfig::new().map_err(setup)?));
        let (_, _, servers) = config.into_parts();
        let pool = NameServerPool::from_config(servers, context, Provider);
        Ok(Dns {
            client: RetryDnsHandle::new(pool, attempts),
            names,
            request,
        })
    }
}

/// The names to ask for `host`, as glibc builds them (resolv.conf(5)): a name with a final
/// dot alone; one with at least `ndots` dots first as given, then under each search domain;
/// one with fewer the other way round. Without a search list, the host's own domain is it.
fn search_list(host: Name, config: &ResolverConfig, ndots: usize) -> Vec<Name> {
    if host.is_fqdn() {
        return vec![host];
    }
    let domains = match config.search() {
        [] => config
            .domain()
            .map(std::slice::from_ref)
            .unwrap_or_default(),
        search => search,
    };
    let mut names: Vec<Name> = Vec::new();
    for domain in domains {
        if let Ok(name) = host.clone().append_domain(domain) {
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    let mut as_given = host.clone();
    as_given.set_fqdn(true);
    if host.num_labels() as usize > ndots {
        names.insert(0, as_given);
    } else {
        names.push(as_given);
    }
    names
}

/// A query still out when connecting starts.
struct Pending {
    record_type: RecordType,
    answer: Pin<Box<dyn Future<Output = Answer>>>,
}

impl Pending {
    fn new(dns: &Rc<Dns>, record_type: RecordType) -> Pending {
        let dns = Rc::clone(dns);
        Pending {
            record_type,
            answer: Box::pin(async move { ask(&dns, record_type).await }),
        }
    }

    /// Its addresses with `port` if it has some within `left`, else why not.
    fn until(self, left: Duration, port: u16) -> Later {
        let Pending {
            record_type,
            answer,
        } = self;
        Box::pin(async move {
            match runtime::timeout(left, answer).await {
                Some(Answer::Addresses(found)) => Ok(with_port(found, port)),
                Some(Answer::Missing { .. }) => Err(format!("no {record_type} record")),
                Some(Answer::Failed(why)) => Err(why),
                None => Err(format!(
                    "no {record_type} answer within the lookup's {:.1}s",
                    left.as_secs_f64()
                )),
            }
        })
    }
}

/// Both families' answers in RFC 8305's order (section 3): a positive AAAA answer lets
/// connecting start at once, a positive A answer waits the resolution delay for AAAA; the
/// query still out then is handed back, to join the attempts when it answers.
async fn lookup(dns: &Rc<Dns>, family: Family) -> (Vec<Answer>, Option<Pending>) {
    match family {
        Family::V4 => (vec![ask(dns, RecordType::A).await], None),
        Family::V6 => (vec![ask(dns, RecordType::AAAA).await], None),
        Family::Any => {
            let mut v6 = Pending::new(dns, RecordType::AAAA);
            let mut v4 = Pending::new(dns, RecordType::A);
            let (first, v6_first) = poll_fn(|cx| match v6.answer.as_mut().poll(cx) {
                Poll::Ready(answer) => Poll::Ready((answer, true)),
                Poll::Pending => v4.answer.as_mut().poll(cx).map(|answer| (answer, false)),
            })
            .await;
            let mut second = if v6_first { v4 } else { v6 };
            match first {
                Answer::Addresses(_) if v6_first => (vec![first], Some(second)),
                Answer::Addresses(_) => {
                    match runtime::timeout(RESOLUTION_DELAY, second.answer.as_mut()).await {
                        Some(answer) => (vec![first, answer], None),
                        None => (vec![first], Some(second)),
                    }
                }
                _ => (vec![first, second.answer.await], None),
            }
        }
    }
}

/// Asks each name of the search list in turn until one has addresses of `record_type`. A
/// failure outweighs a missing name: the name may well exist under that one.
async fn ask(dns: &Dns, record_type: RecordType) -> Answer {
    let mut outcome = Answer::Missing { nxdomain: false };
    for name in &dns.names {
        match ask_name(dns, name, record_type).await {
            found @ Answer::Addresses(_) => return found,
            failed @ Answer::Failed(_) => outcome = failed,
            missing if !matches!(outcome, Answer::Failed(_)) => outcome = missing,
            _ => {}
        }
    }
    outcome
}

/// Asks for `name`; a CNAME chain the reply leaves unfinished (a server gives up on long
/// chains) is asked on from where it ends, as hickory's resolver does, a few times at most.
async fn ask_name(dns: &Dns, name: &Name, record_type: RecordType) -> Answer {
    let mut name = name.clone();
    for _ in 0..MAX_CHAIN_QUERIES {
        let response = match first_reply(dns, Query::query(name.clone(), record_type)).await {
            Some(Ok(response)) => response,
            Some(Err(NetError::Dns(DnsError::NoRecordsFound(none)))) => {
                return Answer::Missing {
                    nxdomain: none.response_code == ResponseCode::NXDomain,
                };
            }
            Some(Err(e)) => return Answer::Failed(format!("{record_type} query failed: {e}")),
            None => return Answer::Failed(format!("{record_type} query got no reply")),
        };
        let (addresses, end) = follow(&name, record_type, &response.answers);
        if !addresses.is_empty() {
            return Answer::Addresses(addresses);
        }
        let nxdomain = response.response_code == ResponseCode::NXDomain;
        if end == name || nxdomain {
            return Answer::Missing { nxdomain };
        }
        name = end;
    }
    Answer::Missing { nxdomain: false }
}

/// The first reply to `query`. A server that refuses EDNS — FORMERR or NOTIMP to a query
/// with an OPT record, as old servers and some middleboxes answer — is asked again without
/// it, as the C library's resolver does (resolv.conf's `options edns0` asks for EDNS).
pub(crate) async fn first_reply(dns: &Dns, query: Query) -> Option<Result<DnsResponse, NetError>> {
    let mut request = dns.request;
    loop {
        let mut replies = dns.client.lookup(query.clone(), request);
        let reply = poll_fn(|cx| replies.as_mut().poll_next(cx)).await;
        let refuses_edns = matches!(
            &reply,
            Some(Err(NetError::Dns(DnsError::ResponseCode(
                ResponseCode::FormErr | ResponseCode::NotImp
            ))))
        );
        if !(refuses_edns && request.use_edns) {
            return reply;
        }
        request.use_edns = false;
    }
}

/// Follows `name`'s CNAME chain through `answers` as far as they hold it, and gives the
/// addresses of `record_type` of where it ends, and that name. Each link uses up a record,
/// so a loop ends when the records do.
pub(crate) fn follow(
    name: &Name,
    record_type: RecordType,
    answers: &[Record],
) -> (Vec<IpAddr>, Name) {
    let mut owner = name;
    for _ in 0..answers.len() {
        let next = answers.iter().find_map(|record| match &record.data {
            RData::CNAME(CNAME(target)) if record.name == *owner => Some(target),
            _ => None,
        });
        match next {
            Some(target) => owner = target,
            None => break,
        }
    }
    let addresses = answers
        .iter()
        .filter(|record| record.name == *owner && record.record_type() == record_type)
        .filter_map(|record| match &record.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(aaaa) => Some(IpAddr::V6(aaaa.0)),
            _ => None,
        })
        .collect();
    (addresses, owner.clone())
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
        return Err(failed(host, &why));
    }
    if nxdomain {
        return Err(no_such_name(host));
    }
    let which = match family {
        Family::Any => "address",
        Family::V4 => "IPv4 address",
        Family::V6 => "IPv6 address",
    };
    Err(Error::NoAddress(format!("{host} has no {which}")))
}

/// DNS failed for `host` (75), worded alike for addresses and SRV records.
pub fn failed(host: &str, why: &str) -> Error {
    Error::DnsTemporary(format!("cannot resolve {host}: {why}"))
}

/// `host` does not exist (68), worded alike for addresses and SRV records.
pub fn no_such_name(host: &str) -> Error {
    Error::NoAddress(format!("{host}: no such name (NXDOMAIN)"))
}

fn servers(config: &ResolverConfig) -> impl fmt::Display + '_ {
    Joined(config.name_servers().iter().map(|server| {
        let port = server.connections.first().map_or(53, |c| c.port);
        SocketAddr::new(server.ip, port)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::rr::rdata::A;

    fn name(text: &str) -> Name {
        Name::from_ascii(text).unwrap()
    }

    fn texts(names: &[Name]) -> Vec<String> {
        names.iter().map(Name::to_string).collect()
    }

    /// The search list resolving `app` would use, resolv.conf being `resolv_conf` on a
    /// host whose name's domain is `host_domain`.
    fn searched(resolv_conf: &str, host_domain: Option<&str>) -> Vec<String> {
        let system = System {
            resolv_conf: resolv_conf.as_bytes().to_vec(),
            host_domain: host_domain.map(str::to_owned),
            ..System::default()
        };
        let (config, _) = system_config(&system, &[]).unwrap();
        texts(&search_list(name("app"), &config, 1))
    }

    #[test]
    fn the_host_s_domain_is_searched_only_without_a_search_or_domain_line() {
        let host = Some("site.test");
        let none = "nameserver 127.0.0.1\n";
        assert_eq!(searched(none, host), ["app.site.test.", "app."]);
        let search = "nameserver 127.0.0.1\nsearch corp.test\n";
        assert_eq!(searched(search, host), ["app.corp.test.", "app."]);
        let domain = "domain own.test\nnameserver 127.0.0.1\n";
        assert_eq!(searched(domain, host), ["app.own.test.", "app."]);
    }

    #[test]
    fn a_host_s_domain_is_what_follows_the_first_dot_of_its_name() {
        assert_eq!(domain_of("box.site.test").as_deref(), Some("site.test"));
        assert_eq!(domain_of("box"), None);
        assert_eq!(domain_of("box."), None);
        assert_eq!(
            domain_of("box.a b"),
            None,
            "not a domain a resolv.conf line can hold"
        );
    }

    fn config(domain: Option<&str>, search: &[&str]) -> ResolverConfig {
        ResolverConfig::from_parts(
            domain.map(name),
            search.iter().map(|s| name(s)).collect(),
            vec![],
        )
    }

    #[test]
    fn a_short_name_is_tried_under_the_search_domains_first() {
        let config = config(None, &["a.test", "b.test"]);
        let names = search_list(name("db"), &config, 1);
        assert_eq!(texts(&names), ["db.a.test.", "db.b.test.", "db."]);
    }

    #[test]
    fn a_name_with_ndots_dots_is_tried_as_given_first() {
        let config = config(None, &["a.test"]);
        assert_eq!(
            texts(&search_list(name("db.x"), &config, 1)),
            ["db.x.", "db.x.a.test."]
        );
        assert_eq!(
            texts(&search_list(name("db.x"), &config, 2)),
            ["db.x.a.test.", "db.x."]
        );
    }

    #[test]
    fn a_name_with_a_final_dot_is_only_itself() {
        let config = config(Some("home.test"), &["a.test"]);
        assert_eq!(texts(&search_list(name("db."), &config, 1)), ["db."]);
    }

    #[test]
    fn the_hosts_domain_serves_only_without_a_search_list() {
        assert_eq!(
            texts(&search_list(name("db"), &config(Some("home.test"), &[]), 1)),
            ["db.home.test.", "db."]
        );
        assert_eq!(
            texts(&search_list(
                name("db"),
                &config(Some("home.test"), &["a.test"]),
                1
            )),
            ["db.a.test.", "db."]
        );
    }

    fn record(owner: &str, data: RData) -> Record {
        Record::from_rdata(name(owner), 0, data)
    }

    fn cname(owner: &str, target: &str) -> Record {
        record(owner, RData::CNAME(CNAME(name(target))))
    }

    fn a(owner: &str, ip: [u8; 4]) -> Record {
        record(owner, RData::A(A(ip.into())))
    }

    #[test]
    fn a_chain_is_followed_to_its_addresses_in_any_order() {
        let answers = [
            a("real.test.", [10, 0, 0, 1]),
            cname("mid.test.", "real.test."),
            a("other.test.", [10, 0, 0, 9]),
            cname("Alias.Test.", "mid.test."),
        ];
        let (found, end) = follow(&name("alias.test."), RecordType::A, &answers);
        assert_eq!(found, [IpAddr::from([10, 0, 0, 1])]);
        assert_eq!(end, name("real.test."));
    }

    #[test]
    fn an_unfinished_chain_ends_where_the_answer_does() {
        let answers = [cname("alias.test.", "far.test.")];
        let (found, end) = follow(&name("alias.test."), RecordType::A, &answers);
        assert!(found.is_empty());
        assert_eq!(end, name("far.test."));
    }

    #[test]
    fn a_loop_ends_with_no_address() {
        let answers = [
            cname("ping.test.", "pong.test."),
            cname("pong.test.", "ping.test."),
        ];
        let (found, _) = follow(&name("ping.test."), RecordType::A, &answers);
        assert!(found.is_empty());
    }

    #[test]
    fn addresses_of_another_owner_or_type_are_not_taken() {
        let answers = [
            a("other.test.", [10, 0, 0, 9]),
            a("db.test.", [10, 0, 0, 1]),
        ];
        let (found, _) = follow(&name("db.test."), RecordType::AAAA, &answers);
        assert!(found.is_empty());
        let (found, _) = follow(&name("db.test."), RecordType::A, &answers);
        assert_eq!(found, [IpAddr::from([10, 0, 0, 1])]);
    }

    #[test]
    fn localhost_and_the_names_under_it() {
        for host in ["localhost", "LocalHost.", "db.localhost"] {
            assert!(is_localhost(host), "{host}");
        }
        for host in ["notlocalhost", "localhost.test", "local"] {
            assert!(!is_localhost(host), "{host}");
        }
    }
}
