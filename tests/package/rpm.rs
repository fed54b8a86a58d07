//! The rpms, read with rpm: what each installs, requires and runs, and rpmlint's verdict.

use std::collections::BTreeSet;

use crate::{VERSION, package, run};

fn main_rpm() -> String {
    let arch = run("uname", &["-m"]);
    let name = format!("dynproxy-{VERSION}-1.{}.rpm", arch.trim());
    package(&name).to_string_lossy().into_owned()
}

fn selinux_rpm() -> String {
    let name = format!("dynproxy-selinux-{VERSION}-1.noarch.rpm");
    package(&name).to_string_lossy().into_owned()
}

fn query(rpm: &str, what: &[&str]) -> String {
    let mut args = vec!["-qp"];
    args.extend_from_slice(what);
    args.push(rpm);
    run("rpm", &args)
}

/// The files of a package, but the build-id links rpm adds for the binary.
fn files(rpm: &str) -> BTreeSet<String> {
    query(rpm, &["--list"])
        .lines()
        .filter(|path| !path.starts_with("/usr/lib/.build-id"))
        .map(str::to_owned)
        .collect()
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

#[test]
fn the_rpm_installs_the_binary_drop_ins_user_examples_and_man_page() {
    let doc = "/usr/share/doc/dynproxy";
    let licenses = "/usr/share/licenses/dynproxy";
    assert_eq!(
        files(&main_rpm()),
        set(&[
            "/usr/bin/dynproxy",
            "/usr/lib/systemd/system/dynproxy-.service.d",
            "/usr/lib/systemd/system/dynproxy-.service.d/50-dynproxy.conf",
            "/usr/lib/systemd/system/dynproxy-.socket.d",
            "/usr/lib/systemd/system/dynproxy-.socket.d/50-dynproxy.conf",
            "/usr/lib/sysusers.d/dynproxy.conf",
            doc,
            &format!("{doc}/README.md"),
            &format!("{doc}/examples"),
            &format!("{doc}/examples/dynproxy-fastcgi.socket"),
            &format!("{doc}/examples/dynproxy-fastcgi@.service"),
            &format!("{doc}/examples/dynproxy-postgres.socket"),
            &format!("{doc}/examples/dynproxy-postgres@.service"),
            &format!("{doc}/examples/profiles"),
            &format!("{doc}/examples/profiles/strict.conf"),
            licenses,
            &format!("{licenses}/LICENSE-APACHE"),
            &format!("{licenses}/LICENSE-MIT"),
            "/usr/share/man/man8/dynproxy.8.gz",
        ])
    );
}

#[test]
fn the_selinux_rpm_is_noarch_with_the_module_its_interface_and_man_page() {
    let rpm = selinux_rpm();
    assert_eq!(query(&rpm, &["--queryformat", "%{ARCH}"]), "noarch");
    let licenses = "/usr/share/licenses/dynproxy-selinux";
    assert_eq!(
        files(&rpm),
        set(&[
            "/usr/share/selinux/packages/targeted/dynproxy.pp.bz2",
            "/usr/share/selinux/devel/include/contrib/dynproxy.if",
            "/usr/share/man/man8/dynproxy_selinux.8.gz",
            "/var/lib/selinux/targeted/active/modules/200/dynproxy",
            licenses,
            &format!("{licenses}/LICENSE-APACHE"),
            &format!("{licenses}/LICENSE-MIT"),
        ])
    );
}

#[test]
fn the_rpm_wants_the_selinux_module_wherever_the_targeted_policy_is() {
    let requires = query(&main_rpm(), &["--requires"]);
    assert!(
        requires
            .lines()
            .any(|r| r == "(dynproxy-selinux if selinux-policy-targeted)"),
        "{requires}"
    );
    let requires = query(&selinux_rpm(), &["--requires"]);
    for needed in ["selinux-policy-targeted", "policycoreutils"] {
        assert!(requires.lines().any(|r| r == needed), "{requires}");
    }
}

/// The scriptlets of a package, by name ("preinstall", "postinstall"...).
fn scriptlet(rpm: &str, name: &str) -> String {
    let scripts = query(rpm, &["--scripts"]);
    let start = scripts
        .find(&format!("{name} scriptlet"))
        .unwrap_or_else(|| panic!("no {name} scriptlet in {rpm}:\n{scripts}"));
    let rest = &scripts[start..];
    let body = &rest[rest.find('\n').unwrap_or(rest.len())..];
    let end = body
        .find(" scriptlet (using")
        .map_or(body.len(), |end| body[..end].rfind('\n').unwrap_or(end));
    body[..end].to_owned()
}

#[test]
fn the_rpm_creates_the_system_user_before_its_files_land() {
    let pre = scriptlet(&main_rpm(), "preinstall");
    assert!(
        pre.contains("systemd-sysusers") && pre.contains("u dynproxy "),
        "{pre}"
    );
}

#[test]
fn the_selinux_rpm_installs_and_removes_the_module_and_relabels_around_it() {
    let rpm = selinux_rpm();
    let module = "/usr/share/selinux/packages/targeted/dynproxy.pp.bz2";
    let post = scriptlet(&rpm, "postinstall");
    assert!(
        post.contains("semodule") && post.contains(&format!("-i {module}")),
        "{post}"
    );
    let postun = scriptlet(&rpm, "postuninstall");
    assert!(
        postun.contains("if [ $1 -eq 0 ]") && postun.contains("-r dynproxy"),
        "removed only with the package, not on upgrade: {postun}"
    );
    for name in ["preinstall", "posttrans"] {
        let script = scriptlet(&rpm, name);
        assert!(script.contains("file_contexts"), "{name}: {script}");
    }
}

#[test]
fn the_spec_and_the_rpms_pass_rpmlint() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/rpm/rpmlint.toml");
    let spec = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/rpm/dynproxy.spec");
    let out = std::process::Command::new("rpmlint")
        .args(["-c", config, spec, &main_rpm(), &selinux_rpm()])
        .output()
        .unwrap();
    let report = crate::text(&out);
    assert!(
        out.status.success() && report.contains("0 errors, 0 warnings"),
        "{report}"
    );
}
