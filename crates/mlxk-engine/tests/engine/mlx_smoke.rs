//! MLX through mlx-rs on this machine: each operation the engine needs, checked against a
//! plain-Rust reference computed here (never against MLX itself).

use half::{bf16, f16};
use mlx_rs::fast::{self, ScaledDotProductAttentionMask};
use mlx_rs::ops;
use mlx_rs::{Array, Dtype};

use super::mlx;

/// Deterministic, irregular test values in [-1, 1].
fn values(n: usize, seed: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = (i as u32)
                .wrapping_mul(2_654_435_761)
                .wrapping_add(seed.wrapping_mul(40_503));
            (x % 20_001) as f32 / 10_000.0 - 1.0
        })
        .collect()
}

fn assert_close(actual: &[f32], expected: &[f32], tolerance: f32, what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    let worst = actual
        .iter()
        .zip(expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tolerance,
        "{what}: max error {worst} > {tolerance}"
    );
}

fn matmul_reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    out
}

#[test]
fn matmul_matches_reference() {
    let _mlx = mlx();
    let (m, k, n) = (5, 7, 3);
    let (a, b) = (values(m * k, 1), values(k * n, 2));
    let product = Array::from_slice(&a, &[m as i32, k as i32])
        .matmul(Array::from_slice(&b, &[k as i32, n as i32]))
        .unwrap();
    assert_eq!(product.shape(), [m as i32, n as i32]);
    assert_close(
        product.as_slice::<f32>(),
        &matmul_reference(&a, &b, m, k, n),
        1e-5,
        "matmul",
    );
}

/// Unpacks MLX's affine 4-bit layout by hand: eight values per u32, the first in the lowest
/// bits; each group of `group` values shares a scale and a bias.
fn dequantize_4bit_reference(
    packed: &[u32],
    scales: &[f32],
    biases: &[f32],
    rows: usize,
    cols: usize,
    group: usize,
) -> Vec<f32> {
    let mut out = vec![0.0; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            let word = packed[(r * cols + c) / 8];
            let q = (word >> (4 * (c % 8))) & 0xf;
            let g = r * (cols / group) + c / group;
            out[r * cols + c] = scales[g] * q as f32 + biases[g];
        }
    }
    out
}

#[test]
fn four_bit_quantize_and_quantized_matmul_match_reference() {
    let _mlx = mlx();
    let (rows, cols, group) = (16, 64, 32);
    let w = values(rows * cols, 3);
    let (packed, scales, biases) = ops::quantize(
        Array::from_slice(&w, &[rows as i32, cols as i32]),
        group as i32,
        4,
    )
    .unwrap();
    assert_eq!(packed.dtype(), Dtype::Uint32);
    assert_eq!(packed.shape(), [rows as i32, (cols / 8) as i32]);
    let (scales, biases) = (
        scales.as_slice::<f32>().to_vec(),
        biases.as_slice::<f32>().to_vec(),
    );
    let w_hat = dequantize_4bit_reference(
        packed.as_slice::<u32>(),
        &scales,
        &biases,
        rows,
        cols,
        group,
    );

    // MLX's affine scheme keeps 0 exact, so its grid may shift: still within one step.
    for (i, (orig, back)) in w.iter().zip(&w_hat).enumerate() {
        let step = scales[(i / cols) * (cols / group) + (i % cols) / group].abs();
        assert!(
            (orig - back).abs() <= step + 1e-5,
            "element {i}: {orig} vs {back}"
        );
    }
    // The hand-unpacked layout is MLX's layout.
    let scales_array = Array::from_slice(&scales, &[rows as i32, (cols / group) as i32]);
    let biases_array = Array::from_slice(&biases, &[rows as i32, (cols / group) as i32]);
    let dequantized =
        ops::dequantize(&packed, &scales_array, &biases_array, group as i32, 4).unwrap();
    assert_close(dequantized.as_slice::<f32>(), &w_hat, 1e-6, "dequantize");

    // x · Ŵᵀ, with Ŵ unpacked by hand, is what quantized_matmul computes.
    let m = 3;
    let x = values(m * cols, 4);
    let y = ops::quantized_matmul(
        Array::from_slice(&x, &[m as i32, cols as i32]),
        &packed,
        &scales_array,
        &biases_array,
        true,
        group as i32,
        4,
    )
    .unwrap();
    let mut w_hat_t = vec![0.0; cols * rows];
    for r in 0..rows {
        for c in 0..cols {
            w_hat_t[c * rows + r] = w_hat[r * cols + c];
        }
    }
    assert_close(
        y.as_slice::<f32>(),
        &matmul_reference(&x, &w_hat_t, m, cols, rows),
        1e-4,
        "quantized_matmul",
    );
}

#[test]
fn rms_norm_matches_reference() {
    let _mlx = mlx();
    let (rows, dim, eps) = (3, 16, 1e-5);
    let (x, weight) = (values(rows * dim, 5), values(dim, 6));
    let out = fast::rms_norm(
        Array::from_slice(&x, &[rows as i32, dim as i32]),
        Some(&Array::from_slice(&weight, &[dim as i32])),
        eps,
    )
    .unwrap();
    let mut expected = Vec::new();
    for row in x.chunks(dim) {
        let mean_square = row.iter().map(|v| v * v).sum::<f32>() / dim as f32;
        let inv = 1.0 / (mean_square + eps).sqrt();
        expected.extend(row.iter().zip(&weight).map(|(v, w)| v * inv * w));
    }
    assert_close(out.as_slice::<f32>(), &expected, 1e-5, "rms_norm");
}

