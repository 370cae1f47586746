//! Building blocks shared by the decoder architectures: attention with grouped-query heads,
//! the SwiGLU MLP, and the pre-norm residual block.

use mlx_rs::fast;
use mlx_rs::nn::silu;
use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::ops::{concatenate, split_at_indices};
use mlx_rs::Array;

use crate::checkpoint::{Linear, Weights};
use crate::error::{EngineError, Result};
use crate::kv_cache::{KvCache, RowOffsets};

use super::rope::Rope;
use super::{Group, Positions};

/// The head size of an architecture that has none of its own: `hidden_size` split evenly
/// among the heads. The config check divides them only when no `head_dim` is given, and these
/// architectures ignore one, so a head size of 0 or a remainder is caught here.
pub fn head_dim_from_hidden(hidden_size: i32, heads: i32) -> Result<i32> {
    if heads > 0 && hidden_size >= heads && hidden_size % heads == 0 {
        Ok(hidden_size / heads)
    } else {
        Err(EngineError::Config(format!(
            "num_attention_heads: {heads} does not divide hidden_size ({hidden_size})"
        )))
    }
}

/// Query, key and value projections: separate, or one fused matrix (Phi-3).
pub enum QkvProjections {
    Separate {
        q_proj: Linear,
        k_proj: Linear,
        v_proj: Linear,
    },
    Fused {
        qkv_proj: Linear,
    },
}

/// serde default for flags that are on unless a config says otherwise (`tie_word_embeddings`).
pub fn default_true() -> bool {
    true
}

pub struct Attention {
    pub projections: QkvProjections,
    pub o_proj: Linear,
    /// Per-head RMSNorm of queries and keys before RoPE (Qwen3, Gemma 3).
    pub qk_norm: Option<(Array, Array)>,
    pub heads: i32,
    pub kv_heads: i32,
    pub head_dim: i32,
    pub scale: f32,
    pub norm_eps: f32,
}

/// The shape of an attention layer, as a model's config gives it.
#[derive(Debug, Clone, Copy)]
pub struct AttentionShape {
    pub heads: i32,
    pub kv_heads: i32,
    pub head_dim: i32,
    /// Per-head RMSNorm of queries and keys before RoPE (Qwen3, Gemma 3).
    pub qk_norm: bool,
    pub norm_eps: f32,
}

impl Attention {
    pub fn load(weights: &mut Weights, prefix: &str, shape: AttentionShape) -> Self {
        let AttentionShape {
            heads,
            kv_heads,
            head_dim,
            qk_norm,
            norm_eps,
        } = shape;
        let projections = if weights.contains(&format!("{prefix}.qkv_proj.weight")) {
            QkvProjections::Fused {
                qkv_proj: weights.linear(&format!("{prefix}.qkv_proj")),
            }
        } else {
            QkvProjections::Separate {
                q_proj: weights.linear(&format!("{prefix}.q_proj")),
                k_proj: weights.linear(&format!("{prefix}.k_proj")),
                v_proj: weights.linear(&format!("{prefix}.v_proj")),
            }
        };
        Attention {
            projections,
            o_proj: weights.linear(&format!("{prefix}.o_proj")),
            qk_norm: qk_norm.then(|| {
                (
                    weights.take(&format!("{prefix}.q_norm.weight")),
                    weights.take(&format!("{prefix}.k_norm.weight")),
                )
            }),
            heads,
            kv_heads,
            head_dim,
            scale: (head_dim as f32).powf(-0.5),
            norm_eps,
        }
    }

    /// `x` is `[rows, L, hidden]`, each row's first position at its entry of `offsets`.
    pub fn forward(
        &self,
        x: &Array,
        rope: &Rope,
        offsets: &RowOffsets,
        cache: &mut KvCache,
    ) -> Result<Array> {
        let (rows, length) = (x.shape()[0], x.shape()[1]);
        let (q, k, v) = self.project(x)?;
        let out = self.attend(q, k, v, (rows, length), rope, offsets, cache)?;
        self.o_proj.forward(&out)
    }

    /// Several groups' tokens, flattened to `x` `[tokens, hidden]` ([`Groups`]), projected
    /// together; each group attends over its own cache, at its own offsets.
    pub fn forward_groups(
        &self,
        x: &Array,
        rope: &Rope,
        groups: &Groups,
        caches: &mut [&mut KvCache],
    ) -> Result<Array> {
        let (q, k, v) = self.project(x)?;
        let out = groups.attend_each(q, k, v, caches, |q, k, v, shape, offsets, cache| {
            self.attend(q, k, v, shape, rope, offsets, cache)
        })?;
        self.o_proj.forward(&out)
    }

