//! The address policy (src/policy.rs): where a name may point. A refused address is never
//! connected to; when every address is refused the session ends with 77 (EX_NOPERM).
//! Refused addresses the tests use are harmless even if a bug let them through: 0.0.0.0
//! reaches this host, and 169.254.169.254 exists only in network namespaces of the test's.

use std::process::{Command, Stdio};

use crate::support::backend;
use crate::support::dns::{DnsServer, Record};
use crate::support::launch::{collect, run, spawn_piped};
use crate::support::netns::{Link, NEAR};
use crate::support::{TempDir, dynproxy, is_root};

fn a(ip: &str) -> Record {
    Record::A(ip.parse().unwrap())
}

/// dynproxy -v with `args`, stdin closed: (exit status, stderr).
fn attempt(args: &[String]) -> (Option<i32>, String) {
    let mut all = vec!["-v".to_owned()];
    all.extend_from_slice(args);
    let out = run(&all, Stdio::null());
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), stderr)
}

#[test]
fn a_name_in_the_hosts_file_pointing_at_the_metadata_service_is_refused_with_77() {
    if !is_root() {
        eprintln!("skipped: needs root, for a mount and a network namespace");
        return;
    }
    let dir = TempDir::new();
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "169.254.169.254 metadata.test\n").unwrap();
    let child = spawn_piped(
        Command::new("unshare").args([
            "--mount",
            "--net",
            "sh",
            "-c",
            r#"ip link set lo up && mount --bind "$0" /etc/hosts && exec "$1" -v metadata.test:80"#,
        ])
        .arg(&hosts)
        .arg(dynproxy()),
        Stdio::null(),
    );
    let out = collect(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(77), "{stderr}");
    assert!(
        stderr.contains("169.254.169.254 is refused by default"),
        "{stderr}"
    );
    assert!(!stderr.contains("connecting to"), "{stderr}");
}

#[test]
fn a_dns_answer_of_the_metadata_address_ends_with_77_and_sends_no_syn() {
    // In two namespaces of the test's own, the metadata address exists and listens, on the
    // far side of a link; dynproxy and the DNS server are on the near side. Before the
    // policy, the session reached it.
    let link = Link::new();
    link.add_addresses("169.254.0.1/16", "169.254.169.254/16");
    let metadata = link.in_far(|| backend::echo("169.254.169.254"));
    let dns = link.in_near(|| DnsServer::start_on(format!("{NEAR}:53").parse().unwrap()));
    dns.set("app.test", &[a("169.254.169.254")]);
    let target = format!("app.test:{}", metadata.address.port());
    let session = |allow: &[&str]| {
        let out = Command::new("nsenter")
            .args(["-t", &link.near_pid().to_string(), "-n", "--"])
            .arg(dynproxy())
            .args(["-v", &dns.arg()])
            .args(allow)
            .arg(&target)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stderr)
    };
    let (code, stderr) = session(&[]);
    assert_eq!(code, Some(77), "{stderr}");
    assert!(
        stderr.contains("169.254.169.254 is refused by default"),
        "{stderr}"
    );
    assert_eq!(metadata.accepted(), 0, "no connection reached it");
    // An --allow lifts the default: the same session then reaches it.
    let (code, stderr) = session(&["--allow=169.254.169.254"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(metadata.accepted(), 1);
}

#[test]
fn a_dns_answer_of_only_refused_addresses_ends_with_77_and_connects_nowhere() {
    let listener = backend::echo("127.0.0.1");
    let dns = DnsServer::start();
    dns.set("zero.test", &[a("0.0.0.0")]);
    let (code, stderr) = attempt(&[dns.arg(), format!("zero.test:{}", listener.address.port())]);
    assert_eq!(code, Some(77), "{stderr}");
    assert!(stderr.contains("every address refused"), "{stderr}");
    assert!(!stderr.contains("connecting to"), "{stderr}");
    assert_eq!(listener.accepted(), 0);
}

#[test]
fn a_mixed_answer_connects_only_to_the_allowed_address() {
    let echo = backend::echo("127.0.0.1");
    let dns = DnsServer::start();
    dns.set("mixed.test", &[a("0.0.0.0"), a("127.0.0.1")]);
    let (code, stderr) = attempt(&[dns.arg(), format!("mixed.test:{}", echo.address.port())]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("0.0.0.0 is refused by default"), "{stderr}");
    assert!(!stderr.contains("connecting to 0.0.0.0"), "{stderr}");
    assert!(stderr.contains("connecting to 127.0.0.1"), "{stderr}");
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn an_answer_outside_allow_is_refused_with_77() {
    let listener = backend::echo("127.0.0.1");
    let dns = DnsServer::start();
    dns.set("app.test", &[a("127.0.0.1")]);
    let (code, stderr) = attempt(&[
        dns.arg(),
        "--allow=10.250.0.0/16".into(),
        format!("app.test:{}", listener.address.port()),
    ]);
    assert_eq!(code, Some(77), "{stderr}");
    assert!(
        stderr.contains("127.0.0.1 is outside every --allow"),
        "{stderr}"
    );
    assert_eq!(listener.accepted(), 0);
}

#[test]
fn deny_refuses_a_literal_address_with_77() {
    let listener = backend::echo("127.0.0.1");
    let (code, stderr) = attempt(&["--deny=127.0.0.0/8".into(), listener.address.to_string()]);
    assert_eq!(code, Some(77), "{stderr}");
    assert!(stderr.contains("refused by --deny 127.0.0.0/8"), "{stderr}");
    assert_eq!(listener.accepted(), 0);
}

#[test]
fn a_literal_address_is_not_refused_by_the_defaults() {
    // Linux takes a connection to 0.0.0.0 to 127.0.0.1. The admin wrote the address, so
    // the defaults for names do not apply.
    let echo = backend::echo("127.0.0.1");
    let (code, stderr) = attempt(&[format!("0.0.0.0:{}", echo.address.port())]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn a_bad_block_is_a_usage_error() {
    let (code, stderr) = attempt(&["--allow=10.0.0.0/33".into(), "127.0.0.1:1".into()]);
    assert_eq!(code, Some(64), "{stderr}");
    assert!(stderr.contains("10.0.0.0/33"), "{stderr}");
}
