//! Policy: where a name may point. dynproxy follows DNS wherever it points, which is its
//! purpose and its risk: a name that comes to resolve to a cloud's metadata service or a
//! link-local address turns the proxy into a way in. Every address a name resolved to (from
//! /etc/hosts or DNS, late answers included) is checked here before any connection attempt,
//! and a refused address is never connected to.
//!
//! An address is refused when a `--deny` covers it; or, for a name, when one of `DEFAULTS`
//! covers it and no `--allow` does; or when `--allow` was given and none covers it. Loopback
//! and private ranges stay allowed by default: local backends and the admin's own networks
//! are what dynproxy is deployed for. A literal address the admin wrote obeys `--allow` and
//! `--deny` but not the defaults. An IPv4-mapped IPv6 address is checked as the IPv4
//! address it reaches.

use std::fmt;
use std::net::IpAddr;

/// Refused for a name unless an `--allow` covers them.
const DEFAULTS: &[(&str, &str)] = &[
    (
        "169.254.0.0/16",
        "link-local, where clouds serve instance metadata",
    ),
    ("fe80::/10", "link-local"),
    ("fd00:ec2::254/128", "the EC2 metadata service"),
    ("100.100.100.200/32", "Alibaba Cloud's metadata service"),
    ("0.0.0.0/8", "unspecified"),
    ("::/128", "unspecified"),
    ("255.255.255.255/32", "broadcast"),
];

/// An address block in CIDR notation; a bare address is a block of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Net {
    base: IpAddr,
    prefix: u8,
}

impl Net {
    pub fn parse(text: &str) -> Result<Net, String> {
        let bad = || format!("'{text}' is not an address block (10.0.0.0/8, fd00::/8, 192.0.2.1)");
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let base: IpAddr = address.parse().map_err(|_| bad())?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?,
            None => max,
        };
        // An IPv4-mapped block is the IPv4 block it names, as addresses are checked.
        if let IpAddr::V6(v6) = base {
            if let (Some(v4), true) = (v6.to_ipv4_mapped(), prefix >= 96) {
                return Ok(Net {
                    base: v4.into(),
                    prefix: prefix - 96,
                });
            }
        }
        Ok(Net { base, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(v4) => u128::from(u32::from(v4)) << 96,
            IpAddr::V6(v6) => u128::from(v6),
        };
        if self.base.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        // IPv4 in the top 32 bits, so that a prefix counts from the top in both families.
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.prefix))
            .unwrap_or(0);
        bits(self.base) & mask == bits(ip) & mask
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.prefix)
    }
}

/// `--allow` and `--deny`, as given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    pub allow: Vec<Net>,
    pub deny: Vec<Net>,
}

impl Policy {
    /// Why `ip` is refused, or None if it may be connected to. `name`: it came from
    /// resolving a name, so the defaults apply.
    pub fn refuses(&self, ip: IpAddr, name: bool) -> Option<String> {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if let Some(net) = self.deny.iter().find(|net| net.contains(ip)) {
            return Some(format!("{ip} is refused by --deny {net}"));
        }
        let allowed = self.allow.iter().any(|net| net.contains(ip));
        if name && !allowed {
            let default = DEFAULTS.iter().find_map(|(net, why)| {
                let net = Net::parse(net).ok()?;
                net.contains(ip)
                    .then(|| format!("{ip} is refused by default ({net}: {why})"))
            });
            if default.is_some() {
                return default;
            }
        }
        if !self.allow.is_empty() && !allowed {
            return Some(format!("{ip} is outside every --allow"));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn policy(allow: &[&str], deny: &[&str]) -> Policy {
        let nets = |list: &[&str]| list.iter().map(|n| Net::parse(n).unwrap()).collect();
        Policy {
            allow: nets(allow),
            deny: nets(deny),
        }
    }

    #[test]
    fn blocks_contain_what_their_prefix_says() {
        let net = Net::parse("10.250.0.0/16").unwrap();
        assert!(net.contains(ip("10.250.3.4")));
        assert!(!net.contains(ip("10.251.0.1")));
        assert!(!net.contains(ip("::ffff:10.250.3.4")), "families are apart");
        assert!(Net::parse("0.0.0.0/0").unwrap().contains(ip("203.0.113.9")));
        assert!(Net::parse("fe80::/10").unwrap().contains(ip("fe80::1")));
        assert!(!Net::parse("fe80::/10").unwrap().contains(ip("fec0::1")));
        assert!(Net::parse("192.0.2.1").unwrap().contains(ip("192.0.2.1")));
        assert!(!Net::parse("192.0.2.1").unwrap().contains(ip("192.0.2.2")));
    }

    #[test]
    fn bad_blocks_are_refused() {
        for text in [
            "10.0.0.0/33",
            "fd00::/129",
            "10.0.0/8",
            "example.com/8",
            "10.0.0.0/x",
        ] {
            assert!(Net::parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn a_name_may_not_point_at_metadata_link_local_or_unspecified_addresses() {
        let none = Policy::default();
        for bad in [
            "169.254.169.254",
            "fd00:ec2::254",
            "fe80::1",
            "0.0.0.0",
            "::",
        ] {
            assert!(none.refuses(ip(bad), true).is_some(), "{bad}");
            assert!(none.refuses(ip(bad), false).is_none(), "{bad} as a literal");
        }
        for good in ["127.0.0.1", "::1", "10.1.2.3", "192.168.1.1", "fd12::1"] {
            assert!(none.refuses(ip(good), true).is_none(), "{good}");
        }
    }

    #[test]
    fn an_ipv4_mapped_address_is_checked_as_ipv4() {
        let none = Policy::default();
        assert!(none.refuses(ip("::ffff:169.254.169.254"), true).is_some());
        let deny = policy(&[], &["127.0.0.0/8"]);
        assert!(deny.refuses(ip("::ffff:127.0.0.1"), false).is_some());
        let mapped_block = policy(&[], &["::ffff:169.254.0.0/112"]);
        assert!(mapped_block.refuses(ip("169.254.1.2"), false).is_some());
    }

    #[test]
    fn allow_overrides_the_defaults_and_deny_overrides_allow() {
        let allow = policy(&["169.254.169.254"], &[]);
        assert!(allow.refuses(ip("169.254.169.254"), true).is_none());
        assert!(
            allow.refuses(ip("127.0.0.1"), true).is_some(),
            "outside --allow"
        );
        let both = policy(&["10.0.0.0/8"], &["10.9.0.0/16"]);
        assert!(both.refuses(ip("10.1.0.1"), true).is_none());
        assert!(both.refuses(ip("10.9.0.1"), true).is_some());
    }
}
