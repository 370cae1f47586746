//! GGML block formats re-packed into MLX's affine quantization, without loss.
//!
//! MLX affine quantization stores, per group of `group_size` values along a row, a scale and a
//! bias (`w = scale * q + bias`) and packs the unsigned `q`s little-end first into `u32` words.
//! GGML's Q4_1 (`w = d * q + m`) is exactly that with 4 bits and groups of 32; Q8_0
//! (`w = d * q`, signed `q`) becomes 8 bits with `q + 128` and bias `-128 d`.

use half::f16;

/// Values per GGML block for the legacy formats handled here.
pub const BLOCK: usize = 32;
const Q4_1_BLOCK_BYTES: usize = 2 + 2 + BLOCK / 2;
const Q8_0_BLOCK_BYTES: usize = 2 + BLOCK;

/// An MLX-quantized matrix: packed words and one scale and bias per group, all row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct MlxQuantized {
    pub rows: usize,
    pub cols: usize,
    pub bits: u32,
    pub group_size: usize,
    pub packed: Vec<u32>,
    pub scales: Vec<f32>,
    pub biases: Vec<f32>,
}

impl MlxQuantized {
    pub fn words_per_row(&self) -> usize {
        self.cols * self.bits as usize / 32
    }

    pub fn groups_per_row(&self) -> usize {
        self.cols / self.group_size
    }

    /// The value at (row, col), as MLX's dequantize computes it.
    pub fn value(&self, row: usize, col: usize) -> f32 {
        let per_word = 32 / self.bits as usize;
        let word = self.packed[row * self.words_per_row() + col / per_word];
        let mask = (1u32 << self.bits) - 1;
        let q = (word >> (self.bits as usize * (col % per_word))) & mask;
        let group = row * self.groups_per_row() + col / self.group_size;
        self.scales[group] * q as f32 + self.biases[group]
    }

    /// Reorders rows: row `i` of the result is row `source_row(i)` of `self`.
    pub fn permute_rows(&self, source_row: impl Fn(usize) -> usize) -> MlxQuantized {
        let (w, g) = (self.words_per_row(), self.groups_per_row());
        let mut out = self.clone();
        for row in 0..self.rows {
            let from = source_row(row);
            out.packed[row * w..(row + 1) * w]
                .copy_from_slice(&self.packed[from * w..(from + 1) * w]);
            out.scales[row * g..(row + 1) * g]
                .copy_from_slice(&self.scales[from * g..(from + 1) * g]);
            out.biases[row * g..(row + 1) * g]
                .copy_from_slice(&self.biases[from * g..(from + 1) * g]);
        }
        out
    }
}

