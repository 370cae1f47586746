//! Llama (2, 3, 3.1, 3.2) and Mistral, as mlx-lm's `models/llama.py`: grouped-query attention
//! with RoPE (plain, linear or Llama 3.1 scaling), SwiGLU MLP, optional tied embeddings.

use serde::Deserialize;
use serde_json::Value;

use crate::checkpoint::Weights;
use crate::error::{EngineError, Result};

use super::common::{AttentionShape, Decoder, DecoderShape};
use super::rope::Rope;

#[derive(Debug, Clone, Deserialize)]
struct Args {
    hidden_size: i32,
    num_hidden_layers: usize,
    num_attention_heads: i32,
    num_key_value_heads: Option<i32>,
    head_dim: Option<i32>,
    rms_norm_eps: f32,
    #[serde(default = "default_rope_theta")]
    rope_theta: f32,
    #[serde(default)]
    rope_traditional: bool,
    rope_scaling: Option<Value>,
    #[serde(default = "super::common::default_true")]
    tie_word_embeddings: bool,
}

fn default_rope_theta() -> f32 {
    10_000.0
}

pub fn load(config: &Value, weights: &mut Weights) -> Result<Decoder> {
    let (shape, rope) = prepare(config)?;
    Ok(Decoder::load(weights, shape, rope))
}

/// Everything `config` decides, before any weights.
pub(super) fn prepare(config: &Value) -> Result<(DecoderShape, Rope)> {
    let a: Args =
        serde_json::from_value(config.clone()).map_err(|e| EngineError::Config(e.to_string()))?;
    let heads = a.num_attention_heads;
    let kv_heads = a.num_key_value_heads.unwrap_or(heads);
    let head_dim = a.head_dim.unwrap_or(a.hidden_size / heads);
    let rope = Rope::new(
        head_dim,
        a.rope_theta,
        a.rope_traditional,
        a.rope_scaling.as_ref(),
    )?;
    Ok((
        DecoderShape {
            layers: a.num_hidden_layers,
            tie_word_embeddings: a.tie_word_embeddings,
            norm_eps: a.rms_norm_eps,
            attention: AttentionShape {
                heads,
                kv_heads,
                head_dim,
                qk_norm: false,
                norm_eps: a.rms_norm_eps,
            },
        },
        rope,
    ))
}
