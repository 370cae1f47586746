//! BERT (`model_type: bert`), the encoder of sentence-transformers' MiniLM, BGE and E5 models,
//! as Hugging Face's `BertModel`: learned absolute positions and token types, post-norm blocks
//! (`norm(h + attn(h))`, then `norm(h + mlp(h))`), GELU, and attention in both directions over
//! the tokens a padding mask keeps.

use mlx_rs::fast::{self, ScaledDotProductAttentionMask};
use mlx_rs::ops::expand_dims_axes;
use mlx_rs::Array;
use serde::Deserialize;
use serde_json::Value;

use crate::checkpoint::{Embedding, Linear, Weights};
use crate::error::{EngineError, Result};

use super::common::head_dim_from_hidden;

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Args {
    hidden_size: i32,
    num_hidden_layers: usize,
    num_attention_heads: i32,
    max_position_embeddings: i32,
    #[serde(default = "default_eps")]
    layer_norm_eps: f32,
    #[serde(default = "default_act")]
    hidden_act: String,
    position_embedding_type: Option<String>,
}

fn default_eps() -> f32 {
    1e-12
}

fn default_act() -> String {
    "gelu".into()
}

/// Which GELU the config names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gelu {
    /// `x Φ(x)` with the error function (`gelu`).
    Exact,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    Tanh,
}

/// What `config` decides before any weights: the shape, or an error naming what this encoder
/// does not implement (relative positions, another activation).
pub(super) fn prepare(config: &Value) -> Result<(Args, Gelu, i32)> {
    let a: Args =
        serde_json::from_value(config.clone()).map_err(|e| EngineError::Config(e.to_string()))?;
    let gelu = match a.hidden_act.as_str() {
        "gelu" => Gelu::Exact,
        "gelu_new" | "gelu_pytorch_tanh" => Gelu::Tanh,
        other => {
            return Err(EngineError::Config(format!(
                "hidden_act: '{other}' is not supported by the BERT encoder (gelu, gelu_new)"
            )))
        }
    };
    if let Some(kind) = a.position_embedding_type.as_deref() {
        if kind != "absolute" {
            return Err(EngineError::Config(format!(
                "position_embedding_type: '{kind}' is not supported (absolute positions only)"
            )));
        }
    }
    let head_dim = head_dim_from_hidden(a.hidden_size, a.num_attention_heads)?;
    Ok((a, gelu, head_dim))
}

struct LayerNorm {
    weight: Array,
    bias: Array,
}

impl LayerNorm {
    fn load(weights: &mut Weights, prefix: &str) -> Self {
        LayerNorm {
            weight: weights.take(&format!("{prefix}.weight")),
            bias: weights.take(&format!("{prefix}.bias")),
        }
    }

