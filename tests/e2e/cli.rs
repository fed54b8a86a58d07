//! The command line: usage errors exit 64, say what is wrong, and print nothing on stdout.

use std::process::Stdio;

use crate::support::launch::{run, run_offline};

fn usage_error(args: &[&str], expected: &str) {
    let out = run_offline(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?} wrote to stdout");
    assert!(
        stderr.contains(expected),
        "{args:?}: expected {expected:?} in {stderr:?}"
    );
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
}

#[test]
fn empty_target() {
    usage_error(&[""], "empty target");
}

#[test]
fn missing_target() {
    usage_error(&[], "TARGET");
}

#[test]
fn missing_port() {
    usage_error(&["db.test"], "missing port");
    usage_error(&["db.test:"], "missing port");
    usage_error(&["[::1]"], "missing port");
}

#[test]
fn non_numeric_port() {
    usage_error(&["db.test:postgres"], "not a number");
    usage_error(&["db.test:-1"], "not a number");
}

#[test]
fn port_out_of_range() {
    usage_error(&["db.test:0"], "out of range");
    usage_error(&["db.test:65536"], "out of range");
    usage_error(&["127.0.0.1:4294967296"], "out of range");
}

#[test]
fn unbalanced_brackets() {
    usage_error(&["[::1:80"], "unbalanced");
    usage_error(&["::1]:80"], "unbalanced");
    usage_error(&["[[::1]]:80"], "unbalanced");
}

#[test]
fn ipv6_without_brackets() {
    usage_error(&["::1:80"], "brackets");
}

#[test]
fn label_over_63_characters() {
    usage_error(&[&format!("{}.test:80", "a".repeat(64))], "longer than 63");
}

#[test]
fn name_over_253_characters() {
    let name = vec!["abcdefghi"; 26].join(".");
    usage_error(&[&format!("{name}:80")], "longer than 253");
}

#[test]
fn control_characters() {
    usage_error(&["db\n.test:80"], "control character");
    usage_error(&["db\x1b.test:80"], "control character");
    usage_error(&["/run/x\x07.sock"], "control character");
}

#[test]
fn characters_no_host_name_has() {
    usage_error(&["db example:80"], "not allowed");
    usage_error(&["db..test:80"], "empty label");
    usage_error(&["999.1.1.1:80"], "IPv4");
}

#[test]
fn relative_unix_path() {
    usage_error(&["run/php.sock"], "absolute");
}

#[test]
fn unix_path_too_long() {
    usage_error(&[&format!("/{}", "x".repeat(120))], "at most 107");
}

#[test]
fn unknown_option() {
    usage_error(&["--frobnicate", "127.0.0.1:80"], "--frobnicate");
}

#[test]
fn bad_option_values() {
    usage_error(
        &["--connect-timeout", "soon", "127.0.0.1:80"],
        "not a number of seconds",
    );
    usage_error(
        &["--connect-timeout", "0", "127.0.0.1:80"],
        "greater than 0",
    );
    usage_error(&["--exit-idle-time", "-5", "127.0.0.1:80"], "");
    usage_error(
        &["--resolve-timeout", "nan", "127.0.0.1:80"],
        "greater than 0",
    );
    usage_error(&["--nameserver", "dns.test", "127.0.0.1:80"], "IP address");
    usage_error(&["--proxy-protocol", "v3", "127.0.0.1:80"], "v3");
    usage_error(&["--log", "file", "127.0.0.1:80"], "file");
}

#[test]
fn both_families_excluded() {
    usage_error(&["-4", "-6", "db.test:80"], "cannot be used with");
}

#[test]
fn literal_address_of_the_wrong_family() {
    usage_error(&["-6", "127.0.0.1:80"], "address family");
    usage_error(&["-4", "[::1]:80"], "address family");
}

#[test]
fn help_lists_every_option_and_examples() {
    let out = run(&["--help"], Stdio::null());
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for option in [
        "--nameserver",
        "--resolve-timeout",
        "--connect-timeout",
        "--exit-idle-time",
        "-4",
        "-6",
        "--proxy-protocol",
        "--log",
        "--verbose",
        "--version",
        "Examples:",
        "Exit status:",
    ] {
        assert!(help.contains(option), "--help lacks {option}");
    }
}

#[test]
fn version() {
    let out = run(&["--version"], Stdio::null());
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("dynproxy "), "{text}");
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

#[test]
fn help_into_a_closed_pipe_is_no_panic() {
    // `dynproxy --help | head -1`: the write fails with EPIPE.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut child = std::process::Command::new(crate::support::dynproxy())
        .arg("--help")
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = crate::support::wait_exit(&mut child);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
