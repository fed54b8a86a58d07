//! The HAProxy PROXY protocol header (v1 text, v2 binary), sent to the backend before any
//! client byte so that it sees the real client address instead of dynproxy's.
//! Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt

use std::net::{IpAddr, SocketAddr};

use crate::cli::ProxyVersion;

const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
const V2_PROXY: u8 = 0x21; // version 2, command PROXY
const V2_LOCAL: u8 = 0x20; // version 2, command LOCAL
const V2_TCP4: u8 = 0x11; // AF_INET, SOCK_STREAM
const V2_TCP6: u8 = 0x21; // AF_INET6, SOCK_STREAM
const V2_UNSPEC: u8 = 0x00;

/// The header for a client at `source` that connected to `destination`; `None` for clients
/// that are not IP (unix sockets, pipes): v1 says UNKNOWN, v2 says LOCAL.
pub fn encode(version: ProxyVersion, addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let addresses = addresses.map(same_family);
    match version {
        ProxyVersion::V1 => v1(addresses),
        ProxyVersion::V2 => v2(addresses),
    }
}

fn v1(addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let Some((source, destination)) = addresses else {
        return b"PROXY UNKNOWN\r\n".to_vec();
    };
    let family = if source.is_ipv4() { "TCP4" } else { "TCP6" };
    format!(
        "PROXY {family} {} {} {} {}\r\n",
        source.ip(),
        destination.ip(),
        source.port(),
        destination.port()
    )
    .into_bytes()
}

fn v2(addresses: Option<(SocketAddr, SocketAddr)>) -> Vec<u8> {
    let mut header = V2_SIGNATURE.to_vec();
    let Some((source, destination)) = addresses else {
        header.extend_from_slice(&[V2_LOCAL, V2_UNSPEC, 0, 0]);
        return header;
    };
    let mut body = Vec::with_capacity(36);
    let family = match (source.ip(), destination.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            body.extend_from_slice(&s.octets());
            body.extend_from_slice(&d.octets());
            V2_TCP4
        }
        (s, d) => {
            body.extend_from_slice(&as_v6(s).octets());
            body.extend_from_slice(&as_v6(d).octets());
            V2_TCP6
        }
    };
    body.extend_from_slice(&source.port().to_be_bytes());
    body.extend_from_slice(&destination.port().to_be_bytes());
    header.extend_from_slice(&[V2_PROXY, family]);
    // The body is 12 or 36 bytes, so the length always fits.
    header.extend_from_slice(&(body.len() as u16).to_be_bytes());
    header.extend_from_slice(&body);
    header
}

/// Both addresses in one family: an IPv4 client of a dual-stack listener shows up as
/// ::ffff:a.b.c.d, which is sent as plain IPv4 when both ends are such; a real mix as IPv6.
fn same_family((source, destination): (SocketAddr, SocketAddr)) -> (SocketAddr, SocketAddr) {
    let unmap = |a: SocketAddr| SocketAddr::new(a.ip().to_canonical(), a.port());
    let (s, d) = (unmap(source), unmap(destination));
    if s.is_ipv4() == d.is_ipv4() {
        return (s, d);
    }
    let v6 = |a: SocketAddr| SocketAddr::new(IpAddr::V6(as_v6(a.ip())), a.port());
    (v6(s), v6(d))
}

