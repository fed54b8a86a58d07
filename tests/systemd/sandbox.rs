//! The protection of a session as shipped, shown by attack: the tests' probe
//! (tests/probe/probe.rs) is started by the shipped units in dynproxy's place, applies
//! dynproxy's own sandbox as dynproxy does, and tries what a compromised session could.

use std::io::Read;
use std::net::TcpStream;

use crate::manager::Manager;
use crate::support::WAIT;

/// The probe's report from a session of a `dynproxy-probe@.service` whose drop-ins are the
/// shipped ones plus `extra` (a drop-in of the probe's unit, or ""), and its arguments.
fn probe_under_the_units(extra: &str, args: &str) -> Vec<(String, String)> {
    let service = format!("[Service]\nExecStart=/usr/local/bin/probe {args}\n");
    let mut units = vec![
        (
            "dynproxy-probe.socket",
            "[Socket]\nListenStream=127.0.0.1:17100\n",
        ),
        ("dynproxy-probe@.service", service.as_str()),
    ];
    if !extra.is_empty() {
        units.push(("dynproxy-probe@.service.d/extra.conf", extra));
    }
    let manager = Manager::boot("nameserver 127.0.0.1\n", &units);
    manager.systemctl(&["start", "dynproxy-probe.socket"]);
    let text = manager.in_netns(|| {
        let mut stream = TcpStream::connect("127.0.0.1:17100").unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    });
    text.lines()
        .map(|l| match l.split_once(": ") {
            Some((attempt, outcome)) => (attempt.to_owned(), outcome.to_owned()),
            None => (l.to_owned(), String::new()),
        })
        .collect()
}

fn not_blocked(report: &[(String, String)]) -> Vec<&(String, String)> {
    report
        .iter()
        .filter(|(attempt, outcome)| !attempt.starts_with('#') && !outcome.starts_with("blocked ("))
        .collect()
}

#[test]
fn every_attack_from_a_session_of_the_shipped_units_fails() {
    let report = probe_under_the_units("", "");
    let layers_left_out: Vec<_> = report
        .iter()
        .filter(|(a, _)| a.starts_with("# sandbox") && !a.contains("applied in"))
        .collect();
    assert!(layers_left_out.is_empty(), "{report:?}");
    let attempts = report.iter().filter(|(a, _)| !a.starts_with('#')).count();
    assert!(attempts >= 30, "every attempt reports: {report:?}");
    assert!(not_blocked(&report).is_empty(), "{report:?}");
}

#[test]
fn every_attack_from_a_session_of_the_strict_profile_fails() {
    let strict = include_str!("../../units/profiles/strict.conf");
    let report = probe_under_the_units(strict, "");
    let attempts = report.iter().filter(|(a, _)| !a.starts_with('#')).count();
    assert!(attempts >= 30, "every attempt reports: {report:?}");
    assert!(not_blocked(&report).is_empty(), "{report:?}");
}

#[test]
fn without_landlock_and_seccomp_the_session_still_runs_and_says_so_with_v() {
    // A kernel without them, as systemd can pretend: the calls fail with ENOSYS.
    let manager = Manager::boot(
        "nameserver 127.0.0.1\n",
        &[(
            "dynproxy-postgres@.service.d/old-kernel.conf",
            "[Service]\n\
             SystemCallFilter=~landlock_create_ruleset landlock_add_rule landlock_restrict_self seccomp\n\
             SystemCallErrorNumber=ENOSYS\n\
             ExecStart=\n\
             ExecStart=/usr/local/bin/dynproxy -v 127.0.0.4:5432\n",
        )],
    );
    let _backend = manager.in_netns(|| {
        crate::support::backend::serve(
            std::net::TcpListener::bind("127.0.0.4:5432").unwrap(),
            crate::support::backend::banner("db"),
        )
    });
    manager.systemctl(&["start", "dynproxy-postgres.socket"]);
    let banner = manager.in_netns(|| {
        let mut stream = TcpStream::connect("127.0.0.1:15432").unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        crate::support::backend::read_banner(&mut stream)
    });
    assert_eq!(banner, "db");
    let journal = crate::support::wait_for("the session's line", || {
        let journal = manager.journal();
        journal.contains("session ").then_some(journal)
    });
    assert!(journal.contains("sandbox: Landlock: "), "{journal}");
    assert!(journal.contains("sandbox: seccomp: "), "{journal}");
    assert!(journal.contains("end=closed"), "{journal}");
    assert!(
        !journal.contains("status="),
        "the session succeeded: {journal}"
    );
}
