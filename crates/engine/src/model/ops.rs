//! The small vector operations of the forward pass.

use half::f16;

use super::{ModelConfig, RopeStyle};
use crate::quant::{self, CpuLevel};

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
    attend_heads_at(quant::cpu_level(), queries, heads, rows, scale, out)
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
mod x86 {
    use std::arch::x86_64::*;

    use half::f16;

    use super::KvRows;
    // The order `dot_f16` has always added its lanes in, which the attention scores keep.
    use crate::quant::x86::hsum;

    /// [`super::attend_heads`] for 1 to 8 heads, or false for more. `queries` are rounded to
    /// f16 already; `scores` has room for a row per head; `wide` runs the value pass sixteen
    /// lanes at a time (AVX-512 F, and `head_dim` a multiple of 16).
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn attend_heads(
        heads: usize,
        wide: bool,
        queries: &[f32],
        rows: &KvRows,
        scale: f32,
        scores: &mut [f32],
        out: &mut [f32],
    ) -> bool {
        macro_rules! with_heads {
            ($($h:literal)*) => {
                match heads {
                    $($h => {
                        scores_n::<$h>(queries, rows, scale, scores);
                        if wide {
                            weigh_values_512::<$h>(rows, scores, out);
                        } else {
                            weigh_values_256::<$h>(rows, scores, out);
                        }
                    })*
                    _ => return false,
                }
            };
        }
        with_heads!(1 2 3 4 5 6 7 8);
        true
    }

    /// Every head's dot product with each key, the key converted once: each head's sum runs
    /// over the eight-lane chunks in order, as `dot_f16` does.
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn scores_n<const H: usize>(queries: &[f32], rows: &KvRows, scale: f32, scores: &mut [f32]) {
        let head_dim = queries.len() / H;
        let len = rows.positions.len();
        for (j, p) in rows.positions.clone().enumerate() {
            let key = rows.key(p, head_dim);
            let mut acc = [_mm256_setzero_ps(); H];
            for (c, k) in key.chunks_exact(8).enumerate() {
                let k = _mm256_cvtph_ps(_mm_loadu_si128(k.as_ptr().cast()));
                for (h, acc) in acc.iter_mut().enumerate() {
                    let q = &queries[h * head_dim + 8 * c..][..8];
                    *acc = _mm256_fmadd_ps(_mm256_loadu_ps(q.as_ptr()), k, *acc);
                }
            }
            for (h, acc) in acc.into_iter().enumerate() {
                scores[h * len + j] = hsum(acc) * scale;
            }
        }
    }

    /// `attend_f16` for every head at once from its row of `scores`, each value row converted
    /// once; `$lanes` values per vector (the roundings are per value, so any width gives the
    /// same results).
    macro_rules! weigh_values {
        ($name:ident, $features:literal, $lanes:literal, $load:ident, $store:ident,
         $load_ph:ident, $to_f32:ident, $to_f16:ident, $mul:ident, $fmadd:ident, $set1:ident) => {
            #[target_feature(enable = $features)]
            unsafe fn $name<const H: usize>(rows: &KvRows, scores: &[f32], out: &mut [f32]) {
                const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT;
                let head_dim = out.len() / H;
                let len = rows.positions.len();
                let (mut max, mut sum) = ([f32::NEG_INFINITY; H], [0.0f32; H]);
                out.fill(0.0);
                for (j, p) in rows.positions.clone().enumerate() {
                    let (mut rescale, mut weight) = ([1.0f32; H], [0.0f32; H]);
                    for h in 0..H {
                        let score = scores[h * len + j];
                        if score > max[h] {
                            rescale[h] = (max[h] - score).exp();
                            sum[h] *= rescale[h];
                            max[h] = score;
                        }
                        weight[h] = (score - max[h]).exp();
                        sum[h] += weight[h];
                    }
                    for (c, v) in rows.value(p, head_dim).chunks_exact($lanes).enumerate() {
                        let v = $to_f32($load_ph(v.as_ptr().cast()));
                        for h in 0..H {
                            let o = &mut out[h * head_dim + $lanes * c..][..$lanes];
                            let mut scaled = $load(o.as_ptr());
                            if rescale[h] != 1.0 {
                                scaled = $to_f32($to_f16::<NEAREST>($mul(scaled, $set1(rescale[h]))));
                            }
                            let sum = $fmadd(v, $set1(weight[h]), scaled);
                            $store(o.as_mut_ptr(), $to_f32($to_f16::<NEAREST>(sum)));
                        }
                    }
                }
                for (out, sum) in out.chunks_exact_mut(head_dim).zip(sum) {
                    let inv = 1.0 / sum;
                    out.iter_mut().for_each(|o| *o *= inv);
                }
            }
        };
    }

    weigh_values!(
        weigh_values_256,
        "avx2,fma,f16c",
        8,
        _mm256_loadu_ps,
        _mm256_storeu_ps,
        _mm_loadu_si128,
        _mm256_cvtph_ps,
        _mm256_cvtps_ph,
        _mm256_mul_ps,
        _mm256_fmadd_ps,
        _mm256_set1_ps
    );
    weigh_values!(
        weigh_values_512,
        "avx512f",
        16,
        _mm512_loadu_ps,
        _mm512_storeu_ps,
        _mm256_loadu_si256,
        _mm512_cvtph_ps,
        _mm512_cvtps_ph,
        _mm512_mul_ps,
        _mm512_fmadd_ps,
        _mm512_set1_ps
    );

