//! What the end-to-end tests stand on: the built binary, real launchers, a DNS server whose
//! answers a test controls, real backends and clients — all on loopback.

pub mod backend;
pub mod data;
pub mod dns;
pub mod launch;
pub mod netns;

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The bound of every wait in the tests: generous, because a slow shared machine is no
/// failure. Speed is the benchmark's business, never a test's.
pub const WAIT: Duration = Duration::from_secs(30);

pub fn dynproxy() -> &'static str {
    env!("CARGO_BIN_EXE_dynproxy")
}

/// The tests' probe (tests/probe/probe.rs), an example that `cargo test` builds beside the
/// test binaries: target/<profile>/examples/probe, the test binary being in .../deps.
pub fn probe() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>");
    let probe = profile.join("examples/probe");
    assert!(
        probe.exists(),
        "{} is not built: `cargo test` builds it; before `cargo test --test NAME`, run \
         `cargo build --release --example probe` (with the same --target)",
        probe.display()
    );
    probe
}

/// A directory removed with everything in it when dropped.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("dynproxy-test-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        TempDir(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `check` until it returns Some, or panics with `what` after WAIT.
pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a child to exit, killing it (and failing the test) if it takes longer than WAIT.
pub fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the child") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the process did not exit within {WAIT:?}");
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// The resident memory of a process, in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// True when running as root, which some tests need (mount namespaces, port 53).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Reads a client's stream to its end and fails if anything came: a failed session must
/// close the client's connection, never write an error into it.
pub fn assert_receives_nothing(stream: &mut impl std::io::Read) {
    let mut got = Vec::new();
    stream
        .read_to_end(&mut got)
        .expect("read the client's stream to its end");
    assert!(
        got.is_empty(),
        "the client received {:?}",
        String::from_utf8_lossy(&got)
    );
}

/// Lifts the soft limit on open descriptors to the hard one: load tests hold thousands of
/// sockets, both ends in this process.
pub fn raise_fd_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        limit.rlim_cur = limit.rlim_max.min(65536);
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}
