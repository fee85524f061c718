//! Kernels on plain f32 vectors that several crates share: the dot product (vector search, the
//! embedder's similarities) and normalisation to unit length.

use std::sync::OnceLock;

use crate::{cpu_level, CpuLevel};

/// Dot product over the shorter of the two lengths, at the level [`cpu_level`] picks (chosen
/// once, at first use): vector search spends nearly all its time here, and the portable build
/// only assumes SSE2.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    static KERNEL: OnceLock<DotKernel> = OnceLock::new();
    let n = a.len().min(b.len());
    KERNEL.get_or_init(|| dot_kernel(cpu_level()))(&a[..n], &b[..n])
}

/// A dot product of two slices of the same length.
type DotKernel = fn(&[f32], &[f32]) -> f32;

#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables))]
fn dot_kernel(level: CpuLevel) -> DotKernel {
    // Never a level the CPU lacks, whatever the caller asked for.
    #[cfg(target_arch = "x86_64")]
    if level.is_available() {
        match level {
            CpuLevel::Avx512 => {
                // SAFETY: the level is available, so the CPU has AVX-512 F; `dot` passes
                // slices of the same length.
                return |a, b| unsafe { crate::x86::dot_avx512(a, b) };
            }
            CpuLevel::Avx2 | CpuLevel::AvxVnni => {
                // SAFETY: every available level from Avx2 has AVX2 and FMA; `dot` passes
                // slices of the same length.
                return |a, b| unsafe { crate::x86::dot_avx2(a, b) };
            }
            CpuLevel::Scalar => {}
        }
    }
    dot_portable
}

/// The portable dot product: eight independent accumulators, so the compiler keeps eight lanes
/// busy instead of one serial chain of additions.
pub(crate) fn dot_portable(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// Scales `v` to unit length, so that cosine similarity is a dot product. Returns false (and
/// leaves `v` alone) when it has no direction: all zeros or not finite.
pub fn normalize(v: &mut [f32]) -> bool {
    let norm = dot(v, v).sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return false;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_agrees_with_the_portable_dot_at_odd_lengths() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        for n in [0, 1, 7, 15, 16, 31, 33, 384, 1000] {
            let a: Vec<f32> = (0..n).map(|_| random()).collect();
            let b: Vec<f32> = (0..n).map(|_| random()).collect();
            let want = dot_portable(&a, &b);
            for level in CpuLevel::available() {
                let got = dot_kernel(level)(&a, &b);
                assert!((got - want).abs() <= 1e-5 * (1.0 + want.abs()), "{level} at {n}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn dot_matches_the_plain_sum_at_every_length() {
        for n in [0, 1, 7, 8, 9, 31, 384] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "n={n}");
        }
    }

    #[test]
    fn normalize_refuses_vectors_without_direction() {
        let mut v = vec![3.0, 4.0];
        assert!(normalize(&mut v));
        assert_eq!(v, vec![0.6, 0.8]);
        let mut zero = vec![0.0; 3];
        assert!(!normalize(&mut zero));
        let mut nan = vec![f32::NAN, 1.0];
        assert!(!normalize(&mut nan));
    }
}
