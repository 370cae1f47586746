//! GGML's tensor types, read as the format defines them (the definitions llama.cpp's own
//! Python reader, `gguf.quants`, implements), and how each maps onto MLX.
//!
//! Types whose 32-value groups are `scale * q + bias` with unsigned `q` (the legacy formats and
//! the 4/5-bit K-quants) become MLX affine quantization without loss: [`affine_groups`] yields
//! each group's scale, bias and quants. The others (`Q2_K`, `Q3_K`, `Q6_K`: 16-value
//! sub-blocks, which no MLX group size fits) and the float types are decoded to float32 by
//! [`dequantize`], computing in float32 in the order the format's reference does, so the values
//! are the reference's bit for bit.

use gguf_rs_lib::tensor::tensor_type::TensorType;
use half::{bf16, f16};

/// Values per group of the legacy formats and per K-quant sub-block of 32.
pub const GROUP: usize = 32;
/// Values per K-quant super-block.
const SUPER: usize = 256;

/// What a GGML type becomes in MLX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlxForm {
    /// MLX affine quantization with this many bits and groups of 32, exact.
    Affine { bits: u32 },
    /// Dense float32, exact (no MLX quantized form holds these values).
    Dense,
}

/// The MLX form of a tensor type; `None` for types this converter does not read.
pub fn mlx_form(kind: TensorType) -> Option<MlxForm> {
    Some(match kind {
        TensorType::Q4_0 | TensorType::Q4_1 | TensorType::Q4_K => MlxForm::Affine { bits: 4 },
        TensorType::Q5_0 | TensorType::Q5_1 | TensorType::Q5_K => MlxForm::Affine { bits: 5 },
        TensorType::Q8_0 => MlxForm::Affine { bits: 8 },
        TensorType::F32
        | TensorType::F16
        | TensorType::BF16
        | TensorType::Q2_K
        | TensorType::Q3_K
        | TensorType::Q6_K => MlxForm::Dense,
        _ => return None,
    })
}

/// The names of the types [`mlx_form`] knows, for messages.
pub const SUPPORTED_TYPES: &str = "F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, \
                                   Q4_K, Q5_K, Q6_K";

/// (values, bytes) of one block of a quantized type.
fn block_shape(kind: TensorType) -> Option<(usize, usize)> {
    Some(match kind {
        TensorType::Q4_0 => (GROUP, 18),
        TensorType::Q4_1 => (GROUP, 20),
        TensorType::Q5_0 => (GROUP, 22),
        TensorType::Q5_1 => (GROUP, 24),
        TensorType::Q8_0 => (GROUP, 34),
        TensorType::Q2_K => (SUPER, 84),
        TensorType::Q3_K => (SUPER, 110),
        TensorType::Q4_K => (SUPER, 144),
        TensorType::Q5_K => (SUPER, 176),
        TensorType::Q6_K => (SUPER, 210),
        _ => return None,
    })
}

/// Checks that `bytes` holds `count` values of `kind` in whole blocks.
fn check_len(kind: TensorType, bytes: &[u8], count: usize, row: usize) -> Result<(), String> {
    let (values, block_bytes) = match kind {
        TensorType::F32 => (1, 4),
        TensorType::F16 | TensorType::BF16 => (1, 2),
        other => block_shape(other).ok_or_else(|| format!("{other:?} is not supported"))?,
    };
    if !row.is_multiple_of(values) {
        return Err(format!(
            "{kind:?} rows of {row} values are not a whole number of {values}-value blocks"
        ));
    }
    let expected = count / values * block_bytes;
    if bytes.len() != expected {
        return Err(format!(
            "{kind:?} data is {} bytes, expected {expected}",
            bytes.len()
        ));
    }
    Ok(())
}

fn f16_at(bytes: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([bytes[at], bytes[at + 1]]).to_f32()
}

/// One 32-value affine group: `value = scale * q + bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub scale: f32,
    pub bias: f32,
    pub quants: [u8; GROUP],
}

