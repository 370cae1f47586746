//! Phi-3 (mini, medium; 4k context), as mlx-lm's `models/phi3.py`: Llama's shape with fused
//! query-key-value and gate-up projections and optionally partial rotary embeddings.

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
    num_key_value_heads: Option<i32>,
    rms_norm_eps: f32,
    #[serde(default = "default_rope_theta")]
    rope_theta: f32,
    #[serde(default)]
    rope_traditional: bool,
    rope_scaling: Option<Value>,
    #[serde(default = "default_partial_rotary")]
    partial_rotary_factor: f32,
    #[serde(default)]
    tie_word_embeddings: bool,
}

fn default_rope_theta() -> f32 {
    10_000.0
}

fn default_partial_rotary() -> f32 {
    1.0
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
    let head_dim = head_dim_from_hidden(a.hidden_size, heads)?;
    // The config check keeps the factor in (0, 1]; a small one can still round to nothing.
    let rope_dims = (head_dim as f32 * a.partial_rotary_factor) as i32;
    if rope_dims < 1 {
        return Err(EngineError::Config(format!(
            "partial_rotary_factor: {} of a {head_dim}-wide head rotates no dimension",
            a.partial_rotary_factor
        )));
    }
    let rope = Rope::new(
        rope_dims,
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