fn as_v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(s: &str, d: &str) -> Option<(SocketAddr, SocketAddr)> {
        Some((s.parse().unwrap(), d.parse().unwrap()))
    }

    #[test]
    fn v1_matches_the_spec_examples() {
        let header = encode(
            ProxyVersion::V1,
            pair("192.168.0.1:56324", "192.168.0.11:443"),
        );
        assert_eq!(header, b"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
        let header = encode(
            ProxyVersion::V1,
            pair("[2001:db8::1]:1", "[::ffff:10.0.0.1]:2"),
        );
        assert_eq!(header, b"PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 1 2\r\n");
        assert_eq!(encode(ProxyVersion::V1, None), b"PROXY UNKNOWN\r\n");
    }

    #[test]
    fn mapped_ipv4_is_sent_as_ipv4() {
        let header = encode(
            ProxyVersion::V1,
            pair("[::ffff:10.1.2.3]:5", "[::ffff:10.0.0.1]:6"),
        );
        assert_eq!(header, b"PROXY TCP4 10.1.2.3 10.0.0.1 5 6\r\n");
    }

    #[test]
    fn v2_layout() {
        let header = encode(ProxyVersion::V2, pair("10.1.2.3:258", "10.0.0.1:80"));
        let mut expected = V2_SIGNATURE.to_vec();
        expected.extend_from_slice(&[0x21, 0x11, 0, 12, 10, 1, 2, 3, 10, 0, 0, 1, 1, 2, 0, 80]);
        assert_eq!(header, expected);
        let header = encode(ProxyVersion::V2, pair("[::1]:1", "[::2]:2"));
        assert_eq!(header.len(), 16 + 36);
        assert_eq!(&header[12..16], &[0x21, 0x21, 0, 36]);
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(encode(ProxyVersion::V2, None), local);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;
        use std::net::{Ipv4Addr, Ipv6Addr};

        proptest! {
            #[test]
            fn v1_ipv4_header_carries_both_addresses(s: [u8; 4], d: [u8; 4], sp: u16, dp: u16) {
                let (s, d) = (Ipv4Addr::from(s), Ipv4Addr::from(d));
                let header = encode(ProxyVersion::V1, Some(((s, sp).into(), (d, dp).into())));
                let text = String::from_utf8(header).unwrap();
                prop_assert!(text.ends_with("\r\n") && text.len() <= 107, "{}", text);
                let fields: Vec<&str> = text.trim_end().split(' ').collect();
                let expected = ["PROXY".into(), "TCP4".into(), s.to_string(), d.to_string(), sp.to_string(), dp.to_string()];
                prop_assert_eq!(fields, expected.iter().map(String::as_str).collect::<Vec<_>>());
            }

            #[test]
            fn v1_ipv6_header_carries_both_addresses(s: [u8; 16], d: [u8; 16], sp: u16, dp: u16) {
                let (s, d) = (Ipv6Addr::from(s), Ipv6Addr::from(d));
                let header = encode(ProxyVersion::V1, Some(((s, sp).into(), (d, dp).into())));
                let text = String::from_utf8(header).unwrap();
                prop_assert!(text.len() <= 107, "{}", text);
                let fields: Vec<String> = text.trim_end().split(' ').map(String::from).collect();
                let both_mapped = s.to_ipv4_mapped().is_some() && d.to_ipv4_mapped().is_some();
                prop_assert_eq!(&fields[1], if both_mapped { "TCP4" } else { "TCP6" });
                prop_assert_eq!(fields[2].parse::<IpAddr>().unwrap().to_canonical(), IpAddr::from(s).to_canonical());
                prop_assert_eq!(fields[3].parse::<IpAddr>().unwrap().to_canonical(), IpAddr::from(d).to_canonical());
                prop_assert_eq!((fields[4].parse::<u16>().unwrap(), fields[5].parse::<u16>().unwrap()), (sp, dp));
            }

            #[test]
            fn v2_header_decodes_to_the_addresses(s: [u8; 16], d: [u8; 16], sp: u16, dp: u16, v4 in any::<bool>()) {
                let (s, d): (IpAddr, IpAddr) = if v4 {
                    (Ipv4Addr::new(s[0], s[1], s[2], s[3]).into(), Ipv4Addr::new(d[0], d[1], d[2], d[3]).into())
                } else {
                    (Ipv6Addr::from(s).into(), Ipv6Addr::from(d).into())
                };
                let header = encode(ProxyVersion::V2, Some(((s, sp).into(), (d, dp).into())));
                prop_assert_eq!(&header[..12], &V2_SIGNATURE[..]);
                prop_assert_eq!(header[12], V2_PROXY);
                let len = u16::from_be_bytes([header[14], header[15]]) as usize;
                prop_assert_eq!(header.len(), 16 + len);
                let body = &header[16..];
                let (got_s, got_d): (IpAddr, IpAddr) = match header[13] {
                    V2_TCP4 => {
                        prop_assert_eq!(len, 12);
                        (<[u8; 4]>::try_from(&body[0..4]).unwrap().into(), <[u8; 4]>::try_from(&body[4..8]).unwrap().into())
                    }
                    V2_TCP6 => {
                        prop_assert_eq!(len, 36);
                        (<[u8; 16]>::try_from(&body[0..16]).unwrap().into(), <[u8; 16]>::try_from(&body[16..32]).unwrap().into())
                    }
                    other => return Err(TestCaseError::fail(format!("family {other:#x}"))),
                };
                prop_assert_eq!(got_s.to_canonical(), s.to_canonical());
                prop_assert_eq!(got_d.to_canonical(), d.to_canonical());
                prop_assert_eq!(&body[len - 4..], &[sp.to_be_bytes(), dp.to_be_bytes()].concat()[..]);
            }
        }
    }
}
