//! TARGET parsing: any text is either a usage error or a target that reads back the same.
#![no_main]
use dynproxy::target::Target;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(target) = Target::parse(text) {
        assert_eq!(Target::parse(&target.to_string()), Ok(target));
    }
});
