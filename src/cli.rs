//! The command line. Option names are an interface: unit files and scripts depend on them.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::log::LogMode;
use crate::policy::Net;
use crate::target::Target;

const EXAMPLES: &str = "\
Examples:
  # in a systemd service started by an Accept=yes socket (StandardInput=socket):
  ExecStart=/usr/bin/dynproxy db.internal.example:5432

  # FastCGI behind an AWS load balancer, both address families, 5 s to connect:
  dynproxy --connect-timeout 5 php.backend.example:9000

  # ask a specific DNS server, IPv4 only, send a PROXY v2 header:
  dynproxy --nameserver 10.0.0.2 -4 --proxy-protocol v2 app.internal:8080

  # by hand, like `socat STDIO TCP:...`, with every step logged to the terminal:
  printf 'GET / HTTP/1.0\\r\\n\\r\\n' | dynproxy -v localhost:80

  # wherever DNS publishes the service now (SRV records: hosts, ports, priorities, weights):
  dynproxy _postgresql._tcp.db.example

  # a unix socket, and an abstract unix socket:
  dynproxy /run/php/php-fpm.sock
  dynproxy @backend

Exit status: 0 relayed, 64 usage, 68 no such name or address, 69 no address accepted the
connection, 74 I/O error, 75 DNS failing for now, 77 every address refused by the policy.";

const CONNECT_TIMEOUT: &str = "10";
/// A silent peer is declared dead after 60 s of silence and 6 unanswered probes 10 s apart:
/// about two minutes, as `Keepalive::bound` says.
const KEEPALIVE: &str = "60,10,6";

/// Relay one connection to a backend whose address is looked up afresh for it.
///
/// dynproxy serves exactly one client connection: the one systemd passes on fd 3
/// (Accept=yes, LISTEN_FDS=1) or the one on stdin/stdout (StandardInput=socket, inetd, or a
/// shell). It resolves TARGET, connects to the first address that answers (all addresses are
/// tried, IPv6 and IPv4 interleaved), relays both directions until both are finished, logs one
/// line and exits. Before it reads a byte of the client or of DNS it sandboxes itself: no new
/// privileges and, where the kernel has them, Landlock (no file at all, no TCP but to the
/// ports it needs) and a seccomp allow-list; -v says which layer a kernel lacks.
#[derive(Debug, PartialEq, Parser)]
#[command(name = "dynproxy", version, after_help = EXAMPLES)]
pub struct Args {
    /// HOST:PORT, IPV4:PORT, [IPV6]:PORT, _SERVICE._tcp.DOMAIN (SRV), /path/to/unix.sock or
    /// @abstract-name
    #[arg(value_name = "TARGET", value_parser = Target::parse)]
    pub target: Target,

    /// Ask this DNS server instead of /etc/resolv.conf's (repeat for more); port 53 by default
    #[arg(long = "nameserver", value_name = "IP[:PORT]", value_parser = parse_nameserver)]
    pub nameservers: Vec<SocketAddr>,

    /// Give up resolving after SECS [default: resolv.conf's timeout × attempts]
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub resolve_timeout: Option<Duration>,

    /// Give up connecting (all addresses together) after SECS
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, default_value = CONNECT_TIMEOUT)]
    pub connect_timeout: Duration,

    /// Connect only to addresses in NET (CIDR; repeat for more); also lifts the default
    /// refusals of a name's link-local, metadata, unspecified and broadcast addresses
    #[arg(long = "allow", value_name = "NET", value_parser = Net::parse)]
    pub allow: Vec<Net>,

    /// Never connect to addresses in NET (CIDR; repeat for more); wins over --allow
    #[arg(long = "deny", value_name = "NET", value_parser = Net::parse)]
    pub deny: Vec<Net>,

    /// End the session after SECS without a byte in either direction
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    pub exit_idle_time: Option<Duration>,

    /// TCP keepalive on both sides: probe after IDLE s of silence, every INTERVAL s, COUNT
    /// times; a peer that never answers ends the session, and so does data unacknowledged
    /// for IDLE + INTERVAL × COUNT s (TCP_USER_TIMEOUT). 0 turns both off
    #[arg(long, value_name = "IDLE[,INTERVAL[,COUNT]]", value_parser = Keepalive::parse, default_value = KEEPALIVE)]
    pub keepalive: Keepalive,

    /// Use IPv4 addresses only
    #[arg(short = '4', conflicts_with = "ipv6_only")]
    pub ipv4_only: bool,

    /// Use IPv6 addresses only
    #[arg(short = '6')]
    pub ipv6_only: bool,

    /// Send a HAProxy PROXY protocol header with the client's address first
    #[arg(long, value_name = "VERSION")]
    pub proxy_protocol: Option<ProxyVersion>,

    /// Where log lines go
    #[arg(long, value_name = "WHERE", value_enum, default_value_t = LogMode::Auto)]
    pub log: LogMode,

    /// Log every step: DNS answers, each connect attempt, timings
    #[arg(short, long)]
    pub verbose: bool,
}

