//! Whisper (`model_type: whisper`, the layout mlx-whisper reads): an audio encoder over a
//! 30-second log-mel window and a text decoder that attends to it.
//!
//! The operations mirror mlx-whisper's `whisper.py` one for one (manual attention with the
//! scale split between queries and keys, `addmm` linears, the self-attention cache kept as
//! concatenated `[B, T, d]` keys and values), so that in float32 the logits are the same bits
//! and greedy tokens cannot drift apart.

pub(crate) mod decoder;
pub(crate) mod encoder;

use mlx_rs::fast;
use mlx_rs::ops::{addmm, softmax_axis};
use mlx_rs::{Array, Dtype};
use serde::Deserialize;
use serde_json::Value;

use crate::checkpoint::{Linear, Weights};
use crate::error::{EngineError, Result};

pub(crate) use decoder::{CrossKv, SelfKv, TextDecoder};
pub(crate) use encoder::AudioEncoder;

/// Mel frames in one 30-second window; the encoder's stride 2 makes them `n_audio_ctx` (1500)
/// positions.
pub(crate) const WINDOW_FRAMES: i32 = 3000;

/// The dimensions of a Whisper model (mlx-whisper's `ModelDimensions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub(crate) struct Dims {
    pub n_mels: i32,
    pub n_audio_ctx: i32,
    pub n_audio_state: i32,
    pub n_audio_head: i32,
    pub n_audio_layer: usize,
    pub n_vocab: i32,
    pub n_text_ctx: i32,
    pub n_text_state: i32,
    pub n_text_head: i32,
    pub n_text_layer: usize,
}

/// The dimensions `config` gives, checked as far as the network needs them (the config check
/// bounds each size; this checks how they fit together).
pub(crate) fn prepare(config: &Value) -> Result<Dims> {
    let dims: Dims = serde_json::from_value(config.clone())
        .map_err(|e| EngineError::Config(format!("a Whisper config: {e}")))?;
    let divides = |state: i32, heads: i32, field: &str| {
        if heads > 0 && state > 0 && state % heads == 0 && (state / heads) % 2 == 0 {
            Ok(())
        } else {
            Err(EngineError::Config(format!(
                "{field}: {heads} heads do not split {state} into even head sizes"
            )))
        }
    };
    divides(dims.n_audio_state, dims.n_audio_head, "n_audio_head")?;
    divides(dims.n_text_state, dims.n_text_head, "n_text_head")?;
    if dims.n_audio_ctx * 2 != WINDOW_FRAMES {
        return Err(EngineError::Config(format!(
            "n_audio_ctx: {} positions do not cover a 30-second window (1500)",
            dims.n_audio_ctx
        )));
    }
    if dims.n_audio_state != dims.n_text_state {
        return Err(EngineError::Config(format!(
            "n_text_state: the decoder ({}) must be as wide as the encoder it attends to ({})",
            dims.n_text_state, dims.n_audio_state
        )));
    }
    if dims.n_audio_state % 2 != 0 || dims.n_audio_state < 4 {
        return Err(EngineError::Config(format!(
            "n_audio_state: {} is too small or odd for sinusoidal positions",
            dims.n_audio_state
        )));
    }
    if dims.n_text_ctx < 4 {
        return Err(EngineError::Config(format!(
            "n_text_ctx: {} positions cannot hold a prompt",
            dims.n_text_ctx
        )));
    }
    Ok(dims)
}

/// The encoder and decoder of one model.
pub(crate) struct Whisper {
    pub dims: Dims,
    pub encoder: AudioEncoder,
    pub decoder: TextDecoder,
}

pub(crate) fn load(config: &Value, weights: &mut Weights) -> Result<Whisper> {
    let dims = prepare(config)?;
    if config.get("quantization").is_some_and(|q| !q.is_null()) {
        return Err(EngineError::UnsupportedArchitecture(
            "whisper with quantized weights (use a float16 or float32 conversion)".into(),
        ));
    }
    let encoder = AudioEncoder::load(weights, &dims)?;
    let decoder = TextDecoder::load(weights, &dims)?;
    // Only word timestamps read the alignment heads.
    let _ = weights.take_optional("alignment_heads");
    Ok(Whisper {
        dims,
        encoder,
        decoder,
    })
}

/// `nn.Linear` as MLX computes it: `addmm(bias, x, Wᵀ)` (one fused matmul; a matmul then an
/// add can round differently).
pub(crate) fn linear(layer: &Linear, x: &Array) -> Result<Array> {
    match layer {
        Linear::Dense {
            weight,
            bias: Some(bias),
        } => Ok(addmm(bias, x, weight.t(), None, None)?),
        other => other.forward(x),
    }
}

pub(crate) struct LayerNorm {
    weight: Array,
    bias: Array,
}

