//! What the backend is: the TARGET argument, parsed and checked before anything touches
//! the network, so a typo is a usage error (64) rather than a DNS query for garbage.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::path::PathBuf;

/// The longest unix socket name the kernel takes (sun_path holds 108 bytes, one is the NUL
/// of a path or the leading NUL of an abstract name).
pub const MAX_UNIX_NAME: usize = 107;
const MAX_HOST_NAME: usize = 253;
const MAX_LABEL: usize = 63;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A DNS name, resolved afresh for every session.
    Name { host: String, port: u16 },
    /// An SRV name, `_SERVICE._tcp.DOMAIN` without a port: the hosts and ports its records
    /// name, looked up afresh for every session (RFC 2782).
    Srv(String),
    /// A literal address: no DNS at all.
    Addr(SocketAddr),
    /// A unix stream socket in the file system.
    Path(PathBuf),
    /// A unix stream socket in Linux's abstract namespace (the name without its '@').
    Abstract(Vec<u8>),
}

impl Target {
    pub fn parse(text: &str) -> Result<Target, String> {
        if text.is_empty() {
            return Err("empty target".into());
        }
        if text.chars().any(char::is_control) {
            return Err("the target contains a control character".into());
        }
        if text.starts_with('/') {
            return unix_name(text).map(|_| Target::Path(PathBuf::from(text)));
        }
        if let Some(name) = text.strip_prefix('@') {
            if name.is_empty() {
                return Err("an abstract socket needs a name after '@'".into());
            }
            return unix_name(name).map(|_| Target::Abstract(name.as_bytes().to_vec()));
        }
        if let Some(rest) = text.strip_prefix('[') {
            return bracketed(rest);
        }
        if text.contains(['[', ']']) {
            return Err("unbalanced brackets (IPv6 targets look like [::1]:PORT)".into());
        }
        let Some((host, port)) = text.rsplit_once(':') else {
            if let Some(name) = srv_name(text)? {
                return Ok(Target::Srv(name.to_owned()));
            }
            if text.contains('/') {
                return Err("a unix socket path must be absolute (start with '/')".into());
            }
            return Err(
                "missing port (expected HOST:PORT, or an SRV name _SERVICE._tcp.DOMAIN)".into(),
            );
        };
        if host.contains(':') {
            return Err("an IPv6 address needs brackets, as in [::1]:PORT".into());
        }
        let port = parse_port(port)?;
        if let Ok(ip) = host.parse::<Ipv4Addr>() {
            return Ok(Target::Addr(SocketAddr::new(ip.into(), port)));
        }
        check_host_name(host)?;
        Ok(Target::Name {
            host: host.to_owned(),
            port,
        })
    }
}

impl fmt::Display for Target {
    /// The canonical spelling, which `Target::parse` reads back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Name { host, port } => write!(f, "{host}:{port}"),
            Target::Srv(name) => f.write_str(name),
            Target::Addr(addr) => write!(f, "{addr}"),
            Target::Path(path) => write!(f, "{}", path.display()),
            Target::Abstract(name) => write!(f, "@{}", String::from_utf8_lossy(name)),
        }
    }
}

fn unix_name(name: &str) -> Result<(), String> {
    if name.len() > MAX_UNIX_NAME {
        return Err(format!(
            "a unix socket name is at most {MAX_UNIX_NAME} bytes, this one has {}",
            name.len()
        ));
    }
    Ok(())
}

/// A target without a port is an SRV name when its first two labels are a service and a
/// protocol (RFC 2782: `_postgresql._tcp.db.example`); None when they are not, an error when
/// the protocol is not TCP, the only one dynproxy relays.
fn srv_name(text: &str) -> Result<Option<&str>, String> {
    let mut labels = text.splitn(3, '.');
    let (Some(service), Some(protocol), Some(domain)) =
        (labels.next(), labels.next(), labels.next())
    else {
        return Ok(None);
    };
    if !(service.len() > 1 && service.starts_with('_') && protocol.starts_with('_')) {
        return Ok(None);
    }
    if !protocol.eq_ignore_ascii_case("_tcp") {
        return Err(format!(
            "dynproxy relays TCP: an SRV name is _SERVICE._tcp.DOMAIN, not {protocol}"
        ));
    }
    if domain.strip_suffix('.').unwrap_or(domain).is_empty() {
        return Err("an SRV name needs a domain after _SERVICE._tcp".into());
    }
    check_host_name(text).map(|()| Some(text))
}

