//! SRV targets (`_SERVICE._tcp.DOMAIN`, no port): the hosts and ports a DNS server the test
//! controls publishes, tried in RFC 2782's order, each host under the same rules as a
//! HOST:PORT target.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::process::Stdio;

use crate::support::backend::{Backend, BlackHole, Refusing, banner, read_banner, serve};
use crate::support::dns::{DnsServer, Record};
use crate::support::launch::{Launcher, assert_exit, run};

const SERVICE: &str = "_pg._tcp.svc.test";

/// One SRV record of SERVICE: (priority, weight, host name, where the host is).
type Published<'a> = (u16, u16, &'a str, SocketAddr);

/// A DNS server publishing `hosts` for SERVICE, each host's name with an A record.
fn publishing(hosts: &[Published<'_>]) -> DnsServer {
    let dns = DnsServer::start();
    let records: Vec<Record> = hosts
        .iter()
        .map(|&(priority, weight, name, address)| Record::Srv {
            priority,
            weight,
            port: address.port(),
            target: name.into(),
            glue: vec![],
        })
        .collect();
    dns.set(SERVICE, &records);
    for &(_, _, name, address) in hosts {
        let IpAddr::V4(ip) = address.ip() else {
            panic!("the tests' hosts are on 127.0.0.0/8")
        };
        dns.set(name, &[Record::A(ip)]);
    }
    dns
}

/// A backend on `ip` (any port) that says `name`.
fn backend(ip: &str, name: &'static str) -> Backend {
    serve(TcpListener::bind((ip, 0)).unwrap(), banner(name))
}

/// The name of the backend a session of `args` (then SERVICE) reaches.
fn reached(dns: &DnsServer, args: &[&str]) -> String {
    let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    all.extend([dns.arg(), SERVICE.into()]);
    read_banner(&mut Launcher::inetd(&all).connect())
}

#[test]
fn the_lowest_priority_host_is_reached_and_named_in_the_session_line() {
    let first = backend("127.0.0.2", "first");
    let second = backend("127.0.0.3", "second");
    let dns = publishing(&[
        (20, 0, "db2.test", second.address),
        (10, 0, "db1.test", first.address),
    ]);
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
    let dns = publishing(&[
        (10, 0, "dead.test", dead.address),
        (20, 0, "alive.test", alive.address),
    ]);
    assert_eq!(reached(&dns, &[]), "alive");
}

#[test]
fn a_host_that_never_answers_leaves_time_for_the_next() {
    let hole = BlackHole::new(TcpListener::bind("127.0.0.2:0").unwrap());
    let alive = backend("127.0.0.3", "alive");
    let dns = publishing(&[
        (10, 0, "hole.test", hole.address),
        (20, 0, "alive.test", alive.address),
    ]);
    // The first host gets half the time, and the second the rest.
    assert_eq!(reached(&dns, &["--connect-timeout", "4"]), "alive");
}

#[test]
fn weights_share_the_sessions_of_one_priority() {
    let light = backend("127.0.0.2", "light");
    let heavy = backend("127.0.0.3", "heavy");
    let dns = publishing(&[
        (10, 1, "light.test", light.address),
        (10, 3, "heavy.test", heavy.address),
    ]);
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
    assert_eq!(reached(&dns, &[]), "glued");
    assert_eq!(dns.queries(), 1, "the SRV query alone");
}

#[test]
fn a_lone_dot_target_means_the_service_is_not_there() {
    let dns = DnsServer::start();
    dns.set(
        SERVICE,
        &[Record::Srv {
            priority: 0,
            weight: 0,
            port: 0,
            target: ".".into(),
            glue: vec![],
        }],
    );
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
    let dns = publishing(&[
        (10, 0, "one.test", refused.address),
        (20, 0, "two.test", allowed.address),
    ]);
    assert_eq!(reached(&dns, &["--deny", "127.0.0.2/32"]), "allowed");
    assert_eq!(
        refused.accepted(),
        0,
        "a refused address is never connected to"
    );
}

#[test]
fn every_host_refused_by_the_policy_is_77() {
    let refused = backend("127.0.0.2", "refused");
    let dns = publishing(&[
        (10, 0, "one.test", refused.address),
        (20, 0, "two.test", refused.address),
    ]);
    let args = [
        "--deny".into(),
        "127.0.0.0/8".into(),
        dns.arg(),
        SERVICE.into(),
    ];
    let out = run(&args, Stdio::null());
    let stderr = assert_exit(&out, 77);
    assert!(
        stderr.contains("one.test") && stderr.contains("two.test"),
        "{stderr}"
    );
    assert_eq!(refused.accepted(), 0);
}
