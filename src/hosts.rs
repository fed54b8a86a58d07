//! /etc/hosts, read the way the C library's `files` source reads it (hosts(5)): the name as
//! given — the resolv.conf search list is for DNS, not for this file — compared without
//! regard to case with each line's canonical name and aliases, every matching line counting.
//!
//! dynproxy asks this itself rather than through hickory, whose resolver looks the file up
//! only for the first name of its search list: with `search corp.example`, a name `db` that
//! /etc/hosts maps was asked of DNS as `db.corp.example` and then `db`, and never found.

use std::net::IpAddr;

pub const PATH: &str = "/etc/hosts";

/// The addresses `text` (a hosts file) gives `name`, in the file's order, each once.
/// Lines whose address does not parse are skipped, as the C library skips them.
pub fn lookup(text: &[u8], name: &str) -> Vec<IpAddr> {
    let name = without_root(name.as_bytes());
    let mut found: Vec<IpAddr> = Vec::new();
    for line in text.split(|&b| b == b'\n') {
        let line = line.split(|&b| b == b'#').next().unwrap_or_default();
        let mut fields = line
            .split(u8::is_ascii_whitespace)
            .filter(|field| !field.is_empty());
        let Some(address) = fields.next().and_then(parse_address) else {
            continue;
        };
        let names_it = fields.any(|alias| without_root(alias).eq_ignore_ascii_case(name));
        if names_it && !found.contains(&address) {
            found.push(address);
        }
    }
    found
}

/// `db.example.` and `db.example` are one name.
fn without_root(name: &[u8]) -> &[u8] {
    name.strip_suffix(b".").unwrap_or(name)
}

fn parse_address(field: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|ip| ip.parse().unwrap()).collect()
    }

    #[test]
    fn canonical_names_and_aliases_match_without_regard_to_case() {
        let text = b"10.0.0.1 db.internal DB backup\n10.0.0.2 other\n";
        assert_eq!(lookup(text, "db.internal"), ips(&["10.0.0.1"]));
        assert_eq!(lookup(text, "Backup"), ips(&["10.0.0.1"]));
        assert_eq!(lookup(text, "db"), ips(&["10.0.0.1"]));
        assert_eq!(lookup(text, "internal"), ips(&[]));
    }

    #[test]
    fn every_matching_line_counts_in_order_each_address_once() {
        let text =
            b"::1 localhost\n127.0.0.1 localhost\n127.0.0.1 localhost.localdomain localhost\n";
        assert_eq!(lookup(text, "localhost"), ips(&["::1", "127.0.0.1"]));
    }

    #[test]
    fn comments_blank_lines_and_tabs() {
        let text = b"# 10.0.0.9 db\n\n\t10.0.0.1\tdb # db2\n10.0.0.3 x #db\n  \n";
        assert_eq!(lookup(text, "db"), ips(&["10.0.0.1"]));
        assert_eq!(lookup(text, "db2"), ips(&[]));
    }

    #[test]
    fn a_trailing_dot_on_either_side_names_the_same_host() {
        let text = b"10.0.0.1 db.example.\n10.0.0.2 web.example\n";
        assert_eq!(lookup(text, "db.example"), ips(&["10.0.0.1"]));
        assert_eq!(lookup(text, "web.example."), ips(&["10.0.0.2"]));
    }

    #[test]
    fn lines_without_a_valid_address_or_a_name_are_skipped() {
        let text = b"10.0.0.300 db\nfe80::1%eth0 db\ndb\n10.0.0.1\n\xff db\n10.0.0.4 db\r\n";
        assert_eq!(lookup(text, "db"), ips(&["10.0.0.4"]));
    }

    #[test]
    fn nothing_is_found_in_an_empty_file() {
        assert_eq!(lookup(b"", "db"), ips(&[]));
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn an_entry_is_found_among_any_other_lines(
                before in "[ -~\t\n]{0,200}",
                after in "[ -~\t\n]{0,200}",
                ip: [u8; 4],
                alias in "[a-z]{1,8}",
            ) {
                let text = format!("{before}\n{} {alias} db.example\n{after}", IpAddr::from(ip));
                prop_assert!(lookup(text.as_bytes(), "DB.example").contains(&IpAddr::from(ip)));
            }

            #[test]
            fn a_name_in_a_comment_is_never_found(text in "[ -~\t\n]{0,200}", ip: [u8; 4]) {
                let text = format!("{}\n{} #db.example\n", text.replace("db.example", ""), IpAddr::from(ip));
                prop_assert!(lookup(text.as_bytes(), "db.example").is_empty());
            }
        }
    }
}
