//! Block layouts of the weight formats and the activation formats they are paired with, decoded
//! portably. The SIMD kernels reuse the scale decoding here and only vectorise the quants.
//!
//! What the SIMD kernels call per block is `#[inline(always)]`: LLVM does not otherwise inline
//! plain functions into `#[target_feature]` ones, and a call per block costs more than the block.

use half::{bf16, f16};

use super::CpuLevel;
use crate::dtype::{GgmlType, QK_K};

/// Values per block of the 32-value formats (Q4_0 … Q8_0) and of their activation format.
pub(super) const QK: usize = 32;

/// The `N` bytes at `b[at..]`, read with one bounds check.
#[inline(always)]
pub(super) fn bytes<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(&b[at..at + N]);
    out
}

#[inline(always)]
pub(super) fn f16_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes(bytes(b, at)).to_f32()
}

#[inline(always)]
fn f32_at(b: &[u8], at: usize) -> f32 {
    f32::from_le_bytes(bytes(b, at))
}

/// A weight format stored as one float per value.
pub(super) trait FloatFormat {
    const TY: GgmlType;
    fn decode(b: &[u8]) -> f32;
}

pub(super) struct F32;
pub(super) struct F16;
pub(super) struct BF16;

impl FloatFormat for F32 {
    const TY: GgmlType = GgmlType::F32;
    fn decode(b: &[u8]) -> f32 {
        f32_at(b, 0)
    }
}

impl FloatFormat for F16 {
    const TY: GgmlType = GgmlType::F16;
    fn decode(b: &[u8]) -> f32 {
        f16_at(b, 0)
    }
}

impl FloatFormat for BF16 {
    const TY: GgmlType = GgmlType::BF16;
    fn decode(b: &[u8]) -> f32 {
        bf16::from_le_bytes(bytes(b, 0)).to_f32()
    }
}

/// Dot product of float weights with f32 activations stored as bytes.
pub(super) fn float_dot<F: FloatFormat>(w: &[u8], x: &[u8]) -> f32 {
    w.chunks_exact(F::TY.block_bytes()).zip(x.chunks_exact(4)).map(|(w, x)| F::decode(w) * f32_at(x, 0)).sum()
}

/// A 32-value block decoded to integers: value `i` is `d * q[i] + m`.
pub(super) struct Block32 {
    pub d: f32,
    pub m: f32,
    pub q: [i8; QK],
}

/// A 32-value weight format (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0), paired with Q8 activations.
pub(super) trait Format32 {
    const TY: GgmlType;
    fn unpack(b: &[u8]) -> Block32;
}

pub(super) struct Q4_0;
pub(super) struct Q4_1;
pub(super) struct Q5_0;
pub(super) struct Q5_1;
pub(super) struct Q8_0;

/// The 4-bit quants of a block: low nibbles are values 0..16, high nibbles values 16..32.
#[inline]
fn nibbles(qs: &[u8], high_bits: u32, offset: i8) -> [i8; QK] {
    let mut q = [0i8; QK];
    for (j, &byte) in qs[..QK / 2].iter().enumerate() {
        let lo = (byte & 0x0F) | (((high_bits >> j) & 1) << 4) as u8;
        let hi = (byte >> 4) | (((high_bits >> (j + 16)) & 1) << 4) as u8;
        q[j] = lo as i8 - offset;
        q[j + 16] = hi as i8 - offset;
    }
    q
}

#[inline(always)]
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes(b, at))
}

impl Format32 for Q4_0 {
    const TY: GgmlType = GgmlType::Q4_0;
    fn unpack(b: &[u8]) -> Block32 {
        Block32 { d: f16_at(b, 0), m: 0.0, q: nibbles(&b[2..], 0, 8) }
    }
}

impl Format32 for Q4_1 {
    const TY: GgmlType = GgmlType::Q4_1;
    fn unpack(b: &[u8]) -> Block32 {
        Block32 { d: f16_at(b, 0), m: f16_at(b, 2), q: nibbles(&b[4..], 0, 0) }
    }
}

impl Format32 for Q5_0 {
    const TY: GgmlType = GgmlType::Q5_0;
    fn unpack(b: &[u8]) -> Block32 {
        Block32 { d: f16_at(b, 0), m: 0.0, q: nibbles(&b[6..], u32_at(b, 2), 16) }
    }
}

