//! The encoder's compute kernels: matrix products on weights packed once at load (f32, or int8
//! with per-row scales), and the element-wise functions around them (GELU, softmax).
//!
//! A product is cut into tiles of [`MR`] rows × [`NR`] columns whose sums stay in registers over
//! a slice of the depth sized so that the tile's operands stay in L1. `B` (the weights, or keys
//! and values in attention) is packed into column panels, depth-major. `A` is read in place for
//! f32; for int8 it is quantized per row and packed into row-interleaved tiles. Kernels are
//! portable (`scalar`, the reference) or AVX-512 (`x86`), chosen by
//! `temper_kernels::cpu_level` (`TEMPER_CPU` forces a level).

/// `$avx512` when `$level` is AVX-512 and the CPU has it, else `$portable`.
macro_rules! by_level {
    ($level:expr, $avx512:expr, $portable:expr) => {{
        #[cfg(target_arch = "x86_64")]
        if $level == CpuLevel::Avx512 && $level.is_available() {
            return $avx512;
        }
        let _ = $level;
        $portable
    }};
}

mod scalar;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::cell::Cell;

use rayon::prelude::*;
pub use temper_kernels::{cpu_level, CpuLevel};

/// Rows of a register tile.
pub const MR: usize = 12;
/// Columns of a register tile and of a packed panel: two 16-lane vectors.
pub const NR: usize = 32;
/// Depth of one int8 dot-product step: four byte products summed per i32 lane.
pub const KG: usize = 4;
/// Rows per parallel task: one block of `A`, reused across all panels of `B`.
const BLOCK_ROWS: usize = 8 * MR;
/// Depth per f32 tile pass: 24 KiB of a `B` panel and 9 KiB of `A` stay in L1.
const DEPTH_F32: usize = 192;
/// Depth per int8 tile pass, in groups of [`KG`]: 16 KiB of a `B` panel, 6 KiB of `A`.
const GROUPS_I8: usize = 128;

/// What a product does with its sums before storing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Epilogue {
    /// `c = a·b + bias`
    Store,
    /// `c += a·b + bias` (a residual connection).
    Add,
    /// `c = gelu(a·b + bias)`, the exact (erf) GELU.
    Gelu,
    /// `c = gelu_tanh(a·b + bias)`, the tanh approximation.
    GeluTanh,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    None,
    Gelu,
    GeluTanh,
}

/// What one pass over a slice of the depth does: `v = sums + bias` (bias on the first pass
/// only), `v += c` when accumulating, then the activation (on the last pass only).
#[derive(Clone, Copy, Debug)]
pub struct Finish {
    pub accumulate: bool,
    pub activation: Activation,
}

impl Epilogue {
    fn pass(self, first: bool, last: bool) -> Finish {
        let activation = match (last, self) {
            (true, Epilogue::Gelu) => Activation::Gelu,
            (true, Epilogue::GeluTanh) => Activation::GeluTanh,
            _ => Activation::None,
        };
        Finish { accumulate: !first || self == Epilogue::Add, activation }
    }
}

/// `n` columns of depth `k` (column `j` is row `j` of a row-major weight matrix), packed in
/// panels of [`NR`] columns, each depth-major and zero-padded to a whole panel.
#[derive(Default)]
pub struct PackedF32 {
    n: usize,
    k: usize,
    data: Vec<f32>,
}

impl PackedF32 {
    /// Packs `b(j, l) = src[j * col_stride + l * depth_stride]` for `j < n`, `l < k`, reusing
    /// this packing's memory.
    pub fn pack(&mut self, n: usize, k: usize, src: &[f32], col_stride: usize, depth_stride: usize) {
        self.n = n;
        self.k = k;
        self.data.clear();
        self.data.resize(n.div_ceil(NR) * NR * k, 0.0);
        for (p, panel) in self.data.chunks_exact_mut(NR * k).enumerate() {
            let cols = (n - p * NR).min(NR);
            let src = &src[p * NR * col_stride..];
            if col_stride == 1 {
                // Attention's values: a panel's depth step is a run of the source row.
                for (l, lane) in panel.chunks_exact_mut(NR).enumerate() {
                    lane[..cols].copy_from_slice(&src[l * depth_stride..][..cols]);
                }
            } else {
                for j in 0..cols {
                    let column = src[j * col_stride..].iter().step_by(depth_stride);
                    panel.iter_mut().skip(j).step_by(NR).zip(column).for_each(|(v, &x)| *v = x);
                }
            }
        }
    }

