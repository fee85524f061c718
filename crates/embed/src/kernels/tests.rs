use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn random(rng: &mut StdRng, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.gen_range(-1f32..1.0)).collect()
}

/// Sizes around the tile, block and depth-slice edges, including a single row, column and depth.
const SHAPES: [(usize, usize, usize); 8] = [
    (1, 1, 1),
    (1, 33, 7),
    (13, 31, 64),
    (12, 32, 5),
    (100, 70, 37),
    (97, 64, 384),
    (5, 1, 130),
    (3, 40, 1101),
];

const EPILOGUES: [Epilogue; 4] = [Epilogue::Store, Epilogue::Add, Epilogue::Gelu, Epilogue::GeluTanh];

/// `c` after `linear` with `epilogue`, in f64 from the same inputs.
fn reference(
    a: &[f32],
    w: &[f32],
    bias: &[f32],
    c: &[f32],
    (m, n, k): (usize, usize, usize),
    e: Epilogue,
) -> Vec<f32> {
    let mut out = c.to_vec();
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|l| f64::from(a[i * k + l]) * f64::from(w[j * k + l])).sum();
            let v = (dot + f64::from(bias[j])) as f32;
            out[i * n + j] = match e {
                Epilogue::Store => v,
                Epilogue::Add => c[i * n + j] + v,
                Epilogue::Gelu => scalar::gelu(v),
                Epilogue::GeluTanh => scalar::gelu_tanh(v),
            };
        }
    }
    out
}

fn run(
    level: CpuLevel,
    a: &[f32],
    w: &Weights,
    bias: &[f32],
    c: &[f32],
    (m, _, k): (usize, usize, usize),
    e: Epilogue,
) -> Vec<f32> {
    let mut out = c.to_vec();
    let stride = w.out_features();
    linear(level, Rows { data: a, m, k, stride: k }, w, bias, OutRows { data: &mut out, stride }, e);
    out
}

fn worst(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
}

#[test]
fn f32_products_match_the_reference_at_every_level() {
    let mut rng = StdRng::seed_from_u64(1);
    for shape @ (m, n, k) in SHAPES {
        let [a, w, bias, c] = [m * k, n * k, n, m * n].map(|len| random(&mut rng, len));
        let packed = Weights::F32(PackedF32::weights(&w, n, k));
        for e in EPILOGUES {
            let expected = reference(&a, &w, &bias, &c, shape, e);
            for level in CpuLevel::available() {
                let got = run(level, &a, &packed, &bias, &c, shape, e);
                let diff = worst(&got, &expected);
                assert!(diff < 1e-4 * (k as f32).sqrt().max(1.0), "{level} {shape:?} {e:?}: {diff}");
            }
        }
    }
}

#[test]
fn int8_products_agree_across_levels_and_approximate_f32() {
    let mut rng = StdRng::seed_from_u64(2);
    for shape @ (m, n, k) in SHAPES {
        let [a, w, bias, c] = [m * k, n * k, n, m * n].map(|len| random(&mut rng, len));
        let packed = Weights::Int8(PackedI8::weights(&w, n, k));
        for e in EPILOGUES {
            let portable = run(CpuLevel::Scalar, &a, &packed, &bias, &c, shape, e);
            // Each operand is rounded to 1/254 of its row's range: the error stays a small
            // fraction of the sum of |a·w| (at most k).
            let exact = reference(&a, &w, &bias, &c, shape, e);
            let diff = worst(&portable, &exact);
            assert!(diff < 0.01 * k as f32, "scalar {shape:?} {e:?}: {diff}");
            for level in CpuLevel::available() {
                let got = run(level, &a, &packed, &bias, &c, shape, e);
                let diff = worst(&got, &portable);
                assert!(diff < 1e-5 * (k as f32).max(1.0), "{level} {shape:?} {e:?}: {diff}");
            }
        }
    }
}

#[test]
fn strided_sequential_products_as_in_attention() {
    // q kᵀ with q and k interleaved in rows of 3 × 8 values, then p v with v read down columns.
    let mut rng = StdRng::seed_from_u64(3);
    let (len, d, stride) = (29, 8, 24);
    let qkv = random(&mut rng, len * stride);
    let at = |t: usize, col: usize| qkv[t * stride + col];
    for level in CpuLevel::available() {
        let mut keys = PackedF32::default();
        keys.pack(len, d, &qkv[d..], stride, 1);
        let mut scores = vec![0f32; len * len];
        matmul(
            level,
            Rows { data: &qkv, m: len, k: d, stride },
            &keys,
            OutRows { data: &mut scores, stride: len },
            Epilogue::Store,
        );
        for (i, j) in [(0, 0), (3, 28), (28, 5), (17, 17)] {
            let expected: f32 = (0..d).map(|l| at(i, l) * at(j, d + l)).sum();
            assert!((scores[i * len + j] - expected).abs() < 1e-5, "{level} score ({i}, {j})");
        }
        let mut values = PackedF32::default();
        values.pack(d, len, &qkv[2 * d..], 1, stride);
        // Written into columns d..2d of rows of 3d values.
        let mut out = vec![0f32; len * stride];
        matmul(
            level,
            Rows { data: &scores, m: len, k: len, stride: len },
            &values,
            OutRows { data: &mut out[d..], stride },
            Epilogue::Store,
        );
        for (i, j) in [(0, 0), (28, 7), (11, 3)] {
            let expected: f32 = (0..len).map(|t| scores[i * len + t] * at(t, 2 * d + j)).sum();
            assert!((out[i * stride + d + j] - expected).abs() < 1e-4, "{level} output ({i}, {j})");
        }
        assert!(out.chunks(stride).all(|row| row[..d].iter().chain(&row[2 * d..]).all(|&v| v == 0.0)));
    }
}

#[test]
fn softmax_matches_the_portable_one_at_every_level() {
    let mut rng = StdRng::seed_from_u64(4);
    for len in [1, 5, 16, 17, 256] {
        let row: Vec<f32> = random(&mut rng, len).into_iter().map(|v| v * 30.0).collect();
        let mut expected = row.clone();
        scalar::softmax(&mut expected);
        assert!((expected.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        for level in CpuLevel::available() {
            let mut got = row.clone();
            softmax(level, &mut got);
            assert!(worst(&got, &expected) < 1e-6, "{level} {len}");
        }
    }
}

#[test]
fn gelu_is_the_exact_one() {
    // x Φ(x) from tables of the normal distribution.
    for (x, expected) in
        [(-3.0, -0.004_049_67), (-1.0, -0.158_655_25), (0.0, 0.0), (0.5, 0.345_731_37), (2.0, 1.954_499_7)]
    {
        assert!((scalar::gelu(x) - expected).abs() < 2e-7, "gelu({x})");
    }
}

#[test]
fn layer_norm_centres_and_scales() {
    let row = [1f32, 2.0, 3.0, 4.0];
    let s = 1.0 / 1.25f32.sqrt();
    let expected = [-1.5 * s, -0.5 * s, 2.0 * 0.5 * s, 1.5 * s + 1.0];
    for level in CpuLevel::available() {
        let mut got = row;
        layer_norm(level, &mut got, &[1.0, 1.0, 2.0, 1.0], &[0.0, 0.0, 0.0, 1.0], 0.0);
        assert!(worst(&got, &expected) < 1e-6, "{level}: {got:?}");
    }
}