impl Format32 for Q5_1 {
    const TY: GgmlType = GgmlType::Q5_1;
    fn unpack(b: &[u8]) -> Block32 {
        Block32 { d: f16_at(b, 0), m: f16_at(b, 2), q: nibbles(&b[8..], u32_at(b, 4), 0) }
    }
}

impl Format32 for Q8_0 {
    const TY: GgmlType = GgmlType::Q8_0;
    fn unpack(b: &[u8]) -> Block32 {
        Block32 { d: f16_at(b, 0), m: 0.0, q: std::array::from_fn(|i| b[2 + i] as i8) }
    }
}

/// The scales of a K-quant super-block, one per group of 16 values: value `i` of group `g` is
/// `d * sc[g] * q[i] - dmin * m[g]`, with `q` unsigned. Q6_K's offset of 32 is folded into `m`
/// so that every K format has the same integer dot product.
pub(super) struct KScales {
    pub d: f32,
    pub dmin: f32,
    pub sc: [i16; 16],
    pub m: [i16; 16],
}

/// A K-quant weight format, paired with Q8_K activations.
pub(super) trait FormatK {
    const TY: GgmlType;
    fn scales(b: &[u8]) -> KScales;
    fn quants(b: &[u8]) -> [u8; QK_K];
}

pub(super) struct Q4K;
pub(super) struct Q5K;
pub(super) struct Q6K;

