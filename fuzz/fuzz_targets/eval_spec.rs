//! Any text given as an eval spec (TOML or YAML, chosen by the first byte) gives a spec or an
//! error naming its place, never a panic. The spec's folder holds a prompt file and a dataset
//! that a spec may name (`prompt.toml`, `rows.jsonl`), so parsing gets past them.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use temper_eval::Spec;

/// A folder with a prompt file and a dataset, made once.
fn folder() -> &'static PathBuf {
    static FOLDER: OnceLock<PathBuf> = OnceLock::new();
    FOLDER.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary folder").keep();
        let prompt = "template = \"Review: {{ review }}\"\n";
        std::fs::write(dir.join("prompt.toml"), prompt).expect("the prompt file");
        let rows = "{\"review\": \"Great\", \"expected\": \"positive\", \"split\": \"train\"}\n\
                    {\"review\": \"Bad\", \"expected\": \"negative\", \"split\": \"test\"}\n";
        std::fs::write(dir.join("rows.jsonl"), rows).expect("the dataset");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&format, text)) = data.split_first() else { return };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let name = if format % 2 == 0 { "spec.toml" } else { "spec.yaml" };
    let Ok(spec) = Spec::parse(&folder().join(name), text) else { return };
    let _ = spec.selected_rows();
    let _ = spec.variants("model");
    let _ = spec.settings();
});
