//! Gemma 2, as mlx-lm's `models/gemma2.py`: scaled embeddings, `1 + weight` RMSNorms around
//! both sub-layers, soft-capped attention scores and logits, a GELU MLP and tied embeddings.

use mlx_rs::fast;
use mlx_rs::ops::{select, softmax_axis, tanh};
use mlx_rs::Array;
use serde::Deserialize;
use serde_json::Value;

use crate::checkpoint::{Embedding, Linear, Weights};
use crate::error::{EngineError, Result};
use crate::kv_cache::{KvCache, RowOffsets};

use super::common::{forward_flat, gemma_norm_weight, SandwichBlock};
use super::rope::Rope;
use super::{Group, LanguageModel, Positions};

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Args {
    hidden_size: i32,
    num_hidden_layers: usize,
    num_attention_heads: i32,
    num_key_value_heads: i32,
    head_dim: i32,
    rms_norm_eps: f32,
    #[serde(default = "default_rope_theta")]
    rope_theta: f32,
    #[serde(default)]
    rope_traditional: bool,
    #[serde(default = "default_attn_cap")]
    attn_logit_softcapping: f32,
    #[serde(default = "default_final_cap")]
    final_logit_softcapping: f32,
    #[serde(default = "default_query_scalar")]
    query_pre_attn_scalar: f32,
}

fn default_rope_theta() -> f32 {
    10_000.0
}
fn default_attn_cap() -> f32 {
    50.0
}
fn default_final_cap() -> f32 {
    30.0
}
fn default_query_scalar() -> f32 {
    144.0
}

struct Block {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    norms: SandwichBlock,
}

pub struct Gemma2 {
    args: Args,
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: Array,
    rope: Rope,
}

/// Everything `config` decides, before any weights.
pub(super) fn prepare(config: &Value) -> Result<(Args, Rope)> {
    let args: Args =
        serde_json::from_value(config.clone()).map_err(|e| EngineError::Config(e.to_string()))?;
    let rope = Rope::new(args.head_dim, args.rope_theta, args.rope_traditional, None)?;
    Ok((args, rope))
}

pub fn load(config: &Value, weights: &mut Weights) -> Result<Gemma2> {
    let (args, rope) = prepare(config)?;
    let norm = |w: &mut Weights, name: String| gemma_norm_weight(w.take(&name));
    let mut layers = Vec::new();
    for i in 0..args.num_hidden_layers {
        let p = format!("model.layers.{i}");
        layers.push(Block {
            q_proj: weights.linear(&format!("{p}.self_attn.q_proj")),
            k_proj: weights.linear(&format!("{p}.self_attn.k_proj")),
            v_proj: weights.linear(&format!("{p}.self_attn.v_proj")),
            o_proj: weights.linear(&format!("{p}.self_attn.o_proj")),
            norms: SandwichBlock::load(weights, &p)?,
        });
    }
    let _ = weights.take_optional("lm_head.weight");
    Ok(Gemma2 {
        rope,
        embed_tokens: weights.embedding("model.embed_tokens"),
        norm: norm(weights, "model.norm.weight".into())?,
        layers,
        args,
    })
}

/// `tanh(x / cap) * cap`: bounds values smoothly to (-cap, cap).
fn soft_cap(x: &Array, cap: f32) -> Result<Array> {
    Ok(tanh(x.divide(Array::from_f32(cap))?)?.multiply(Array::from_f32(cap))?)
}

impl Gemma2 {
    fn attention(
        &self,
        block: &Block,
        x: &Array,
        offsets: &RowOffsets,
        cache: &mut KvCache,
    ) -> Result<Array> {
        let (rows, length) = (x.shape()[0], x.shape()[1]);
        let (q, k, v) = project(block, x)?;
        let out = self.attend(q, k, v, (rows, length), offsets, cache)?;
        block.o_proj.forward(&out)
    }

