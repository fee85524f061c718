//! The small vector operations of the forward pass: portable code here, and its x86 versions
//! (f16 attention, SiLU) in `x86.rs`, picked by `temper_kernels::cpu_level`.

use half::f16;

use super::{ModelConfig, RopeStyle};
use temper_kernels::{cpu_level, CpuLevel};

/// The dot product of f32 values with f16 ones.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn dot_f16_at(level: CpuLevel, a: &[f32], b: &[f16]) -> f32 {
    // Eight lanes at every level: the summation order moves the attention weights, and the f16
    // accumulation after them amplifies that; this order keeps the logits close to llama.cpp's.
    #[cfg(target_arch = "x86_64")]
    if !matches!(Simd::for_len(level, a.len()), Simd::None) {
        // SAFETY: the CPU has AVX2, FMA and F16C at every level from Avx2, and the lengths are
        // whole vectors of eight.
        return unsafe { x86::dot_f16(a, b) };
    }
    a.iter().zip(b).map(|(x, y)| x * y.to_f32()).sum()
}

/// Softmax of `scores` times the value rows, in one pass with a running maximum. The weighted
/// sum is kept at f16 precision, as llama.cpp's CPU flash attention keeps it, so that logits
/// stay close to the reference's.
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn attend_f16_at<'a>(
    level: CpuLevel,
    scores: &[f32],
    values: impl Iterator<Item = &'a [f16]>,
    out: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    let simd = Simd::for_len(level, out.len());
    let round = |x: f32| f16::from_f32(x).to_f32();
    let (mut max, mut sum) = (f32::NEG_INFINITY, 0.0f32);
    out.fill(0.0);
    for (&score, value) in scores.iter().zip(values) {
        let mut rescale = 1.0;
        if score > max {
            rescale = (max - score).exp();
            sum *= rescale;
            max = score;
        }
        let weight = (score - max).exp();
        sum += weight;
        #[cfg(target_arch = "x86_64")]
        match simd {
            Simd::Avx512 => {
                // SAFETY: the level is one the CPU has, and Avx512 has AVX-512 F; the lengths
                // are whole vectors.
                unsafe { x86::scale_add_f16_512(out, rescale, value, weight) };
                continue;
            }
            Simd::Avx2 => {
                // SAFETY: the level is one the CPU has, and every level from Avx2 has AVX2, FMA
                // and F16C; the lengths are whole vectors.
                unsafe { x86::scale_add_f16(out, rescale, value, weight) };
                continue;
            }
            Simd::None => {}
        }
        out.iter_mut().zip(value).for_each(|(o, v)| *o = round(round(*o * rescale) + v.to_f32() * weight));
    }
    let inv = 1.0 / sum;
    out.iter_mut().for_each(|o| *o *= inv);
}

/// Where one token's attention reads in a cache layer: key and value rows `stride` values
/// apart, its key-value head's `head_dim` values at `offset` in each, at `positions`.
pub struct KvRows<'a> {
    pub keys: &'a [f16],
    pub values: &'a [f16],
    pub stride: usize,
    pub offset: usize,
    pub positions: std::ops::Range<usize>,
}

impl KvRows<'_> {
    fn key(&self, position: usize, head_dim: usize) -> &[f16] {
        &self.keys[position * self.stride + self.offset..][..head_dim]
    }

    fn value(&self, position: usize, head_dim: usize) -> &[f16] {
        &self.values[position * self.stride + self.offset..][..head_dim]
    }
}

/// Attention of query heads that share one key-value head (`queries` and `out` hold a row of
/// `out.len() / heads` values per head) over `rows`: scores [`dot_f16_at`] of the f16-rounded
/// query with each key, times `scale`, then [`attend_f16_at`] over the values. The vector levels
/// do it in one pass per stage for all the heads, reading and converting each key and value
/// once, with the same roundings in the same order.
pub fn attend_heads(queries: &[f32], heads: usize, rows: &KvRows, scale: f32, out: &mut [f32]) {
    attend_heads_at(cpu_level(), queries, heads, rows, scale, out)
}

