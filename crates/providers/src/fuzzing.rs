//! The stream parsers as a server's bytes reach them, for the fuzz targets in `fuzz/` (feature
//! `fuzzing`): nothing else needs them from outside the crate.

use crate::frames::Decoder;
use crate::{vendors, Vendor};

/// Feeds `body` to `vendor`'s stream decoder in pieces cut at `cuts` (offsets, in any order,
/// out of range ones ignored) and parses every frame as the vendor's event. Returns how many
/// pieces of answer the frames held, or the first error's message.
pub fn stream(vendor: Vendor, body: &[u8], cuts: &[usize]) -> Result<usize, String> {
    let mut cuts: Vec<usize> = cuts.iter().copied().filter(|&c| c < body.len()).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut decoder = Decoder::new(vendors::framing(vendor));
    let mut pieces = 0;
    let mut from = 0;
    for to in cuts.into_iter().chain([body.len()]) {
        for frame in decoder.push(&body[from..to])? {
            pieces += vendors::parse(vendor, &frame).map_err(|e| e.to_string())?.len();
        }
        from = to;
    }
    decoder.finish()?;
    Ok(pieces)
}