/// `--keepalive`: None turns keepalive and the user timeout off.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keepalive(pub Option<Probes>);

/// TCP keepalive's three numbers, in seconds and probes (each at least 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probes {
    pub idle: u32,
    pub interval: u32,
    pub count: u32,
}

impl Keepalive {
    fn parse(text: &str) -> Result<Keepalive, String> {
        if text == "0" {
            return Ok(Keepalive(None));
        }
        let mut numbers = text.split(',').map(|n| n.trim().parse::<u32>());
        let mut next = |default: u32, max: u32, what: &str| match numbers.next() {
            None => Ok(default),
            Some(Ok(n)) if (1..=max).contains(&n) => Ok(n),
            Some(_) => Err(format!("{what} must be a whole number from 1 to {max}")),
        };
        // The kernel's limits for TCP_KEEPIDLE, TCP_KEEPINTVL and TCP_KEEPCNT.
        let probes = Probes {
            idle: next(60, 32_767, "IDLE")?,
            interval: next(10, 32_767, "INTERVAL")?,
            count: next(6, 127, "COUNT")?,
        };
        if numbers.next().is_some() {
            return Err("expected IDLE[,INTERVAL[,COUNT]] (or 0 for off)".into());
        }
        Ok(Keepalive(Some(probes)))
    }
}

impl Probes {
    /// How long a peer may stay silent, or leave data unacknowledged, before the session
    /// ends: IDLE + INTERVAL × COUNT.
    pub fn bound(&self) -> Duration {
        Duration::from_secs(u64::from(self.idle) + u64::from(self.interval) * u64::from(self.count))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProxyVersion {
    /// the text header: "PROXY TCP4 src dst sport dport\r\n"
    V1,
    /// the binary header
    V2,
}

/// What the command line asks for, or what to print instead.
pub enum Parsed {
    Run(Box<Args>),
    /// --help or --version: print to stdout, exit 0.
    Print(String),
    /// A usage error, already explained.
    Usage(String),
}

pub fn parse() -> Parsed {
    parse_from(std::env::args_os())
}

pub fn parse_from<I, T>(args: I) -> Parsed
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(Into::into).collect();
    match just_a_target(&args) {
        Some(args) => Parsed::Run(Box::new(args)),
        None => parse_with_clap(args),
    }
}

/// The command line of nearly every unit, `dynproxy HOST:PORT`, without clap: building
/// clap's whole command is a measurable share of a session's CPU (docs/bench-history.md).
/// Anything else, including a target that does not parse, is clap's to read and explain; a
/// property test holds both ways to the same result.
fn just_a_target(args: &[std::ffi::OsString]) -> Option<Args> {
    let [_, target] = args else { return None };
    let target = target.to_str().filter(|t| !t.starts_with('-'))?;
    Some(Args {
        target: Target::parse(target).ok()?,
        nameservers: Vec::new(),
        resolve_timeout: None,
        connect_timeout: parse_seconds(CONNECT_TIMEOUT).ok()?,
        allow: Vec::new(),
        deny: Vec::new(),
        exit_idle_time: None,
        keepalive: Keepalive::parse(KEEPALIVE).ok()?,
        ipv4_only: false,
        ipv6_only: false,
        proxy_protocol: None,
        log: LogMode::Auto,
        verbose: false,
    })
}

fn parse_with_clap(args: Vec<std::ffi::OsString>) -> Parsed {
    match Args::try_parse_from(args) {
        Ok(args) => Parsed::Run(Box::new(args)),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                Parsed::Print(e.render().to_string())
            }
            _ => Parsed::Usage(e.render().to_string().trim_end().to_owned()),
        },
    }
}

