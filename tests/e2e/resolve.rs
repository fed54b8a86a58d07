//! Resolution: afresh for every session, A and AAAA, CNAMEs followed, failures mapped to
//! the documented exit statuses — against a DNS server the test controls.

use std::io::Read;
use std::net::Shutdown;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::backend::{self, banner, read_banner, serve};
use crate::support::dns::{Behaviour, DnsServer, Record};
use crate::support::launch::{Launcher, assert_exit, collect, run, run_with_input};
use crate::support::{TempDir, dynproxy, is_root};

fn a(ip: &str) -> Record {
    Record::A(ip.parse().unwrap())
}

fn aaaa(ip: &str) -> Record {
    Record::Aaaa(ip.parse().unwrap())
}

/// dynproxy by hand, its stdin closed at once; returns (exit status, stderr).
fn attempt(args: &[String]) -> (Option<i32>, String) {
    let out = run(args, Stdio::null());
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_changed_answer_reaches_the_new_backend_on_the_next_session() {
    let listeners = backend::same_port(&["127.0.0.2", "127.0.0.3"]);
    let port = listeners[0].local_addr().unwrap().port();
    let mut it = listeners.into_iter();
    let _old = serve(it.next().unwrap(), banner("old"));
    let _new = serve(it.next().unwrap(), banner("new"));
    let dns = DnsServer::start();
    dns.set("app.test", &[a("127.0.0.2")]);
    let launcher = Launcher::inetd(&[dns.arg(), format!("app.test:{port}")]);

    assert_eq!(read_banner(&mut launcher.connect()), "old");
    let after_first = dns.queries();
    dns.set("app.test", &[a("127.0.0.3")]);
    assert_eq!(read_banner(&mut launcher.connect()), "new");
    assert!(dns.queries() > after_first, "each session must ask DNS");
}

#[test]
fn aaaa_only_name_connects_over_ipv6() {
    let echo = backend::echo("::1");
    let dns = DnsServer::start();
    dns.set("v6only.test", &[aaaa("::1")]);
    let out = run(
        &[dns.arg(), format!("v6only.test:{}", echo.address.port())],
        Stdio::null(),
    );
    assert_exit(&out, 0);
    assert_eq!(echo.accepted(), 1);
}

/// A name with both an A and an AAAA record, each served by a backend that says its
/// family; returns which backend `flag` reached and how many each accepted (v4, v6).
fn reached_with(flag: &str) -> (String, (usize, usize)) {
    let listeners = backend::same_port(&["::1", "127.0.0.1"]);
    let port = listeners[0].local_addr().unwrap().port();
    let mut it = listeners.into_iter();
    let v6 = serve(it.next().unwrap(), banner("v6"));
    let v4 = serve(it.next().unwrap(), banner("v4"));
    let dns = DnsServer::start();
    dns.set("dual.test", &[a("127.0.0.1"), aaaa("::1")]);
    let launcher = Launcher::inetd(&[dns.arg(), flag.into(), format!("dual.test:{port}")]);
    let reached = read_banner(&mut launcher.connect());
    (reached, (v4.accepted(), v6.accepted()))
}

#[test]
fn ipv4_only_flag_never_uses_ipv6_addresses() {
    assert_eq!(reached_with("-4"), ("v4".into(), (1, 0)));
}

#[test]
fn ipv6_only_flag_never_uses_ipv4_addresses() {
    assert_eq!(reached_with("-6"), ("v6".into(), (0, 1)));
}

#[test]
fn cname_chain_is_followed() {
    let echo = backend::echo("127.0.0.1");
    let dns = DnsServer::start();
    dns.set("alias.test", &[Record::Cname("middle.test".into())]);
    dns.set("middle.test", &[Record::Cname("real.test".into())]);
    dns.set("real.test", &[a("127.0.0.1")]);
    let (code, stderr) = attempt(&[dns.arg(), format!("alias.test:{}", echo.address.port())]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn literal_addresses_never_touch_dns() {
    let echo = backend::echo("127.0.0.1");
    let dns = DnsServer::start();
    let (code, stderr) = attempt(&[dns.arg(), echo.address.to_string()]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(dns.queries() + dns.tcp_queries(), 0);
}

#[test]
fn hosts_file_names_need_no_dns() {
    // /etc/hosts maps localhost on every machine this runs on.
    let echo = backend::echo("127.0.0.1");
    let dns = DnsServer::start();
    let (code, stderr) = attempt(&[
        dns.arg(),
        "-4".into(),
        format!("localhost:{}", echo.address.port()),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(dns.queries(), 0);
}

#[test]
fn nxdomain_exits_68() {
    let dns = DnsServer::start();
    let (code, stderr) = attempt(&[dns.arg(), "nowhere.test:80".into()]);
    assert_eq!(code, Some(68), "{stderr}");
    assert!(stderr.contains("NXDOMAIN"), "{stderr}");
}

#[test]
fn no_address_of_the_family_asked_for_exits_68() {
    let dns = DnsServer::start();
    dns.set("v4only.test", &[a("127.0.0.1")]);
    let (code, stderr) = attempt(&[dns.arg(), "-6".into(), "v4only.test:80".into()]);
    assert_eq!(code, Some(68), "{stderr}");
    assert!(stderr.contains("no IPv6 address"), "{stderr}");
}

#[test]
fn servfail_exits_75() {
    let dns = DnsServer::start();
    dns.set("app.test", &[a("127.0.0.1")]);
    dns.behave(Behaviour::ServFail);
    let (code, stderr) = attempt(&[dns.arg(), "app.test:80".into()]);
    assert_eq!(code, Some(75), "{stderr}");
}

#[test]
fn refused_exits_75() {
    let dns = DnsServer::start();
    dns.set("app.test", &[a("127.0.0.1")]);
    dns.behave(Behaviour::Refused);
    let (code, stderr) = attempt(&[dns.arg(), "app.test:80".into()]);
    assert_eq!(code, Some(75), "{stderr}");
}

#[test]
fn silent_dns_exits_75_after_the_resolve_timeout() {
    let dns = DnsServer::start();
    dns.behave(Behaviour::Silent);
    let (code, stderr) = attempt(&[
        dns.arg(),
        "--resolve-timeout=0.5".into(),
        "app.test:80".into(),
    ]);
    assert_eq!(code, Some(75), "{stderr}");
    assert!(dns.queries() >= 1);
}

/// dynproxy with `resolv_conf` as /etc/resolv.conf (a private mount namespace), `input` on
/// stdin. resolv.conf has no port, so its servers sit on port 53 of loopback addresses of
/// their own (127.53.0.x).
fn with_resolv_conf(resolv_conf: &str, target: &str, input: &[u8]) -> std::process::Output {
    with_system_files(resolv_conf, None, None, target, input)
}

/// `with_resolv_conf`, and `hosts` as /etc/hosts and `hostname` as the host's name (a
/// private UTS namespace), each if given.
fn with_system_files(
    resolv_conf: &str,
    hosts: Option<&str>,
    hostname: Option<&str>,
    target: &str,
    input: &[u8],
) -> std::process::Output {
    assert!(
        is_root(),
        "this test needs root: a mount namespace and port 53"
    );
    let dir = TempDir::new();
    let conf = dir.join("resolv.conf");
    std::fs::write(&conf, resolv_conf).unwrap();
    let hosts_file = dir.join("hosts");
    std::fs::write(&hosts_file, hosts.unwrap_or_default()).unwrap();
    let mount_hosts = if hosts.is_some() {
        r#"mount --bind "$1" /etc/hosts"#
    } else {
        "true"
    };
    let set_hostname = if hostname.is_some() {
        r#"hostname "$2""#
    } else {
        "true"
    };
    run_with_input(
        Command::new("unshare")
            .args([
                "--mount",
                "--uts",
                "sh",
                "-c",
                &format!(
                    r#"mount --bind "$0" /etc/resolv.conf && {mount_hosts} && {set_hostname} && shift 2 && exec "$@""#
                ),
            ])
            .arg(&conf)
            .arg(&hosts_file)
            .arg(hostname.unwrap_or_default())
            .arg(dynproxy())
            .arg(target),
        input,
    )
}

#[test]
fn resolv_conf_servers_search_and_ndots_are_used() {
    let dns = DnsServer::start_on("127.53.0.1:53".parse().unwrap());
    let echo = backend::echo("127.0.0.1");
    dns.set("app.internal.test", &[a("127.0.0.1")]);
    let out = with_resolv_conf(
        "nameserver 127.53.0.1\nsearch internal.test\noptions ndots:1 timeout:5 attempts:2\n",
        &format!("app:{}", echo.address.port()),
        b"via resolv.conf",
    );
    assert_exit(&out, 0);
    assert_eq!(out.stdout, b"via resolv.conf");
    assert!(dns.queries() >= 1);
}

#[test]
fn resolv_conf_timeout_times_attempts_bounds_the_wait() {
    let dns = DnsServer::start_on("127.53.0.2:53".parse().unwrap());
    dns.behave(Behaviour::Silent);
    let out = with_resolv_conf(
        "nameserver 127.53.0.2\noptions timeout:1 attempts:2\n",
        "app.test:80",
        b"",
    );
    let stderr = assert_exit(&out, 75);
    assert!(
        stderr.contains("no answer for app.test within 2.0s"),
        "{stderr}"
    );
}

#[test]
fn a_hosts_file_name_resolves_whatever_the_search_list() {
    // The C library looks a name up in /etc/hosts as given; the search list is for DNS.
    let dns = DnsServer::start_on("127.53.0.3:53".parse().unwrap());
    let echo = backend::echo("127.0.0.1");
    let out = with_system_files(
        "nameserver 127.53.0.3\nsearch internal.test\noptions ndots:5\n",
        Some("127.0.0.1 localhost\n127.0.0.1 db.pinned db\n"),
        None,
        &format!("db:{}", echo.address.port()),
        b"from /etc/hosts",
    );
    assert_exit(&out, 0);
    assert_eq!(out.stdout, b"from /etc/hosts");
    assert_eq!(dns.queries() + dns.tcp_queries(), 0);
}

#[test]
fn a_hosts_file_entry_is_not_overridden_by_dns() {
    // DNS knows an IPv6 address for the name too; /etc/hosts pins it to IPv4, and DNS is
    // not asked at all (as the C library's getaddrinfo does).
    let dns = DnsServer::start_on("127.53.0.4:53".parse().unwrap());
    dns.set("pinned.test", &[aaaa("::1"), a("127.0.0.2")]);
    let echo = backend::echo("127.0.0.1");
    let out = with_system_files(
        "nameserver 127.53.0.4\n",
        Some("127.0.0.1 Pinned.Test\n"),
        None,
        &format!("pinned.test:{}", echo.address.port()),
        b"pinned",
    );
    assert_exit(&out, 0);
    assert_eq!(out.stdout, b"pinned");
    assert_eq!(echo.accepted(), 1);
    assert_eq!(dns.queries() + dns.tcp_queries(), 0);
}

#[test]
fn a_name_missing_as_given_is_found_under_the_search_list() {
    // One dot and ndots:1: asked as given first (NXDOMAIN), then under the search domain.
    let dns = DnsServer::start_on("127.53.0.5:53".parse().unwrap());
    dns.set("app.internal.corp.test", &[a("127.0.0.1")]);
    let echo = backend::echo("127.0.0.1");
    let out = with_resolv_conf(
        "nameserver 127.53.0.5\nsearch corp.test\noptions ndots:1\n",
        &format!("app.internal:{}", echo.address.port()),
        b"searched",
    );
    assert_exit(&out, 0);
    assert_eq!(out.stdout, b"searched");
}

#[test]
fn without_a_search_list_the_host_s_own_domain_is_searched() {
    // As glibc: the domain of the host's name stands for the search list resolv.conf lacks.
    // dynproxy takes the name from uname before its sandbox. A static (musl) build used to
    // leave it to the resolv.conf parser, which read /proc after the sandbox, where Landlock
    // refused it: so this fails on that code with musl and Landlock (as in CI), not with
    // glibc, whose parser asks uname.
    let dns = DnsServer::start_on("127.53.0.7:53".parse().unwrap());
    dns.set("app.site.test", &[a("127.0.0.1")]);
    let echo = backend::echo("127.0.0.1");
    let out = with_system_files(
        "nameserver 127.53.0.7\noptions ndots:1\n",
        None,
        Some("box.site.test"),
        &format!("app:{}", echo.address.port()),
        b"in the host's domain",
    );
    assert_exit(&out, 0);
    assert_eq!(out.stdout, b"in the host's domain");
}

#[test]
fn localhost_is_loopback_without_dns_even_when_hosts_lacks_it() {
    // RFC 6761: localhost names are never asked of DNS.
    let dns = DnsServer::start_on("127.53.0.6:53".parse().unwrap());
    dns.set("localhost", &[a("127.0.0.2")]);
    let echo = backend::echo("127.0.0.1");
    let out = with_system_files(
        "nameserver 127.53.0.6\n",
        Some("# nothing\n"),
        None,
        &format!("localhost:{}", echo.address.port()),
        b"loopback",
    );
    assert_exit(&out, 0);
    assert_eq!(out.stdout, b"loopback");
    assert_eq!(dns.queries() + dns.tcp_queries(), 0);
}

#[test]
fn a_second_nameserver_answers_when_the_first_is_silent() {
    let silent = DnsServer::start();
    silent.behave(Behaviour::Silent);
    let good = DnsServer::start();
    good.set("app.test", &[a("127.0.0.1")]);
    let echo = backend::echo("127.0.0.1");
    let args = [
        silent.arg(),
        good.arg(),
        "--resolve-timeout=20".into(),
        format!("app.test:{}", echo.address.port()),
    ];
    let out = run(&args, std::process::Stdio::null());
    assert_exit(&out, 0);
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn a_session_without_dns_answer_leaves_the_client_socket_clean() {
    // The client must see a plain close: no error text in its stream.
    let dns = DnsServer::start();
    let launcher = Launcher::inetd(&[dns.arg(), "nowhere.test:80".into()]);
    let mut stream = launcher.connect();
    crate::support::assert_receives_nothing(&mut stream);
    let _ = stream.shutdown(Shutdown::Both);
    assert!(launcher.sessions(1)[0].contains("status=68"));
}

#[test]
fn a_server_that_never_answers_aaaa_costs_the_resolution_delay_not_a_timeout() {
    // Once A has answered, AAAA gets 50 ms more (RFC 8305); without that bound the session
    // would wait out the resolve timeout (3 s: sixty times the delay) and fail with 75.
    let echo = backend::echo("127.0.0.1");
    let dns = DnsServer::start();
    dns.set("app.test", &[a("127.0.0.1")]);
    dns.behave(Behaviour::SilentForAaaa);
    let (code, stderr) = attempt(&[
        dns.arg(),
        "--resolve-timeout=3".into(),
        format!("app.test:{}", echo.address.port()),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(echo.accepted(), 1);
}

#[test]
fn ipv6_is_tried_first_and_an_ipv4_address_then_serves() {
    // Happy Eyeballs: a black-holed IPv6 address first, the IPv4 one 250 ms later.
    let mut listeners = backend::same_port(&["::1", "127.0.0.1"]).into_iter();
    let hole = backend::BlackHole::new(listeners.next().unwrap());
    let good = serve(listeners.next().unwrap(), banner("v4"));
    let port = hole.address.port();
    let dns = DnsServer::start();
    dns.set("app.test", &[a("127.0.0.1"), aaaa("::1")]);
    let launcher = Launcher::inetd(&[dns.arg(), "-v".into(), format!("app.test:{port}")]);
    assert_eq!(read_banner(&mut launcher.connect()), "v4");
    let line = launcher.sessions(1).remove(0);
    assert!(line.contains("backend=127.0.0.1:"), "{line}");
    let log = launcher.log();
    let order: Vec<&String> = log.iter().filter(|l| l.contains("connecting to")).collect();
    assert_eq!(order.len(), 2, "{log:?}");
    assert!(order[0].contains("connecting to [::1]:"), "{log:?}");
    assert!(order[1].contains("connecting to 127.0.0.1:"), "{log:?}");
    assert_eq!(good.accepted(), 1);
}

/// The "connecting to" and "join" lines of a session's -v log, in order, shortened to what
/// the tests compare: "[::1]", "127.0.0.1" and "join".
fn attempts_and_joins(log: &[String]) -> Vec<String> {
    let shorten = |line: &String| {
        if line.contains(" join the addresses to try") {
            return Some("join".to_owned());
        }
        let to = line.split("connecting to ").nth(1)?;
        Some(to.rsplit_once(':')?.0.to_owned())
    };
    log.iter().filter_map(shorten).collect()
}

/// A session to app.test, which has `hole` (it black-holes) and `good` (banner "good"), the
/// DNS server answering as `behaviour`: (the session line, `attempts_and_joins` of its log).
fn late_answer_session(hole: &str, good: &str, behaviour: Behaviour) -> (String, Vec<String>) {
    let mut listeners = backend::same_port(&[hole, good]).into_iter();
    let _hole = backend::BlackHole::new(listeners.next().unwrap());
    let good = serve(listeners.next().unwrap(), banner("good"));
    let port = good.address.port();
    let dns = DnsServer::start();
    dns.set("app.test", &[a("127.0.0.1"), aaaa("::1")]);
    dns.behave(behaviour);
    let launcher = Launcher::inetd(&[
        dns.arg(),
        "-v".into(),
        "--connect-timeout=10".into(),
        format!("app.test:{port}"),
    ]);
    assert_eq!(read_banner(&mut launcher.connect()), "good");
    let line = launcher.sessions(1).remove(0);
    (line, attempts_and_joins(&launcher.log()))
}

/// RFC 8305, section 3: answers that come after connecting has started join the addresses
/// still to try. Before, an answer later than the 50 ms resolution delay was dropped.
#[test]
fn a_late_a_answer_joins_the_attempts_behind_a_black_holed_ipv6_address() {
    // AAAA answers at once with an address that black-holes, A 300 ms later with one that
    // works: once dropped, this session waited out the connect timeout and failed with 69.
    let late_a = Behaviour::SlowForA(Duration::from_millis(300));
    let (line, order) = late_answer_session("::1", "127.0.0.1", late_a);
    assert!(line.contains("backend=127.0.0.1:"), "{line}");
    assert_eq!(order, ["[::1]", "join", "127.0.0.1"]);
}

#[test]
fn a_late_aaaa_answer_joins_the_attempts_behind_a_black_holed_ipv4_address() {
    let late_aaaa = Behaviour::SlowForAaaa(Duration::from_millis(300));
    let (line, order) = late_answer_session("127.0.0.1", "::1", late_aaaa);
    assert!(line.contains("backend=[::1]:"), "{line}");
    assert_eq!(order, ["127.0.0.1", "join", "[::1]"]);
}

#[test]
fn a_refused_address_does_not_end_the_session_while_an_answer_is_still_coming() {
    // Every address known so far refused at once, A still on its way: the session waits
    // for it instead of failing with 69.
    let (_refusing, listener) = loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if let Some(refusing) = backend::Refusing::on("::1", port) {
            break (refusing, listener);
        }
    };
    let good = serve(listener, banner("v4"));
    let dns = DnsServer::start();
    dns.set("app.test", &[a("127.0.0.1"), aaaa("::1")]);
    dns.behave(Behaviour::SlowForA(Duration::from_millis(300)));
    let launcher = Launcher::inetd(&[
        dns.arg(),
        "-v".into(),
        format!("app.test:{}", good.address.port()),
    ]);
    assert_eq!(read_banner(&mut launcher.connect()), "v4");
    let log = launcher.log();
    assert!(
        log.iter()
            .any(|l| l.contains("[::1]") && l.contains("refused")),
        "{log:?}"
    );
    assert_eq!(
        attempts_and_joins(&log),
        ["[::1]", "join", "127.0.0.1"],
        "{log:?}"
    );
}

#[test]
fn a_stop_while_resolving_ends_at_once_without_a_session_line() {
    use std::os::unix::process::ExitStatusExt;
    let dns = DnsServer::start();
    dns.behave(Behaviour::Silent);
    let child = Command::new(dynproxy())
        .args([
            dns.arg(),
            "--resolve-timeout=60".into(),
            "app.test:80".into(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::support::wait_for("the query to reach the DNS server", || {
        (dns.queries() > 0).then_some(())
    });
    // SAFETY: kill(2) sends SIGTERM to the dynproxy child we started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = collect(child);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGTERM), "{stderr}");
    assert!(!stderr.contains("session "), "{stderr}");
}

/// A relaying session's open descriptors by kind (socket, pipe, anon_inode...), sorted:
/// without their inode numbers, which differ from session to session, nor their numbers,
/// which depend on what was open while the backend was connected.
fn descriptors_while_relaying(launcher: &Launcher) -> Vec<String> {
    let (mut client, session) = launcher.relaying_session();
    let dir = format!("/proc/{session}/fd");
    let mut fds: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| {
            let target = std::fs::read_link(entry.unwrap().path()).unwrap();
            let target = target.to_string_lossy();
            target.split(":[").next().unwrap().to_owned()
        })
        .collect();
    fds.sort();
    client.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    client.read_to_end(&mut rest).unwrap();
    fds
}

/// The descriptors of a session that resolved `name` through `dns` equal those of a session
/// given the backend's literal address: the lookup's sockets, its epoll and its alarm are
/// all closed before the relay starts.
fn assert_lookup_leaves_no_descriptor(dns: &DnsServer, name: &str) {
    let echo = backend::echo("127.0.0.1");
    let port = echo.address.port();
    let literal = Launcher::inetd(&[echo.address.to_string()]);
    let expected = descriptors_while_relaying(&literal);
    let resolving = Launcher::inetd(&[dns.arg(), "-4".into(), format!("{name}:{port}")]);
    let queries_before = dns.queries() + dns.tcp_queries();
    let got = descriptors_while_relaying(&resolving);
    assert!(
        dns.queries() + dns.tcp_queries() > queries_before,
        "it asked DNS"
    );
    assert_eq!(got, expected, "descriptors while relaying, after a lookup");
}

#[test]
fn a_lookups_descriptors_are_all_closed_before_the_relay_starts() {
    let dns = DnsServer::start();
    dns.set("app.test", &[a("127.0.0.1")]);
    assert_lookup_leaves_no_descriptor(&dns, "app.test");
}

#[test]
fn a_lookup_retried_over_tcp_closes_its_descriptors_before_the_relay_starts() {
    let dns = DnsServer::start();
    dns.set("big.test", &[a("127.0.0.1")]);
    dns.behave(Behaviour::TruncateUdp);
    assert_lookup_leaves_no_descriptor(&dns, "big.test");
    assert!(dns.tcp_queries() >= 1, "the answer came over TCP");
}

/// A name resolved through a server that refuses EDNS with `behaviour`, resolv.conf asking
/// for EDNS (`options edns0`, as systemd-resolved's stub file does).
fn resolve_through_a_server_without_edns(address: &str, behaviour: Behaviour) {
    let dns = DnsServer::start_on(format!("{address}:53").parse().unwrap());
    dns.behave(behaviour);
    dns.set("old.test", &[a("127.0.0.1")]);
    let echo = backend::echo("127.0.0.1");
    let out = with_resolv_conf(
        &format!("nameserver {address}\noptions edns0 timeout:5 attempts:2\n"),
        &format!("old.test:{}", echo.address.port()),
        b"asked again without EDNS",
    );
    assert_exit(&out, 0);
    assert_eq!(out.stdout, b"asked again without EDNS");
}

#[test]
fn a_server_answering_formerr_to_edns_is_asked_again_without_it() {
    resolve_through_a_server_without_edns("127.53.0.11", Behaviour::FormErrToEdns);
}

#[test]
fn a_server_answering_notimp_to_edns_is_asked_again_without_it() {
    resolve_through_a_server_without_edns("127.53.0.12", Behaviour::NotImpToEdns);
}
