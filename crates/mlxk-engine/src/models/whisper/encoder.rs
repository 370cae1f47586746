//! Whisper's audio encoder: two convolutions (the second halves the frames), sinusoidal
//! positions, pre-norm blocks with bidirectional attention, a final norm.

use mlx_rs::nn::gelu;
use mlx_rs::ops::{concatenate, conv1d};
use mlx_rs::Array;

use crate::checkpoint::Weights;
use crate::error::{EngineError, Result};

use super::{as_dtype_of, Dims, LayerNorm, Mlp, MultiHeadAttention};

struct Conv1d {
    weight: Array,
    bias: Array,
    stride: i32,
}

impl Conv1d {
    fn load(weights: &mut Weights, prefix: &str, stride: i32) -> Self {
        Conv1d {
            weight: weights.take(&format!("{prefix}.weight")),
            bias: weights.take(&format!("{prefix}.bias")),
            stride,
        }
    }

    /// `x` `[B, L, C_in]` with the weight `[C_out, 3, C_in]`, padding 1.
    fn forward(&self, x: &Array) -> Result<Array> {
        Ok(conv1d(x, &self.weight, self.stride, 1, None, None)?.add(&self.bias)?)
    }
}

struct Block {
    attn_ln: LayerNorm,
    attn: MultiHeadAttention,
    mlp: Mlp,
}

pub(crate) struct AudioEncoder {
    conv1: Conv1d,
    conv2: Conv1d,
    positions: Array,
    blocks: Vec<Block>,
    ln_post: LayerNorm,
    n_mels: i32,
}

/// mlx-whisper's `sinusoids(length, channels)`, with the same float32 MLX operations.
fn sinusoids(length: i32, channels: i32) -> Result<Array> {
    let half = channels / 2;
    let increment = (10000f64).ln() / (half - 1) as f64;
    let inv = Array::arange::<_, f32>(None, half, None)?
        .multiply(Array::from_f32(-increment as f32))?
        .exp()?;
    let time = Array::arange::<_, f32>(None, length, None)?
        .reshape(&[length, 1])?
        .multiply(inv.reshape(&[1, half])?)?;
    Ok(concatenate(&[time.sin()?, time.cos()?], 1)?)
}

impl AudioEncoder {
    pub fn load(weights: &mut Weights, dims: &Dims) -> Result<Self> {
        let conv1 = Conv1d::load(weights, "encoder.conv1", 1);
        let positions = as_dtype_of(
            sinusoids(dims.n_audio_ctx, dims.n_audio_state)?,
            &conv1.bias,
        )?;
        Ok(AudioEncoder {
            conv1,
            conv2: Conv1d::load(weights, "encoder.conv2", 2),
            positions,
            blocks: (0..dims.n_audio_layer)
                .map(|i| {
                    let p = format!("encoder.blocks.{i}");
                    Block {
                        attn_ln: LayerNorm::load(weights, &format!("{p}.attn_ln")),
                        attn: MultiHeadAttention::load(
                            weights,
                            &format!("{p}.attn"),
                            dims.n_audio_state,
                            dims.n_audio_head,
                        ),
                        mlp: Mlp::load(weights, &p),
                    }
                })
                .collect(),
            ln_post: LayerNorm::load(weights, "encoder.ln_post"),
            n_mels: dims.n_mels,
        })
    }

    /// A log-mel window `[1, 3000, n_mels]` to the audio features `[1, 1500, d]`.
    pub fn forward(&self, mel: &Array) -> Result<Array> {
        let mut x = self.embed(mel)?;
        for layer in 0..self.num_layers() {
            x = self.block(layer, &x)?;
        }
        self.finish(&x)
    }

    pub fn num_layers(&self) -> usize {
        self.blocks.len()
    }

    /// The first part of [`AudioEncoder::forward`] (it can be run a part at a time): a
    /// log-mel window `[1, 3000, n_mels]` through the two convolutions, with positions.
    pub fn embed(&self, mel: &Array) -> Result<Array> {
        let shape = mel.shape();
        if shape.len() != 3 || shape[1] != super::WINDOW_FRAMES || shape[2] != self.n_mels {
            return Err(EngineError::Speech(format!(
                "the encoder reads [1, {}, {}] mel windows, not {shape:?}",
                super::WINDOW_FRAMES,
                self.n_mels
            )));
        }
        // In the weights' dtype (float16 on a GPU, as mlx-whisper's fp16 decoding), so the
        // encoder does not run promoted to float32.
        let mel = as_dtype_of(mel.clone(), &self.conv1.weight)?;
        let x = gelu(self.conv1.forward(&mel)?)?;
        let x = gelu(self.conv2.forward(&x)?)?;
        Ok(x.add(&self.positions)?)
    }

    /// The encoder's block `layer` over `x` `[1, 1500, d]`.
    pub fn block(&self, layer: usize, x: &Array) -> Result<Array> {
        let block = &self.blocks[layer];
        let h = block.attn_ln.forward(x)?;
        let (k, v) = block.attn.keys_values(&h)?;
        let x = x.add(block.attn.attend(&h, &k, &v, None)?)?;
        block.mlp.residual(&x)
    }

    /// The last part: the audio features after every block.
    pub fn finish(&self, x: &Array) -> Result<Array> {
        self.ln_post.forward(x)
    }
}
