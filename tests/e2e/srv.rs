//! SRV targets (`_SERVICE._tcp.DOMAIN`, no port): the hosts and ports a DNS server the test
//! controls publishes, tried in RFC 2782's order, each host under the same rules as a
//! HOST:PORT target.

use std::net::{IpAddr, TcpListener};
use std::process::Stdio;

use crate::support::backend::{Backend, BlackHole, Refusing, banner, read_banner, serve};
use crate::support::dns::{DnsServer, Record};
use crate::support::launch::{Launcher, assert_exit, run};

const SERVICE: &str = "_pg._tcp.svc.test";

fn srv(priority: u16, weight: u16, port: u16, target: &str) -> Record {
    Record::Srv {
        priority,
        weight,
        port,
        target: target.into(),
        glue: vec![],
    }
}

fn a(ip: &str) -> Record {
    Record::A(ip.parse().unwrap())
}

/// A backend on `ip` (any port) that says `name`.
fn backend(ip: &str, name: &'static str) -> Backend {
    serve(TcpListener::bind((ip, 0)).unwrap(), banner(name))
}

#[test]
fn the_lowest_priority_host_is_reached_and_named_in_the_session_line() {
    let first = backend("127.0.0.2", "first");
    let second = backend("127.0.0.3", "second");
    let dns = DnsServer::start();
    dns.set(
        SERVICE,
        &[
            srv(20, 0, second.address.port(), "db2.test"),
            srv(10, 0, first.address.port(), "db1.test"),
        ],
    );
    dns.set("db1.test", &[a("127.0.0.2")]);
    dns.set("db2.test", &[a("127.0.0.3")]);
    let launcher = Launcher::inetd(&[dns.arg(), SERVICE.into()]);
    assert_eq!(read_banner(&mut launcher.connect()), "first");
    let line = launcher.sessions(1).remove(0);
    let expected = format!("target={SERVICE} backend=db1.test:{}", first.address.port());
    assert!(line.contains(&expected), "{line}");
}

#[test]
fn a_dead_first_host_falls_through_to_the_next() {
    let dead = Refusing::on("127.0.0.2", 0).unwrap();
    let alive = backend("127.0.0.3", "alive");
    let dns = DnsServer::start();
    dns.set(
        SERVICE,
        &[
            srv(10, 0, dead.address.port(), "dead.test"),
            srv(20, 0, alive.address.port(), "alive.test"),
        ],
    );
    dns.set("dead.test", &[a("127.0.0.2")]);
    dns.set("alive.test", &[a("127.0.0.3")]);
    let launcher = Launcher::inetd(&[dns.arg(), SERVICE.into()]);
    assert_eq!(read_banner(&mut launcher.connect()), "alive");
    assert_eq!(alive.accepted(), 1);
}

#[test]
fn a_host_that_never_answers_leaves_time_for_the_next() {
    let hole = BlackHole::new(TcpListener::bind("127.0.0.2:0").unwrap());
    let alive = backend("127.0.0.3", "alive");
    let dns = DnsServer::start();
    dns.set(
        SERVICE,
        &[
            srv(10, 0, hole.address.port(), "hole.test"),
            srv(20, 0, alive.address.port(), "alive.test"),
        ],
    );
    dns.set("hole.test", &[a("127.0.0.2")]);
    dns.set("alive.test", &[a("127.0.0.3")]);
    // The first host gets half the time, and the second the rest.
    let args = [
        "--connect-timeout".into(),
        "4".into(),
        dns.arg(),
        SERVICE.into(),
    ];
    let launcher = Launcher::inetd(&args);
    assert_eq!(read_banner(&mut launcher.connect()), "alive");
}

