//! Portable kernels: the reference the SIMD ones are tested against, and the fallback.

use super::{Activation, Dest, Finish, Scales, KG, MR, NR};

pub(super) fn tile_f32(a: &[f32], lda: usize, b: &[f32], depth: usize, out: Dest, finish: Finish) {
    let mut acc = [[0f32; NR]; MR];
    for (r, acc) in acc.iter_mut().enumerate().take(out.rows) {
        for (&a, b) in a[r * lda..][..depth].iter().zip(b.chunks_exact(NR)) {
            for (acc, &b) in acc.iter_mut().zip(b) {
                *acc += a * b;
            }
        }
    }
    store(&acc, out, finish);
}

pub(super) fn tile_i8(a: &[u8], b: &[i8], depth: usize, scales: &Scales, out: Dest, finish: Finish) {
    let mut acc = [[0i32; NR]; MR];
    for (a, b) in a.chunks_exact(MR * KG).zip(b.chunks_exact(NR * KG)).take(depth) {
        for (acc, a) in acc.iter_mut().zip(a.chunks_exact(KG)) {
            for (acc, b) in acc.iter_mut().zip(b.chunks_exact(KG)) {
                *acc += a.iter().zip(b).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum::<i32>();
            }
        }
    }
    let mut values = [[0f32; NR]; MR];
    for ((values, acc), &row_scale) in values.iter_mut().zip(&acc).zip(scales.rows) {
        for (j, (v, &acc)) in values.iter_mut().zip(acc).enumerate() {
            *v = (acc - scales.offsets[j]) as f32 * (row_scale * scales.cols[j]);
        }
    }
    store(&values, out, finish);
}

fn store(acc: &[[f32; NR]; MR], out: Dest, finish: Finish) {
    out.check();
    for (r, acc) in acc.iter().enumerate().take(out.rows) {
        for (j, &v) in acc.iter().enumerate().take(out.cols) {
            let c = &mut out.c[r * out.stride + j];
            let mut v = v + out.bias.get(j).copied().unwrap_or(0.0);
            if finish.accumulate {
                v += *c;
            }
            *c = match finish.activation {
                Activation::None => v,
                Activation::Gelu => gelu(v),
                Activation::GeluTanh => gelu_tanh(v),
            };
        }
    }
}

pub(super) fn softmax(row: &mut [f32]) {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0;
    for v in row.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    let inverse = 1.0 / sum;
    row.iter_mut().for_each(|v| *v *= inverse);
}

/// `x · Φ(x)`, the exact GELU.
pub(super) fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// Abramowitz and Stegun 7.1.26: absolute error below 1.5e-7, far inside what the reference
/// vectors allow. The SIMD kernels evaluate the same formula.
fn erf(x: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / (1.0 + ERF_P * a);
    let poly = t * (ERF_A[0] + t * (ERF_A[1] + t * (ERF_A[2] + t * (ERF_A[3] + t * ERF_A[4]))));
    (1.0 - poly * (-a * a).exp()).copysign(x)
}

pub(super) const ERF_P: f32 = 0.327_591_1;
pub(super) const ERF_A: [f32; 5] = [0.254_829_6, -0.284_496_7, 1.421_413_7, -1.453_152, 1.061_405_4];
/// sqrt(2 / π) and the cubic coefficient of the tanh approximation.
pub(super) const TANH_C: [f32; 2] = [0.797_884_6, 0.044_715];

/// `gelu_new` / `gelu_pytorch_tanh`.
pub(super) fn gelu_tanh(x: f32) -> f32 {
    0.5 * x * (1.0 + (TANH_C[0] * (x + TANH_C[1] * x * x * x)).tanh())
}