fn attend_heads_at(
    level: CpuLevel,
    queries: &[f32],
    heads: usize,
    rows: &KvRows,
    scale: f32,
    out: &mut [f32],
) {
    let head_dim = out.len() / heads;
    // The f16-rounded queries, then a row of scores per head; kept per thread for the next call.
    thread_local!(static BUFFER: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) });
    let mut buffer = BUFFER.take();
    buffer.clear();
    buffer.extend(queries.iter().map(|&x| f16::from_f32(x).to_f32()));
    buffer.resize(queries.len() + heads * rows.positions.len(), 0.0);
    let (queries, scores) = buffer.split_at_mut(queries.len());
    #[cfg(target_arch = "x86_64")]
    if let simd @ (Simd::Avx2 | Simd::Avx512) = Simd::for_len(level, head_dim) {
        let wide = matches!(simd, Simd::Avx512);
        // SAFETY: the level has AVX2, FMA and F16C (and AVX-512 F when `wide`), and `head_dim`
        // is a whole number of vectors.
        if unsafe { x86::attend_heads(heads, wide, queries, rows, scale, scores, out) } {
            BUFFER.set(buffer);
            return;
        }
    }
    let len = rows.positions.len();
    for ((query, scores), out) in
        queries.chunks(head_dim).zip(scores.chunks_mut(len)).zip(out.chunks_mut(head_dim))
    {
        for (score, p) in scores.iter_mut().zip(rows.positions.clone()) {
            *score = dot_f16_at(level, query, rows.key(p, head_dim)) * scale;
        }
        attend_f16_at(level, scores, rows.positions.clone().map(|p| rows.value(p, head_dim)), out);
    }
    BUFFER.set(buffer);
}

/// The vector width the f16 helpers use for a row of some length.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum Simd {
    None,
    Avx2,
    Avx512,
}

#[cfg(target_arch = "x86_64")]
impl Simd {
    /// `level` is one the CPU has (the callers pass `cpu_level()`, or in tests an available one).
    fn for_len(level: CpuLevel, len: usize) -> Simd {
        match level {
            CpuLevel::Avx512 if len.is_multiple_of(16) => Simd::Avx512,
            level if level >= CpuLevel::Avx2 && len.is_multiple_of(8) => Simd::Avx2,
            _ => Simd::None,
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86;

pub fn add(out: &mut [f32], x: &[f32]) {
    out.iter_mut().zip(x).for_each(|(o, x)| *o += x);
}

pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let scale = rms_scale(x, eps);
    out.iter_mut().zip(x).zip(weight).for_each(|((o, x), w)| *o = x * scale * w);
}

pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    let scale = rms_scale(x, eps);
    x.iter_mut().zip(weight).for_each(|(x, w)| *x *= scale * w);
}

fn rms_scale(x: &[f32], eps: f32) -> f32 {
    // Four running sums, so that the additions are not one long chain (the squares are exact in
    // f64, and the order moves the sum by far less than an f32 step).
    let square = |v: &f32| f64::from(*v) * f64::from(*v);
    let chunks = x.chunks_exact(4);
    let rest: f64 = chunks.remainder().iter().map(square).sum();
    let sums = chunks.fold([0f64; 4], |mut sums, c| {
        sums.iter_mut().zip(c).for_each(|(s, v)| *s += square(v));
        sums
    });
    let mean_square = ((sums[0] + sums[1]) + (sums[2] + sums[3]) + rest) / x.len() as f64;
    (1.0 / (mean_square + f64::from(eps)).sqrt()) as f32
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `gate[i] = silu(gate[i]) × up[i]`, the SwiGLU of a feed-forward layer. The vector levels
/// take the exponential from a polynomial (within two units in the last place of the library's,
/// as llama.cpp's vector SiLU does) instead of a call per value.
pub fn silu_gate(gate: &mut [f32], up: &[f32]) {
    silu_gate_at(cpu_level(), gate, up)
}

#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn silu_gate_at(level: CpuLevel, gate: &mut [f32], up: &[f32]) {
    let whole = gate.len() / 8 * 8;
    #[cfg(target_arch = "x86_64")]
    let whole = if level >= CpuLevel::Avx2 {
        // SAFETY: every level from Avx2 has AVX2 and FMA; the slices are whole vectors.
        unsafe { x86::silu_gate(&mut gate[..whole], &up[..whole]) };
        whole
    } else {
        0
    };
    gate[whole..].iter_mut().zip(&up[whole..]).for_each(|(g, u)| *g = silu(*g) * u);
}

/// GELU with the tanh approximation, as Gemma uses, at f16 precision in (-10, 10) as
/// llama.cpp's lookup table computes it.
pub fn gelu_tanh(x: f32) -> f32 {
    if x <= -10.0 {
        return 0.0;
    }
    if x >= 10.0 {
        return x;
    }
    // The result depends only on `x` rounded to f16, so a table over every f16 gives it exactly
    // without a `tanh` per value (a tenth of Gemma's prompt processing otherwise).
    static TABLE: std::sync::OnceLock<Box<[f16]>> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        (0..=u16::MAX).map(|bits| f16::from_f32(gelu_tanh_exact(f16::from_bits(bits).to_f32()))).collect()
    });
    table[usize::from(f16::from_f32(x).to_bits())].to_f32()
}