    /// A row-major `n × k` weight matrix.
    pub fn weights(w: &[f32], n: usize, k: usize) -> Self {
        let mut packed = PackedF32::default();
        packed.pack(n, k, w, k, 1);
        packed
    }
}

/// A row-major `n × k` weight matrix quantized to int8 with one scale per row (symmetric,
/// `w ≈ scale · q`, |q| ≤ 127), packed in panels of [`NR`] columns: for each group of [`KG`]
/// depths, the [`KG`] bytes of every column in turn.
pub struct PackedI8 {
    n: usize,
    k: usize,
    data: Vec<i8>,
    /// Per column, padded to whole panels.
    scales: Vec<f32>,
    /// Per depth slice of [`GROUPS_I8`] groups, then per column: 128 × the sum of the quants,
    /// which the kernels subtract because activations are stored as unsigned `q + 128`.
    offsets: Vec<i32>,
}

impl PackedI8 {
    pub fn weights(w: &[f32], n: usize, k: usize) -> Self {
        let (width, kp) = (n.div_ceil(NR) * NR, k.div_ceil(KG) * KG);
        let mut data = vec![0i8; width * kp];
        let mut scales = vec![0f32; width];
        let mut offsets = vec![0i32; kp.div_ceil(KG * GROUPS_I8).max(1) * width];
        for (j, row) in w.chunks_exact(k).take(n).enumerate() {
            let (scale, inverse) = scale_for(row);
            scales[j] = scale;
            let base = (j / NR) * NR * kp + (j % NR) * KG;
            for (l, &v) in row.iter().enumerate() {
                let q = quantize(v, inverse);
                offsets[l / (KG * GROUPS_I8) * width + j] += 128 * i32::from(q);
                data[base + (l / KG) * NR * KG + l % KG] = q;
            }
        }
        PackedI8 { n, k, data, scales, offsets }
    }
}

/// Quantizes `values` into `out` as unsigned `q + 128` and returns the scale: compiled once
/// per level, so that the loops vectorize at the level's width.
fn quantize_row(level: CpuLevel, values: &[f32], out: &mut [u8]) -> f32 {
    by_level!(level, x86::quantize_row(values, out), quantize_row_inline(values, out))
}

#[inline(always)]
fn quantize_row_inline(values: &[f32], out: &mut [u8]) -> f32 {
    let (scale, inverse) = scale_for(values);
    out.iter_mut().zip(values).for_each(|(q, &v)| *q = quantize(v, inverse) as u8 ^ 0x80);
    scale
}

/// The symmetric int8 scale of `values` and its inverse (0 for an all-zero row).
#[inline(always)]
fn scale_for(values: &[f32]) -> (f32, f32) {
    let mut lanes = [0f32; 16];
    for chunk in values.chunks(16) {
        lanes.iter_mut().zip(chunk).for_each(|(m, v)| *m = m.max(v.abs()));
    }
    let max = lanes.iter().fold(0f32, |m, &v| m.max(v));
    match max > 0.0 {
        true => (max / 127.0, 127.0 / max),
        false => (0.0, 0.0),
    }
}

/// `v · inverse` rounded to the nearest integer in [-127, 127], by adding 1.5 × 2²³ so that the
/// float's low mantissa bits hold it: unlike `round`, this vectorizes.
#[inline(always)]
fn quantize(v: f32, inverse: f32) -> i8 {
    const MAGIC: f32 = 12_582_912.0;
    let y = (v * inverse).clamp(-127.0, 127.0) + MAGIC;
    (y.to_bits() as i32 - MAGIC.to_bits() as i32) as i8
}

/// A linear layer's weights in the form the kernels multiply.
pub enum Weights {
    F32(PackedF32),
    Int8(PackedI8),
}

impl Weights {
    pub fn out_features(&self) -> usize {
        match self {
            Weights::F32(b) => b.n,
            Weights::Int8(b) => b.n,
        }
    }
}

/// `A`: `m` rows of depth `k`, row `i` at `data[i * stride..]`.
#[derive(Clone, Copy)]
pub struct Rows<'a> {
    pub data: &'a [f32],
    pub m: usize,
    pub k: usize,
    pub stride: usize,
}