/// `[IPV6]:PORT` or `[IPV6%ZONE]:PORT`, after the opening bracket.
fn bracketed(rest: &str) -> Result<Target, String> {
    let Some((inside, after)) = rest.split_once(']') else {
        return Err("unbalanced brackets: '[' without ']'".into());
    };
    if inside.contains('[') || after.contains(['[', ']']) {
        return Err("unbalanced brackets".into());
    }
    let Some(port) = after.strip_prefix(':') else {
        return Err("missing port after ']' (expected [IPV6]:PORT)".into());
    };
    let port = parse_port(port)?;
    let (ip, zone) = match inside.split_once('%') {
        Some((ip, zone)) => (ip, Some(zone)),
        None => (inside, None),
    };
    let ip: Ipv6Addr = ip
        .parse()
        .map_err(|_| format!("'{ip}' is not an IPv6 address"))?;
    let scope = match zone {
        None => 0,
        Some(zone) => zone_index(zone)?,
    };
    Ok(Target::Addr(SocketAddrV6::new(ip, port, 0, scope).into()))
}

/// A zone is an interface index or an interface name (fe80::1%eth0).
fn zone_index(zone: &str) -> Result<u32, String> {
    if let Ok(index) = zone.parse::<u32>() {
        return Ok(index);
    }
    crate::sys::interface_index(zone).ok_or_else(|| format!("no network interface '{zone}'"))
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("missing port (expected HOST:PORT)".into());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port '{text}' is not a number"));
    }
    match text.parse::<u32>() {
        Ok(port @ 1..=65535) => Ok(port as u16),
        _ => Err(format!("port {text} is out of range (1-65535)")),
    }
}