    /// Attention of one group's `rows` x `L` queries over its cache, written out for the
    /// soft-capped scores: `[rows, L, heads * dim]`, before the output projection.
    fn attend(
        &self,
        q: Array,
        k: Array,
        v: Array,
        (rows, length): (i32, i32),
        offsets: &RowOffsets,
        cache: &mut KvCache,
    ) -> Result<Array> {
        let a = &self.args;
        let (heads, kv_heads, dim) = (a.num_attention_heads, a.num_key_value_heads, a.head_dim);
        let split = |x: Array, h: i32| -> Result<Array> {
            Ok(x.reshape(&[rows, length, h, dim])?
                .transpose_axes(&[0, 2, 1, 3])?)
        };
        let (q, k, v) = (split(q, heads)?, split(k, kv_heads)?, split(v, kv_heads)?);
        let (q, k) = (self.rope.apply(&q, offsets)?, self.rope.apply(&k, offsets)?);
        let attend = cache.update_and_attend(k, v)?;
        // `[L, T]` or `[rows, 1, L, T]`, against scores `[rows, kv_heads, repeats, L, T]`.
        let mask = match attend.mask.to_array(length, attend.keys.shape()[2])? {
            Some(mask) => Some(mask.expand_dims(-3)?),
            None => None,
        };
        let (k, v) = (attend.keys, attend.values);
        let scale = (1.0 / (a.query_pre_attn_scalar as f64).sqrt()) as f32;
        let repeats = heads / kv_heads;
        let q = q
            .multiply(Array::from_f32(scale))?
            .reshape(&[rows, kv_heads, repeats, length, dim])?;
        let (k, v) = (k.expand_dims(2)?, v.expand_dims(2)?);
        let scores = soft_cap(&q.matmul(k.swap_axes(-1, -2)?)?, a.attn_logit_softcapping)?;
        let scores = match &mask {
            Some(mask) => select(mask, &scores, Array::from_f32(f32::MIN))?,
            None => scores,
        };
        let out = softmax_axis(&scores, -1, true)?
            .matmul(&v)?
            .reshape(&[rows, heads, length, dim])?;
        Ok(out
            .transpose_axes(&[0, 2, 1, 3])?
            .reshape(&[rows, length, -1])?)
    }

    /// `sqrt(hidden_size)`, as mlx-lm scales the embeddings.
    fn embedding_scale(&self) -> Array {
        Array::from_f32((self.args.hidden_size as f64).sqrt() as f32)
    }

    fn head(&self, h: &Array) -> Result<Array> {
        let h = fast::rms_norm(h, Some(&self.norm), self.args.rms_norm_eps)?;
        soft_cap(
            &self.embed_tokens.as_linear(&h)?,
            self.args.final_logit_softcapping,
        )
    }
}

/// Queries, keys and values of `x` (any leading shape).
fn project(block: &Block, x: &Array) -> Result<(Array, Array, Array)> {
    Ok((
        block.q_proj.forward(x)?,
        block.k_proj.forward(x)?,
        block.v_proj.forward(x)?,
    ))
}

impl LanguageModel for Gemma2 {
    fn embed(&self, tokens: &Array) -> Result<Array> {
        self.embed_tokens.forward(tokens)
    }

    /// Scales the embeddings by `sqrt(hidden_size)` first, given ones too (as mlx-lm).
    fn forward_embedded(
        &self,
        h: &Array,
        caches: &mut [KvCache],
        positions: Positions,
    ) -> Result<Array> {
        let eps = self.args.rms_norm_eps;
        let mut h = h.multiply(self.embedding_scale())?;
        let offsets = RowOffsets::of(caches);
        for (block, cache) in self.layers.iter().zip(caches.iter_mut()) {
            h = block.norms.forward(&h, eps, |normed| {
                self.attention(block, normed, &offsets, cache)
            })?;
        }
        self.head(&positions.select(h)?)
    }

    /// Every group's tokens through each projection together, attention per group.
    fn forward_groups(&self, groups: &mut [Group<'_>]) -> Result<Vec<Array>> {
        let eps = self.args.rms_norm_eps;
        forward_flat(
            self,
            groups,
            |tokens| {
                Ok(self
                    .embed_tokens
                    .forward(tokens)?
                    .multiply(self.embedding_scale())?)
            },
            |layer, h, groups, caches| {
                let block = &self.layers[layer];
                block.norms.forward(h, eps, |normed| {
                    let (q, k, v) = project(block, normed)?;
                    let out =
                        groups.attend_each(q, k, v, caches, |q, k, v, shape, offsets, cache| {
                            self.attend(q, k, v, shape, offsets, cache)
                        })?;
                    block.o_proj.forward(&out)
                })
            },
            |h| self.head(h),
        )
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }
}
