use half::{bf16, f16};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use formats::ActFormat;

const ALL: [GgmlType; 11] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q4K,
    GgmlType::Q5K,
    GgmlType::Q6K,
];

/// Byte offsets of the f16 scales in a block, which must stay finite and small.
fn f16_fields(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q8_0 => &[0],
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4K | GgmlType::Q5K => &[0, 2],
        GgmlType::Q6K => &[208],
        _ => &[],
    }
}

/// A random `rows × cols` matrix of `ty`: random quants, small random scales.
fn random_weights(rng: &mut StdRng, ty: GgmlType, rows: usize, cols: usize) -> Vec<u8> {
    let mut w = vec![0u8; rows * row_bytes(ty, cols).unwrap()];
    match ty {
        GgmlType::F32 => {
            w.chunks_exact_mut(4).for_each(|b| b.copy_from_slice(&rng.gen_range(-1f32..1.0).to_le_bytes()))
        }
        GgmlType::F16 => w.chunks_exact_mut(2).for_each(|b| {
            b.copy_from_slice(&f16::from_f32(rng.gen_range(-1.0..1.0)).to_le_bytes());
        }),
        GgmlType::BF16 => w.chunks_exact_mut(2).for_each(|b| {
            b.copy_from_slice(&bf16::from_f32(rng.gen_range(-1.0..1.0)).to_le_bytes());
        }),
        _ => {
            rng.fill(&mut w[..]);
            for block in w.chunks_exact_mut(ty.block_bytes()) {
                for &at in f16_fields(ty) {
                    let v = f16::from_f32(rng.gen_range(-0.05..0.05));
                    block[at..at + 2].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    w
}

fn random_x(rng: &mut StdRng, n: usize) -> Vec<f32> {
    // Mostly small values with the odd outlier, like hidden states.
    (0..n)
        .map(|_| if rng.gen_ratio(1, 50) { rng.gen_range(-8.0..8.0) } else { rng.gen_range(-1.0..1.0) })
        .collect()
}

fn dequantize(ty: GgmlType, w: &[u8], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; rows * cols];
    for (dst, src) in out.chunks_exact_mut(cols).zip(w.chunks_exact(w.len() / rows)) {
        dequantize_row(ty, src, dst).unwrap();
    }
    out
}

fn run(level: CpuLevel, ty: GgmlType, w: &[u8], rows: usize, cols: usize, x: &[f32], n: usize) -> Vec<f32> {
    let mut out = vec![f32::NAN; n * rows];
    matmul_at(level, &mut [MatmulJob { ty, weight: w, rows, out: &mut out }], cols, x, n, &mut Vec::new())
        .unwrap();
    out
}

/// Per output: (sum of |w·x| terms, worst-case error of quantizing x to 8 bits).
fn bounds(ty: GgmlType, wf: &[f32], rows: usize, cols: usize, x: &[f32], n: usize) -> Vec<(f32, f32)> {
    let block = match ActFormat::for_weight(ty).unwrap() {
        ActFormat::F32 => 0,
        _ => ty.block_len(),
    };
    let mut out = Vec::new();
    for x in x.chunks_exact(cols) {
        let amax: Vec<f32> = if block == 0 {
            vec![0.0; cols]
        } else {
            x.chunks_exact(block)
                .flat_map(|b| std::iter::repeat_n(b.iter().fold(0f32, |m, v| m.max(v.abs())), block))
                .collect()
        };
        for w in wf.chunks_exact(cols) {
            let mag = w.iter().zip(x).map(|(w, x)| (w * x).abs()).sum();
            // Rounding moves each x by at most half a step of amax/127.
            let q = w.iter().zip(&amax).map(|(w, a)| w.abs() * a / 254.0).sum();
            out.push((mag, q));
        }
    }
    assert_eq!(out.len(), n * rows);
    out
}

fn reference(wf: &[f32], cols: usize, x: &[f32]) -> Vec<f32> {
    let mut out = Vec::new();
    for x in x.chunks_exact(cols) {
        for w in wf.chunks_exact(cols) {
            out.push(w.iter().zip(x).map(|(&w, &x)| f64::from(w) * f64::from(x)).sum::<f64>() as f32);
        }
    }
    out
}

fn shapes(ty: GgmlType) -> Vec<(usize, usize)> {
    match ty.block_len() {
        1 => vec![(1, 8), (7, 37), (33, 64)],
        // 18 blocks: two whole groups of activation scales and a partial one.
        len => vec![(1, len), (7, 3 * len), (33, 2 * len), (5, 18 * len)],
    }
}

/// Every level against the scalar kernels and an exact product, with token counts that fill a
/// tile of the multi-token kernels, leave part of one, and spill into a second.
#[test]
fn matmul_matches_dequantized_reference_and_scalar() {
    let mut rng = StdRng::seed_from_u64(7);
    for ty in ALL {
        for (rows, cols) in shapes(ty) {
            let w = random_weights(&mut rng, ty, rows, cols);
            let wf = dequantize(ty, &w, rows, cols);
            for n in [1, 3, 6, TOKEN_TILE, TOKEN_TILE + 3] {
                let x = random_x(&mut rng, n * cols);
                let scalar = run(CpuLevel::Scalar, ty, &w, rows, cols, &x, n);
                let exact = reference(&wf, cols, &x);
                let bounds = bounds(ty, &wf, rows, cols, &x, n);
                for level in CpuLevel::available() {
                    let fast = run(level, ty, &w, rows, cols, &x, n);
                    if ActFormat::for_weight(ty) == Some(ActFormat::Q8) {
                        // The same float operations as the portable kernel, in its order.
                        assert_eq!(fast, scalar, "{ty} {rows}x{cols} n={n} at {level}");
                    }
                    for (i, (&(mag, qerr), ((s, f), e))) in
                        bounds.iter().zip(scalar.iter().zip(&fast).zip(&exact)).enumerate()
                    {
                        let at =
                            format!("{ty} {rows}x{cols} n={n} out[{i}]: scalar {s} {level} {f} exact {e}");
                        // Same integer sums; only f32 summation order differs.
                        assert!((s - f).abs() <= 1e-5 * mag + 1e-6, "{at}");
                        // f16-rounded activation scales add a relative 2^-11 on top of rounding x.
                        assert!((s - e).abs() <= 1.05 * qerr + 1e-3 * mag + 1e-5, "{at} (bound {qerr})");
                    }
                }
            }
        }
    }
}

/// More tokens than one pass over the weights takes, so the group loop runs twice.
#[test]
fn long_prefill_matches_token_by_token() {
    let mut rng = StdRng::seed_from_u64(11);
    let (ty, rows, cols, n) = (GgmlType::Q4_1, 19, 64, TOKEN_GROUP + 5);
    let w = random_weights(&mut rng, ty, rows, cols);
    let x = random_x(&mut rng, n * cols);
    for level in CpuLevel::available() {
        let all = run(level, ty, &w, rows, cols, &x, n);
        for (t, x) in x.chunks_exact(cols).enumerate() {
            assert_eq!(
                run(level, ty, &w, rows, cols, x, 1),
                all[t * rows..(t + 1) * rows],
                "{level} token {t}"
            );
        }
    }
}

/// Matrices sharing activations, including one that pairs with another activation format,
/// give what each gives alone.
/// Every level quantizes activations to the same bytes as the portable code, including values
/// that scale to exact halves (a block whose largest magnitude is 127 has a scale of 1).
#[test]
fn activations_quantize_to_the_same_bytes_at_every_level() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut x = random_x(&mut rng, 32 * 64);
    let ties = [127.0, 63.5, -63.5, 0.5, -0.5, 1.5, -2.5, 0.49999997, -0.49999997, 126.5, 0.0, -0.0];
    x[..ties.len()].copy_from_slice(&ties);
    x[32..64].fill(0.0);
    for act in [ActFormat::Q8, ActFormat::Q8K] {
        let mut expected = vec![0u8; act.row_bytes(x.len())];
        act.quantize(CpuLevel::Scalar, &x, &mut expected);
        for level in CpuLevel::available() {
            let mut got = vec![0u8; expected.len()];
            act.quantize(level, &x, &mut got);
            assert_eq!(got, expected, "{act:?} at {level}");
        }
    }
}

#[test]
fn matmul_many_equals_one_matmul_per_matrix() {
    let mut rng = StdRng::seed_from_u64(5);
    let cols = 256;
    let mats: Vec<(GgmlType, usize, Vec<u8>)> =
        [(GgmlType::Q4_1, 9), (GgmlType::Q8_0, 3), (GgmlType::Q4K, 5)]
            .into_iter()
            .map(|(ty, rows)| (ty, rows, random_weights(&mut rng, ty, rows, cols)))
            .collect();
    for n in [1, 5] {
        let x = random_x(&mut rng, n * cols);
        for together in [&mats[..2], &mats[..]] {
            let mut outs: Vec<Vec<f32>> =
                together.iter().map(|(_, rows, _)| vec![f32::NAN; n * rows]).collect();
            let mut jobs: Vec<MatmulJob> = together
                .iter()
                .zip(&mut outs)
                .map(|((ty, rows, w), out)| MatmulJob { ty: *ty, weight: w, rows: *rows, out })
                .collect();
            matmul_many(&mut jobs, cols, &x, n, &mut Vec::new()).unwrap();
            for ((ty, rows, w), out) in together.iter().zip(&outs) {
                assert_eq!(out, &run(cpu_level(), *ty, w, *rows, cols, &x, n), "{ty} n={n}");
            }
        }
    }
}

#[test]
fn bad_lengths_are_errors() {
    let ty = GgmlType::Q4_0;
    let (rows, cols) = (3, 64);
    let w = vec![0u8; rows * row_bytes(ty, cols).unwrap()];
    let x = vec![0f32; 2 * cols];
    let mut out = vec![0f32; 2 * rows];
    let mut scratch = Vec::new();
    let mut call = |w: &[u8], cols: usize, x: &[f32], out: &mut [f32]| {
        matmul(ty, w, rows, cols, x, 2, out, &mut scratch).unwrap_err()
    };
    let len = |what, expected, actual| QuantError::Length { ty, what, expected, actual };
    assert_eq!(call(&w[1..], cols, &x, &mut out), len("weight", w.len(), w.len() - 1));
    assert_eq!(call(&w, cols, &x[1..], &mut out), len("activations", x.len(), x.len() - 1));
    assert_eq!(call(&w, cols, &x, &mut out[1..]), len("output", 6, 5));
    assert_eq!(call(&w, 48, &x, &mut out), QuantError::PartialBlock { ty, cols: 48, block_len: 32 });
    assert!(matches!(
        matmul(GgmlType::Q2K, &w, rows, cols, &x, 2, &mut out, &mut scratch),
        Err(QuantError::Unsupported { ty: GgmlType::Q2K, .. })
    ));
    assert!(matches!(
        matmul(ty, &w, usize::MAX, cols, &x, 2, &mut out, &mut scratch),
        Err(QuantError::Overflow { .. })
    ));

    let mut row = vec![0f32; cols];
    assert_eq!(dequantize_row(ty, &w[..35], &mut row), Err(len("source row", 36, 35)));
    assert_eq!(
        dequantize_row(ty, &w[..36], &mut row[..40]),
        Err(QuantError::PartialBlock { ty, cols: 40, block_len: 32 })
    );
    assert!(matches!(dequantize_row(GgmlType::Q3K, &w, &mut row), Err(QuantError::Unsupported { .. })));
    assert_eq!(
        dequantize_row(GgmlType::F16, &[0; 3], &mut [0.0; 2]),
        Err(QuantError::Length { ty: GgmlType::F16, what: "source row", expected: 4, actual: 3 })
    );
}

#[test]
fn scratch_is_reused() {
    let mut rng = StdRng::seed_from_u64(3);
    let (ty, rows, cols) = (GgmlType::Q8_0, 5, 64);
    let w = random_weights(&mut rng, ty, rows, cols);
    let x = random_x(&mut rng, cols);
    let mut out = vec![0f32; rows];
    let mut scratch = Vec::new();
    matmul(ty, &w, rows, cols, &x, 1, &mut out, &mut scratch).unwrap();
    let (ptr, cap) = (scratch.as_ptr(), scratch.capacity());
    matmul(ty, &w, rows, cols, &x, 1, &mut out, &mut scratch).unwrap();
    assert_eq!((scratch.as_ptr(), scratch.capacity()), (ptr, cap));
}