    /// Queries, keys and values of `x` (any leading shape).
    fn project(&self, x: &Array) -> Result<(Array, Array, Array)> {
        Ok(match &self.projections {
            QkvProjections::Separate {
                q_proj,
                k_proj,
                v_proj,
            } => (q_proj.forward(x)?, k_proj.forward(x)?, v_proj.forward(x)?),
            QkvProjections::Fused { qkv_proj } => {
                let q_size = self.heads * self.head_dim;
                let kv_size = self.kv_heads * self.head_dim;
                let mut parts =
                    split_at_indices(qkv_proj.forward(x)?, &[q_size, q_size + kv_size], -1)?
                        .into_iter();
                let mut next = || parts.next().expect("three sections");
                (next(), next(), next())
            }
        })
    }

    /// Attention of one group's `rows` x `L` queries over its cache: `[rows, L, heads * dim]`,
    /// before the output projection.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        q: Array,
        k: Array,
        v: Array,
        (rows, length): (i32, i32),
        rope: &Rope,
        offsets: &RowOffsets,
        cache: &mut KvCache,
    ) -> Result<Array> {
        let heads = |a: Array, heads: i32, norm: Option<&Array>| -> Result<Array> {
            let mut a = a.reshape(&[rows, length, heads, self.head_dim])?;
            if let Some(weight) = norm {
                a = fast::rms_norm(&a, Some(weight), self.norm_eps)?;
            }
            Ok(a.transpose_axes(&[0, 2, 1, 3])?)
        };
        let (q_norm, k_norm) = match &self.qk_norm {
            Some((q, k)) => (Some(q), Some(k)),
            None => (None, None),
        };
        let q = heads(q, self.heads, q_norm)?;
        let k = heads(k, self.kv_heads, k_norm)?;
        let v = heads(v, self.kv_heads, None)?;
        let (q, k) = (rope.apply(&q, offsets)?, rope.apply(&k, offsets)?);
        let attend = cache.update_and_attend(k, v)?;
        let out = fast::scaled_dot_product_attention(
            &q,
            &attend.keys,
            &attend.values,
            self.scale,
            attend.mask.sdpa(),
            None,
        )?;
        Ok(out
            .transpose_axes(&[0, 2, 1, 3])?
            .reshape(&[rows, length, -1])?)
    }
}

/// `down(silu(gate(x)) * up(x))`, with gate and up separate or fused (Phi-3).
pub struct SwiGlu {
    pub gate_up: GateUp,
    pub down_proj: Linear,
}

pub enum GateUp {
    Separate { gate_proj: Linear, up_proj: Linear },
    Fused { gate_up_proj: Linear },
}

impl SwiGlu {
    pub fn load(weights: &mut Weights, prefix: &str) -> Self {
        let gate_up = if weights.contains(&format!("{prefix}.gate_up_proj.weight")) {
            GateUp::Fused {
                gate_up_proj: weights.linear(&format!("{prefix}.gate_up_proj")),
            }
        } else {
            GateUp::Separate {
                gate_proj: weights.linear(&format!("{prefix}.gate_proj")),
                up_proj: weights.linear(&format!("{prefix}.up_proj")),
            }
        };
        SwiGlu {
            gate_up,
            down_proj: weights.linear(&format!("{prefix}.down_proj")),
        }
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        let (gate, up) = match &self.gate_up {
            GateUp::Separate { gate_proj, up_proj } => (gate_proj.forward(x)?, up_proj.forward(x)?),
            GateUp::Fused { gate_up_proj } => {
                let mut halves = gate_up_proj.forward(x)?.split_equal(2, -1)?.into_iter();
                (
                    halves.next().expect("two halves"),
                    halves.next().expect("two halves"),
                )
            }
        };
        self.down_proj.forward(&silu(gate)?.multiply(up)?)
    }
}

/// `h + attn(norm(h))`, then `h + mlp(norm(h))`.
pub struct PreNormBlock {
    pub input_layernorm: Array,
    pub post_attention_layernorm: Array,
    pub attention: Attention,
    pub mlp: SwiGlu,
}