    /// `super::silu_gate` eight values at a time, on whole vectors.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn silu_gate(gate: &mut [f32], up: &[f32]) {
        let one = _mm256_set1_ps(1.0);
        for (g, u) in gate.chunks_exact_mut(8).zip(up.chunks_exact(8)) {
            let x = _mm256_loadu_ps(g.as_ptr());
            let e = exp(_mm256_sub_ps(_mm256_setzero_ps(), x));
            let silu = _mm256_div_ps(x, _mm256_add_ps(one, e));
            _mm256_storeu_ps(g.as_mut_ptr(), _mm256_mul_ps(silu, _mm256_loadu_ps(u.as_ptr())));
        }
    }

    /// e^y: y = n·ln 2 + r with |r| ≤ ln 2 / 2, e^r by its Taylor series to r^7 (the first term
    /// left out is below f32 precision there), times 2^n built in the exponent bits. y is
    /// clamped to where 2^n stays a normal number, far past where SiLU needs it.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn exp(y: __m256) -> __m256 {
        const NEAREST: i32 = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        let y = _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(-87.0)), _mm256_set1_ps(88.0));
        let n = _mm256_round_ps::<NEAREST>(_mm256_mul_ps(y, _mm256_set1_ps(std::f32::consts::LOG2_E)));
        // ln 2 in two parts, the first exact in few bits, so that n·ln2_hi is exact.
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693_359_4), y);
        let r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.121_944_4e-4), r);
        let mut p = _mm256_set1_ps(1.0 / 5040.0);
        for c in [1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0] {
            p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
        }
        let bits = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)));
        _mm256_mul_ps(p, _mm256_castsi256_ps(bits))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn dot_f16(a: &[f32], b: &[f16]) -> f32 {
        let mut acc = _mm256_setzero_ps();
        for (a, b) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
            let b = _mm256_cvtph_ps(_mm_loadu_si128(b.as_ptr().cast()));
            acc = _mm256_fmadd_ps(_mm256_loadu_ps(a.as_ptr()), b, acc);
        }
        hsum(acc)
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
    silu_gate_at(quant::cpu_level(), gate, up)
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
mod tests {
    use super::*;

    /// Values uniform in [-2, 2) from a small LCG seeded with `seed`.
    fn uniform(seed: u32) -> impl FnMut() -> f32 {
        let mut state = seed;
        move || {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 4.0 - 2.0
        }
    }

    /// Every vector level against the portable code, on lengths that are and are not whole
    /// vectors, with a running maximum that moves up and down.
    #[test]
    fn f16_helpers_match_the_portable_code_at_every_level() {
        let mut random = uniform(12345);
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

    /// Several heads over one key-value head at once, at every level, against that level's
    /// helpers run head by head: equal values, for rows inside a wider cache row, a window that starts
    /// past position 0, and head sizes that are and are not whole vectors.
    #[test]
    fn attention_of_grouped_heads_matches_the_helpers_head_by_head() {
        let mut random = uniform(99);
        for (head_dim, heads) in [(8, 1), (16, 3), (64, 4), (64, 8), (13, 2), (32, 9)] {
            let (stride, offset, len) = (3 * head_dim, head_dim, 40);
            let keys: Vec<f16> = (0..len * stride).map(|_| f16::from_f32(random())).collect();
            let values: Vec<f16> = (0..len * stride).map(|_| f16::from_f32(random())).collect();
            let queries: Vec<f32> = (0..heads * head_dim).map(|_| 2.0 * random()).collect();
            let rows = KvRows { keys: &keys, values: &values, stride, offset, positions: 5..len };
            for level in CpuLevel::available() {
                let mut expected = vec![0.0; heads * head_dim];
                for (query, out) in queries.chunks(head_dim).zip(expected.chunks_mut(head_dim)) {
                    let query: Vec<f32> = query.iter().map(|&x| f16::from_f32(x).to_f32()).collect();
                    let scores: Vec<f32> = rows
                        .positions
                        .clone()
                        .map(|p| dot_f16_at(level, &query, rows.key(p, head_dim)) * 0.3)
                        .collect();
                    attend_f16_at(
                        level,
                        &scores,
                        rows.positions.clone().map(|p| rows.value(p, head_dim)),
                        out,
                    );
                }
                let mut out = vec![0.0; heads * head_dim];
                attend_heads_at(level, &queries, heads, &rows, 0.3, &mut out);
                assert_eq!(out, expected, "{level}, {heads} heads of {head_dim}");
            }
        }
    }

    /// The vector SiLU gate within a few units in the last place of the library-based one, over
    /// the range activations take and past it, on lengths that are and are not whole vectors.
    #[test]
    fn silu_gate_matches_the_portable_code_at_every_level() {
        let gate: Vec<f32> = (0..4003).map(|i| (i as f32 - 2001.0) / 20.0).collect();
        let up: Vec<f32> = (0..4003).map(|i| 1.0 + (i % 7) as f32 / 8.0).collect();
        let expected: Vec<f32> = gate.iter().zip(&up).map(|(g, u)| silu(*g) * u).collect();
        for level in CpuLevel::available() {
            let mut got = gate.clone();
            silu_gate_at(level, &mut got, &up);
            for ((g, e), x) in got.iter().zip(&expected).zip(&gate) {
                assert!(
                    (g - e).abs() <= 4.0 * f32::EPSILON * e.abs() + 1e-30,
                    "{level}: silu({x}) {g} vs {e}"
                );
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
