//! The kernels on two real tensors of SmolLM2-135M-Instruct: dequantized values equal
//! gguf-py's, and the quantized matmul stays within 8-bit activation error of the exact product.

use temper_engine::gguf::Gguf;
use temper_kernels::quant::{dequantize_row, matmul};
use temper_kernels::GgmlType;

/// A row index, its first three values and the sum of its absolute values, from gguf-py.
type Row = (usize, [f32; 3], f64);

#[test]
fn real_tensors_dequantize_and_multiply() {
    let Some(path) = temper_testkit::smollm2() else { return };
    let gguf = Gguf::open(&path).unwrap();
    let cases: [(&str, GgmlType, [Row; 3]); 2] = [
        (
            "blk.0.ffn_gate.weight",
            GgmlType::Q4_1,
            [
                (0, [0.007_263_183_6, 0.198_913_57, 0.151_000_98], 86.393_341),
                (777, [0.136_291_5, -0.007_446_289, -0.151_184_08], 86.742_492),
                (1535, [0.023_223_877, 0.105_926_51, 0.105_926_51], 86.030_637),
            ],
        ),
        (
            "token_embd.weight",
            GgmlType::Q8_0,
            [
                (0, [-0.106_544_495, 0.032_978_058, 0.048_198_7], 54.692_321),
                (1000, [-0.111_938_48, -0.073_959_35, 0.037_979_126], 51.077_701),
                (49151, [0.011_505_127, 0.005_752_563_5, 0.097_793_58], 70.819_469),
            ],
        ),
    ];
    for (name, ty, expected) in cases {
        let info = gguf.tensor(name).unwrap();
        assert_eq!(info.ty, ty);
        let (cols, rows) = (info.dims[0] as usize, info.dims[1] as usize);
        let data = gguf.tensor_data(info);
        let row_bytes = data.len() / rows;
        let mut weights = vec![0.0f32; rows * cols];
        for (r, row) in weights.chunks_mut(cols).enumerate() {
            dequantize_row(ty, &data[r * row_bytes..(r + 1) * row_bytes], row).unwrap();
        }
        for (r, first, abs_sum) in expected {
            let row = &weights[r * cols..(r + 1) * cols];
            assert_eq!(row[..3], first, "{name} row {r}");
            let sum: f64 = row.iter().map(|v| f64::from(v.abs())).sum();
            assert!((sum - abs_sum).abs() < 1e-4, "{name} row {r}: |row| sums to {sum}, expected {abs_sum}");
        }

        let x: Vec<f32> = (0..2 * cols).map(|i| (i * 37 % 101) as f32 / 50.0 - 1.0).collect();
        let mut out = vec![0.0; 2 * rows];
        matmul(ty, data, rows, cols, &x, 2, &mut out, &mut Vec::new()).unwrap();
        for t in 0..2 {
            for r in (0..rows).step_by(97) {
                let w = &weights[r * cols..(r + 1) * cols];
                let xt = &x[t * cols..(t + 1) * cols];
                let exact: f64 = w.iter().zip(xt).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
                let magnitude: f64 = w.iter().zip(xt).map(|(a, b)| f64::from((a * b).abs())).sum();
                // 8-bit activations: each product may be off by half a quantization step.
                let got = f64::from(out[t * rows + r]);
                assert!(
                    (got - exact).abs() <= 0.01 * magnitude + 1e-4,
                    "{name} token {t} row {r}: {got} vs {exact}"
                );
            }
        }
    }
}
