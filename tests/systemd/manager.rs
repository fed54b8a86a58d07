//! A real systemd manager — this machine's /lib/systemd/systemd — booted as PID 1 of private
//! pid/mount/net/uts/ipc/cgroup namespaces, with the project's shipped units installed and
//! ExecStart pointed at the built binary. Nothing reaches the host: the manager has its own
//! /run, /dev, journal and loopback-only network. Dropping a `Manager` tears it all down —
//! also when the test using it panics.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::support::{TempDir, dynproxy, probe, wait_for};

/// The shipped units, installed as an admin would (drop-ins and the two examples).
const SHIPPED: &[(&str, &str)] = &[
    (
        "dynproxy-.service.d/50-dynproxy.conf",
        include_str!("../../units/dynproxy-.service.d/50-dynproxy.conf"),
    ),
    (
        "dynproxy-.socket.d/50-dynproxy.conf",
        include_str!("../../units/dynproxy-.socket.d/50-dynproxy.conf"),
    ),
    (
        "dynproxy-fastcgi.socket",
        include_str!("../../units/examples/dynproxy-fastcgi.socket"),
    ),
    (
        "dynproxy-fastcgi@.service",
        include_str!("../../units/examples/dynproxy-fastcgi@.service"),
    ),
    (
        "dynproxy-postgres.socket",
        include_str!("../../units/examples/dynproxy-postgres.socket"),
    ),
    (
        "dynproxy-postgres@.service",
        include_str!("../../units/examples/dynproxy-postgres@.service"),
    ),
];

/// Where pid1.sh puts the built binary inside the namespaces.
const BINARY: &str = "/usr/local/bin/dynproxy";

pub struct Manager {
    pub pid1: i32,
    launcher: Child,
    pub cgroup: PathBuf,
    pub work: TempDir,
}

impl Manager {
    /// Boots a manager whose /etc/resolv.conf is `resolv_conf`, with `extra` units added.
    pub fn boot(resolv_conf: &str, extra: &[(&str, &str)]) -> Manager {
        let work = work_dir(resolv_conf);
        fs::copy(dynproxy(), work.join("dynproxy")).unwrap();
        fs::copy(probe(), work.join("probe")).unwrap();
        install_units(&work.join("units"), SHIPPED.iter().chain(extra));
        Manager::start(work)
    }

    /// Boots a manager with no dynproxy at all, for installing packages inside: /usr, /etc
    /// and /var are writable in its namespaces only, and the system's unit directories
    /// (/etc/systemd/system, /usr/lib/systemd/system) are empty but searched, so that a
    /// package's files land and work where they would on a host (pid1.sh).
    #[allow(dead_code)] // used by tests/package only
    pub fn boot_for_packages(resolv_conf: &str) -> Manager {
        let work = work_dir(resolv_conf);
        fs::write(work.join("packaged"), "").unwrap();
        install_units(&work.join("units"), [].iter());
        Manager::start(work)
    }

    fn start(work: TempDir) -> Manager {
        let cgroup = cgroup_root().join(work.path().file_name().unwrap());
        fs::create_dir(&cgroup).unwrap();
        let console = File::create(work.join("console.log")).unwrap();
        let launcher = Command::new("sh")
            .args([
                "-c",
                r#"echo $$ > "$0/cgroup.procs" && exec unshare --cgroup --pid --fork --mount --mount-proc --net --uts --ipc "$1" "$2""#,
            ])
            .arg(&cgroup)
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/systemd/pid1.sh"))
            .arg(work.path())
            .stdin(Stdio::null())
            .stdout(console.try_clone().unwrap())
            .stderr(console)
            .spawn()
            .unwrap();
        let launcher_pid = launcher.id() as i32;
        let mut manager = Manager {
            pid1: 0,
            launcher,
            cgroup,
            work,
        };
        manager.pid1 = wait_for("the namespaced PID 1", || first_child(launcher_pid));
        wait_for("the manager's private socket", || {
            manager.path("/run/systemd/private").exists().then_some(())
        });
        let state = manager.run(&["systemctl", "is-system-running", "--wait"]);
        assert!(
            state.status.success(),
            "the manager did not come up: {}\n{}",
            stdout(&state),
            manager.console()
        );
        manager
    }

