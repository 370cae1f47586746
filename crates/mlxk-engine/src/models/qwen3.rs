//! Qwen 3 (dense), as mlx-lm's `models/qwen3.py`: an explicit head size and per-head RMSNorm
//! of queries and keys before RoPE.

use serde::Deserialize;
use serde_json::Value;

use crate::checkpoint::Weights;
use crate::error::{EngineError, Result};

use super::common::{AttentionShape, Decoder, DecoderShape};
use super::rope::Rope;

#[derive(Debug, Clone, Deserialize)]
struct Args {
    num_hidden_layers: usize,
    num_attention_heads: i32,
    num_key_value_heads: i32,
    head_dim: i32,
    rms_norm_eps: f32,
    #[serde(default = "default_rope_theta")]
    rope_theta: f32,
    rope_scaling: Option<Value>,
    #[serde(default = "super::common::default_true")]
    tie_word_embeddings: bool,
}

fn default_rope_theta() -> f32 {
    1_000_000.0
}

pub fn load(config: &Value, weights: &mut Weights) -> Result<Decoder> {
    let (shape, rope) = prepare(config)?;
    Ok(Decoder::load(weights, shape, rope))
}

/// Everything `config` decides, before any weights.
pub(super) fn prepare(config: &Value) -> Result<(DecoderShape, Rope)> {
    let a: Args =
        serde_json::from_value(config.clone()).map_err(|e| EngineError::Config(e.to_string()))?;
    let rope = Rope::new(a.head_dim, a.rope_theta, false, a.rope_scaling.as_ref())?;
    Ok((
        DecoderShape {
            layers: a.num_hidden_layers,
            tie_word_embeddings: a.tie_word_embeddings,
            norm_eps: a.rms_norm_eps,
            attention: AttentionShape {
                heads: a.num_attention_heads,
                kv_heads: a.num_key_value_heads,
                head_dim: a.head_dim,
                qk_norm: true,
                norm_eps: a.rms_norm_eps,
            },
        },
        rope,
    ))
}