    fn forward(&self, x: &Array, eps: f32) -> Result<Array> {
        Ok(fast::layer_norm(x, &self.weight, &self.bias, eps)?)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_output: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl Layer {
    fn load(weights: &mut Weights, p: &str) -> Self {
        Layer {
            query: weights.linear(&format!("{p}.attention.self.query")),
            key: weights.linear(&format!("{p}.attention.self.key")),
            value: weights.linear(&format!("{p}.attention.self.value")),
            attention_output: weights.linear(&format!("{p}.attention.output.dense")),
            attention_norm: LayerNorm::load(weights, &format!("{p}.attention.output.LayerNorm")),
            intermediate: weights.linear(&format!("{p}.intermediate.dense")),
            output: weights.linear(&format!("{p}.output.dense")),
            output_norm: LayerNorm::load(weights, &format!("{p}.output.LayerNorm")),
        }
    }
}

pub struct Bert {
    word_embeddings: Embedding,
    /// Tables, quantized too in some MLX conversions.
    position_embeddings: Embedding,
    token_type_embeddings: Embedding,
    embeddings_norm: LayerNorm,
    layers: Vec<Layer>,
    heads: i32,
    head_dim: i32,
    eps: f32,
    gelu: Gelu,
    max_positions: i32,
}

pub fn load(config: &Value, weights: &mut Weights) -> Result<Bert> {
    let (a, gelu, head_dim) = prepare(config)?;
    // `BertForMaskedLM` and friends keep the encoder under `bert.`; sentence-transformers'
    // checkpoints hold the bare `BertModel`.
    let root = if weights.contains("bert.embeddings.word_embeddings.weight") {
        "bert."
    } else {
        ""
    };
    let e = format!("{root}embeddings");
    let bert = Bert {
        word_embeddings: weights.embedding(&format!("{e}.word_embeddings")),
        position_embeddings: weights.embedding(&format!("{e}.position_embeddings")),
        token_type_embeddings: weights.embedding(&format!("{e}.token_type_embeddings")),
        embeddings_norm: LayerNorm::load(weights, &format!("{e}.LayerNorm")),
        layers: (0..a.num_hidden_layers)
            .map(|i| Layer::load(weights, &format!("{root}encoder.layer.{i}")))
            .collect(),
        heads: a.num_attention_heads,
        head_dim,
        eps: a.layer_norm_eps,
        gelu,
        max_positions: a.max_position_embeddings,
    };
    // What an embedding does not use: the position ids buffer, the pooler, training heads.
    let _ = weights.take_optional(&format!("{e}.position_ids"));
    for part in ["pooler.dense.weight", "pooler.dense.bias"] {
        let _ = weights.take_optional(&format!("{root}{part}"));
    }
    Ok(bert)
}

impl Bert {
    /// The longest input the position table covers.
    pub fn max_positions(&self) -> usize {
        self.max_positions as usize
    }

    /// `tokens` `[B, L]` (int32) with `mask` `[B, L]` (true for real tokens, false for padding;
    /// `None` when nothing is padded) to the last hidden states `[B, L, hidden]`.
    pub fn forward(&self, tokens: &Array, mask: Option<&Array>) -> Result<Array> {
        let (batch, length) = (tokens.shape()[0], tokens.shape()[1]);
        if length > self.max_positions {
            return Err(EngineError::ContextLengthExceeded {
                prompt: length as usize,
                context: self.max_positions as usize,
            });
        }
        let positions = self
            .position_embeddings
            .forward(&Array::arange::<_, i32>(None, length, None)?)?;
        // Every text is a single segment: token type 0.
        let segment = self
            .token_type_embeddings
            .forward(&Array::from_slice(&[0i32], &[1]))?;
        let h = self
            .word_embeddings
            .forward(tokens)?
            .add(&positions)?
            .add(&segment)?;
        let mut h = self.embeddings_norm.forward(&h, self.eps)?;
        // [B, 1, 1, L]: every query sees every real token of its own text.
        let keep = mask.map(|m| expand_dims_axes(m, &[1, 2])).transpose()?;
        let scale = (self.head_dim as f32).powf(-0.5);
        for layer in &self.layers {
            let heads = |x: Array| -> Result<Array> {
                Ok(x.reshape(&[batch, length, self.heads, self.head_dim])?
                    .transpose_axes(&[0, 2, 1, 3])?)
            };
            let q = heads(layer.query.forward(&h)?)?;
            let k = heads(layer.key.forward(&h)?)?;
            let v = heads(layer.value.forward(&h)?)?;
            let attended = fast::scaled_dot_product_attention(
                &q,
                &k,
                &v,
                scale,
                keep.as_ref().map(ScaledDotProductAttentionMask::Array),
                None,
            )?
            .transpose_axes(&[0, 2, 1, 3])?
            .reshape(&[batch, length, -1])?;
            let a = layer.attention_norm.forward(
                &layer.attention_output.forward(&attended)?.add(&h)?,
                self.eps,
            )?;
            let inner = layer.intermediate.forward(&a)?;
            let inner = match self.gelu {
                Gelu::Exact => mlx_rs::nn::gelu(&inner)?,
                Gelu::Tanh => mlx_rs::nn::gelu_approximate(&inner)?,
            };
            h = layer
                .output_norm
                .forward(&layer.output.forward(&inner)?.add(&a)?, self.eps)?;
        }
        Ok(h)
    }
}