/// Q4_K/Q5_K pack eight 6-bit scales and mins (one pair per 32 values) into 12 bytes.
#[inline(always)]
fn scales_6bit(b: &[u8]) -> KScales {
    let s = &b[4..16];
    let mut out = KScales { d: f16_at(b, 0), dmin: f16_at(b, 2), sc: [0; 16], m: [0; 16] };
    for j in 0..8 {
        let (sc, m) = if j < 4 {
            (s[j] & 63, s[j + 4] & 63)
        } else {
            ((s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
        };
        out.sc[2 * j..2 * j + 2].fill(sc.into());
        out.m[2 * j..2 * j + 2].fill(m.into());
    }
    out
}

/// Q4_K/Q5_K quants: each 32 bytes of `qs` hold 64 values, low nibbles first; bit `2c` (low
/// nibbles) or `2c + 1` (high nibbles) of `qh[l]` is the fifth bit of chunk `c`.
#[inline]
fn quants_q45k(qs: &[u8], qh: Option<&[u8]>) -> [u8; QK_K] {
    let mut q = [0u8; QK_K];
    for c in 0..4 {
        for l in 0..32 {
            let byte = qs[32 * c + l];
            let (h_lo, h_hi) = qh.map_or((0, 0), |qh| ((qh[l] >> (2 * c)) & 1, (qh[l] >> (2 * c + 1)) & 1));
            q[64 * c + l] = (byte & 0x0F) | (h_lo << 4);
            q[64 * c + 32 + l] = (byte >> 4) | (h_hi << 4);
        }
    }
    q
}

impl FormatK for Q4K {
    const TY: GgmlType = GgmlType::Q4K;
    #[inline(always)]
    fn scales(b: &[u8]) -> KScales {
        scales_6bit(b)
    }
    fn quants(b: &[u8]) -> [u8; QK_K] {
        quants_q45k(&b[16..144], None)
    }
}

impl FormatK for Q5K {
    const TY: GgmlType = GgmlType::Q5K;
    #[inline(always)]
    fn scales(b: &[u8]) -> KScales {
        scales_6bit(b)
    }
    fn quants(b: &[u8]) -> [u8; QK_K] {
        quants_q45k(&b[48..176], Some(&b[16..48]))
    }
}

impl FormatK for Q6K {
    const TY: GgmlType = GgmlType::Q6K;
    #[inline(always)]
    fn scales(b: &[u8]) -> KScales {
        let d = f16_at(b, 208);
        let sc: [i16; 16] = std::array::from_fn(|g| (b[192 + g] as i8).into());
        KScales { d, dmin: d, sc, m: sc.map(|s| 32 * s) }
    }
    /// Two halves of 128 values; in each, `ql` holds the low 4 bits (64 bytes, low nibbles
    /// first) and `qh` the high 2 bits of four 32-value runs.
    fn quants(b: &[u8]) -> [u8; QK_K] {
        let mut q = [0u8; QK_K];
        for n in 0..2 {
            let (ql, qh) = (&b[64 * n..64 * n + 64], &b[128 + 32 * n..128 + 32 * n + 32]);
            for l in 0..32 {
                let h = qh[l];
                q[128 * n + l] = (ql[l] & 0x0F) | ((h & 3) << 4);
                q[128 * n + 32 + l] = (ql[32 + l] & 0x0F) | (((h >> 2) & 3) << 4);
                q[128 * n + 64 + l] = (ql[l] >> 4) | (((h >> 4) & 3) << 4);
                q[128 * n + 96 + l] = (ql[32 + l] >> 4) | (((h >> 6) & 3) << 4);
            }
        }
        q
    }
}

/// How activations are stored for the integer dot products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ActFormat {
    /// Plain little-endian f32, for float weights.
    F32,
    /// 32 values: f32 scale `d` and f32 `s = d * sum(q)` (both rounded through f16, as ggml's
    /// Q8_0/Q8_1 store them), then 32 i8 quants.
    Q8,
    /// 256 values: f32 scale, 256 i8 quants, then 16 i16 sums of 16 quants each (ggml's Q8_K).
    Q8K,
}

pub(super) const Q8_BYTES: usize = 8 + QK;
pub(super) const Q8K_BYTES: usize = 4 + QK_K + 2 * 16;

impl ActFormat {
    pub fn for_weight(ty: GgmlType) -> Option<ActFormat> {
        match ty {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => Some(ActFormat::F32),
            GgmlType::Q4_0 | GgmlType::Q4_1 | GgmlType::Q5_0 | GgmlType::Q5_1 | GgmlType::Q8_0 => {
                Some(ActFormat::Q8)
            }
            GgmlType::Q4K | GgmlType::Q5K | GgmlType::Q6K => Some(ActFormat::Q8K),
            GgmlType::Q2K | GgmlType::Q3K => None,
        }
    }

    /// Bytes of one row of `cols` activations (`cols` a multiple of the block length).
    pub fn row_bytes(self, cols: usize) -> usize {
        match self {
            ActFormat::F32 => 4 * cols,
            ActFormat::Q8 => cols / QK * Q8_BYTES,
            ActFormat::Q8K => cols / QK_K * Q8K_BYTES,
        }
    }

    /// Quantizes the row `x` into `dst`, with the vector code of `level` where there is one
    /// (it gives the same bytes).
    #[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
    pub fn quantize(self, level: CpuLevel, x: &[f32], dst: &mut [u8]) {
        match self {
            ActFormat::F32 => {
                for (d, v) in dst.chunks_exact_mut(4).zip(x) {
                    d.copy_from_slice(&v.to_le_bytes());
                }
            }
            ActFormat::Q8 => {
                #[cfg(target_arch = "x86_64")]
                if level >= CpuLevel::Avx2 {
                    for (d, x) in dst.chunks_exact_mut(Q8_BYTES).zip(x.chunks_exact(QK)) {
                        // SAFETY: every level from Avx2 has AVX2.
                        unsafe { super::x86::quantize_q8(x, d) };
                    }
                    return;
                }
                for (d, x) in dst.chunks_exact_mut(Q8_BYTES).zip(x.chunks_exact(QK)) {
                    quantize_q8(x, d);
                }
            }
            ActFormat::Q8K => {
                for (d, x) in dst.chunks_exact_mut(Q8K_BYTES).zip(x.chunks_exact(QK_K)) {
                    quantize_q8k(x, d);
                }
            }
        }
    }
}

fn quantize_q8(x: &[f32], dst: &mut [u8]) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (d, id) = q8_scale(amax);
    let mut sum = 0i32;
    for (q, v) in dst[8..].iter_mut().zip(x) {
        let v = round_half_away(v * id) as i8;
        sum += i32::from(v);
        *q = v as u8;
    }
    q8_header(d, sum, dst);
}

/// The scale of a Q8 block whose largest magnitude is `amax`, and its inverse (0 for 0).
#[inline(always)]
pub(super) fn q8_scale(amax: f32) -> (f32, f32) {
    let d = amax / 127.0;
    (d, if d != 0.0 { 1.0 / d } else { 0.0 })
}