#[test]
fn rope_matches_reference() {
    let _mlx = mlx();
    let (len, dim, base, offset) = (4, 8, 10_000.0f32, 3);
    let x = values(len * dim, 7);
    let out = fast::rope(
        Array::from_slice(&x, &[1, len as i32, dim as i32]),
        dim as i32,
        false,
        base,
        1.0,
        offset,
        None,
    )
    .unwrap();
    // Non-traditional RoPE (Llama in mlx-lm): rotate the two halves of each vector.
    let half = dim / 2;
    let mut expected = vec![0.0; len * dim];
    for t in 0..len {
        let position = (offset as usize + t) as f32;
        for i in 0..half {
            let theta = position * base.powf(-(2.0 * i as f32) / dim as f32);
            let (a, b) = (x[t * dim + i], x[t * dim + i + half]);
            expected[t * dim + i] = a * theta.cos() - b * theta.sin();
            expected[t * dim + i + half] = a * theta.sin() + b * theta.cos();
        }
    }
    assert_close(out.as_slice::<f32>(), &expected, 1e-4, "rope");
}

#[test]
fn causal_grouped_query_attention_matches_reference() {
    let _mlx = mlx();
    let (heads, kv_heads, len, dim) = (4usize, 2usize, 5usize, 8usize);
    let scale = 1.0 / (dim as f32).sqrt();
    let q = values(heads * len * dim, 8);
    let k = values(kv_heads * len * dim, 9);
    let v = values(kv_heads * len * dim, 10);
    let shape = |h: usize| [1, h as i32, len as i32, dim as i32];
    let out = fast::scaled_dot_product_attention(
        Array::from_slice(&q, &shape(heads)),
        Array::from_slice(&k, &shape(kv_heads)),
        Array::from_slice(&v, &shape(kv_heads)),
        scale,
        ScaledDotProductAttentionMask::Causal,
        None,
    )
    .unwrap();
    let mut expected = vec![0.0; heads * len * dim];
    for h in 0..heads {
        let kvh = h / (heads / kv_heads);
        for i in 0..len {
            let qi = &q[(h * len + i) * dim..][..dim];
            let scores: Vec<f32> = (0..=i)
                .map(|j| {
                    qi.iter()
                        .zip(&k[(kvh * len + j) * dim..][..dim])
                        .map(|(a, b)| a * b)
                        .sum::<f32>()
                        * scale
                })
                .collect();
            let max = scores.iter().cloned().fold(f32::MIN, f32::max);
            let weights: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f32 = weights.iter().sum();
            for d in 0..dim {
                expected[(h * len + i) * dim + d] = (0..=i)
                    .map(|j| weights[j] / total * v[(kvh * len + j) * dim + d])
                    .sum();
            }
        }
    }
    assert_close(
        out.as_slice::<f32>(),
        &expected,
        1e-5,
        "scaled_dot_product_attention",
    );
}

fn le_bytes<T: Copy, const N: usize>(values: &[T], to_bytes: fn(T) -> [u8; N]) -> Vec<u8> {
    values.iter().flat_map(|v| to_bytes(*v)).collect()
}

#[test]
fn safetensors_written_independently_load_with_their_values() {
    let _mlx = mlx();
    use safetensors::tensor::{Dtype as StDtype, TensorView};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    let f32_values = values(6, 11);
    let f16_values: Vec<f16> = values(4, 12).into_iter().map(f16::from_f32).collect();
    let bf16_values: Vec<bf16> = values(4, 13).into_iter().map(bf16::from_f32).collect();
    let words: Vec<u32> = vec![0x7654_3210, 0xfedc_ba98];
    let f32_bytes = le_bytes(&f32_values, f32::to_le_bytes);
    let f16_bytes = le_bytes(&f16_values, f16::to_le_bytes);
    let bf16_bytes = le_bytes(&bf16_values, bf16::to_le_bytes);
    let u32_bytes = le_bytes(&words, u32::to_le_bytes);
    let tensors = vec![
        (
            "a.f32",
            TensorView::new(StDtype::F32, vec![2, 3], &f32_bytes).unwrap(),
        ),
        (
            "b.f16",
            TensorView::new(StDtype::F16, vec![4], &f16_bytes).unwrap(),
        ),
        (
            "c.bf16",
            TensorView::new(StDtype::BF16, vec![2, 2], &bf16_bytes).unwrap(),
        ),
        (
            "d.u32",
            TensorView::new(StDtype::U32, vec![2], &u32_bytes).unwrap(),
        ),
    ];
    safetensors::serialize_to_file(tensors, None, &path).unwrap();

    let loaded = Array::load_safetensors(&path).unwrap();
    assert_eq!(loaded.len(), 4);
    assert_eq!(loaded["a.f32"].shape(), [2, 3]);
    assert_eq!(loaded["a.f32"].as_slice::<f32>(), f32_values.as_slice());
    assert_eq!(loaded["b.f16"].dtype(), Dtype::Float16);
    assert_eq!(loaded["b.f16"].as_slice::<f16>(), f16_values.as_slice());
    assert_eq!(loaded["c.bf16"].as_slice::<bf16>(), bf16_values.as_slice());
    assert_eq!(loaded["d.u32"].as_slice::<u32>(), words.as_slice());
    // A 16-bit scalar read back through mlx-c's float16 functions (opened on x86_64 by a compat header).
    let scalar = Array::from_slice(&[1.5f32], &[]).as_type::<f16>().unwrap();
    assert_eq!(scalar.item_exact::<f16>(), f16::from_f32(1.5));
}