fn check_len(
    bytes: &[u8],
    rows: usize,
    cols: usize,
    block_bytes: usize,
    format: &str,
) -> Result<(), String> {
    if !cols.is_multiple_of(BLOCK) {
        return Err(format!(
            "{format} rows of {cols} values are not a whole number of {BLOCK}-value blocks"
        ));
    }
    let expected = rows * cols / BLOCK * block_bytes;
    if bytes.len() != expected {
        return Err(format!(
            "{format} data is {} bytes, expected {expected}",
            bytes.len()
        ));
    }
    Ok(())
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// Q4_1 blocks: `d: f16, m: f16, qs: [u8; 16]`; byte `j` holds value `j` in its low nibble and
/// value `j + 16` in its high nibble.
pub fn q4_1_to_mlx(bytes: &[u8], rows: usize, cols: usize) -> Result<MlxQuantized, String> {
    check_len(bytes, rows, cols, Q4_1_BLOCK_BYTES, "Q4_1")?;
    let blocks = rows * cols / BLOCK;
    let mut packed = Vec::with_capacity(blocks * 4);
    let mut scales = Vec::with_capacity(blocks);
    let mut biases = Vec::with_capacity(blocks);
    for block in bytes.chunks_exact(Q4_1_BLOCK_BYTES) {
        scales.push(f16_at(block, 0));
        biases.push(f16_at(block, 2));
        let qs = &block[4..];
        let nibble = |i: usize| -> u32 {
            if i < 16 {
                (qs[i] & 0x0f) as u32
            } else {
                (qs[i - 16] >> 4) as u32
            }
        };
        for word in 0..4 {
            packed.push((0..8).fold(0u32, |acc, k| acc | nibble(word * 8 + k) << (4 * k)));
        }
    }
    Ok(MlxQuantized {
        rows,
        cols,
        bits: 4,
        group_size: BLOCK,
        packed,
        scales,
        biases,
    })
}

/// Q8_0 blocks: `d: f16, qs: [i8; 32]`.
pub fn q8_0_to_mlx(bytes: &[u8], rows: usize, cols: usize) -> Result<MlxQuantized, String> {
    check_len(bytes, rows, cols, Q8_0_BLOCK_BYTES, "Q8_0")?;
    let blocks = rows * cols / BLOCK;
    let mut packed = Vec::with_capacity(blocks * 8);
    let mut scales = Vec::with_capacity(blocks);
    let mut biases = Vec::with_capacity(blocks);
    for block in bytes.chunks_exact(Q8_0_BLOCK_BYTES) {
        let d = f16_at(block, 0);
        scales.push(d);
        biases.push(-128.0 * d);
        let qs = &block[2..];
        for word in 0..8 {
            packed.push((0..4).fold(0u32, |acc, k| {
                let q = (qs[word * 4 + k] as i8 as i32 + 128) as u32;
                acc | q << (8 * k)
            }));
        }
    }
    Ok(MlxQuantized {
        rows,
        cols,
        bits: 8,
        group_size: BLOCK,
        packed,
        scales,
        biases,
    })
}

/// The source row of each output row that undoes llama.cpp's Q/K permutation.
///
/// llama.cpp's converter reorders each head's rows from two halves (as Hugging Face and MLX
/// apply RoPE) to interleaved pairs (as GGML applies it): within a head of `2r` rows, original
/// row `j * r + i` (half `j`, index `i`) is stored at `2 i + j`.
pub fn unpermute_qk_source_row(row: usize, rows: usize, heads: usize) -> usize {
    let per_head = rows / heads;
    let half = per_head / 2;
    let (head, within) = (row / per_head, row % per_head);
    let (j, i) = (within / half, within % half);
    head * per_head + 2 * i + j
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GGML's own dequantization of a Q4_1 block, straight from the format's definition.
    fn ggml_q4_1_dequant(block: &[u8]) -> Vec<f32> {
        let (d, m) = (f16_at(block, 0), f16_at(block, 2));
        let mut out = vec![0.0; BLOCK];
        for j in 0..16 {
            out[j] = d * (block[4 + j] & 0x0f) as f32 + m;
            out[j + 16] = d * (block[4 + j] >> 4) as f32 + m;
        }
        out
    }

    fn sample_bytes(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(37).wrapping_add(seed).rotate_left(3))
            .collect()
    }

    fn block_header(d: f32, m: Option<f32>) -> Vec<u8> {
        let mut v = f16::from_f32(d).to_le_bytes().to_vec();
        if let Some(m) = m {
            v.extend(f16::from_f32(m).to_le_bytes());
        }
        v
    }

    #[test]
    fn q4_1_repacks_losslessly() {
        let (rows, cols) = (3, 64);
        let mut bytes = Vec::new();
        for b in 0..rows * cols / BLOCK {
            bytes.extend(block_header(
                0.01 + b as f32 * 0.003,
                Some(-0.2 + b as f32 * 0.01),
            ));
            bytes.extend(sample_bytes(16, b as u8));
        }
        let mlx = q4_1_to_mlx(&bytes, rows, cols).unwrap();
        for r in 0..rows {
            for c in 0..cols {
                let b = (r * cols + c) / BLOCK;
                let expected = ggml_q4_1_dequant(&bytes[b * 20..(b + 1) * 20])[c % BLOCK];
                assert_eq!(mlx.value(r, c), expected, "({r}, {c})");
            }
        }
    }

    #[test]
    fn q8_0_repacks_losslessly() {
        let (rows, cols) = (2, 64);
        let mut bytes = Vec::new();
        for b in 0..rows * cols / BLOCK {
            bytes.extend(block_header(0.0123 * (b + 1) as f32, None));
            bytes.extend(sample_bytes(32, b as u8 * 7));
        }
        let mlx = q8_0_to_mlx(&bytes, rows, cols).unwrap();
        for r in 0..rows {
            for c in 0..cols {
                let b = (r * cols + c) / BLOCK;
                let d = f16_at(&bytes, b * 34);
                let q = bytes[b * 34 + 2 + c % BLOCK] as i8 as f32;
                assert_eq!(mlx.value(r, c), d * q, "({r}, {c})");
            }
        }
    }

    #[test]
    fn rejects_wrong_sizes() {
        assert!(q4_1_to_mlx(&[0; 19], 1, 32).is_err());
        assert!(q8_0_to_mlx(&[0; 34], 1, 48).is_err());
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permutation() {
        // llama.cpp: reshape(heads, 2, half) -> swap(1, 2); as a row map, original -> stored.
        let (rows, heads) = (12, 3);
        let half = rows / heads / 2;
        let stored_at = |orig: usize| {
            let (h, w) = (orig / (2 * half), orig % (2 * half));
            let (j, i) = (w / half, w % half);
            h * 2 * half + 2 * i + j
        };
        for orig in 0..rows {
            assert_eq!(unpermute_qk_source_row(orig, rows, heads), stored_at(orig));
        }
    }
}
