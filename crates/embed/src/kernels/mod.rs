//! The encoder's compute kernels: matrix products on weights packed once at load (f32, or int8
//! with per-row scales), and the element-wise functions around them (GELU, softmax).
//!
//! A product is cut into tiles of [`MR`] rows × [`NR`] columns whose sums stay in registers over
//! the whole depth. `B` (the weights, or keys and values in attention) is packed into column
//! panels, depth-major; `A` is packed per block of rows into row-interleaved tiles, so that the
//! inner loop reads both operands sequentially. Kernels are portable ([`scalar`], the reference)
//! or AVX-512 ([`avx512`]), chosen by `temper_engine::quant::cpu_level` (`TEMPER_CPU` forces a
//! level).

mod scalar;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

use std::cell::Cell;

use rayon::prelude::*;
pub use temper_engine::quant::{cpu_level, CpuLevel};

/// Rows of a register tile.
pub const MR: usize = 12;
/// Columns of a register tile and of a packed panel: two 16-lane vectors.
pub const NR: usize = 32;
/// Depth of one int8 dot-product step: four byte products summed per i32 lane.
pub const KG: usize = 4;
/// Rows per parallel task: one packed block of `A`, reused across all panels of `B`.
const BLOCK_ROWS: usize = 8 * MR;

/// What a tile does with its sums before storing them.
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
            for (l, lane) in panel.chunks_exact_mut(NR).enumerate() {
                for (j, v) in lane.iter_mut().enumerate().take(n.saturating_sub(p * NR)) {
                    *v = src[(p * NR + j) * col_stride + l * depth_stride];
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
    /// Per column (padded to whole panels): the scale, and 128 × the sum of the quants, which
    /// the kernels subtract because activations are stored as unsigned `q + 128`.
    scales: Vec<f32>,
    offsets: Vec<i32>,
}

impl PackedI8 {
    pub fn weights(w: &[f32], n: usize, k: usize) -> Self {
        let (panels, kp) = (n.div_ceil(NR), k.div_ceil(KG) * KG);
        let mut data = vec![0i8; panels * NR * kp];
        let (mut scales, mut offsets) = (vec![0f32; panels * NR], vec![0i32; panels * NR]);
        for (j, row) in w.chunks_exact(k).take(n).enumerate() {
            let (scale, inverse) = scale_for(row);
            scales[j] = scale;
            let base = (j / NR) * NR * kp + (j % NR) * KG;
            let mut sum = 0i32;
            for (l, &v) in row.iter().enumerate() {
                let q = quantize(v, inverse);
                sum += i32::from(q);
                data[base + (l / KG) * NR * KG + l % KG] = q;
            }
            offsets[j] = 128 * sum;
        }
        PackedI8 { n, k, data, scales, offsets }
    }
}

/// The symmetric int8 scale of `values` and its inverse (0 for an all-zero row).
fn scale_for(values: &[f32]) -> (f32, f32) {
    let max = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    match max > 0.0 {
        true => (max / 127.0, 127.0 / max),
        false => (0.0, 0.0),
    }
}

fn quantize(v: f32, inverse: f32) -> i8 {
    (v * inverse).round().clamp(-127.0, 127.0) as i8
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
    if a.m == 0 {
        return;
    }
    let (a_chunk, c_chunk) = (BLOCK_ROWS * a.stride, BLOCK_ROWS * c.stride);
    let stride = c.stride;
    c.data.par_chunks_mut(c_chunk).zip(a.data.par_chunks(a_chunk)).enumerate().for_each(
        |(i, (c, a_data))| {
            let m = (a.m - i * BLOCK_ROWS).min(BLOCK_ROWS);
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
    assert!(a.k == b.k && a.data.len() >= span(a.m, a.k, a.stride));
    assert!(c.data.len() >= span(a.m, b.n, c.stride));
    let mut rest = (a, c);
    while rest.0.m > 0 {
        let (a, c) = rest;
        let m = a.m.min(BLOCK_ROWS);
        let (c_now, c_later) = c.data.split_at_mut((m * c.stride).min(c.data.len()));
        let a_now = Rows { m, ..a };
        block_f32(level, a_now, b, &[], OutRows { data: c_now, stride: c.stride }, epilogue);
        let a_later = Rows { data: &a.data[(m * a.stride).min(a.data.len())..], m: a.m - m, ..a };
        rest = (a_later, OutRows { data: c_later, stride: c.stride });
    }
}

/// Elements spanned by `m` rows of `n` values `stride` apart.
fn span(m: usize, n: usize, stride: usize) -> usize {
    match m {
        0 => 0,
        _ => (m - 1) * stride + n,
    }
}

/// One tile's operands and destination, as the kernels take them. The kernels read [`MR`] rows of
/// packed `a` and [`NR`] columns of packed `b` for `depth` steps, and write `rows × cols` of `c`.
pub struct Tile<'a, A, B> {
    pub a: &'a [A],
    pub b: &'a [B],
    pub depth: usize,
    pub out: Dest<'a>,
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
    static PACKED_F32: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static PACKED_U8: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// At most [`BLOCK_ROWS`] rows of `a` times every panel of `b`.
fn block_f32(level: CpuLevel, a: Rows, b: &PackedF32, bias: &[f32], c: OutRows, epilogue: Epilogue) {
    assert_eq!(a.k, b.k);
    let k = a.k;
    let tiles = a.m.div_ceil(MR);
    // Taken, not borrowed, so that a nested call on the same thread just gets its own buffer.
    let mut packed = PACKED_F32.take();
    packed.clear();
    packed.resize(tiles * MR * k, 0.0);
    for (t, tile) in packed.chunks_exact_mut(MR * k).enumerate() {
        for r in 0..(a.m - t * MR).min(MR) {
            let row = &a.data[(t * MR + r) * a.stride..][..k];
            for (l, &v) in row.iter().enumerate() {
                tile[l * MR + r] = v;
            }
        }
    }
    let kernel = kernel_f32(level);
    for (p, panel) in b.data.chunks_exact(NR * k).enumerate() {
        let (j0, cols) = (p * NR, (b.n - p * NR).min(NR));
        let bias = if bias.is_empty() { bias } else { &bias[j0..j0 + cols] };
        for (t, a_tile) in packed.chunks_exact(MR * k).enumerate() {
            let rows = (a.m - t * MR).min(MR);
            let start = t * MR * c.stride + j0;
            let end = start + span(rows, cols, c.stride);
            let out = Dest { c: &mut c.data[start..end], stride: c.stride, rows, cols, bias };
            kernel(Tile { a: a_tile, b: panel, depth: k, out }, epilogue);
        }
    }
    PACKED_F32.set(packed);
}

/// [`block_f32`] for int8 weights: each row of `a` is quantized with its own scale while packed.
fn block_i8(level: CpuLevel, a: Rows, b: &PackedI8, bias: &[f32], c: OutRows, epilogue: Epilogue) {
    assert_eq!(a.k, b.k);
    let (k, kp) = (a.k, a.k.div_ceil(KG) * KG);
    let tiles = a.m.div_ceil(MR);
    let mut packed = PACKED_U8.take();
    packed.clear();
    // 128 is a zero: padding rows and depths contribute nothing.
    packed.resize(tiles * MR * kp, 128);
    let mut row_scales = [0f32; BLOCK_ROWS];
    for (t, tile) in packed.chunks_exact_mut(MR * kp).enumerate() {
        for r in 0..(a.m - t * MR).min(MR) {
            let row = &a.data[(t * MR + r) * a.stride..][..k];
            let (scale, inverse) = scale_for(row);
            row_scales[t * MR + r] = scale;
            for (l, &v) in row.iter().enumerate() {
                tile[(l / KG) * MR * KG + r * KG + l % KG] = (i16::from(quantize(v, inverse)) + 128) as u8;
            }
        }
    }
    let kernel = kernel_i8(level);
    for (p, panel) in b.data.chunks_exact(NR * kp).enumerate() {
        let (j0, cols) = (p * NR, (b.n - p * NR).min(NR));
        for (t, a_tile) in packed.chunks_exact(MR * kp).enumerate() {
            let rows = (a.m - t * MR).min(MR);
            let start = t * MR * c.stride + j0;
            let end = start + span(rows, cols, c.stride);
            let out =
                Dest { c: &mut c.data[start..end], stride: c.stride, rows, cols, bias: &bias[j0..j0 + cols] };
            let tile = Tile { a: a_tile, b: panel, depth: kp / KG, out };
            let scales = Scales {
                rows: &row_scales[t * MR..(t + 1) * MR],
                cols: &b.scales[j0..j0 + NR],
                offsets: &b.offsets[j0..j0 + NR],
            };
            kernel(tile, &scales, epilogue);
        }
    }
    PACKED_U8.set(packed);
}

/// The scales of an int8 tile: [`MR`] rows of `a`, [`NR`] columns of `b` with their offsets.
pub struct Scales<'a> {
    pub rows: &'a [f32],
    pub cols: &'a [f32],
    pub offsets: &'a [i32],
}

type KernelF32 = fn(Tile<f32, f32>, Epilogue);
type KernelI8 = fn(Tile<u8, i8>, &Scales, Epilogue);

fn kernel_f32(level: CpuLevel) -> KernelF32 {
    #[cfg(target_arch = "x86_64")]
    if level == CpuLevel::Avx512 && level.is_available() {
        return x86::tile_f32;
    }
    let _ = level;
    scalar::tile_f32
}

fn kernel_i8(level: CpuLevel) -> KernelI8 {
    #[cfg(target_arch = "x86_64")]
    if level == CpuLevel::Avx512 && level.is_available() {
        return x86::tile_i8;
    }
    let _ = level;
    scalar::tile_i8
}

/// `row = softmax(row)`.
pub fn softmax(level: CpuLevel, row: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if level == CpuLevel::Avx512 && level.is_available() {
        return x86::softmax(row);
    }
    let _ = level;
    scalar::softmax(row)
}

/// `row = (row - mean) / sqrt(var + eps) * gamma + beta`.
pub fn layer_norm(row: &mut [f32], gamma: &[f32], beta: &[f32], eps: f32) {
    let n = row.len() as f32;
    let mean = lanes_sum(row.iter().copied()) / n;
    let var = lanes_sum(row.iter().map(|v| (v - mean) * (v - mean))) / n;
    let inv = 1.0 / (var + eps).sqrt();
    for ((v, g), b) in row.iter_mut().zip(gamma).zip(beta) {
        *v = (*v - mean) * inv * g + b;
    }
}

/// A sum in eight interleaved lanes: vectorizable, and more accurate than one running sum.
fn lanes_sum(values: impl Iterator<Item = f32>) -> f32 {
    let mut lanes = [0f32; 8];
    for (i, v) in values.enumerate() {
        lanes[i % 8] += v;
    }
    lanes.iter().sum()
}
