//! The whole command line: any arguments end in a run, a help text or a usage error —
//! never a panic (clap's own checks included).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args = std::iter::once("dynproxy").chain(text.split('\0'));
    let _ = dynproxy::cli::parse_from(args);
});
