//! Matrix products on ggml-quantized weights.
//!
//! Activations are quantized once per call into the format llama.cpp pairs with each weight
//! type (Q8_0/Q8_1-style blocks of 32, or Q8_K blocks of 256), so that the integer dot products
//! and their rounding match the reference closely. Kernels come in a portable version and x86
//! versions (AVX2, AVX-VNNI, AVX-512 VNNI) picked at run time; see [`crate::cpu_level`].

/// The kernel for weight type `$ty` built from a level's three generic kernels (float weights,
/// 32-value blocks, K-quant super-blocks), or `None` for the types no level implements.
macro_rules! kernel_table {
    ($ty:expr, $float:ident, $q32:ident, $k:ident) => {
        Some(match $ty {
            GgmlType::F32 => $float::<F32>,
            GgmlType::F16 => $float::<F16>,
            GgmlType::BF16 => $float::<BF16>,
            GgmlType::Q4_0 => $q32::<Q4_0>,
            GgmlType::Q4_1 => $q32::<Q4_1>,
            GgmlType::Q5_0 => $q32::<Q5_0>,
            GgmlType::Q5_1 => $q32::<Q5_1>,
            GgmlType::Q8_0 => $q32::<Q8_0>,
            GgmlType::Q4K => $k::<Q4K>,
            GgmlType::Q5K => $k::<Q5K>,
            GgmlType::Q6K => $k::<Q6K>,
            GgmlType::Q2K | GgmlType::Q3K => return None,
        })
    };
}

mod formats;
mod scalar;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::cell::Cell;

use rayon::prelude::*;

