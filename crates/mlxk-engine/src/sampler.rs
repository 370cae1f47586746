//! Choosing the next token on the device, as mlx-lm's samplers do and in the same order:
//! repetition penalty on the logits, then log-probabilities, top-p, min-p and top-k filters,
//! then a categorical draw at the temperature. With the same seed the draws are mlx-lm's own.

use mlx_rs::ops::indexing::{argmax_axis, IndexOp};
use mlx_rs::ops::{argpartition_axis, select, sort_axis};
use mlx_rs::random::{categorical, RandomState};
use mlx_rs::Array;
use serde::Serialize;

use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Keep the most likely tokens whose probabilities add up to this (1 = off).
    pub top_p: f32,
    /// Keep this many most likely tokens (0 = off).
    pub top_k: usize,
    /// Drop tokens less likely than this fraction of the most likely one (0 = off).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recently seen tokens by this (1 = off).
    pub repetition_penalty: f32,
    /// How many recent tokens the penalty looks at (mlx-lm's default: 20).
    pub repetition_window: usize,
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            repetition_window: 20,
            seed: None,
        }
    }
}

impl SamplingParams {
    pub fn uses_history(&self) -> bool {
        self.repetition_penalty != 1.0
    }
}

pub struct Sampler {
    params: SamplingParams,
    /// The random key sequence; `None` for greedy decoding.
    keys: Option<RandomState>,
}

fn scalar(v: f32) -> Array {
    Array::from_f32(v)
}

impl Sampler {
    pub fn new(params: &SamplingParams) -> Result<Self> {
        let keys = if params.temperature > 0.0 {
            Some(match params.seed {
                Some(seed) => RandomState::with_seed(seed)?,
                None => RandomState::new()?,
            })
        } else {
            None
        };
        Ok(Sampler {
            params: params.clone(),
            keys,
        })
    }

    /// Picks the next token from `logits` (`[1, vocab]`); `history` holds every token so far
    /// (it may still be queued on the device). Returns `[1]`, lazily.
    pub fn sample(&mut self, logits: &Array, history: Option<&Array>) -> Result<Array> {
        let p = &self.params;
        let mut logits = logits.clone();
        if let (Some(history), true) = (history, p.uses_history()) {
            let n = history.shape()[0];
            let window = history
                .index((n - p.repetition_window as i32).max(0)..n)
                .reshape(&[1, -1])?;
            let selected = logits.take_along_axis(&window, -1)?;
            let penalty = scalar(p.repetition_penalty);
            let adjusted = select(
                selected.lt(scalar(0.0))?,
                selected.multiply(&penalty)?,
                selected.divide(&penalty)?,
            )?;
            logits = logits.put_along_axis(&window, &adjusted, -1)?;
        }
        let logprobs = logits.subtract(logits.logsumexp_axis(-1, true)?)?;
        let Some(keys) = self.keys.as_mut() else {
            return Ok(argmax_axis(&logprobs, -1, None)?);
        };
        let mut logprobs = logprobs;
        if 0.0 < p.top_p && p.top_p < 1.0 {
            logprobs = apply_top_p(&logprobs, p.top_p)?;
        }
        if p.min_p != 0.0 {
            let top = logprobs.max_axis(-1, true)?;
            let threshold = top.add(scalar((p.min_p as f64).ln() as f32))?;
            logprobs = select(
                logprobs.lt(&threshold)?,
                scalar(f32::NEG_INFINITY),
                &logprobs,
            )?;
        }
        let vocab = *logprobs
            .shape()
            .last()
            .expect("logits have a vocabulary axis");
        // Compared as usize: a top_k beyond i32 must not wrap to a negative k for MLX.
        if p.top_k > 0 && p.top_k < vocab.max(0) as usize {
            let k = p.top_k as i32;
            let order = argpartition_axis(logprobs.negative()?, k - 1, -1)?;
            let dropped = order.index((.., k..));
            logprobs = logprobs.put_along_axis(&dropped, scalar(f32::NEG_INFINITY), -1)?;
        }
        let key = keys.next_key()?;
        let scaled = logprobs.multiply(scalar((1.0 / p.temperature as f64) as f32))?;
        Ok(categorical(&scaled, -1, None, &key)?)
    }
}

/// Nucleus filtering exactly as mlx-lm's `apply_top_p`.
fn apply_top_p(logprobs: &Array, top_p: f32) -> Result<Array> {
    let sorted = sort_axis(logprobs, -1)?;
    let probs = sorted.as_type::<f32>()?.exp()?;
    let mass_above = probs.cumsum(-1, true, false)?;
    let total = mass_above.index((.., ..1)).add(probs.index((.., ..1)))?;
    let dropped = mass_above
        .ge(total.multiply(scalar(top_p))?)?
        .sum_axis(-1, true)?;
    let threshold = sorted.take_along_axis(&dropped, -1)?;
    Ok(select(
        logprobs.lt(&threshold)?,
        scalar(f32::NEG_INFINITY),
        logprobs,
    )?)
}
