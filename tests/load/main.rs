//! Load: ten thousand sessions one after another, two thousand at once, and a gigabyte each
//! way — through systemd-socket-activate, with zero failures and nothing left behind.
//! A test binary of its own, so it never competes with the functional tests for the CPU.

#[allow(dead_code)]
#[path = "../e2e/support/mod.rs"]
mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Mutex;

use support::backend;
use support::data;
use support::launch::{Launcher, Style};
use support::wait_for;

/// One load test at a time: each wants the whole machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn one_byte_echo(launcher: &Launcher) -> TcpStream {
    let mut stream = launcher.connect();
    stream.write_all(b"x").unwrap();
    let mut byte = [0u8];
    stream.read_exact(&mut byte).unwrap();
    assert_eq!(&byte, b"x");
    stream
}

/// Waits until the launcher has no session left, and returns its open descriptors.
fn settled(launcher: &Launcher) -> usize {
    wait_for("every session to exit", || {
        launcher.sessions_running().is_empty().then_some(())
    });
    launcher.open_fds()
}

#[test]
fn ten_thousand_sequential_sessions_all_succeed_and_leave_nothing_behind() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let echo = backend::echo("127.0.0.1");
    let launcher = Launcher::inetd(&[echo.address.to_string()]);
    let fds_before = settled(&launcher);
    for _ in 0..10_000 {
        drop(one_byte_echo(&launcher));
    }
    let lines = launcher.sessions(10_000);
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("end=closed") || l.contains("end=reset"))
            .count(),
        10_000
    );
    assert_eq!(echo.accepted(), 10_000);
    assert_eq!(
        settled(&launcher),
        fds_before,
        "the launcher's open descriptors grew"
    );
}

#[test]
fn two_thousand_concurrent_sessions_all_succeed_and_leave_nothing_behind() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    support::raise_fd_limit();
    let echo = backend::echo("127.0.0.1");
    let launcher = Launcher::inetd(&[echo.address.to_string()]);
    let fds_before = settled(&launcher);
    let held: Vec<TcpStream> = (0..2000).map(|_| one_byte_echo(&launcher)).collect();
    assert_eq!(
        launcher.sessions_running().len(),
        2000,
        "sessions alive at once"
    );
    for stream in &held {
        stream.shutdown(Shutdown::Write).unwrap();
    }
    for mut stream in held {
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
    }
    assert_eq!(
        settled(&launcher),
        fds_before,
        "the launcher's open descriptors grew"
    );
    assert_eq!(launcher.sessions(2000).len(), 2000);
}

#[test]
fn one_gibibyte_each_way_at_once_arrives_intact() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    data::both_ways_through(Style::Inetd, 1 << 30);
}
