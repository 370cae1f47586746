//! Qwen 2 and 2.5, as mlx-lm's `models/qwen2.py`: Llama's shape with biases on the query, key
//! and value projections (picked up from the weights) and a larger RoPE base.

use serde::Deserialize;
use serde_json::Value;

use crate::checkpoint::Weights;
use crate::error::{EngineError, Result};

use super::common::{head_dim_from_hidden, AttentionShape, Decoder, DecoderShape};
use super::rope::Rope;

#[derive(Debug, Clone, Deserialize)]
struct Args {
    hidden_size: i32,
    num_hidden_layers: usize,
    num_attention_heads: i32,
    num_key_value_heads: i32,
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
    let head_dim = head_dim_from_hidden(a.hidden_size, a.num_attention_heads)?;
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
                heads: a.num_attention_heads,
                kv_heads: a.num_key_value_heads,
                head_dim,
                qk_norm: false,
                norm_eps: a.rms_norm_eps,
            },
        },
        rope,
    ))
}
