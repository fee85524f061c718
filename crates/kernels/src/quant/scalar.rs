//! Portable dot-product kernels, the reference the SIMD kernels are tested against.

use super::formats::*;
use super::{each_row, DotFn, TOKEN_TILE};
use crate::dtype::{GgmlType, QK_K};

pub(super) fn kernel(ty: GgmlType) -> Option<DotFn> {
    kernel_table!(ty, dot_float, dot_32, dot_k)
}

fn dot_float<F: FloatFormat>(w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
    each_row(w, acts, out, |w, acts, out| {
        for (o, a) in out.iter_mut().zip(acts) {
            *o = float_dot::<F>(w, a);
        }
    });
}

fn idot(q: &[i8], y: &[u8]) -> i32 {
    q.iter().zip(y).map(|(&q, &y)| i32::from(q) * i32::from(y as i8)).sum()
}

fn dot_32<F: Format32>(w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
    each_row(w, acts, out, row_32::<F>);
}

/// Each weight block is decoded once and used for every token of the tile.
fn row_32<F: Format32>(w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
    let mut acc = [0f32; TOKEN_TILE];
    for (i, wb) in w.chunks_exact(F::TY.block_bytes()).enumerate() {
        let b = F::unpack(wb);
        for (acc, a) in acc.iter_mut().zip(acts) {
            let (dx, s, qx) = q8_parts(&a[i * Q8_BYTES..(i + 1) * Q8_BYTES]);
            *acc += b.d * dx * idot(&b.q, qx) as f32 + b.m * s;
        }
    }
    out.copy_from_slice(&acc[..out.len()]);
}

fn dot_k<F: FormatK>(w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
    each_row(w, acts, out, row_k::<F>);
}

fn row_k<F: FormatK>(w: &[u8], acts: &[&[u8]], out: &mut [f32]) {
    let mut acc = [0f32; TOKEN_TILE];
    for (i, wb) in w.chunks_exact(F::TY.block_bytes()).enumerate() {
        let s = F::scales(wb);
        let q = F::quants(wb);
        for (acc, a) in acc.iter_mut().zip(acts) {
            let (dx, qx, bsums) = q8k_parts(&a[i * Q8K_BYTES..(i + 1) * Q8K_BYTES]);
            let (mut isum, mut imin) = (0i32, 0i32);
            for g in 0..QK_K / 16 {
                let dot: i32 = q[16 * g..16 * g + 16]
                    .iter()
                    .zip(&qx[16 * g..16 * g + 16])
                    .map(|(&q, &y)| i32::from(q) * i32::from(y as i8))
                    .sum();
                isum += i32::from(s.sc[g]) * dot;
                imin += i32::from(s.m[g]) * i32::from(i16::from_le_bytes(bytes(bsums, 2 * g)));
            }
            *acc += dx * s.d * isum as f32 - dx * s.dmin * imin as f32;
        }
    }
    out.copy_from_slice(&acc[..out.len()]);
}