fn parse_nameserver(text: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    match text.parse::<SocketAddr>() {
        Ok(addr) if addr.port() != 0 => Ok(addr),
        _ => Err("expected an IP address, IP:PORT or [IPV6]:PORT".into()),
    }
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    if !(seconds > 0.0 && seconds <= 1e9) {
        return Err("expected a number of seconds greater than 0".into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn clap_only(target: &str) -> Option<Args> {
        match parse_with_clap(vec!["dynproxy".into(), target.into()]) {
            Parsed::Run(args) => Some(*args),
            _ => None,
        }
    }

    #[test]
    fn a_lone_target_is_read_without_clap_as_clap_reads_it() {
        for target in [
            "db.example:5432",
            "127.0.0.1:9000",
            "[::1]:80",
            "/run/php.sock",
            "@backend",
        ] {
            let fast = just_a_target(&["dynproxy".into(), target.into()]);
            assert!(fast.is_some(), "{target}");
            assert_eq!(fast, clap_only(target), "{target}");
        }
    }

    #[test]
    fn keepalive_takes_one_to_three_numbers_or_0() {
        let probes = |idle, interval, count| {
            Ok(Keepalive(Some(Probes {
                idle,
                interval,
                count,
            })))
        };
        assert_eq!(Keepalive::parse("0"), Ok(Keepalive(None)));
        assert_eq!(Keepalive::parse("30"), probes(30, 10, 6));
        assert_eq!(Keepalive::parse("30,5"), probes(30, 5, 6));
        assert_eq!(Keepalive::parse("1,1,2"), probes(1, 1, 2));
        for bad in ["", "-1", "1,0", "1,1,128", "1,1,1,1", "x", "0,1"] {
            assert!(Keepalive::parse(bad).is_err(), "{bad:?}");
        }
        let default = Keepalive::parse(KEEPALIVE).unwrap().0.unwrap();
        assert_eq!(
            default.bound(),
            Duration::from_secs(120),
            "about two minutes"
        );
    }

    #[test]
    fn options_and_bad_targets_are_left_to_clap() {
        for args in [
            &["dynproxy", "-v"][..],
            &["dynproxy", "--help"],
            // Valid targets as far as TARGET goes, but options to clap:
            &["dynproxy", "-v:1"],
            &["dynproxy", "--x:80"],
            &["dynproxy", "no-port"],
            &["dynproxy", "-4", "a:1"],
            &["dynproxy"],
            &["dynproxy", "a:1", "b:2"],
        ] {
            let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
            assert_eq!(just_a_target(&args), None, "{args:?}");
        }
    }

    proptest! {
        /// Whatever the fast path reads, clap reads the same; whatever it leaves (but an
        /// option), clap refuses too.
        #[test]
        fn the_fast_path_agrees_with_clap(target in prop_oneof![
            ("-{0,2}", "[a-z][a-z0-9.-]{0,10}", 1u16..)
                .prop_map(|(dash, host, port)| format!("{dash}{host}:{port}")),
            (any::<[u16; 8]>(), any::<u16>())
                .prop_map(|(ip, port)| format!("[{}]:{port}", std::net::Ipv6Addr::from(ip))),
            "-?/[a-z0-9/._-]{1,12}",
            "-?@[a-z0-9]{1,8}",
            "\\PC{0,12}",
        ]) {
            match just_a_target(&["dynproxy".into(), target.as_str().into()]) {
                Some(fast) => prop_assert_eq!(Some(fast), clap_only(&target)),
                None if !target.starts_with('-') => prop_assert!(clap_only(&target).is_none()),
                None => {}
            }
        }
    }
}
