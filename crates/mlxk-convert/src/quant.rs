//! MLX's affine quantization: the layout GGML groups are re-packed into, and (lossy, on
//! request) quantization of dense values.
//!
//! MLX stores, per group of `group_size` values along a row, a scale and a bias
//! (`w = scale * q + bias`, computed in float32 as `fl(fl(scale * q) + bias)`), and packs the
//! unsigned `q`s of a row as one little-endian bit stream into `u32` words (value `i` at bit
//! `bits * i`), whatever the bit width.

use crate::ggml::{Group, GROUP};

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

/// The bit widths MLX's affine quantization has.
pub const MLX_BITS: [u32; 6] = [2, 3, 4, 5, 6, 8];

impl MlxQuantized {
    /// Packs 32-value groups (row after row) with `bits` bits per value.
    pub fn from_groups(groups: &[Group], rows: usize, cols: usize, bits: u32) -> MlxQuantized {
        let quants: Vec<u8> = groups.iter().flat_map(|g| g.quants).collect();
        MlxQuantized {
            rows,
            cols,
            bits,
            group_size: GROUP,
            packed: pack_rows(&quants, cols, bits),
            scales: groups.iter().map(|g| g.scale).collect(),
            biases: groups.iter().map(|g| g.bias).collect(),
        }
    }

    pub fn words_per_row(&self) -> usize {
        self.cols * self.bits as usize / 32
    }

    pub fn groups_per_row(&self) -> usize {
        self.cols / self.group_size
    }

    /// The quant at (row, col).
    pub fn quant(&self, row: usize, col: usize) -> u32 {
        let words = &self.packed[row * self.words_per_row()..][..self.words_per_row()];
        let bit = col * self.bits as usize;
        let mut stream = words[bit / 32] as u64;
        if let Some(next) = words.get(bit / 32 + 1) {
            stream |= (*next as u64) << 32;
        }
        ((stream >> (bit % 32)) & ((1 << self.bits) - 1)) as u32
    }

    /// The value at (row, col), as MLX's dequantize computes it.
    pub fn value(&self, row: usize, col: usize) -> f32 {
        let group = row * self.groups_per_row() + col / self.group_size;
        self.scales[group] * self.quant(row, col) as f32 + self.biases[group]
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

/// Packs `quants` (rows of `cols` values, each below `2^bits`) into each row's bit stream.
fn pack_rows(quants: &[u8], cols: usize, bits: u32) -> Vec<u32> {
    let words_per_row = cols * bits as usize / 32;
    let mut packed = Vec::with_capacity(quants.len() / cols * words_per_row);
    for row in quants.chunks_exact(cols) {
        let (mut acc, mut filled) = (0u64, 0u32);
        for &q in row {
            acc |= (q as u64) << filled;
            filled += bits;
            if filled >= 32 {
                packed.push(acc as u32);
                acc >>= 32;
                filled -= 32;
            }
        }
    }
    packed
}

/// Quantizes dense rows as MLX's `quantize` does (affine, per group: the end of the range
/// farther from zero is hit exactly and the scale adjusted so that it is a whole number of
/// steps, rounding half to even). Lossy: a value may land up to one step away.
pub fn quantize(
    values: &[f32],
    rows: usize,
    cols: usize,
    bits: u32,
    group_size: usize,
) -> MlxQuantized {
    let steps = ((1u32 << bits) - 1) as f32;
    let mut quants = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(values.len() / group_size);
    let mut biases = Vec::with_capacity(values.len() / group_size);
    for group in values.chunks_exact(group_size) {
        let max = group.iter().copied().fold(f32::MIN, f32::max);
        let min = group.iter().copied().fold(f32::MAX, f32::min);
        let from_min = min.abs() > max.abs();
        let mut scale = ((max - min) / steps).max(1e-7);
        if !from_min {
            scale = -scale;
        }
        let edge = if from_min { min } else { max };
        let q0 = (edge / scale).round_ties_even();
        let (scale, bias) = if q0 == 0.0 {
            (scale, 0.0)
        } else {
            (edge / q0, edge)
        };
        scales.push(scale);
        biases.push(bias);
        quants.extend(
            group
                .iter()
                .map(|w| ((w - bias) / scale).round_ties_even().clamp(0.0, steps) as u8),
        );
    }
    MlxQuantized {
        rows,
        cols,
        bits,
        group_size,
        packed: pack_rows(&quants, cols, bits),
        scales,
        biases,
    }
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

    #[test]
    fn packs_every_width_as_one_bit_stream() {
        for bits in MLX_BITS {
            let cols = 64;
            let quants: Vec<u8> = (0..cols * 2)
                .map(|i| ((i * 7 + 3) % (1 << bits)) as u8)
                .collect();
            let groups: Vec<Group> = quants
                .chunks_exact(GROUP)
                .map(|q| Group {
                    scale: 1.0,
                    bias: 0.0,
                    quants: q.try_into().unwrap(),
                })
                .collect();
            let mlx = MlxQuantized::from_groups(&groups, 2, cols, bits);
            assert_eq!(mlx.packed.len(), 2 * cols * bits as usize / 32);
            for (i, q) in quants.iter().enumerate() {
                assert_eq!(mlx.quant(i / cols, i % cols), *q as u32, "{bits} bits, {i}");
            }
        }
    }

    #[test]
    fn quantize_stays_within_a_step() {
        let values: Vec<f32> = (0..128)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        for bits in MLX_BITS {
            let q = quantize(&values, 2, 64, bits, 32);
            for (i, v) in values.iter().enumerate() {
                let step = q.scales[i / 32].abs();
                let err = (q.value(i / 64, i % 64) - v).abs();
                assert!(err <= step + 1e-6, "{bits} bits: {err} > {step}");
            }
        }
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
