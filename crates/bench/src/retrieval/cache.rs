//! The corpus vectors on disk, so that quality can be measured again without encoding the
//! corpus again: a header line naming the model, count and dimensions, then little-endian f32s.

use std::fs;
use std::path::Path;

use anyhow::{bail, Context};

const MAGIC: &str = "temper-bench vectors v1";

/// The vectors in `path` when it holds `count` vectors of `model`; `None` when there is no file.
pub fn read(path: &Path, model: &str, count: usize) -> anyhow::Result<Option<Vec<Vec<f32>>>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let newline = bytes.iter().position(|&b| b == b'\n').context("no header line")?;
    let header = std::str::from_utf8(&bytes[..newline]).context("the header is not UTF-8")?;
    let fields: Vec<&str> = header.rsplitn(4, ' ').collect();
    let [dimensions, stored_count, stored_model, magic] = fields[..] else {
        bail!("{}: not a vectors file", path.display());
    };
    let (dimensions, stored_count): (usize, usize) = (dimensions.parse()?, stored_count.parse()?);
    if magic != MAGIC || stored_model != model || stored_count != count {
        eprintln!("{} holds other vectors ({header}); encoding again", path.display());
        return Ok(None);
    }
    let body = &bytes[newline + 1..];
    if body.len() != count * dimensions * 4 {
        bail!("{}: {} bytes of vectors, expected {}", path.display(), body.len(), count * dimensions * 4);
    }
    let floats: Vec<f32> =
        body.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Ok(Some(floats.chunks_exact(dimensions).map(<[f32]>::to_vec).collect()))
}

pub fn write(path: &Path, model: &str, vectors: &[Vec<f32>]) -> anyhow::Result<()> {
    let dimensions = vectors.first().map_or(0, Vec::len);
    let mut bytes = format!("{MAGIC} {model} {} {dimensions}\n", vectors.len()).into_bytes();
    crate::extend_f32_le(&mut bytes, vectors.iter().flatten());
    fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_round_trip_and_other_models_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.bin");
        assert!(read(&path, "m", 2).unwrap().is_none());
        let vectors = vec![vec![1.0, -0.5, 0.25], vec![0.0, 2.0, 3.5]];
        write(&path, "all-minilm-l6-v2", &vectors).unwrap();
        assert_eq!(read(&path, "all-minilm-l6-v2", 2).unwrap(), Some(vectors));
        assert!(read(&path, "other", 2).unwrap().is_none());
        assert!(read(&path, "all-minilm-l6-v2", 3).unwrap().is_none());
    }
}
