//! The small vector operations of the forward pass.

use half::f16;

use super::{ModelConfig, RopeStyle};
use crate::quant::{self, CpuLevel};

/// The dot product of f32 values with f16 ones.
pub fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
    dot_f16_at(quant::cpu_level(), a, b)
}

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
pub fn attend_f16<'a>(scores: &[f32], values: impl Iterator<Item = &'a [f16]>, out: &mut [f32]) {
    attend_f16_at(quant::cpu_level(), scores, values, out)
}

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
            // SAFETY: the CPU has the level's features (AVX2, FMA and F16C from Avx2 on;
            // AVX-512 F at Avx512), and the lengths are whole vectors.
            Simd::Avx512 => {
                unsafe { x86::scale_add_f16_512(out, rescale, value, weight) };
                continue;
            }
            Simd::Avx2 => {
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
mod x86 {
    use std::arch::x86_64::*;

    use half::f16;

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (a, b) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
            let b = _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().cast()));
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr()), b, acc);
        }
        let sum = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps(acc, 1));
        let sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
        _mm_cvtss_f32(_mm_add_ss(sum, _mm_movehdup_ps(sum)))
    }

    /// `scale_add_f16` sixteen lanes at a time: half the instructions for the same roundings.
    #[target_feature(enable = "avx512f")]
    pub unsafe fn scale_add_f16_512(out: &mut [f32], rescale: f32, value: &[f16], weight: f32) {
        const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT;
        let unscaled = rescale == 1.0;
        let (rescale, weight) = (_mm512_set1_ps(rescale), _mm512_set1_ps(weight));
        for (o, v) in out.chunks_exact_mut(16).zip(value.chunks_exact(16)) {
            let mut scaled = _mm512_loadu_ps(o.as_ptr());
            if !unscaled {
                scaled = _mm512_cvtph_ps(_mm512_cvtps_ph::<NEAREST>(_mm512_mul_ps(scaled, rescale)));
            }
            let v = _mm512_cvtph_ps(_mm256_loadu_si256(v.as_ptr().cast()));
            let sum = _mm512_cvtph_ps(_mm512_cvtps_ph::<NEAREST>(_mm512_fmadd_ps(v, weight, scaled)));
            _mm512_storeu_ps(o.as_mut_ptr(), sum);
        }
    }

    /// `out = f16(f16(out × rescale) + value × weight)`, eight lanes at a time.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn scale_add_f16(out: &mut [f32], rescale: f32, value: &[f16], weight: f32) {
        const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT;
        // `out` holds f16 values already, so scaling by 1 (the running maximum did not move,
        // the usual case) changes nothing and is skipped.
        let unscaled = rescale == 1.0;
        let (rescale, weight) = (_mm256_set1_ps(rescale), _mm256_set1_ps(weight));
        for (o, v) in out.chunks_exact_mut(8).zip(value.chunks_exact(8)) {
            let mut scaled = _mm256_loadu_ps(o.as_ptr());
            if !unscaled {
                scaled = _mm256_cvtph_ps(_mm256_cvtps_ph::<NEAREST>(_mm256_mul_ps(scaled, rescale)));
            }
            let v = _mm256_cvtph_ps(_mm_loadu_si128(v.as_ptr().cast()));
            let sum = _mm256_cvtph_ps(_mm256_cvtps_ph::<NEAREST>(_mm256_fmadd_ps(v, weight, scaled)));
            _mm256_storeu_ps(o.as_mut_ptr(), sum);
        }
    }
}

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
    let mean_square = x.iter().map(|v| (*v as f64) * (*v as f64)).sum::<f64>() / x.len() as f64;
    (1.0 / (mean_square + eps as f64).sqrt()) as f32
}

pub fn silu(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
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
mod tests {
    use super::*;

    /// Every vector level against the portable code, on lengths that are and are not whole
    /// vectors, with a running maximum that moves up and down.
    #[test]
    fn f16_helpers_match_the_portable_code_at_every_level() {
        let mut state = 12345u32;
        let mut random = || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        };
        for len in [8, 16, 24, 64, 13] {
            let a: Vec<f32> = (0..len).map(|_| random()).collect();
            let rows: Vec<Vec<f16>> =
                (0..7).map(|_| (0..len).map(|_| f16::from_f32(random())).collect()).collect();
            let scores: Vec<f32> = (0..7).map(|_| 3.0 * random()).collect();
            let dot = dot_f16_at(CpuLevel::Scalar, &a, &rows[0]);
            let mut expected = vec![0.0; len];
            attend_f16_at(CpuLevel::Scalar, &scores, rows.iter().map(|r| &r[..]), &mut expected);
            for level in CpuLevel::available() {
                let got = dot_f16_at(level, &a, &rows[0]);
                assert!((got - dot).abs() <= 1e-5 * len as f32, "{level} len {len}: dot {got} vs {dot}");
                let mut out = vec![0.0; len];
                attend_f16_at(level, &scores, rows.iter().map(|r| &r[..]), &mut out);
                // Same roundings in the same order: equal values.
                assert_eq!(out, expected, "{level} len {len}");
            }
        }
    }

    /// The table gives what rounding to f16 on both sides of the formula gives, for every f32
    /// that rounds to each f16 in range and for values between them.
    #[test]
    fn gelu_table_equals_the_formula_at_f16_precision() {
        let direct = |x: f32| {
            let round = |x: f32| f16::from_f32(x).to_f32();
            round(gelu_tanh_exact(round(x)))
        };
        for bits in 0..=u16::MAX {
            let x = f16::from_bits(bits).to_f32();
            if x.is_finite() && x.abs() < 10.0 {
                for x in [x, x * (1.0 + 1e-4), x * (1.0 - 1e-4), x + 1e-3] {
                    if x.abs() < 10.0 {
                        assert_eq!(gelu_tanh(x).to_bits(), direct(x).to_bits(), "gelu({x})");
                    }
                }
            }
        }
        assert_eq!(gelu_tanh(-12.0), 0.0);
        assert_eq!(gelu_tanh(12.5), 12.5);
    }
}
