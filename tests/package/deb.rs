//! The .deb: installed with dpkg in a real systemd manager's scratch system, used as the
//! README tells an admin to, purged; linted; its man pages rendered.

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::net::UnixStream;

use crate::manager::Manager;
use crate::support::backend::{Backend, banner, exchange, serve};
use crate::support::dns::{DnsServer, Record};
use crate::support::{TempDir, WAIT, wait_for};
use crate::{VERSION, package, run, text};

fn deb() -> String {
    let arch = run("dpkg", &["--print-architecture"]);
    let name = format!("dynproxy_{VERSION}-1_{}.deb", arch.trim());
    package(&name).to_string_lossy().into_owned()
}

/// A manager with nothing of dynproxy's, DNS and backends for the examples' names.
struct Host {
    manager: Manager,
    _dns: DnsServer,
    _backends: Vec<Backend>,
}

fn host() -> Host {
    crate::support::raise_fd_limit();
    let manager = Manager::boot_for_packages("nameserver 127.0.0.1\n");
    let (dns, backends) = manager.in_netns(|| {
        let dns = DnsServer::start_on("127.0.0.1:53".parse().unwrap());
        let backends = vec![
            serve(TcpListener::bind("127.0.0.2:9000").unwrap(), banner("php")),
            serve(TcpListener::bind("127.0.0.4:5432").unwrap(), banner("db")),
        ];
        (dns, backends)
    });
    dns.set(
        "php.backend.example",
        &[Record::A("127.0.0.2".parse().unwrap())],
    );
    dns.set(
        "db.internal.example",
        &[Record::A("127.0.0.4".parse().unwrap())],
    );
    Host {
        manager,
        _dns: dns,
        _backends: backends,
    }
}