fn gelu_tanh_exact(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    0.5 * x * (1.0 + (SQRT_2_OVER_PI * (x + 0.044_715 * x * x * x)).tanh())
}

/// Cosines and sines of the rotary angles for the positions of one batch, for the global
/// and the sliding-window rotary bases.
pub struct RopeTables {
    half: usize,
    global: Vec<(f32, f32)>,
    local: Vec<(f32, f32)>,
}

impl RopeTables {
    pub fn new(head_dim: usize) -> RopeTables {
        RopeTables { half: head_dim / 2, global: Vec::new(), local: Vec::new() }
    }

    /// Tables for a batch whose tokens sit at `positions`, in batch order.
    pub fn prepare(&mut self, c: &ModelConfig, positions: impl Iterator<Item = usize> + Clone) {
        fill_angles(&mut self.global, c.rope_base, self.half, positions.clone());
        if c.sliding_window.is_some() {
            fill_angles(&mut self.local, c.rope_base_local, self.half, positions);
        }
    }

    /// Rotates every head of every token in `x` (rows of `width` values).
    pub fn apply(&self, c: &ModelConfig, sliding: bool, x: &mut [f32], width: usize) {
        let table = if sliding { &self.local } else { &self.global };
        let half = self.half;
        for (t, row) in x.chunks_mut(width).enumerate() {
            let angles = &table[t * half..(t + 1) * half];
            for head in row.chunks_mut(2 * half) {
                for (i, &(cos, sin)) in angles.iter().enumerate() {
                    let (a, b) = match c.rope_style {
                        RopeStyle::Adjacent => (2 * i, 2 * i + 1),
                        RopeStyle::Halves => (i, i + half),
                    };
                    let (x0, x1) = (head[a], head[b]);
                    head[a] = x0 * cos - x1 * sin;
                    head[b] = x0 * sin + x1 * cos;
                }
            }
        }
    }
}

fn fill_angles(table: &mut Vec<(f32, f32)>, base: f32, half: usize, positions: impl Iterator<Item = usize>) {
    table.clear();
    let step = base.powf(-1.0 / half as f32);
    for pos in positions {
        let mut theta = pos as f32;
        for _ in 0..half {
            table.push((theta.cos(), theta.sin()));
            theta *= step;
        }
    }
}

#[cfg(test)]
mod tests;
