//! Any text given as a prompt file parses to a prompt or an error naming its place, never a
//! panic; a parsed prompt renders (or says which variable is missing), and writes back to TOML
//! that parses again.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use temper_prompt::PromptFile;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(file) = PromptFile::parse(Path::new("fuzz.toml"), text) else { return };
    let used = file.variables_used();
    let _ = file.prompt(&BTreeMap::new());
    let filled = used.iter().map(|name| (name.clone(), serde_json::Value::from("x"))).collect();
    let _ = file.check_given(&filled);
    let _ = file.prompt(&filled);
    if let Ok(written) = file.to_toml() {
        PromptFile::parse(Path::new("fuzz.toml"), &written).expect("a written prompt file parses again");
    }
});