/// The affine groups of a tensor of an [`MlxForm::Affine`] type, in order; `row` is the length
/// of a row (blocks never straddle rows).
pub fn affine_groups(
    kind: TensorType,
    bytes: &[u8],
    count: usize,
    row: usize,
) -> Result<Vec<Group>, String> {
    check_len(kind, bytes, count, row)?;
    let (_, block_bytes) = block_shape(kind).ok_or_else(|| format!("{kind:?} is not affine"))?;
    let mut groups = Vec::with_capacity(count / GROUP);
    for b in bytes.chunks_exact(block_bytes) {
        match kind {
            TensorType::Q4_0 => {
                let d = f16_at(b, 0);
                groups.push(group(d, -8.0 * d, nibbles(&b[2..18])));
            }
            TensorType::Q4_1 => groups.push(group(f16_at(b, 0), f16_at(b, 2), nibbles(&b[4..20]))),
            TensorType::Q5_0 => {
                let d = f16_at(b, 0);
                let quants = with_fifth_bits(nibbles(&b[6..22]), u32_at(b, 2));
                groups.push(group(d, -16.0 * d, quants));
            }
            TensorType::Q5_1 => {
                let quants = with_fifth_bits(nibbles(&b[8..24]), u32_at(b, 4));
                groups.push(group(f16_at(b, 0), f16_at(b, 2), quants));
            }
            TensorType::Q8_0 => {
                let d = f16_at(b, 0);
                let quants = std::array::from_fn(|i| (b[2 + i] as i8 as i16 + 128) as u8);
                groups.push(group(d, -128.0 * d, quants));
            }
            TensorType::Q4_K => k_quant_groups(b, false, &mut groups),
            TensorType::Q5_K => k_quant_groups(b, true, &mut groups),
            other => return Err(format!("{other:?} has no exact MLX affine form")),
        }
    }
    Ok(groups)
}