/// Writes a Q8 block's `d` and `s = d * sum`, each rounded through f16.
#[inline(always)]
pub(super) fn q8_header(d: f32, sum: i32, dst: &mut [u8]) {
    let round = |v: f32| f16::from_f32(v).to_f32();
    dst[..4].copy_from_slice(&round(d).to_le_bytes());
    dst[4..8].copy_from_slice(&round(d * sum as f32).to_le_bytes());
}

fn quantize_q8k(x: &[f32], dst: &mut [u8]) {
    // The scale maps the value of largest magnitude to -127, as ggml does, so both signs fit.
    let max = x.iter().fold(0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    if max == 0.0 {
        dst.fill(0);
        return;
    }
    let iscale = -127.0 / max;
    for (q, v) in dst[4..4 + QK_K].iter_mut().zip(x) {
        *q = (round_ties_even(iscale * v).min(127.0) as i8) as u8;
    }
    dst[..4].copy_from_slice(&(1.0 / iscale).to_le_bytes());
    let (qs, bsums) = dst[4..].split_at_mut(QK_K);
    for (s, group) in bsums.chunks_exact_mut(2).zip(qs.chunks_exact(16)) {
        let sum: i16 = group.iter().map(|&q| i16::from(q as i8)).sum();
        s.copy_from_slice(&sum.to_le_bytes());
    }
}

/// `v` rounded half to even, for |v| < 2^22: adding 1.5 × 2^23 leaves no fraction bits, so
/// the FPU's default rounding does it (`f32::round_ties_even` is a libm call on baseline x86-64).
#[inline(always)]
fn round_ties_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (v + MAGIC) - MAGIC
}

/// `v` rounded half away from zero (as `f32::round`), for |v| < 2^31: the integer part by a
/// truncating conversion, one more step when the fraction reaches a half. `f32::round` is a
/// libm call on baseline x86-64, once per activation of every matmul.
#[inline(always)]
fn round_half_away(v: f32) -> f32 {
    let whole = v as i32 as f32;
    let fraction = v - whole;
    if fraction >= 0.5 {
        whole + 1.0
    } else if fraction <= -0.5 {
        whole - 1.0
    } else {
        whole
    }
}

/// A Q8 activation block: (d, s, quants).
#[inline(always)]
pub(super) fn q8_parts(a: &[u8]) -> (f32, f32, &[u8]) {
    (f32_at(a, 0), f32_at(a, 4), &a[8..Q8_BYTES])
}

/// A Q8_K activation block: (d, quants, block sums).
#[inline(always)]
pub(super) fn q8k_parts(a: &[u8]) -> (f32, &[u8], &[u8]) {
    (f32_at(a, 0), &a[4..4 + QK_K], &a[4 + QK_K..Q8K_BYTES])
}

pub(super) fn dequantize_float<F: FloatFormat>(src: &[u8], dst: &mut [f32]) {
    for (d, b) in dst.iter_mut().zip(src.chunks_exact(F::TY.block_bytes())) {
        *d = F::decode(b);
    }
}

pub(super) fn dequantize_32<F: Format32>(src: &[u8], dst: &mut [f32]) {
    for (d, b) in dst.chunks_exact_mut(QK).zip(src.chunks_exact(F::TY.block_bytes())) {
        let block = F::unpack(b);
        for (d, &q) in d.iter_mut().zip(&block.q) {
            *d = block.d * f32::from(q) + block.m;
        }
    }
}

pub(super) fn dequantize_k<F: FormatK>(src: &[u8], dst: &mut [f32]) {
    for (d, b) in dst.chunks_exact_mut(QK_K).zip(src.chunks_exact(F::TY.block_bytes())) {
        let s = F::scales(b);
        let q = F::quants(b);
        for (g, (d, q)) in d.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
            let (scale, min) = (s.d * f32::from(s.sc[g]), s.dmin * f32::from(s.m[g]));
            for (d, &q) in d.iter_mut().zip(q) {
                *d = scale * f32::from(q) - min;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rounding_is_the_standard_librarys() {
        let ties = [0.5f32, 1.5, 2.5, -0.5, -1.5, -2.5, 126.5, -126.5, 127.0, -127.0, 0.0, -0.0];
        let steps = (-127_000..=127_000).map(|i| i as f32 / 1000.0);
        for v in ties.into_iter().chain(steps) {
            assert_eq!(super::round_ties_even(v), v.round_ties_even(), "{v}");
            assert_eq!(super::round_half_away(v), v.round(), "{v}");
        }
    }
}
