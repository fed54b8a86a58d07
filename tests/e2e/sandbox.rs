//! The sandbox, shown by attack: the tests' probe (tests/probe/probe.rs) applies dynproxy's
//! own sandbox (src/sandbox.rs) and tries what a compromised session could try. These run
//! as root, the strongest position to attack from: every attempt must still fail.

use std::process::{Command, Stdio};

use crate::support::launch::{Launcher, collect, spawn_piped};
use crate::support::{TempDir, backend, is_root, probe};

/// The probe's report: (attempt, outcome) per line, and the sandbox layers it left out. A
/// unix socket listens for its "connect to a unix socket".
fn run_probe(args: &[&str]) -> (Vec<(String, String)>, Vec<String>) {
    let dir = TempDir::new();
    let socket = dir.join("listening.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let child = spawn_piped(
        Command::new(probe())
            .args(args)
            .env("PROBE_UNIX_SOCKET", &socket),
        Stdio::null(),
    );
    let out = collect(child);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let left_out = text
        .lines()
        .filter_map(|l| l.strip_prefix("# sandbox: "))
        .map(str::to_owned)
        .collect();
    let report = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (attempt, outcome) = l.split_once(": ").unwrap_or((l, ""));
            (attempt.to_owned(), outcome.to_owned())
        })
        .collect();
    (report, left_out)
}

#[test]
fn every_attack_from_inside_the_sandbox_fails_even_as_root() {
    if !is_root() {
        eprintln!("skipped: needs root, to attack from the strongest position");
        return;
    }
    let (report, left_out) = run_probe(&[]);
    assert!(left_out.is_empty(), "layers left out: {left_out:?}");
    assert!(report.len() >= 30, "every attempt reports: {report:?}");
    let allowed: Vec<_> = report
        .iter()
        .filter(|(_, outcome)| !outcome.starts_with("blocked ("))
        .collect();
    assert!(allowed.is_empty(), "not blocked: {allowed:?}");
}

#[test]
fn without_the_sandbox_the_same_attempts_succeed_as_root() {
    // The probe can tell: outside the sandbox, root does these (all harmless).
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let attempts = [
        "write /tmp",
        "read /root",
        "read another process's /proc",
        "see when /etc/shadow changed",
        "open a raw socket",
        "listen on a TCP port",
        "connect to a unix socket",
        "create a user namespace",
        "start a process",
        "map executable memory",
    ];
    let mut args = vec!["--no-sandbox"];
    args.extend(attempts);
    let (report, _) = run_probe(&args);
    let outcomes: Vec<(&str, &str)> = report
        .iter()
        .map(|(a, o)| (a.as_str(), o.as_str()))
        .collect();
    let expected: Vec<(&str, &str)> = attempts.iter().map(|a| (*a, "ALLOWED")).collect();
    assert_eq!(outcomes, expected);
}

#[test]
fn a_relaying_session_runs_with_no_new_privileges_and_a_seccomp_filter() {
    let echo = backend::echo("127.0.0.1");
    let launcher = Launcher::inetd(&[echo.address.to_string()]);
    let (_client, session) = launcher.relaying_session();
    let status = std::fs::read_to_string(format!("/proc/{session}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    assert_eq!(field("Seccomp:"), "2", "filter mode: {status}");
}