/// `C`: row `i` at `data[i * stride..]`, `n` columns written.
pub struct OutRows<'a> {
    pub data: &'a mut [f32],
    pub stride: usize,
}

/// `c = a · bᵀ` (then the epilogue) on the current rayon pool, split over blocks of rows.
/// `bias` has one value per column of `b`. Panics if a slice is shorter than its shape.
pub fn linear(level: CpuLevel, a: Rows, w: &Weights, bias: &[f32], c: OutRows, epilogue: Epilogue) {
    let n = w.out_features();
    assert!(bias.len() >= n && a.data.len() >= span(a.m, a.k, a.stride));
    assert!(c.data.len() >= span(a.m, n, c.stride));
    let (a_chunk, c_chunk) = (BLOCK_ROWS * a.stride, BLOCK_ROWS * c.stride);
    let stride = c.stride;
    c.data.par_chunks_mut(c_chunk).zip(a.data.par_chunks(a_chunk)).enumerate().for_each(
        |(i, (c, a_data))| {
            let m = a.m.saturating_sub(i * BLOCK_ROWS).min(BLOCK_ROWS);
            let a = Rows { data: a_data, m, ..a };
            let c = OutRows { data: c, stride };
            match w {
                Weights::F32(b) => block_f32(level, a, b, bias, c, epilogue),
                Weights::Int8(b) => block_i8(level, a, b, bias, c, epilogue),
            }
        },
    );
}

/// `c = a · bᵀ` on the calling thread only (for products inside a parallel task), no bias.
pub fn matmul(level: CpuLevel, a: Rows, b: &PackedF32, c: OutRows, epilogue: Epilogue) {
    assert!(a.data.len() >= span(a.m, a.k, a.stride));
    assert!(c.data.len() >= span(a.m, b.n, c.stride));
    block_f32(level, a, b, &[], c, epilogue);
}

/// Elements spanned by `m` rows of `n` values `stride` apart.
fn span(m: usize, n: usize, stride: usize) -> usize {
    match m {
        0 => 0,
        _ => (m - 1) * stride + n,
    }
}

/// Where a tile's results go: `rows × cols` values of `c`, rows `stride` apart.
pub struct Dest<'a> {
    pub c: &'a mut [f32],
    pub stride: usize,
    pub rows: usize,
    pub cols: usize,
    /// `cols` values, or empty for no bias.
    pub bias: &'a [f32],
}

impl Dest<'_> {
    /// Panics unless every access the kernels make is in bounds.
    fn check(&self) {
        assert!(self.rows <= MR && self.cols <= NR && self.rows > 0 && self.cols > 0);
        assert!(self.c.len() >= span(self.rows, self.cols, self.stride));
        assert!(self.bias.is_empty() || self.bias.len() >= self.cols);
    }
}

