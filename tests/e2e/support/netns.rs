//! Two network namespaces of the test's own, joined by a veth pair — "near" (192.0.2.1) and
//! "far" (192.0.2.2), documentation addresses (RFC 5737) that exist only inside them — so a
//! test can make a peer vanish without a reset, as a powered-off host or a partition does.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Stdio};
use std::thread;

use super::wait_for;

pub const NEAR: &str = "192.0.2.1";
pub const FAR: &str = "192.0.2.2";

pub struct Link {
    /// Processes that hold the namespaces open (`sleep`, bounded should the test die).
    near: Child,
    far: Child,
}

impl Link {
    pub fn new() -> Link {
        assert!(super::is_root(), "network namespaces need root");
        let hold = || {
            Command::new("unshare")
                .args(["--net", "sleep", "300"])
                .stdin(Stdio::null())
                .spawn()
                .unwrap()
        };
        let link = Link {
            near: hold(),
            far: hold(),
        };
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        for pid in [link.near.id(), link.far.id()] {
            wait_for("a network namespace of the test", || {
                let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
                (theirs != ours).then_some(())
            });
        }
        let far = link.far.id().to_string();
        link.near_run(&[
            "ip", "link", "add", "vnear", "type", "veth", "peer", "name", "vfar", "netns", &far,
        ]);
        for (run, address, device) in [
            (Link::near_run as fn(&Link, &[&str]), NEAR, "vnear"),
            (Link::far_run, FAR, "vfar"),
        ] {
            run(&link, &["ip", "link", "set", "lo", "up"]);
            run(
                &link,
                &["ip", "addr", "add", &format!("{address}/24"), "dev", device],
            );
            run(&link, &["ip", "link", "set", device, "up"]);
        }
        link
    }

    /// The far host vanishes without a word: its address goes, and its kernel (forwarding
    /// off) drops every packet for it, sending nothing back.
    pub fn silence_far(&self) {
        self.far_run(&["ip", "addr", "del", &format!("{FAR}/24"), "dev", "vfar"]);
    }

    /// One more address block on each side of the link, `near` and `far` in CIDR notation
    /// (in the same block, so that each reaches the other directly).
    pub fn add_addresses(&self, near: &str, far: &str) {
        self.near_run(&["ip", "addr", "add", near, "dev", "vnear"]);
        self.far_run(&["ip", "addr", "add", far, "dev", "vfar"]);
    }

    pub fn near_pid(&self) -> u32 {
        self.near.id()
    }

    /// Runs `f` on a thread inside the far namespace: the sockets it makes stay there.
    pub fn in_far<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(self.far.id(), f)
    }

    /// Runs `f` on a thread inside the near namespace.
    pub fn in_near<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(self.near.id(), f)
    }

    fn near_run(&self, args: &[&str]) {
        run_in(self.near.id(), args);
    }

    fn far_run(&self, args: &[&str]) {
        run_in(self.far.id(), args);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // The namespaces, and the veth pair with them, go with their last process.
        for child in [&mut self.near, &mut self.far] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn run_in(pid: u32, args: &[&str]) {
    let out = Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-n", "--"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a thread inside the network namespace of process `pid`: sockets it creates
/// live there, and keep working from any thread afterwards.
pub fn in_netns<T: Send>(pid: u32, f: impl FnOnce() -> T + Send) -> T {
    let netns = File::open(format!("/proc/{pid}/ns/net")).unwrap();
    thread::scope(|scope| {
        scope
            .spawn(|| {
                // SAFETY: setns(2) moves only this thread, which exists for this call alone.
                let ret = unsafe { libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(ret, 0, "setns: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap()
    })
}