impl LayerNorm {
    pub fn load(weights: &mut Weights, prefix: &str) -> Self {
        LayerNorm {
            weight: weights.take(&format!("{prefix}.weight")),
            bias: weights.take(&format!("{prefix}.bias")),
        }
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        Ok(fast::layer_norm(x, &self.weight, &self.bias, 1e-5)?)
    }
}

/// Whisper's attention: queries, keys (no bias), values and an output projection.
pub(crate) struct MultiHeadAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    out: Linear,
    heads: i32,
    /// `head_dim^-0.25`, applied to queries and keys each.
    scale: Array,
}

impl MultiHeadAttention {
    pub fn load(weights: &mut Weights, prefix: &str, state: i32, heads: i32) -> Self {
        let head_dim = (state / heads) as f64;
        MultiHeadAttention {
            query: weights.linear(&format!("{prefix}.query")),
            key: weights.linear(&format!("{prefix}.key")),
            value: weights.linear(&format!("{prefix}.value")),
            out: weights.linear(&format!("{prefix}.out")),
            heads,
            scale: Array::from_f32(head_dim.powf(-0.25) as f32),
        }
    }

    /// Keys and values of `x` `[B, T, d]`, as they are kept (not yet split into heads).
    pub fn keys_values(&self, x: &Array) -> Result<(Array, Array)> {
        Ok((linear(&self.key, x)?, linear(&self.value, x)?))
    }

    /// Keys `[B, T, d]` as the attention multiplies them: `[B, H, head_dim, T]`, scaled.
    pub fn split_keys(&self, k: &Array) -> Result<Array> {
        let s = k.shape();
        Ok(k.reshape(&[s[0], s[1], self.heads, -1])?
            .transpose_axes(&[0, 2, 3, 1])?
            .multiply(&self.scale)?)
    }

    /// Values `[B, T, d]` as `[B, H, T, head_dim]`.
    pub fn split_values(&self, v: &Array) -> Result<Array> {
        let s = v.shape();
        Ok(v.reshape(&[s[0], s[1], self.heads, -1])?
            .transpose_axes(&[0, 2, 1, 3])?)
    }

    /// Queries of `x` `[B, L, d]` against keys and values `[B, T, d]`, with an additive mask.
    pub fn attend(&self, x: &Array, k: &Array, v: &Array, mask: Option<&Array>) -> Result<Array> {
        self.attend_split(x, &self.split_keys(k)?, &self.split_values(v)?, mask)
    }

    /// [`MultiHeadAttention::attend`] with keys and values already split (cross-attention
    /// splits them once per audio window, not once per token).
    pub fn attend_split(
        &self,
        x: &Array,
        k: &Array,
        v: &Array,
        mask: Option<&Array>,
    ) -> Result<Array> {
        let q = linear(&self.query, x)?;
        let shape = q.shape().to_vec();
        let (batch, length, state) = (shape[0], shape[1], shape[2]);
        let q = q
            .reshape(&[batch, length, self.heads, -1])?
            .transpose_axes(&[0, 2, 1, 3])?
            .multiply(&self.scale)?;
        let mut qk = q.matmul(k)?;
        if let Some(mask) = mask {
            qk = qk.add(mask)?;
        }
        let w = softmax_axis(&qk, -1, true)?;
        let out = w
            .matmul(v)?
            .transpose_axes(&[0, 2, 1, 3])?
            .reshape(&[batch, length, state])?;
        linear(&self.out, &out)
    }
}

/// The MLP of a block: `mlp2(gelu(mlp1(x)))`.
pub(crate) struct Mlp {
    ln: LayerNorm,
    mlp1: Linear,
    mlp2: Linear,
}

impl Mlp {
    pub fn load(weights: &mut Weights, prefix: &str) -> Self {
        Mlp {
            ln: LayerNorm::load(weights, &format!("{prefix}.mlp_ln")),
            mlp1: weights.linear(&format!("{prefix}.mlp1")),
            mlp2: weights.linear(&format!("{prefix}.mlp2")),
        }
    }

    /// `x + mlp2(gelu(mlp1(mlp_ln(x))))`.
    pub fn residual(&self, x: &Array) -> Result<Array> {
        let h = mlx_rs::nn::gelu(linear(&self.mlp1, &self.ln.forward(x)?)?)?;
        Ok(x.add(linear(&self.mlp2, &h)?)?)
    }
}

/// `values` in the dtype of `like` (float32 on the CPU, the published dtype on a GPU).
pub(crate) fn as_dtype_of(values: Array, like: &Array) -> Result<Array> {
    let dtype: Dtype = like.dtype();
    Ok(if values.dtype() == dtype {
        values
    } else {
        values.as_dtype(dtype)?
    })
}