thread_local! {
    static PACKED_U8: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Every row of `a` times every panel of `b`, a slice of the depth at a time: a panel's slice
/// stays in L1 for all the row tiles, and their partial sums in L1 or L2 for the next slice.
fn block_f32(level: CpuLevel, a: Rows, b: &PackedF32, bias: &[f32], c: OutRows, epilogue: Epilogue) {
    assert!(a.k == b.k && b.k > 0);
    let kernel = kernel_f32(level);
    for (p, panel) in b.data.chunks_exact(NR * b.k).enumerate() {
        let (j0, cols) = (p * NR, (b.n - p * NR).min(NR));
        for k0 in (0..a.k).step_by(DEPTH_F32) {
            let depth = (a.k - k0).min(DEPTH_F32);
            let finish = epilogue.pass(k0 == 0, k0 + depth == a.k);
            let bias = if bias.is_empty() || k0 > 0 { &[] } else { &bias[j0..j0 + cols] };
            for i0 in (0..a.m).step_by(MR) {
                let rows = (a.m - i0).min(MR);
                let start = i0 * c.stride + j0;
                let out = Dest { c: &mut c.data[start..], stride: c.stride, rows, cols, bias };
                let rows_of_a = &a.data[i0 * a.stride + k0..];
                kernel(rows_of_a, a.stride, &panel[k0 * NR..(k0 + depth) * NR], depth, out, finish);
            }
        }
    }
}

/// [`block_f32`] for int8 weights: each row of `a` is first quantized with its own scale and
/// packed, [`KG`] depths of each row of a tile in turn.
fn block_i8(level: CpuLevel, a: Rows, b: &PackedI8, bias: &[f32], c: OutRows, epilogue: Epilogue) {
    assert!(a.k == b.k && b.k > 0 && a.m <= BLOCK_ROWS);
    let (k, kp) = (a.k, a.k.div_ceil(KG) * KG);
    let groups = kp / KG;
    let tiles = a.m.div_ceil(MR);
    let mut packed = PACKED_U8.take();
    packed.clear();
    // 128 is a zero: padding rows and depths contribute nothing.
    packed.resize(tiles * MR * kp + kp, 128);
    let (packed_tiles, row) = packed.split_at_mut(tiles * MR * kp);
    let mut row_scales = [0f32; BLOCK_ROWS];
    for (i, (a_row, scale)) in a.data.chunks(a.stride).take(a.m).zip(&mut row_scales).enumerate() {
        *scale = quantize_row(level, &a_row[..k], row);
        let tile = &mut packed_tiles[(i / MR) * MR * kp..][..MR * kp];
        for (g, quad) in row.chunks_exact(KG).enumerate() {
            tile[(g * MR + i % MR) * KG..][..KG].copy_from_slice(quad);
        }
    }
    let kernel = kernel_i8(level);
    let width = b.scales.len();
    for (p, panel) in b.data.chunks_exact(NR * kp).enumerate() {
        let (j0, cols) = (p * NR, (b.n - p * NR).min(NR));
        for (slice, g0) in (0..groups).step_by(GROUPS_I8).enumerate() {
            let depth = (groups - g0).min(GROUPS_I8);
            let finish = epilogue.pass(g0 == 0, g0 + depth == groups);
            let bias = if g0 > 0 { &[] } else { &bias[j0..j0 + cols] };
            let b_slice = &panel[g0 * NR * KG..(g0 + depth) * NR * KG];
            for (t, a_tile) in packed_tiles.chunks_exact(MR * kp).enumerate() {
                let rows = (a.m - t * MR).min(MR);
                let out =
                    Dest { c: &mut c.data[t * MR * c.stride + j0..], stride: c.stride, rows, cols, bias };
                let scales = Scales {
                    rows: &row_scales[t * MR..(t + 1) * MR],
                    cols: &b.scales[j0..j0 + NR],
                    offsets: &b.offsets[slice * width + j0..][..NR],
                };
                kernel(&a_tile[g0 * MR * KG..(g0 + depth) * MR * KG], b_slice, depth, &scales, out, finish);
            }
        }
    }
    PACKED_U8.set(packed);
}

/// The scales of an int8 tile: [`MR`] rows of `a`, [`NR`] columns of `b` with the offsets of
/// the depth slice.
pub struct Scales<'a> {
    pub rows: &'a [f32],
    pub cols: &'a [f32],
    pub offsets: &'a [i32],
}

type KernelF32 = fn(&[f32], usize, &[f32], usize, Dest, Finish);
type KernelI8 = fn(&[u8], &[i8], usize, &Scales, Dest, Finish);

fn kernel_f32(level: CpuLevel) -> KernelF32 {
    by_level!(level, x86::tile_f32, scalar::tile_f32)
}

fn kernel_i8(level: CpuLevel) -> KernelI8 {
    by_level!(level, x86::tile_i8, scalar::tile_i8)
}

/// `row = softmax(row)`.
pub fn softmax(level: CpuLevel, row: &mut [f32]) {
    by_level!(level, x86::softmax(row), scalar::softmax(row))
}

/// `row = (row - mean) / sqrt(var + eps) * gamma + beta`.
pub fn layer_norm(level: CpuLevel, row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    by_level!(level, x86::layer_norm(row, gamma, beta, eps), layer_norm_inline(row, gamma, beta, eps))
}

#[inline(always)]
fn layer_norm_inline(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = lanes_sum(row, |v| v) / n;
    let var = lanes_sum(row, |v| (v - mean) * (v - mean)) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// The sum of `f` over `values` in 16 interleaved lanes: vectorizable, and more accurate than
/// one running sum.
#[inline(always)]
fn lanes_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let mut chunks = values.chunks_exact(16);
    for chunk in &mut chunks {
        lanes.iter_mut().zip(chunk).for_each(|(s, &v)| *s += f(v));
    }
    lanes.iter_mut().zip(chunks.remainder()).for_each(|(s, &v)| *s += f(v));
    lanes.iter().sum()
}
