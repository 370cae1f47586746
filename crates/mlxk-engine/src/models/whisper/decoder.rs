//! Whisper's text decoder: token and learned position embeddings, pre-norm blocks with causal
//! self-attention and cross-attention to the audio features, a final norm, and the token
//! embedding as the output projection.

use mlx_rs::ops::concatenate;
use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::Array;

use crate::checkpoint::{Embedding, Weights};
use crate::error::{EngineError, Result};

use super::{as_dtype_of, Dims, LayerNorm, Mlp, MultiHeadAttention};

struct Block {
    attn_ln: LayerNorm,
    attn: MultiHeadAttention,
    cross_attn_ln: LayerNorm,
    cross_attn: MultiHeadAttention,
    mlp: Mlp,
}

/// One layer's cross-attention keys and values, computed once per audio window and already
/// split into heads (keys `[B, H, head_dim, T]` scaled, values `[B, H, T, head_dim]`).
pub(crate) type CrossKv = (Array, Array);

/// One layer's self-attention keys and values so far, `[B, T, d]` (as mlx-whisper keeps them:
/// concatenated, not split into heads).
pub(crate) type SelfKv = Option<(Array, Array)>;

pub(crate) struct TextDecoder {
    token_embedding: Embedding,
    positional_embedding: Array,
    blocks: Vec<Block>,
    ln: LayerNorm,
    /// Additive causal mask `[n_text_ctx, n_text_ctx]`.
    mask: Array,
    n_text_ctx: i32,
}

impl TextDecoder {
    pub fn load(weights: &mut Weights, dims: &Dims) -> Result<Self> {
        let positional_embedding = weights.take("decoder.positional_embedding");
        let n = dims.n_text_ctx;
        let mask: Vec<f32> = (0..n)
            .flat_map(|i| (0..n).map(move |j| if j > i { f32::MIN } else { 0.0 }))
            .collect();
        let mask = as_dtype_of(Array::from_slice(&mask, &[n, n]), &positional_embedding)?;
        Ok(TextDecoder {
            token_embedding: weights.embedding("decoder.token_embedding"),
            positional_embedding,
            blocks: (0..dims.n_text_layer)
                .map(|i| {
                    let p = format!("decoder.blocks.{i}");
                    let attention = |weights: &mut Weights, name: &str| {
                        MultiHeadAttention::load(
                            weights,
                            &format!("{p}.{name}"),
                            dims.n_text_state,
                            dims.n_text_head,
                        )
                    };
                    Block {
                        attn_ln: LayerNorm::load(weights, &format!("{p}.attn_ln")),
                        attn: attention(weights, "attn"),
                        cross_attn_ln: LayerNorm::load(weights, &format!("{p}.cross_attn_ln")),
                        cross_attn: attention(weights, "cross_attn"),
                        mlp: Mlp::load(weights, &p),
                    }
                })
                .collect(),
            ln: LayerNorm::load(weights, "decoder.ln"),
            mask,
            n_text_ctx: n,
        })
    }

    pub fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    /// Every layer's cross-attention keys and values of the audio features `[1, 1500, d]`.
    pub fn cross_keys_values(&self, audio: &Array) -> Result<Vec<CrossKv>> {
        self.blocks
            .iter()
            .map(|b| {
                let (k, v) = b.cross_attn.keys_values(audio)?;
                Ok((b.cross_attn.split_keys(&k)?, b.cross_attn.split_values(&v)?))
            })
            .collect()
    }

    /// Logits `[1, P, n_vocab]` (float32) at `positions` of `tokens` `[1, L]` (all L when
    /// `None`), after what `cache` holds. A prompt's logits are read at two positions only,
    /// and projecting every position onto the vocabulary is the largest matmul of a window's
    /// first step.
    pub fn forward(
        &self,
        tokens: &Array,
        cross: &[CrossKv],
        cache: &mut [SelfKv],
        positions: Option<&[i32]>,
    ) -> Result<Array> {
        let offset = cache[0].as_ref().map_or(0, |(k, _)| k.shape()[1]);
        let length = tokens.shape()[1];
        if offset + length > self.n_text_ctx {
            return Err(EngineError::ContextLengthExceeded {
                prompt: (offset + length) as usize,
                context: self.n_text_ctx as usize,
            });
        }
        let mut x = self
            .token_embedding
            .forward(tokens)?
            .add(self.positional_embedding.index(offset..offset + length))?;
        // With one token after a cache the mask row is all zeros: adding it changes nothing.
        let mask = (length > 1).then(|| self.mask.index((..length, ..length)));
        for ((block, (cross_k, cross_v)), kv) in self.blocks.iter().zip(cross).zip(cache.iter_mut())
        {
            let h = block.attn_ln.forward(&x)?;
            let (k, v) = block.attn.keys_values(&h)?;
            let (k, v) = match kv.take() {
                Some((past_k, past_v)) => {
                    (concatenate(&[past_k, k], 1)?, concatenate(&[past_v, v], 1)?)
                }
                None => (k, v),
            };
            x = x.add(block.attn.attend(&h, &k, &v, mask.as_ref())?)?;
            *kv = Some((k, v));
            let h = block.cross_attn_ln.forward(&x)?;
            x = x.add(block.cross_attn.attend_split(&h, cross_k, cross_v, None)?)?;
            x = block.mlp.residual(&x)?;
        }
        let mut x = self.ln.forward(&x)?;
        if let Some(positions) = positions {
            let rows = Array::from_slice(positions, &[positions.len() as i32]);
            x = x.take_axis(&rows, 1)?;
        }
        let logits = self.token_embedding.as_linear(&x)?;
        Ok(if logits.dtype() == mlx_rs::Dtype::Float32 {
            logits
        } else {
            logits.as_dtype(mlx_rs::Dtype::Float32)?
        })
    }
}