fn group(scale: f32, bias: f32, quants: [u8; GROUP]) -> Group {
    Group {
        scale,
        bias,
        quants,
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// 16 bytes of 4-bit quants: byte `j` holds value `j` (low nibble) and value `j + 16`.
fn nibbles(qs: &[u8]) -> [u8; GROUP] {
    std::array::from_fn(|i| {
        if i < 16 {
            qs[i] & 0x0f
        } else {
            qs[i - 16] >> 4
        }
    })
}

/// Adds the fifth bits of `Q5_0`/`Q5_1`: bit `i` of `high` belongs to value `i`.
fn with_fifth_bits(mut quants: [u8; GROUP], high: u32) -> [u8; GROUP] {
    for (i, q) in quants.iter_mut().enumerate() {
        *q |= (((high >> i) & 1) as u8) << 4;
    }
    quants
}

/// The 6-bit scales and minima of the 8 sub-blocks of a `Q4_K`/`Q5_K` super-block, packed in
/// 12 bytes: sub-blocks 0-3 in the low 6 bits of bytes 0-3 (scales) and 4-7 (minima),
/// sub-blocks 4-7 in the nibbles of bytes 8-11 with their top two bits in the top bits of
/// bytes 0-7.
fn k_scales_and_mins(packed: &[u8]) -> ([u8; 8], [u8; 8]) {
    let mut scales = [0u8; 8];
    let mut mins = [0u8; 8];
    for j in 0..4 {
        scales[j] = packed[j] & 63;
        mins[j] = packed[j + 4] & 63;
        scales[j + 4] = (packed[j + 8] & 0x0f) | ((packed[j] >> 6) << 4);
        mins[j + 4] = (packed[j + 8] >> 4) | ((packed[j + 4] >> 6) << 4);
    }
    (scales, mins)
}

/// A `Q4_K` (`d, dmin: f16, scales: [u8; 12], qs: [u8; 128]`) or `Q5_K` (the same with
/// `qh: [u8; 32]` before `qs`) super-block as 8 groups: value = `d·sc·q − dmin·m`, so scale
/// `d·sc` (exact in float32, not in float16) and bias `−dmin·m`. Quants: 32-byte chunk `c` of
/// `qs` holds sub-block `2c` in its low and `2c + 1` in its high nibbles; bit `j` of `qh[i]` is
/// the fifth bit of value `i` of sub-block `j`.
fn k_quant_groups(b: &[u8], fifth_bit: bool, groups: &mut Vec<Group>) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let (scales, mins) = k_scales_and_mins(&b[4..16]);
    let (qh, qs) = if fifth_bit {
        (Some(&b[16..48]), &b[48..176])
    } else {
        (None, &b[16..144])
    };
    for j in 0..8 {
        let chunk = &qs[(j / 2) * 32..][..32];
        let shift = 4 * (j % 2);
        let quants = std::array::from_fn(|i| {
            let low = (chunk[i] >> shift) & 0x0f;
            let high = qh.map_or(0, |qh| ((qh[i] >> j) & 1) << 4);
            low | high
        });
        groups.push(group(
            d * scales[j] as f32,
            -(dmin * mins[j] as f32),
            quants,
        ));
    }
}

/// A tensor of an [`MlxForm::Dense`] type as float32 values.
pub fn dequantize(
    kind: TensorType,
    bytes: &[u8],
    count: usize,
    row: usize,
) -> Result<Vec<f32>, String> {
    check_len(kind, bytes, count, row)?;
    let mut out = Vec::with_capacity(count);
    match kind {
        TensorType::F32 => out.extend(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        TensorType::F16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        TensorType::BF16 => out.extend(
            bytes
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32()),
        ),
        TensorType::Q2_K => bytes.chunks_exact(84).for_each(|b| q2_k(b, &mut out)),
        TensorType::Q3_K => bytes.chunks_exact(110).for_each(|b| q3_k(b, &mut out)),
        TensorType::Q6_K => bytes.chunks_exact(210).for_each(|b| q6_k(b, &mut out)),
        other => return Err(format!("{other:?} is not decoded to dense values")),
    }
    Ok(out)
}

/// Where value `e` (0..256) of a K-quant super-block finds its 2-bit field in a 64-byte array
/// of crumbs: byte `32·(e / 128) + e % 32`, shifted by `2·((e / 32) % 4)`.
fn crumb(packed: &[u8], e: usize) -> u8 {
    (packed[32 * (e / 128) + e % 32] >> (2 * ((e / 32) % 4))) & 3
}

/// `Q2_K`: `scales: [u8; 16]` (low nibble scale, high nibble minimum of each 16 values),
/// `qs: [u8; 64]` of 2-bit quants, `d, dmin: f16`; value = `d·sc·q − dmin·m`.
fn q2_k(b: &[u8], out: &mut Vec<f32>) {
    let (scales, qs) = (&b[..16], &b[16..80]);
    let (d, dmin) = (f16_at(b, 80), f16_at(b, 82));
    for e in 0..SUPER {
        let s = scales[e / 16];
        let dl = d * (s & 0x0f) as f32;
        let ml = dmin * (s >> 4) as f32;
        out.push(dl * crumb(qs, e) as f32 - ml);
    }
}

/// `Q3_K`: `hmask: [u8; 32]`, `qs: [u8; 64]` of low 2-bit quants, 12 bytes of 6-bit signed
/// scales (offset 32) for each 16 values, `d: f16`; value = `d·sc·(q − 4·(1 − hbit))`.
fn q3_k(b: &[u8], out: &mut Vec<f32>) {
    let (hmask, qs, packed) = (&b[..32], &b[32..96], &b[96..108]);
    let d = f16_at(b, 108);
    let scale = |j: usize| -> f32 {
        let low = if j < 8 {
            packed[j] & 0x0f
        } else {
            packed[j - 8] >> 4
        };
        let high = (packed[8 + j % 4] >> (2 * (j / 4))) & 3;
        ((low | (high << 4)) as i8 - 32) as f32
    };
    let scales: [f32; 16] = std::array::from_fn(|j| d * scale(j));
    for e in 0..SUPER {
        let high = (hmask[e % 32] >> (e / 32)) & 1;
        let q = crumb(qs, e) as i8 - (((high ^ 1) << 2) as i8);
        out.push(scales[e / 16] * q as f32);
    }
}

/// `Q6_K`: `ql: [u8; 128]` low nibbles, `qh: [u8; 64]` high 2 bits, `scales: [i8; 16]`,
/// `d: f16`; value = `d·sc·(q − 32)`.
fn q6_k(b: &[u8], out: &mut Vec<f32>) {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    let dl: [f32; 16] = std::array::from_fn(|j| d * scales[j] as i8 as f32);
    for e in 0..SUPER {
        let (half, within) = (e / 128, e % 128);
        let low = (ql[64 * half + within % 64] >> (4 * (within / 64))) & 0x0f;
        let q = (low | (crumb(qh, e) << 4)) as i8 - 32;
        out.push(dl[e / 16] * q as f32);
    }
}