impl PreNormBlock {
    pub fn load(
        weights: &mut Weights,
        layer: usize,
        attention: impl FnOnce(&mut Weights, &str) -> Attention,
    ) -> Self {
        let p = format!("model.layers.{layer}");
        PreNormBlock {
            input_layernorm: weights.take(&format!("{p}.input_layernorm.weight")),
            post_attention_layernorm: weights.take(&format!("{p}.post_attention_layernorm.weight")),
            attention: attention(weights, &format!("{p}.self_attn")),
            mlp: SwiGlu::load(weights, &format!("{p}.mlp")),
        }
    }

    pub fn forward(
        &self,
        h: &Array,
        eps: f32,
        rope: &Rope,
        offsets: &RowOffsets,
        cache: &mut KvCache,
    ) -> Result<Array> {
        let normed = fast::rms_norm(h, Some(&self.input_layernorm), eps)?;
        let h = h.add(self.attention.forward(&normed, rope, offsets, cache)?)?;
        self.feed_forward(h, eps)
    }

    /// [`PreNormBlock::forward`] over several groups' tokens, flattened to `h` `[tokens,
    /// hidden]` ([`Groups`]).
    pub fn forward_groups(
        &self,
        h: &Array,
        eps: f32,
        rope: &Rope,
        groups: &Groups,
        caches: &mut [&mut KvCache],
    ) -> Result<Array> {
        let normed = fast::rms_norm(h, Some(&self.input_layernorm), eps)?;
        let attended = self
            .attention
            .forward_groups(&normed, rope, groups, caches)?;
        self.feed_forward(h.add(attended)?, eps)
    }

    fn feed_forward(&self, h: Array, eps: f32) -> Result<Array> {
        let normed = fast::rms_norm(&h, Some(&self.post_attention_layernorm), eps)?;
        Ok(h.add(self.mlp.forward(&normed)?)?)
    }
}

/// Embedding, a stack of [`PreNormBlock`]s, a final norm and the output projection: the shape
/// of Llama, Mistral and Qwen 2/3.
pub struct Decoder {
    pub embed_tokens: crate::checkpoint::Embedding,
    pub layers: Vec<PreNormBlock>,
    pub norm: Array,
    pub lm_head: Option<Linear>,
    pub rope: Rope,
    pub eps: f32,
}

/// The shape of a [`Decoder`], as a model's config gives it.
#[derive(Debug, Clone, Copy)]
pub struct DecoderShape {
    pub layers: usize,
    /// The output projection is the embedding (no `lm_head` of its own).
    pub tie_word_embeddings: bool,
    pub norm_eps: f32,
    pub attention: AttentionShape,
}

impl Decoder {
    pub fn load(weights: &mut Weights, shape: DecoderShape, rope: Rope) -> Self {
        let DecoderShape {
            layers,
            tie_word_embeddings,
            norm_eps: eps,
            attention,
        } = shape;
        let attention = |w: &mut Weights, prefix: &str| Attention::load(w, prefix, attention);
        let layers = (0..layers)
            .map(|i| PreNormBlock::load(weights, i, attention))
            .collect();
        // A tied model may still ship an lm_head; mlx-lm ignores it, and so do we.
        let lm_head = if tie_word_embeddings || !weights.contains("lm_head.weight") {
            let _ = weights.take_optional("lm_head.weight");
            None
        } else {
            Some(weights.linear("lm_head"))
        };
        Decoder {
            embed_tokens: weights.embedding("model.embed_tokens"),
            norm: weights.take("model.norm.weight"),
            layers,
            lm_head,
            rope,
            eps,
        }
    }
}

impl super::LanguageModel for Decoder {
    fn embed(&self, tokens: &Array) -> Result<Array> {
        self.embed_tokens.forward(tokens)
    }

    fn forward_embedded(
        &self,
        h: &Array,
        caches: &mut [KvCache],
        positions: Positions,
    ) -> Result<Array> {
        let offsets = RowOffsets::of(caches);
        let mut h = h.clone();
        for (block, cache) in self.layers.iter().zip(caches.iter_mut()) {
            h = block.forward(&h, self.eps, &self.rope, &offsets, cache)?;
        }
        let h = fast::rms_norm(&positions.select(h)?, Some(&self.norm), self.eps)?;
        match &self.lm_head {
            Some(head) => head.forward(&h),
            None => self.embed_tokens.as_linear(&h),
        }
    }

