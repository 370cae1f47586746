//! Llama (2, 3, 3.x) and Mistral: pre-norm decoder blocks with grouped-query attention, RoPE
//! and a SwiGLU MLP. Mirrors mlx-lm's `models/llama.py`.

use mlx_rs::fast::{self, ScaledDotProductAttentionMask};
use mlx_rs::nn::silu;
use mlx_rs::Array;
use serde::Deserialize;
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::kv_cache::KvCache;
use crate::weights::{Embedding, Linear, Weights};

use super::LanguageModel;

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
    #[serde(default = "default_true")]
    tie_word_embeddings: bool,
    rope_scaling: Option<Value>,
}

fn default_rope_theta() -> f32 {
    10_000.0
}

fn default_true() -> bool {
    true
}

struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
}

struct Mlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

struct Block {
    input_layernorm: Array,
    post_attention_layernorm: Array,
    attention: Attention,
    mlp: Mlp,
}

pub struct Llama {
    args: Args,
    heads: i32,
    kv_heads: i32,
    head_dim: i32,
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: Array,
    lm_head: Option<Linear>,
}

impl Llama {
    pub fn load(config: &Value, weights: &mut Weights) -> Result<Self> {
        let args: Args = serde_json::from_value(config.clone())
            .map_err(|e| EngineError::Config(e.to_string()))?;
        if let Some(scaling) = args.rope_scaling.as_ref().filter(|s| !s.is_null()) {
            return Err(EngineError::Config(format!(
                "rope_scaling {scaling} is not supported yet"
            )));
        }
        let heads = args.num_attention_heads;
        let kv_heads = args.num_key_value_heads.unwrap_or(heads);
        let head_dim = args.head_dim.unwrap_or(args.hidden_size / heads);
        let layers = (0..args.num_hidden_layers)
            .map(|i| {
                let p = format!("model.layers.{i}");
                Block {
                    input_layernorm: weights.take(&format!("{p}.input_layernorm.weight")),
                    post_attention_layernorm: weights
                        .take(&format!("{p}.post_attention_layernorm.weight")),
                    attention: Attention {
                        q_proj: weights.linear(&format!("{p}.self_attn.q_proj")),
                        k_proj: weights.linear(&format!("{p}.self_attn.k_proj")),
                        v_proj: weights.linear(&format!("{p}.self_attn.v_proj")),
                        o_proj: weights.linear(&format!("{p}.self_attn.o_proj")),
                    },
                    mlp: Mlp {
                        gate_proj: weights.linear(&format!("{p}.mlp.gate_proj")),
                        up_proj: weights.linear(&format!("{p}.mlp.up_proj")),
                        down_proj: weights.linear(&format!("{p}.mlp.down_proj")),
                    },
                }
            })
            .collect();
        // Tied models may still ship an lm_head; mlx-lm ignores it then, and so do we.
        let lm_head = if args.tie_word_embeddings || !weights.contains("lm_head.weight") {
            let _ = weights.take_optional("lm_head.weight");
            None
        } else {
            Some(weights.linear("lm_head"))
        };
        Ok(Llama {
            embed_tokens: weights.embedding("model.embed_tokens"),
            norm: weights.take("model.norm.weight"),
            layers,
            lm_head,
            heads,
            kv_heads,
            head_dim,
            args,
        })
    }

    fn attention(&self, attn: &Attention, x: &Array, cache: &mut KvCache) -> Result<Array> {
        let length = x.shape()[1];
        let split = |proj: &Linear, heads: i32| -> Result<Array> {
            Ok(proj
                .forward(x)?
                .reshape(&[1, length, heads, self.head_dim])?
                .transpose_axes(&[0, 2, 1, 3])?)
        };
        let (q, k, v) = (
            split(&attn.q_proj, self.heads)?,
            split(&attn.k_proj, self.kv_heads)?,
            split(&attn.v_proj, self.kv_heads)?,
        );
        let offset = cache.offset();
        let rope = |a: &Array| {
            fast::rope(
                a,
                self.head_dim,
                self.args.rope_traditional,
                self.args.rope_theta,
                1.0,
                offset,
                None,
            )
        };
        let (q, k) = (rope(&q)?, rope(&k)?);
        let (k, v) = cache.update(k, v)?;
        let mask = (length > 1).then_some(ScaledDotProductAttentionMask::Causal);
        let scale = (self.head_dim as f32).powf(-0.5);
        let out = fast::scaled_dot_product_attention(&q, &k, &v, scale, mask, None)?;
        attn.o_proj.forward(
            &out.transpose_axes(&[0, 2, 1, 3])?
                .reshape(&[1, length, -1])?,
        )
    }
}

impl LanguageModel for Llama {
    fn forward(&self, tokens: &Array, caches: &mut [KvCache]) -> Result<Array> {
        let eps = self.args.rms_norm_eps;
        let mut h = self.embed_tokens.forward(tokens)?;
        for (block, cache) in self.layers.iter().zip(caches.iter_mut()) {
            let normed = fast::rms_norm(&h, Some(&block.input_layernorm), eps)?;
            h = h.add(self.attention(&block.attention, &normed, cache)?)?;
            let normed = fast::rms_norm(&h, Some(&block.post_attention_layernorm), eps)?;
            let mlp = &block.mlp;
            let gated =
                silu(mlp.gate_proj.forward(&normed)?)?.multiply(mlp.up_proj.forward(&normed)?)?;
            h = h.add(mlp.down_proj.forward(&gated)?)?;
        }
        let h = fast::rms_norm(&h, Some(&self.norm), eps)?;
        match &self.lm_head {
            Some(head) => head.forward(&h),
            None => self.embed_tokens.as_linear(&h),
        }
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }
}