use crate::dtype::GgmlType;
use crate::{cpu_level, CpuLevel};
use formats::ActFormat;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantError {
    #[error("{op} does not support tensor type {ty}")]
    Unsupported { ty: GgmlType, op: &'static str },
    #[error("{ty}: a row of {cols} values is not a whole number of {block_len}-value blocks")]
    PartialBlock { ty: GgmlType, cols: usize, block_len: usize },
    #[error("{ty}: {what} has length {actual}, expected {expected}")]
    Length { ty: GgmlType, what: &'static str, expected: usize, actual: usize },
    #[error("{ty}: {what} size overflows ({a} × {b})")]
    Overflow { ty: GgmlType, what: &'static str, a: usize, b: usize },
}

/// Dot products of [`ROW_TILE`] consecutive weight rows (`w`, whole rows) with the activation
/// rows of up to [`TOKEN_TILE`] tokens: `out[r * acts.len() + j] = dot(W[r], acts[j])`.
type DotFn = fn(w: &[u8], acts: &[&[u8]], out: &mut [f32]);

/// Weight rows per kernel call: the x86 kernels of the 32-value formats keep a row per 32-bit
/// lane, so that the sums of a block need no horizontal adds and its scales apply to all the
/// rows in one multiply.
const ROW_TILE: usize = 8;

/// Tokens per kernel call: each weight block is decoded once for this many tokens, so a decode
/// step of up to this many sequences decodes the weights once.
const TOKEN_TILE: usize = 8;

/// Tokens per pass over the weights in prefill; bounds the transposition buffer.
const TOKEN_GROUP: usize = 64;

/// Activation rows from which quantizing them is split between threads.
const PARALLEL_QUANTIZE: usize = 8;

fn kernel(level: CpuLevel, ty: GgmlType) -> Option<DotFn> {
    // Never a level the CPU lacks, whatever the caller asked for.
    #[cfg(target_arch = "x86_64")]
    if level.is_available() {
        match level {
            CpuLevel::Avx512 => return x86::avx512::kernel(ty),
            CpuLevel::AvxVnni => return x86::avxvnni::kernel(ty),
            CpuLevel::Avx2 => return x86::avx2::kernel(ty),
            CpuLevel::Scalar => {}
        }
    }
    let _ = level;
    scalar::kernel(ty)
}

/// Bytes of one row of `cols` values of `ty`.
fn row_bytes(ty: GgmlType, cols: usize) -> Result<usize, QuantError> {
    let block_len = ty.block_len();
    if !cols.is_multiple_of(block_len) {
        return Err(QuantError::PartialBlock { ty, cols, block_len });
    }
    let blocks = cols / block_len;
    blocks.checked_mul(ty.block_bytes()).ok_or(QuantError::Overflow {
        ty,
        what: "row",
        a: blocks,
        b: ty.block_bytes(),
    })
}

fn check_len(ty: GgmlType, what: &'static str, a: usize, b: usize, actual: usize) -> Result<(), QuantError> {
    let expected = a.checked_mul(b).ok_or(QuantError::Overflow { ty, what, a, b })?;
    if expected != actual {
        return Err(QuantError::Length { ty, what, expected, actual });
    }
    Ok(())
}

/// Decodes one row of `dst.len()` values of type `ty` from `src`.
pub fn dequantize_row(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> Result<(), QuantError> {
    use formats::*;
    let decode: fn(&[u8], &mut [f32]) = match ty {
        GgmlType::F32 => dequantize_float::<F32>,
        GgmlType::F16 => dequantize_float::<F16>,
        GgmlType::BF16 => dequantize_float::<BF16>,
        GgmlType::Q4_0 => dequantize_32::<Q4_0>,
        GgmlType::Q4_1 => dequantize_32::<Q4_1>,
        GgmlType::Q5_0 => dequantize_32::<Q5_0>,
        GgmlType::Q5_1 => dequantize_32::<Q5_1>,
        GgmlType::Q8_0 => dequantize_32::<Q8_0>,
        GgmlType::Q4K => dequantize_k::<Q4K>,
        GgmlType::Q5K => dequantize_k::<Q5K>,
        GgmlType::Q6K => dequantize_k::<Q6K>,
        GgmlType::Q2K | GgmlType::Q3K => return Err(QuantError::Unsupported { ty, op: "dequantize" }),
    };
    let bytes = row_bytes(ty, dst.len())?;
    check_len(ty, "source row", bytes, 1, src.len())?;
    decode(src, dst);
    Ok(())
}

/// One weight matrix of a [`matmul_many`] call and where its products go.
pub struct MatmulJob<'a> {
    pub ty: GgmlType,
    /// `rows` rows of the shared `cols` columns.
    pub weight: &'a [u8],
    pub rows: usize,
    /// `n_tokens × rows` values, token-major.
    pub out: &'a mut [f32],
}

/// `out[t * rows + r] = dot(W[r], x[t])` for a row-major weight matrix of `rows` rows of `cols`
/// values (a GGUF tensor with dims `[cols, rows]`) and `n_tokens` token-major activation rows.
/// `scratch` holds the quantized activations; reusing it avoids allocating per call.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    ty: GgmlType,
    weight: &[u8],
    rows: usize,
    cols: usize,
    x: &[f32],
    n_tokens: usize,
    out: &mut [f32],
    scratch: &mut Vec<u8>,
) -> Result<(), QuantError> {
    matmul_many(&mut [MatmulJob { ty, weight, rows, out }], cols, x, n_tokens, scratch)
}

/// [`matmul`] for several matrices that multiply the same activations (a layer's Q, K and V):
/// the activations are quantized once, and the threads go from one matrix to the next without
/// waiting for each other in between.
pub fn matmul_many(
    jobs: &mut [MatmulJob<'_>],
    cols: usize,
    x: &[f32],
    n_tokens: usize,
    scratch: &mut Vec<u8>,
) -> Result<(), QuantError> {
    matmul_at(cpu_level(), jobs, cols, x, n_tokens, scratch)
}

fn matmul_at(
    level: CpuLevel,
    jobs: &mut [MatmulJob<'_>],
    cols: usize,
    x: &[f32],
    n_tokens: usize,
    scratch: &mut Vec<u8>,
) -> Result<(), QuantError> {
    let Some(first) = jobs.first() else { return Ok(()) };
    let act = ActFormat::for_weight(first.ty);
    if jobs.len() > 1 && jobs.iter().any(|job| ActFormat::for_weight(job.ty) != act) {
        // Weights that pair with different activation formats each quantize their own.
        for job in jobs.chunks_mut(1) {
            matmul_at(level, job, cols, x, n_tokens, scratch)?;
        }
        return Ok(());
    }
    for job in jobs.iter() {
        let ty = job.ty;
        if ActFormat::for_weight(ty).is_none() || kernel(level, ty).is_none() {
            return Err(QuantError::Unsupported { ty, op: "matmul" });
        }
        check_len(ty, "weight", job.rows, row_bytes(ty, cols)?, job.weight.len())?;
        check_len(ty, "activations", n_tokens, cols, x.len())?;
        check_len(ty, "output", n_tokens, job.rows, job.out.len())?;
    }
    let Some(act) = act else { return Ok(()) };
    if n_tokens == 0 {
        return Ok(());
    }
    if cols == 0 {
        jobs.iter_mut().for_each(|job| job.out.fill(0.0));
        return Ok(());
    }

    let a_row = act.row_bytes(cols);
    scratch.resize(n_tokens * a_row, 0);
    // A decode step's few rows take less time to quantize than to hand to other threads.
    if n_tokens < PARALLEL_QUANTIZE {
        scratch.chunks_mut(a_row).zip(x.chunks(cols)).for_each(|(dst, x)| act.quantize(level, x, dst));
    } else {
        scratch
            .par_chunks_mut(a_row)
            .zip(x.par_chunks(cols))
            .for_each(|(dst, x)| act.quantize(level, x, dst));
    }
    let acts = scratch.as_slice();
    jobs.par_iter_mut().for_each(|job| {
        // Both were checked above.
        if let (Some(dot), Ok(w_row)) = (kernel(level, job.ty), row_bytes(job.ty, cols)) {
            multiply(dot, job.weight, w_row, job.rows, acts, a_row, n_tokens, job.out);
        }
    });
    Ok(())
}

/// One matrix times the quantized activations `acts` (`n_tokens` rows of `a_row` bytes).
#[allow(clippy::too_many_arguments)]
fn multiply(
    dot: DotFn,
    weight: &[u8],
    w_row: usize,
    rows: usize,
    acts: &[u8],
    a_row: usize,
    n_tokens: usize,
    out: &mut [f32],
) {
    if rows == 0 {
        return;
    }
    if n_tokens <= TOKEN_TILE {
        let mut tile: [&[u8]; TOKEN_TILE] = [&[]; TOKEN_TILE];
        for (slot, a) in tile.iter_mut().zip(acts.chunks(a_row)) {
            *slot = a;
        }
        decode_rows(dot, weight, w_row, &tile[..n_tokens], rows, out);
        return;
    }
    // Results come out row-major (rows × tokens) so that threads own contiguous output; they
    // are transposed into `out` per group. The buffer is per thread and kept for the next call
    // (taken, not borrowed, so a re-entrant call on the same thread just gets its own).
    thread_local!(static ROW_MAJOR: Cell<Vec<f32>> = const { Cell::new(Vec::new()) });
    let mut tmp = ROW_MAJOR.take();
    tmp.resize(rows * n_tokens.min(TOKEN_GROUP), 0.0);
    let mut group: [&[u8]; TOKEN_GROUP] = [&[]; TOKEN_GROUP];
    for (out, a) in out.chunks_mut(rows * TOKEN_GROUP).zip(acts.chunks(a_row * TOKEN_GROUP)) {
        let g = out.len() / rows;
        for (slot, a) in group.iter_mut().zip(a.chunks(a_row)) {
            *slot = a;
        }
        let tmp = &mut tmp[..rows * g];
        rows_times_tokens(dot, weight, w_row, &group[..g], tmp);
        let tmp = &*tmp;
        out.par_chunks_mut(rows).enumerate().for_each(|(t, out)| {
            for (o, v) in out.iter_mut().zip(tmp.iter().skip(t).step_by(g)) {
                *o = *v;
            }
        });
    }
    ROW_MAJOR.set(tmp);
}

/// `out[t * rows + r] = dot(W[r], acts[t])` for a decode step's at most [`TOKEN_TILE`] tokens,
/// parallel over chunks of rows, each tile's products stored straight into every token's row
/// (no row-major copy to transpose afterwards, which cost a scalar pass over the logits).
fn decode_rows(dot: DotFn, weight: &[u8], w_row: usize, acts: &[&[u8]], rows: usize, out: &mut [f32]) {
    let g = acts.len();
    assert!(g <= TOKEN_TILE && out.len() == g * rows && weight.len() == rows * w_row);
    let out = TokenRows(out.as_mut_ptr());
    let chunk = row_chunk(rows);
    weight.par_chunks(chunk * w_row).enumerate().for_each(|(c, w)| {
        let mut tile = [0f32; ROW_TILE * TOKEN_TILE];
        let mut padded = Vec::new();
        for (i, w) in w.chunks(ROW_TILE * w_row).enumerate() {
            let (first, count) = (c * chunk + i * ROW_TILE, w.len() / w_row);
            let tile = &mut tile[..ROW_TILE * g];
            dot(whole_tile(w, w_row, &mut padded), acts, tile);
            for t in 0..g {
                for r in 0..count {
                    // SAFETY: `first + r` is a row of this task's chunk (below `rows`, checked
                    // through the weight's length) and `t < g`, so the index is inside `out`
                    // (checked above), and no other task writes row `first + r`.
                    unsafe { out.write(t * rows + first + r, tile[r * g + t]) };
                }
            }
        }
    });
}

/// A matmul's token-major output, written by the tasks of [`decode_rows`] at disjoint places.
struct TokenRows(*mut f32);

// SAFETY: the tasks write disjoint elements and nothing reads them until all have finished.
unsafe impl Sync for TokenRows {}

impl TokenRows {
    /// # Safety
    /// `index` is inside the output and written by this task only.
    unsafe fn write(&self, index: usize, value: f32) {
        // SAFETY: the caller keeps `index` inside the output and to itself.
        unsafe { *self.0.add(index) = value };
    }
}

/// `dst[r * acts.len() + t] = dot(W[r], acts[t])`, parallel over chunks of rows. Each tile of
/// [`ROW_TILE`] rows takes the tokens [`TOKEN_TILE`] at a time while the rows stay in L1.
fn rows_times_tokens(dot: DotFn, weight: &[u8], w_row: usize, acts: &[&[u8]], dst: &mut [f32]) {
    let g = acts.len();
    let chunk = row_chunk(dst.len() / g);
    dst.par_chunks_mut(chunk * g).zip(weight.par_chunks(chunk * w_row)).for_each(|(dst, w)| {
        let mut tile = [0f32; ROW_TILE * TOKEN_TILE];
        let mut padded = Vec::new();
        for (dst, w) in dst.chunks_mut(ROW_TILE * g).zip(w.chunks(ROW_TILE * w_row)) {
            let w = whole_tile(w, w_row, &mut padded);
            for (first, acts) in (0..g).step_by(TOKEN_TILE).zip(acts.chunks(TOKEN_TILE)) {
                let n = acts.len();
                let tile = &mut tile[..ROW_TILE * n];
                dot(w, acts, tile);
                for (dst, products) in dst.chunks_mut(g).zip(tile.chunks(n)) {
                    dst[first..first + n].copy_from_slice(products);
                }
            }
        }
    });
}

/// Rows per parallel task: several chunks per thread, so that rayon can balance uneven
/// progress, each a whole number of tiles.
fn row_chunk(rows: usize) -> usize {
    rows.div_ceil(8 * rayon::current_num_threads()).next_multiple_of(ROW_TILE)
}

/// `w`, a tile of at most [`ROW_TILE`] rows of `w_row` bytes, as a whole tile: a last tile of
/// fewer rows runs on a copy in `padded` with zero rows added (zero products).
fn whole_tile<'a>(w: &'a [u8], w_row: usize, padded: &'a mut Vec<u8>) -> &'a [u8] {
    if w.len() == ROW_TILE * w_row {
        return w;
    }
    padded.clear();
    padded.extend_from_slice(w);
    padded.resize(ROW_TILE * w_row, 0);
    padded
}

/// A [`DotFn`] from a kernel of one row (`out[j] = dot(w, acts[j])`), for the formats whose
/// kernels take the rows one by one.
fn each_row(w: &[u8], acts: &[&[u8]], out: &mut [f32], dot: impl Fn(&[u8], &[&[u8]], &mut [f32])) {
    for (w, out) in w.chunks_exact(w.len() / ROW_TILE).zip(out.chunks_exact_mut(acts.len())) {
        dot(w, acts, out);
    }
}

/// Whether [`matmul`] takes weights of type `ty`.
pub fn supports_matmul(ty: GgmlType) -> bool {
    ActFormat::for_weight(ty).is_some() && kernel(CpuLevel::Scalar, ty).is_some()
}