    /// Every group's tokens through each projection together, attention per group.
    fn forward_groups(&self, groups: &mut [Group<'_>]) -> Result<Vec<Array>> {
        forward_flat(
            self,
            groups,
            |tokens| self.embed_tokens.forward(tokens),
            |layer, h, shapes, caches| {
                self.layers[layer].forward_groups(h, self.eps, &self.rope, shapes, caches)
            },
            |h| {
                let h = fast::rms_norm(h, Some(&self.norm), self.eps)?;
                match &self.lm_head {
                    Some(head) => head.forward(&h),
                    None => self.embed_tokens.as_linear(&h),
                }
            },
        )
    }

    fn num_layers(&self) -> usize {
        self.layers.len()
    }

    fn hidden_states(&self, tokens: &Array) -> Result<Array> {
        let mut caches = self.make_caches();
        let offsets = RowOffsets::of(&caches);
        let mut h = self.embed_tokens.forward(tokens)?;
        for (block, cache) in self.layers.iter().zip(caches.iter_mut()) {
            h = block.forward(&h, self.eps, &self.rope, &offsets, cache)?;
        }
        Ok(fast::rms_norm(&h, Some(&self.norm), self.eps)?)
    }
}

/// The groups of a fused pass, their tokens flattened to `[tokens, hidden]` in order: each
/// group's `(rows, L)` and RoPE offsets.
pub struct Groups {
    shapes: Vec<(i32, i32)>,
    offsets: Vec<RowOffsets>,
}

impl Groups {
    /// Slices `q`, `k` and `v` `[tokens, _]` by group, runs `attend` on each (its queries, keys
    /// and values, `(rows, L)`, offsets and cache; returning `[rows, L, _]`) and joins the
    /// outputs back to `[tokens, _]`.
    pub fn attend_each(
        &self,
        q: Array,
        k: Array,
        v: Array,
        caches: &mut [&mut KvCache],
        mut attend: impl FnMut(
            Array,
            Array,
            Array,
            (i32, i32),
            &RowOffsets,
            &mut KvCache,
        ) -> Result<Array>,
    ) -> Result<Array> {
        let mut outs = Vec::with_capacity(self.shapes.len());
        let mut start = 0;
        for ((&(rows, length), offsets), cache) in self.shapes.iter().zip(&self.offsets).zip(caches)
        {
            let end = start + rows * length;
            let out = attend(
                q.index(start..end),
                k.index(start..end),
                v.index(start..end),
                (rows, length),
                offsets,
                cache,
            )?;
            outs.push(out.reshape(&[rows * length, -1])?);
            start = end;
        }
        Ok(concatenate(&outs, 0)?)
    }
}

/// [`super::LanguageModel::forward_groups`] for a stack of layers: one group is an ordinary
/// pass; several have their embedded tokens (`embed`) flattened together through every
/// `layer` (its index, the hidden states, the groups, and that layer's cache of each group),
/// then the positions each group asks for go through `head` (final norm and output
/// projection) together.
pub fn forward_flat(
    model: &dyn super::LanguageModel,
    groups: &mut [Group<'_>],
    embed: impl Fn(&Array) -> Result<Array>,
    mut layer: impl FnMut(usize, &Array, &Groups, &mut [&mut KvCache]) -> Result<Array>,
    head: impl Fn(&Array) -> Result<Array>,
) -> Result<Vec<Array>> {
    if let [group] = groups {
        let logits =
            model.forward_positions(group.tokens, group.caches, group.positions.clone())?;
        return Ok(vec![logits]);
    }
    let shape = Groups {
        shapes: groups
            .iter()
            .map(|g| (g.tokens.shape()[0], g.tokens.shape()[1]))
            .collect(),
        offsets: groups.iter().map(|g| RowOffsets::of(g.caches)).collect(),
    };
    let mut embedded = Vec::with_capacity(groups.len());
    for group in groups.iter() {
        let h = embed(group.tokens)?;
        let hidden = *h.shape().last().expect("a hidden axis");
        embedded.push(h.reshape(&[-1, hidden])?);
    }
    let mut h = concatenate(&embedded, 0)?;
    for index in 0..model.num_layers() {
        let mut caches: Vec<&mut KvCache> =
            groups.iter_mut().map(|g| &mut g.caches[index]).collect();
        h = layer(index, &h, &shape, &mut caches)?;
    }
    let hidden = *h.shape().last().expect("a hidden axis");
    let (mut selected, mut kept) = (Vec::new(), Vec::new());
    let mut start = 0;
    for (group, &(rows, length)) in groups.iter().zip(&shape.shapes) {
        let end = start + rows * length;
        let part = h.index(start..end).reshape(&[rows, length, hidden])?;
        let part = group.positions.clone().select(part)?;
        kept.push((rows, part.shape()[1]));
        selected.push(part.reshape(&[-1, hidden])?);
        start = end;
    }
    let logits = head(&concatenate(&selected, 0)?)?;
    let mut start = 0;
    kept.into_iter()
        .map(|(rows, length)| {
            let range = start..start + rows * length;
            start = range.end;
            Ok(logits.index(range).reshape(&[rows, length, -1])?)
        })
        .collect()
}

/// `down(gelu_approx(gate(x)) * up(x))` (Gemma), with mlx's tanh approximation of GELU.
pub struct GeluMlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

impl GeluMlp {
    pub fn load(weights: &mut Weights, prefix: &str) -> Self {
        GeluMlp {
            gate_proj: weights.linear(&format!("{prefix}.gate_proj")),
            up_proj: weights.linear(&format!("{prefix}.up_proj")),
            down_proj: weights.linear(&format!("{prefix}.down_proj")),
        }
    }

    pub fn forward(&self, x: &Array) -> Result<Array> {
        let gate = gelu_approx(&self.gate_proj.forward(x)?)?;
        self.down_proj
            .forward(&gate.multiply(self.up_proj.forward(x)?)?)
    }
}

/// `0.5 x (1 + tanh(sqrt(2/π) (x + 0.044715 x³)))`, with mlx's constants and order of operations.
fn gelu_approx(x: &Array) -> Result<Array> {
    let c = (2.0f64 / std::f64::consts::PI).sqrt() as f32;
    let cubic = x.add(
        x.power(Array::from_f32(3.0))?
            .multiply(Array::from_f32(0.044715))?,
    )?;
    let inner =
        mlx_rs::ops::tanh(cubic.multiply(Array::from_f32(c))?)?.add(Array::from_f32(1.0))?;
    Ok(x.multiply(Array::from_f32(0.5))?.multiply(inner)?)
}

/// Gemma's RMSNorm scales by `1 + weight`; the sum is taken once at load.
pub fn gemma_norm_weight(weight: Array) -> Result<Array> {
    Ok(weight.add(Array::from_f32(1.0))?)
}

/// Gemma's block: RMSNorms before and after both the attention and the MLP
/// (`h + norm(attn(norm(h)))`, then `h + norm(mlp(norm(h)))`), all scaling by `1 + weight`.
pub struct SandwichBlock {
    pub input_layernorm: Array,
    pub post_attention_layernorm: Array,
    pub pre_feedforward_layernorm: Array,
    pub post_feedforward_layernorm: Array,
    pub mlp: GeluMlp,
}

impl SandwichBlock {
    pub fn load(weights: &mut Weights, prefix: &str) -> Result<Self> {
        let mut norm =
            |name: &str| gemma_norm_weight(weights.take(&format!("{prefix}.{name}.weight")));
        Ok(SandwichBlock {
            input_layernorm: norm("input_layernorm")?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
            pre_feedforward_layernorm: norm("pre_feedforward_layernorm")?,
            post_feedforward_layernorm: norm("post_feedforward_layernorm")?,
            mlp: GeluMlp::load(weights, &format!("{prefix}.mlp")),
        })
    }

    pub fn forward(
        &self,
        h: &Array,
        eps: f32,
        attention: impl FnOnce(&Array) -> Result<Array>,
    ) -> Result<Array> {
        let r = attention(&fast::rms_norm(h, Some(&self.input_layernorm), eps)?)?;
        let h = h.add(fast::rms_norm(
            &r,
            Some(&self.post_attention_layernorm),
            eps,
        )?)?;
        let r = self.mlp.forward(&fast::rms_norm(
            &h,
            Some(&self.pre_feedforward_layernorm),
            eps,
        )?)?;
        Ok(h.add(fast::rms_norm(
            &r,
            Some(&self.post_feedforward_layernorm),
            eps,
        )?)?)
    }
}
