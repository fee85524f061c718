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
                attend_f16_at(level, &scores, rows.positions.clone().map(|p| rows.value(p, head_dim)), out);
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
            assert!((g - e).abs() <= 4.0 * f32::EPSILON * e.abs() + 1e-30, "{level}: silu({x}) {g} vs {e}");
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
