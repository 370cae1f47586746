//! Qwen 3 (dense), as mlx-lm's `models/qwen3.py`: an explicit head size and per-head RMSNorm
//! of queries and keys before RoPE.

use serde::Deserialize;
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::weights::Weights;

use super::common::{Attention, Decoder};
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
    let a: Args =
        serde_json::from_value(config.clone()).map_err(|e| EngineError::Config(e.to_string()))?;
    let rope = Rope::new(a.head_dim, a.rope_theta, false, a.rope_scaling.as_ref())?;
    Ok(Decoder::load(
        weights,
        a.num_hidden_layers,
        a.tie_word_embeddings,
        rope,
        a.rms_norm_eps,
        |w, p| {
            Attention::load(
                w,
                p,
                a.num_attention_heads,
                a.num_key_value_heads,
                a.head_dim,
                true,
                a.rms_norm_eps,
            )
        },
    ))
}
