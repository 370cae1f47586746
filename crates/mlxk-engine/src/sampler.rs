//! Choosing the next token on the device, as mlx-lm's samplers do and in the same order:
//! repetition penalty on the logits, then log-probabilities, top-p, min-p and top-k filters,
//! then a categorical draw at the temperature. With the same seed the draws are mlx-lm's own.

use mlx_rs::ops::indexing::{argmax_axis, IndexOp};
use mlx_rs::ops::{argpartition_axis, select, sort_axis};
use mlx_rs::random::{categorical, RandomState};
use mlx_rs::Array;
use std::path::Path;

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

/// Sampling as a request asks for it. Each value left out comes from the model's own
/// `generation_config.json` (as mlx-lm and Ollama use it), then from one set of defaults shared
/// by `mlxk run` and every API: [`DEFAULT_TEMPERATURE`], [`DEFAULT_TOP_P`], the rest off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SamplingChoice {
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub repetition_penalty: Option<f32>,
    pub seed: Option<u64>,
}

/// The temperature when neither the request nor the model names one.
pub const DEFAULT_TEMPERATURE: f32 = 0.7;
/// The top-p when neither the request nor the model names one.
pub const DEFAULT_TOP_P: f32 = 0.9;

impl SamplingChoice {
    /// Each value of `self`, else of `fallback`.
    pub fn or(self, fallback: SamplingChoice) -> SamplingChoice {
        SamplingChoice {
            temperature: self.temperature.or(fallback.temperature),
            top_p: self.top_p.or(fallback.top_p),
            top_k: self.top_k.or(fallback.top_k),
            min_p: self.min_p.or(fallback.min_p),
            repetition_penalty: self.repetition_penalty.or(fallback.repetition_penalty),
            seed: self.seed.or(fallback.seed),
        }
    }

    /// What the sampler runs with: the values chosen, the shared defaults for the rest.
    pub fn resolve(self) -> SamplingParams {
        let off = SamplingParams::default();
        SamplingParams {
            temperature: self.temperature.unwrap_or(DEFAULT_TEMPERATURE),
            top_p: self.top_p.unwrap_or(DEFAULT_TOP_P),
            top_k: self.top_k.unwrap_or(off.top_k),
            min_p: self.min_p.unwrap_or(off.min_p),
            repetition_penalty: self.repetition_penalty.unwrap_or(off.repetition_penalty),
            seed: self.seed,
            ..off
        }
    }

    /// The model's defaults from `generation_config.json` in `dir`. A value outside its range
    /// (a hostile or broken file) is ignored, never used; `do_sample: false` means greedy, as
    /// in `transformers`.
    pub fn from_generation_config(dir: &Path) -> SamplingChoice {
        let Ok(text) = std::fs::read_to_string(dir.join("generation_config.json")) else {
            return SamplingChoice::default();
        };
        let Ok(config) = serde_json::from_str::<serde_json::Value>(&text) else {
            return SamplingChoice::default();
        };
        let number = |key: &str, valid: fn(f64) -> bool| {
            config
                .get(key)
                .and_then(serde_json::Value::as_f64)
                .filter(|v| v.is_finite() && valid(*v))
                .map(|v| v as f32)
        };
        let greedy = config.get("do_sample") == Some(&serde_json::Value::Bool(false));
        SamplingChoice {
            temperature: if greedy {
                Some(0.0)
            } else {
                number("temperature", |t| (0.0..=2.0).contains(&t))
            },
            top_p: number("top_p", |p| p > 0.0 && p <= 1.0),
            top_k: number("top_k", |k| k >= 0.0 && k <= MAX_TOP_K as f64).map(|k| k as usize),
            min_p: number("min_p", |p| (0.0..1.0).contains(&p)),
            repetition_penalty: number("repetition_penalty", |r| r > 0.0 && r <= 10.0),
            seed: None,
        }
    }
}

/// Larger than any vocabulary; a `top_k` above it keeps every token.
pub const MAX_TOP_K: usize = 1 << 24;

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
        let logprobs = self.logprobs(logits, history)?;
        self.draw(&logprobs)
    }

    /// The distribution a token is drawn from, before temperature and truncation: the
    /// log-softmax of `logits` after the repetition penalty (`[1, vocab]`, lazily).
    pub fn logprobs(&self, logits: &Array, history: Option<&Array>) -> Result<Array> {
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
        Ok(logits.subtract(logits.logsumexp_axis(-1, true)?)?)
    }

    /// Draws a token from [`Sampler::logprobs`]' distribution (`[1]`, lazily).
    pub fn draw(&mut self, logprobs: &Array) -> Result<Array> {
        let p = &self.params;
        let Some(keys) = self.keys.as_mut() else {
            return Ok(argmax_axis(logprobs, -1, None)?);
        };
        let mut logprobs = logprobs.clone();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with_generation_config(json: &str) -> SamplingChoice {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("generation_config.json"), json).unwrap();
        SamplingChoice::from_generation_config(dir.path())
    }

    #[test]
    fn a_request_wins_then_the_model_then_the_shared_defaults() {
        let model = with_generation_config(r#"{"temperature": 0.3, "top_k": 20, "top_p": 0.8}"#);
        let asked = SamplingChoice {
            top_p: Some(0.5),
            seed: Some(7),
            ..SamplingChoice::default()
        };
        let params = asked.or(model).resolve();
        assert_eq!(
            (params.temperature, params.top_p, params.top_k, params.seed),
            (0.3, 0.5, 20, Some(7))
        );
        let nothing = SamplingChoice::default().resolve();
        assert_eq!(
            (nothing.temperature, nothing.top_p, nothing.top_k),
            (DEFAULT_TEMPERATURE, DEFAULT_TOP_P, 0)
        );
        assert_eq!(nothing.repetition_penalty, 1.0);
    }

    #[test]
    fn a_model_that_does_not_sample_is_greedy_and_broken_values_are_ignored() {
        let greedy = with_generation_config(r#"{"do_sample": false, "temperature": 0.9}"#);
        assert_eq!(greedy.temperature, Some(0.0));
        let hostile = with_generation_config(
            r#"{"temperature": -1, "top_p": 7, "top_k": 1e30, "min_p": "x", "repetition_penalty": 0}"#,
        );
        assert_eq!(hostile, SamplingChoice::default());
        assert_eq!(
            with_generation_config("not json"),
            SamplingChoice::default()
        );
        let none = SamplingChoice::from_generation_config(Path::new("/nonexistent"));
        assert_eq!(none, SamplingChoice::default());
    }
}