    /// Runs a command inside the manager's namespaces (bounded to a minute).
    pub fn run(&self, args: &[&str]) -> Output {
        let pid = self.pid1.to_string();
        Command::new("timeout")
            .args([
                "60", "nsenter", "-t", &pid, "-m", "-p", "-n", "-u", "-i", "-C", "--",
            ])
            .args(args)
            .output()
            .unwrap()
    }

    pub fn systemctl(&self, args: &[&str]) -> String {
        let mut command = vec!["systemctl"];
        command.extend_from_slice(args);
        let out = self.run(&command);
        assert!(
            out.status.success(),
            "systemctl {args:?}: {}{}",
            stdout(&out),
            String::from_utf8_lossy(&out.stderr)
        );
        stdout(&out)
    }

    /// What dynproxy sessions wrote to the journal.
    pub fn journal(&self) -> String {
        stdout(&self.run(&[
            "journalctl",
            "--no-pager",
            "-o",
            "cat",
            "SYSLOG_IDENTIFIER=dynproxy",
        ]))
    }

    /// A path inside the manager's mount namespace, reachable from the host.
    pub fn path(&self, inside: &str) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root{inside}", self.pid1))
    }

    /// Runs `f` on a thread inside the manager's network namespace: sockets it creates
    /// (listeners, clients) live there, and keep working from any thread afterwards.
    pub fn in_netns<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        crate::support::netns::in_netns(self.pid1 as u32, f)
    }

    /// dynproxy processes in the namespace: (exec'd, forked by the manager and not yet
    /// exec'd). Until it execs, a session's child is named "(dynproxy)": it is still in
    /// systemd's hands, setting up the sandbox (or waiting to).
    pub fn dynproxy_processes(&self) -> (usize, usize) {
        let names = stdout(&self.run(&["ps", "-e", "-o", "comm="]));
        let count = |name: &str| names.lines().filter(|l| l.trim() == name).count();
        (count("dynproxy"), count("(dynproxy)"))
    }

    fn console(&self) -> String {
        fs::read_to_string(self.work.join("console.log")).unwrap_or_default()
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        if self.pid1 > 0 {
            let pid = self.pid1.to_string();
            let _ = Command::new("timeout")
                .args([
                    "5",
                    "nsenter",
                    "-t",
                    &pid,
                    "-m",
                    "-p",
                    "systemctl",
                    "--force",
                    "exit",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
            // SAFETY: kill(2) on the namespace's PID 1 takes the whole pid namespace with it.
            unsafe { libc::kill(self.pid1, libc::SIGKILL) };
        }
        let _ = self.launcher.kill();
        let _ = self.launcher.wait();
        let deadline = Instant::now() + Duration::from_secs(10);
        while remove_cgroup(&self.cgroup).is_err() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The cgroup2 hierarchy: /sys/fs/cgroup itself, or /sys/fs/cgroup/unified on hybrid hosts.
fn cgroup_root() -> PathBuf {
    let unified = Path::new("/sys/fs/cgroup/unified");
    if unified.join("cgroup.procs").exists() {
        unified.to_path_buf()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

/// Removes a cgroup and the ones systemd made below it, deepest first.
fn remove_cgroup(path: &Path) -> std::io::Result<()> {
    if !path.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(path)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_cgroup(&entry.path())?;
        }
    }
    fs::remove_dir(path)
}

fn first_child(pid: i32) -> Option<i32> {
    let children = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn work_dir(resolv_conf: &str) -> TempDir {
    assert!(
        crate::support::is_root(),
        "booting systemd in namespaces needs root"
    );
    let work = TempDir::new();
    fs::write(work.join("resolv.conf"), resolv_conf).unwrap();
    work
}

/// The minimal units a manager needs to reach test.target with a journal (tests/systemd/base,
/// which bench/systemd installs too), plus `units` (name, text), ExecStart pointed at the
/// built binary.
fn install_units<'a>(dir: &Path, units: impl Iterator<Item = &'a (&'a str, &'a str)>) {
    fs::create_dir_all(dir).unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    };
    let base = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/systemd/base");
    for entry in fs::read_dir(base).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e != "md") {
            fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    for (name, text) in units {
        write(
            name,
            &text.replace(
                "ExecStart=/usr/bin/dynproxy",
                &format!("ExecStart={BINARY}"),
            ),
        );
    }
}