#[test]
fn weights_share_the_sessions_of_one_priority() {
    let light = backend("127.0.0.2", "light");
    let heavy = backend("127.0.0.3", "heavy");
    let dns = DnsServer::start();
    dns.set(
        SERVICE,
        &[
            srv(10, 1, light.address.port(), "light.test"),
            srv(10, 3, heavy.address.port(), "heavy.test"),
        ],
    );
    dns.set("light.test", &[a("127.0.0.2")]);
    dns.set("heavy.test", &[a("127.0.0.3")]);
    let launcher = Launcher::inetd(&[dns.arg(), SERVICE.into()]);
    let sessions = 200;
    let mut to_light = 0;
    for _ in 0..sessions {
        to_light += usize::from(read_banner(&mut launcher.connect()) == "light");
    }
    // Weights 1:3: about 50 of 200 (a standard deviation of 6); outside 15..=90 by chance
    // less than once in a hundred million runs. Each session draws its own seed.
    assert!(
        (15..=90).contains(&to_light),
        "{to_light} of {sessions} to weight 1"
    );
}

#[test]
fn the_additional_section_gives_a_hosts_addresses_without_a_query() {
    let only = backend("127.0.0.2", "glued");
    let dns = DnsServer::start();
    dns.set(
        SERVICE,
        &[Record::Srv {
            priority: 10,
            weight: 0,
            port: only.address.port(),
            target: "glued.test".into(),
            glue: vec!["127.0.0.2".parse::<IpAddr>().unwrap()],
        }],
    );
    // glued.test itself does not exist: asked, it would be NXDOMAIN.
    let launcher = Launcher::inetd(&[dns.arg(), SERVICE.into()]);
    assert_eq!(read_banner(&mut launcher.connect()), "glued");
    assert_eq!(dns.queries(), 1, "the SRV query alone");
}

#[test]
fn a_lone_dot_target_means_the_service_is_not_there() {
    let dns = DnsServer::start();
    dns.set(SERVICE, &[srv(0, 0, 0, ".")]);
    let out = run(&[dns.arg(), SERVICE.into()], Stdio::null());
    let stderr = assert_exit(&out, 68);
    assert!(stderr.contains("not available"), "{stderr}");
}

#[test]
fn an_srv_name_that_does_not_exist_is_no_such_name() {
    let dns = DnsServer::start();
    let out = run(&[dns.arg(), SERVICE.into()], Stdio::null());
    let stderr = assert_exit(&out, 68);
    assert!(stderr.contains("NXDOMAIN"), "{stderr}");
}

#[test]
fn a_host_refused_by_the_policy_is_passed_over_for_the_next() {
    let refused = backend("127.0.0.2", "refused");
    let allowed = backend("127.0.0.3", "allowed");
    let dns = DnsServer::start();
    dns.set(
        SERVICE,
        &[
            srv(10, 0, refused.address.port(), "one.test"),
            srv(20, 0, allowed.address.port(), "two.test"),
        ],
    );
    dns.set("one.test", &[a("127.0.0.2")]);
    dns.set("two.test", &[a("127.0.0.3")]);
    let deny = ["--deny".to_string(), "127.0.0.2/32".into()];
    let launcher = Launcher::inetd(&[&deny[..], &[dns.arg(), SERVICE.into()]].concat());
    assert_eq!(read_banner(&mut launcher.connect()), "allowed");
    assert_eq!(
        refused.accepted(),
        0,
        "a refused address is never connected to"
    );
}

#[test]
fn every_host_refused_by_the_policy_is_77() {
    let refused = backend("127.0.0.2", "refused");
    let dns = DnsServer::start();
    dns.set(
        SERVICE,
        &[
            srv(10, 0, refused.address.port(), "one.test"),
            srv(20, 0, refused.address.port(), "two.test"),
        ],
    );
    dns.set("one.test", &[a("127.0.0.2")]);
    dns.set("two.test", &[a("127.0.0.2")]);
    let out = run(
        &[
            "--deny".into(),
            "127.0.0.0/8".into(),
            dns.arg(),
            SERVICE.to_string(),
        ],
        Stdio::null(),
    );
    let stderr = assert_exit(&out, 77);
    assert!(
        stderr.contains("one.test") && stderr.contains("two.test"),
        "{stderr}"
    );
    assert_eq!(refused.accepted(), 0);
}
