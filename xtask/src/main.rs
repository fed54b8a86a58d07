//! `cargo xtask man DIR`: writes the man pages into DIR — dynproxy.8 from man/dynproxy.8.in
//! with its SYNOPSIS and OPTIONS rendered from the command line's own definition
//! (src/cli.rs), so that the page cannot drift from what the binary accepts, and
//! dynproxy_selinux.8 as written. scripts/package puts them in both packages.

use std::path::Path;
use std::process::ExitCode;
use std::{env, fs, io};

use clap::CommandFactory;
use clap_mangen::Man;

/// The lines of the hand-written page that clap's sections replace.
const SYNOPSIS: &str = r#".\" @SYNOPSIS@"#;
const OPTIONS: &str = r#".\" @OPTIONS@"#;

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let result = match args.as_slice() {
        [task, dir] if task == "man" => man(Path::new(dir)),
        _ => Err(io::Error::other("usage: cargo xtask man DIR")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn man(dir: &Path) -> io::Result<()> {
    let sources = Path::new(env!("CARGO_MANIFEST_DIR")).join("../man");
    let page = fs::read_to_string(sources.join("dynproxy.8.in"))?;
    fs::create_dir_all(dir)?;
    fs::write(dir.join("dynproxy.8"), dynproxy_8(&page)?)?;
    fs::copy(
        sources.join("dynproxy_selinux.8"),
        dir.join("dynproxy_selinux.8"),
    )?;
    Ok(())
}

/// The hand-written page with each marker line replaced by the section clap renders, and
/// @VERSION@ by the binary's version.
fn dynproxy_8(page: &str) -> io::Result<String> {
    let command = dynproxy::cli::Args::command();
    let version = command.get_version().unwrap_or_default().to_owned();
    let man = Man::new(command);
    let render = |section: fn(&Man, &mut dyn io::Write) -> io::Result<()>| {
        let mut roff = Vec::new();
        section(&man, &mut roff)?;
        // clap_mangen parts a help text from its list of values with a line break, a blank
        // line and a line break, which mandoc -T lint warns of: one paragraph break it is.
        Ok::<_, io::Error>(String::from_utf8_lossy(&roff).replace(".br\n\n.br\n", ".sp\n"))
    };
    let mut out = String::new();
    let mut markers = 0;
    for line in page.lines() {
        if line == SYNOPSIS || line == OPTIONS {
            markers += 1;
            out += &render(if line == SYNOPSIS {
                Man::render_synopsis_section
            } else {
                Man::render_options_section
            })?;
        } else {
            out += &line.replace("@VERSION@", &version);
            out.push('\n');
        }
    }
    if markers != 2 {
        return Err(io::Error::other(format!(
            "man/dynproxy.8.in must have the lines {SYNOPSIS} and {OPTIONS}, once each"
        )));
    }
    Ok(out)
}
