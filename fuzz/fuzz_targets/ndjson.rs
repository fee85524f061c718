//! Any bytes a server sends as a newline-delimited JSON stream (Ollama's), cut into pieces
//! anywhere (the first bytes say where), give pieces of answer or an error, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temper_providers::{fuzzing, Vendor};

fuzz_target!(|data: &[u8]| {
    let (cuts, body) = data.split_at(data.len().min(4));
    let cuts: Vec<usize> = cuts.iter().map(|&c| usize::from(c) * body.len() / 256).collect();
    let _ = fuzzing::stream(Vendor::Ollama, body, &cuts);
});
