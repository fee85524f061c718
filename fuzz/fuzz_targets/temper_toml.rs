//! Any text given as `temper.toml` parses to profiles or an error naming its place, never a
//! panic; every profile of a parsed file resolves its fallback chain.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use temper_models::Profiles;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(profiles) = Profiles::parse(Path::new("temper.toml"), text) else { return };
    for (name, profile) in profiles.iter() {
        let _ = profiles.chain(name);
        let _ = profile.prices();
    }
});