/// Host names as resolvers accept them: letters, digits, '-' and '_' in dot-separated labels
/// of at most 63 characters, 253 in all, one optional trailing dot.
fn check_host_name(host: &str) -> Result<(), String> {
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() {
        return Err("missing host (expected HOST:PORT)".into());
    }
    if name.contains('/') {
        return Err("a unix socket path must be absolute (start with '/')".into());
    }
    if name.len() > MAX_HOST_NAME {
        return Err(format!(
            "host name is longer than {MAX_HOST_NAME} characters ({})",
            name.len()
        ));
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err(format!("empty label in host name '{host}'"));
        }
        if label.len() > MAX_LABEL {
            return Err(format!(
                "label '{label}' is longer than {MAX_LABEL} characters ({})",
                label.len()
            ));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!("character {c:?} is not allowed in a host name"));
        }
    }
    if name.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(format!("'{host}' is not a valid IPv4 address"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Target::parse(text).expect_err(text)
    }

    #[test]
    fn names_and_literals() {
        assert_eq!(
            Target::parse("db.internal.example:5432"),
            Ok(Target::Name {
                host: "db.internal.example".into(),
                port: 5432
            })
        );
        assert_eq!(
            Target::parse("127.0.0.1:80"),
            Ok(Target::Addr("127.0.0.1:80".parse().unwrap()))
        );
        assert_eq!(
            Target::parse("[::1]:9000"),
            Ok(Target::Addr("[::1]:9000".parse().unwrap()))
        );
        assert_eq!(
            Target::parse("[fe80::1%7]:22"),
            Ok(Target::Addr(
                SocketAddrV6::new("fe80::1".parse().unwrap(), 22, 0, 7).into()
            ))
        );
        assert_eq!(
            Target::parse("/run/php/fpm.sock"),
            Ok(Target::Path("/run/php/fpm.sock".into()))
        );
        assert_eq!(Target::parse("@fpm"), Ok(Target::Abstract(b"fpm".to_vec())));
        assert!(matches!(
            Target::parse("fqdn.example.:1"),
            Ok(Target::Name { .. })
        ));
    }

    #[test]
    fn a_service_name_without_a_port_is_an_srv_target() {
        assert_eq!(
            Target::parse("_postgresql._tcp.db.example"),
            Ok(Target::Srv("_postgresql._tcp.db.example".into()))
        );
        assert_eq!(
            Target::parse("_pg._TCP.example."),
            Ok(Target::Srv("_pg._TCP.example.".into()))
        );
        // With a port it is an ordinary name; without the service labels, no port is wrong.
        assert!(matches!(
            Target::parse("_pg._tcp.example:5432"),
            Ok(Target::Name { .. })
        ));
        assert!(err("db.example").contains("missing port"));
        assert!(err("_sip._udp.example").contains("relays TCP"));
        assert!(err("_pg._tcp.").contains("needs a domain"));
        assert!(err("_pg._tcp.bad!name").contains("not allowed"));
    }

    #[test]
    fn usage_errors_say_what_is_wrong() {
        assert!(err("").contains("empty"));
        assert!(err("host").contains("missing port"));
        assert!(err("host:").contains("missing port"));
        assert!(err("host:http").contains("not a number"));
        assert!(err("host:0").contains("out of range"));
        assert!(err("host:65536").contains("out of range"));
        assert!(err("host:99999999999999999999").contains("out of range"));
        assert!(err("[::1:80").contains("unbalanced"));
        assert!(err("::1]:80").contains("unbalanced"));
        assert!(err("::1:80").contains("brackets"));
        assert!(err("[::1]80").contains("missing port"));
        assert!(err(&format!("{}.example:1", "a".repeat(64))).contains("63"));
        assert!(err(&format!("{}:1", ["abcdefghi"; 26].join("."))).contains("253"));
        assert!(err("a\nb:1").contains("control"));
        assert!(err("a b:1").contains("not allowed"));
        assert!(err("a..b:1").contains("empty label"));
        assert!(err("300.1.1.1:1").contains("IPv4"));
        assert!(err("@").contains("name"));
        assert!(err(&format!("/{}", "x".repeat(MAX_UNIX_NAME))).contains("at most"));
        assert!(err("run/x.sock:1").contains("absolute"));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::net::{SocketAddrV4, SocketAddrV6};

        /// Host names as DNS has them: 1-4 labels of letters, digits and inner hyphens.
        fn host_name() -> impl Strategy<Value = String> {
            let label = "[a-z][a-z0-9-]{0,20}[a-z0-9]|[a-z]";
            prop::collection::vec(label, 1..5).prop_map(|labels| labels.join("."))
        }

        proptest! {
            #[test]
            fn every_ipv4_socket_address_reads_back(ip: [u8; 4], port in 1u16..) {
                let addr = SocketAddrV4::new(ip.into(), port);
                prop_assert_eq!(Target::parse(&addr.to_string()), Ok(Target::Addr(addr.into())));
            }

            #[test]
            fn every_ipv6_socket_address_reads_back(ip: [u8; 16], port in 1u16..) {
                let addr = SocketAddrV6::new(ip.into(), port, 0, 0);
                prop_assert_eq!(Target::parse(&addr.to_string()), Ok(Target::Addr(addr.into())));
            }

            #[test]
            fn host_names_read_back(host in host_name(), port in 1u16..) {
                let text = format!("{host}:{port}");
                let target = Target::parse(&text);
                prop_assert_eq!(&target, &Ok(Target::Name { host, port }));
                prop_assert_eq!(target.unwrap().to_string(), text);
            }

            #[test]
            fn unix_paths_read_back(path in "/[a-zA-Z0-9._/ -]{0,100}") {
                let target = Target::parse(&path);
                prop_assert_eq!(&target, &Ok(Target::Path(path.clone().into())));
                prop_assert_eq!(target.unwrap().to_string(), path);
            }

            #[test]
            fn any_text_parses_or_is_refused_and_what_parses_reads_back(text in "\\PC{0,80}|[\\[\\]:@/a-z0-9.%-]{0,40}") {
                if let Ok(target) = Target::parse(&text) {
                    prop_assert_eq!(Target::parse(&target.to_string()), Ok(target));
                }
            }

            #[test]
            fn ports_out_of_range_are_refused(host in host_name(), port in 65536u64..) {
                let text = format!("{host}:{port}");
                prop_assert!(Target::parse(&text).is_err());
            }
        }
    }
}
