//! Gemma 3 (text), as mlx-lm's `models/gemma3_text.py`: Gemma 2's sandwich norms and GELU
//! MLP, per-head query/key norms, no soft-capping, and sliding-window attention (with its own
//! RoPE base) on all but every `sliding_window_pattern`-th layer.
//!
//! Sliding layers get a windowed cache that drops positions no query can see (bounded memory,
//! like mlx-lm's rotating cache) and picks the keys and mask in the window
//! (`KvCache::update_and_attend`); the attended positions are the same as mlx-lm's.

use mlx_rs::fast;
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
    #[serde(default = "default_local_base")]
    rope_local_base_freq: f32,
    #[serde(default = "default_query_scalar")]
    query_pre_attn_scalar: f32,
    #[serde(default = "default_window")]
    sliding_window: i32,
    #[serde(default = "default_pattern")]
    sliding_window_pattern: usize,
    rope_scaling: Option<Value>,
}

fn default_rope_theta() -> f32 {
    1_000_000.0
}
fn default_local_base() -> f32 {
    10_000.0
}
fn default_query_scalar() -> f32 {
    256.0
}
fn default_window() -> i32 {
    512
}
fn default_pattern() -> usize {
    6
}

struct Block {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    q_norm: Array,
    k_norm: Array,
    norms: SandwichBlock,
    /// `Some(window)` on sliding-window layers.
    window: Option<i32>,
}

pub struct Gemma3 {
    args: Args,
    embed_tokens: Embedding,
    layers: Vec<Block>,
    norm: Array,
    lm_head: Option<Linear>,
    global_rope: Rope,
    local_rope: Rope,
}

/// Everything `config` decides, before any weights: the arguments, the global and the
/// local (sliding-window) rotary embeddings.
pub(super) fn prepare(config: &Value) -> Result<(Args, Rope, Rope)> {
    let args: Args =
        serde_json::from_value(config.clone()).map_err(|e| EngineError::Config(e.to_string()))?;
    let global_rope = Rope::new(
        args.head_dim,
        args.rope_theta,
        false,
        args.rope_scaling.as_ref(),
    )?;
    let local_rope = Rope::new(args.head_dim, args.rope_local_base_freq, false, None)?;
    Ok((args, global_rope, local_rope))
}

pub fn load(config: &Value, weights: &mut Weights) -> Result<Gemma3> {
    let (args, global_rope, local_rope) = prepare(config)?;
    let norm = |w: &mut Weights, name: String| gemma_norm_weight(w.take(&name));
    let mut layers = Vec::new();
    for i in 0..args.num_hidden_layers {
        let p = format!("model.layers.{i}");
        let sliding = (i + 1) % args.sliding_window_pattern != 0;
        layers.push(Block {
            q_proj: weights.linear(&format!("{p}.self_attn.q_proj")),
            k_proj: weights.linear(&format!("{p}.self_attn.k_proj")),
            v_proj: weights.linear(&format!("{p}.self_attn.v_proj")),
            o_proj: weights.linear(&format!("{p}.self_attn.o_proj")),
            q_norm: norm(weights, format!("{p}.self_attn.q_norm.weight"))?,
            k_norm: norm(weights, format!("{p}.self_attn.k_norm.weight"))?,
            norms: SandwichBlock::load(weights, &p)?,
            window: sliding.then_some(args.sliding_window),
        });
    }
    // As mlx-lm: the output projection is tied unless the weights ship one.
    let lm_head = weights
        .contains("lm_head.weight")
        .then(|| weights.linear("lm_head"));
    Ok(Gemma3 {
        global_rope,
        local_rope,
        embed_tokens: weights.embedding("model.embed_tokens"),
        norm: norm(weights, "model.norm.weight".into())?,
        lm_head,
        layers,
        args,
    })
}

impl Gemma3 {
    fn attention(
        &self,
        block: &Block,
        x: &Array,
        offsets: &RowOffsets,
        cache: &mut KvCache,
    ) -> Result<Array> {
        let (rows, length) = (x.shape()[0], x.shape()[1]);
        let (q, k, v) = project(block, x)?;
        let out = self.attend(block, q, k, v, (rows, length), offsets, cache)?;
        block.o_proj.forward(&out)
    }

    /// Attention of one group's `rows` x `L` queries over its cache: `[rows, L, heads * dim]`,
    /// before the output projection.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        block: &Block,
        q: Array,
        k: Array,
        v: Array,
        (rows, length): (i32, i32),
        offsets: &RowOffsets,
        cache: &mut KvCache,
    ) -> Result<Array> {
        let a = &self.args;
        let dim = a.head_dim;
        let heads = |x: Array, heads: i32| -> Result<Array> {
            Ok(x.reshape(&[rows, length, heads, dim])?
                .transpose_axes(&[0, 2, 1, 3])?)
        };
        let q = fast::rms_norm(
            &heads(q, a.num_attention_heads)?,
            Some(&block.q_norm),
            a.rms_norm_eps,
        )?;
        let k = fast::rms_norm(
            &heads(k, a.num_key_value_heads)?,
            Some(&block.k_norm),
            a.rms_norm_eps,
        )?;
        let v = heads(v, a.num_key_value_heads)?;
        let rope = if block.window.is_some() {
            &self.local_rope
        } else {
            &self.global_rope
        };
        let (q, k) = (rope.apply(&q, offsets)?, rope.apply(&k, offsets)?);
        let attend = cache.update_and_attend(k, v)?;
        let scale = (a.query_pre_attn_scalar as f64).powf(-0.5) as f32;
        let out = fast::scaled_dot_product_attention(
            &q,
            &attend.keys,
            &attend.values,
            scale,
            attend.mask.sdpa(),
            None,
        )?;
        Ok(out
            .transpose_axes(&[0, 2, 1, 3])?
            .reshape(&[rows, length, -1])?)
    }

    /// mlx-lm rounds the embedding scale, `sqrt(hidden_size)`, to bfloat16 first; so do we.
    fn embedding_scale(&self) -> Array {
        Array::from_f32(half::bf16::from_f64((self.args.hidden_size as f64).sqrt()).to_f32())
    }

    fn head(&self, h: &Array) -> Result<Array> {
        let h = fast::rms_norm(h, Some(&self.norm), self.args.rms_norm_eps)?;
        match &self.lm_head {
            Some(head) => head.forward(&h),
            None => self.embed_tokens.as_linear(&h),
        }
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

impl LanguageModel for Gemma3 {
    fn embed(&self, tokens: &Array) -> Result<Array> {
        self.embed_tokens.forward(tokens)
    }

    /// Scales the embeddings by `sqrt(hidden_size)` first, given ones too (as mlx-lm's
    /// `gemma3_text` does with `input_embeddings`).
    fn forward_embedded(
        &self,
        h: &Array,
        caches: &mut [KvCache],
        positions: Positions,
    ) -> Result<Array> {
        let eps = self.args.rms_norm_eps;
        let mut h = h.multiply(self.embedding_scale())?;
        // Absolute positions: the local and the global layers rotate by the same offsets.
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
                            self.attend(block, q, k, v, shape, offsets, cache)
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

    fn make_caches(&self) -> Vec<KvCache> {
        self.layers
            .iter()
            .map(|l| l.window.map_or_else(KvCache::default, KvCache::with_window))
            .collect()
    }
}
