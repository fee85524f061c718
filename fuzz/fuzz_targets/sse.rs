//! Any bytes a server sends as a server-sent-event stream (OpenAI's or Anthropic's, chosen by
//! the first byte), cut into pieces anywhere (the next bytes say where), give pieces of answer
//! or an error, never a panic, in time linear in their length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use temper_providers::{fuzzing, Vendor};

fuzz_target!(|data: &[u8]| {
    let Some((&choice, rest)) = data.split_first() else { return };
    let vendor = if choice % 2 == 0 { Vendor::OpenAi } else { Vendor::Anthropic };
    let (cuts, body) = rest.split_at(rest.len().min(4));
    let cuts: Vec<usize> = cuts.iter().map(|&c| usize::from(c) * body.len() / 256).collect();
    let _ = fuzzing::stream(vendor, body, &cuts);
});