impl Host {
    /// Runs a command inside, which must succeed; its output.
    fn sh(&self, script: &str) -> String {
        let out = self.manager.run(&["sh", "-ec", script]);
        assert!(out.status.success(), "{script}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// dpkg -i, of a copy in the work directory: the only one of the host's directories
    /// under /tmp that the manager's namespaces see (pid1.sh).
    fn install(&self) {
        let copy = self.manager.work.join("dynproxy.deb");
        std::fs::copy(deb(), &copy).unwrap();
        self.sh(&format!("dpkg -i {}", copy.display()));
    }

    /// Every path under /usr, /etc and /var but the journal's and temporary files'.
    fn files(&self) -> BTreeSet<String> {
        let listing = self.sh(
            "find /usr /etc /var -path /var/tmp -prune -o -path /var/log/journal -prune -o -print",
        );
        listing.lines().map(str::to_owned).collect()
    }
}

#[test]
fn the_examples_relay_from_where_the_package_put_them() {
    let host = host();
    host.install();
    // As units/README.md tells the admin: copy an example, start its socket.
    host.sh("cp /usr/share/doc/dynproxy/examples/dynproxy-*.socket \
            /usr/share/doc/dynproxy/examples/dynproxy-*@.service /etc/systemd/system/
         systemctl daemon-reload
         systemctl start dynproxy-fastcgi.socket dynproxy-postgres.socket");
    let fastcgi = UnixStream::connect(host.manager.path("/run/dynproxy/fastcgi.sock")).unwrap();
    fastcgi.set_read_timeout(Some(WAIT)).unwrap();
    assert_eq!(exchange(fastcgi), ("php".into(), "ping".into()));
    let postgres = host.manager.in_netns(|| {
        let stream = std::net::TcpStream::connect("127.0.0.1:15432").unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
    });
    assert_eq!(exchange(postgres), ("db".into(), "ping".into()));
    // Nothing but the package put a dynproxy in this system, and its drop-in's user ran it.
    let journal = wait_for("both session lines in the journal", || {
        let journal = host.manager.journal();
        (journal.matches("session client=").count() == 2).then_some(journal)
    });
    assert!(journal.contains("backend=127.0.0.4:5432"), "{journal}");
    let user = host.sh("systemctl show -p User --value dynproxy-postgres@x.service");
    assert_eq!(user.trim(), "dynproxy");
}

#[test]
fn installing_enables_and_starts_nothing() {
    let host = host();
    host.install();
    assert!(host.sh("getent passwd dynproxy").starts_with("dynproxy:"));
    let units = host.sh("systemctl list-units --all --plain --no-legend 'dynproxy*'");
    assert_eq!(units, "", "units loaded or started by the install");
    let sockets = host.sh("systemctl list-sockets --all --plain --no-legend");
    assert!(!sockets.contains("dynproxy"), "{sockets}");
}

#[test]
fn purging_the_package_leaves_nothing_behind() {
    let host = host();
    let before = host.files();
    host.install();
    let installed = host.files();
    for path in [
        "/usr/bin/dynproxy",
        "/usr/lib/systemd/system/dynproxy-.service.d/50-dynproxy.conf",
        "/usr/lib/sysusers.d/dynproxy.conf",
        "/usr/share/man/man8/dynproxy.8.gz",
    ] {
        assert!(installed.contains(path), "{path} was not installed");
    }
    host.sh("dpkg --purge dynproxy");
    let left: Vec<_> = host
        .files()
        .difference(&before)
        // dpkg's own records of what it did.
        .filter(|path| !path.starts_with("/var/lib/dpkg/") && *path != "/var/log/dpkg.log")
        .cloned()
        .collect();
    assert_eq!(left, Vec::<String>::new(), "left behind by the purge");
}

#[test]
fn the_deb_passes_lintian() {
    let out = std::process::Command::new("lintian")
        .args(["--fail-on", "error,warning", &deb()])
        .output()
        .unwrap();
    let report = text(&out);
    let tags: Vec<_> = report
        .lines()
        .filter(|line| line.starts_with("E:") || line.starts_with("W:"))
        .collect();
    assert!(out.status.success() && tags.is_empty(), "{report}");
}

/// The package's files, unpacked (not installed) into a directory of the test's.
fn unpacked() -> TempDir {
    let dir = TempDir::new();
    run("dpkg-deb", &["-x", &deb(), &dir.path().to_string_lossy()]);
    dir
}

/// A man page of the unpacked package, uncompressed.
fn man_page(root: &TempDir, name: &str) -> String {
    let page = root.join(&format!("usr/share/man/man8/{name}.gz"));
    run("gzip", &["-dc", &page.to_string_lossy()])
}

#[test]
fn the_man_pages_render_without_warnings() {
    let root = unpacked();
    for name in ["dynproxy.8", "dynproxy_selinux.8"] {
        let page = root.join(name);
        std::fs::write(&page, man_page(&root, name)).unwrap();
        let out = std::process::Command::new("mandoc")
            .args(["-T", "lint", "-W", "warning", &page.to_string_lossy()])
            .output()
            .unwrap();
        assert!(
            out.status.success() && text(&out).is_empty(),
            "{name}: {}",
            text(&out)
        );
    }
}

#[test]
fn the_man_page_describes_every_option_of_the_packaged_binary() {
    let root = unpacked();
    let help = run(
        &root.join("usr/bin/dynproxy").to_string_lossy(),
        &["--help"],
    );
    // The roff source of the OPTIONS section, its minus signs (\-) read as hyphens.
    let page = man_page(&root, "dynproxy.8").replace("\\-", "-");
    let options_section = page
        .split("\n.SH ")
        .find(|section| section.starts_with("OPTIONS"))
        .expect("an OPTIONS section");
    let options: BTreeSet<&str> = help
        .split(|c: char| c.is_whitespace() || c == ',' || c == '=')
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .collect();
    assert!(options.len() > 10, "{help}");
    for option in options {
        assert!(
            options_section.contains(option),
            "{option} is not in the OPTIONS of dynproxy(8)"
        );
    }
}
