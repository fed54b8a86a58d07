//! The packages as an admin meets them. `scripts/package` builds them first and
//! `scripts/test` runs this suite after it (`cargo test --test package`; plain `cargo test`
//! leaves it out, having no packages to read): the .deb installed with dpkg into the scratch
//! system of a real systemd manager, its examples run from where it put them, then purged;
//! the rpms' files, requirements and scriptlets read with rpm; both kinds linted; the man
//! pages rendered.

#[allow(dead_code)]
#[path = "../e2e/support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "../systemd/manager.rs"]
mod manager;

mod deb;
mod rpm;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where scripts/package leaves the packages (DYNPROXY_PACKAGES overrides it).
fn package(name: &str) -> PathBuf {
    let dir = std::env::var_os("DYNPROXY_PACKAGES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/packages"),
        PathBuf::from,
    );
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/package first (scripts/test does)",
        path.display()
    );
    path
}

/// Runs a program of the host, which must succeed; its standard output.
fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    assert!(out.status.success(), "{program} {args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Standard output and standard error together.
fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
