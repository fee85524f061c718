//! Any bytes given as an eval dataset (JSONL or CSV, chosen by the first byte) give rows or an
//! error naming the line, never a panic; rows split into train and test parts.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use temper_eval::dataset;

fuzz_target!(|data: &[u8]| {
    let Some((&format, bytes)) = data.split_first() else { return };
    let path = if format % 2 == 0 { Path::new("rows.jsonl") } else { Path::new("rows.csv") };
    let Ok(rows) = dataset::parse(path, bytes, "expected") else { return };
    let _ = dataset::split(&rows, 0.25, u64::from(format));
});
