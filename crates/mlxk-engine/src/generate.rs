//! The token loop: prefill the prompt, then one token at a time until a stop.

use std::time::{Duration, Instant};

use mlx_rs::ops::indexing::argmax_axis;
use mlx_rs::transforms::{async_eval, eval};
use mlx_rs::Array;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::kv_cache::KvCache;
use crate::models::LanguageModel;

/// Prompt tokens processed per forward pass during prefill (mlx-lm's default).
const PREFILL_STEP: usize = 2048;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// Keep the smallest set of tokens whose probability reaches this (1 = off).
    pub top_p: f32,
    /// Keep this many most likely tokens (0 = off).
    pub top_k: usize,
    /// Drop tokens less likely than this fraction of the most likely one (0 = off).
    pub min_p: f32,
    /// Divide the logits of recently seen tokens by this (1 = off).
    pub repetition_penalty: f32,
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
            repetition_window: 64,
            seed: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
    /// The caller stopped it.
    Cancelled,
}

#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub tokens: Vec<u32>,
    pub finish_reason: FinishReason,
    pub prompt_tokens: usize,
    pub prompt_time: Duration,
    pub decode_time: Duration,
}

impl Generation {
    pub fn prompt_tokens_per_second(&self) -> f64 {
        self.prompt_tokens as f64 / self.prompt_time.as_secs_f64().max(1e-9)
    }

    pub fn decode_tokens_per_second(&self) -> f64 {
        self.tokens.len().saturating_sub(1) as f64 / self.decode_time.as_secs_f64().max(1e-9)
    }
}

/// What the caller wants after each token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// The output is complete (a stop string was produced): finish with `stop`.
    Finish,
    /// The caller gave up (a disconnect, Ctrl-C): finish with `cancelled`.
    Cancel,
}

/// Generates up to `max_tokens` after `prompt`, calling `on_token` with each new token (EOS
/// included, which ends the generation). `context_length` bounds prompt plus output.
pub fn generate(
    model: &dyn LanguageModel,
    prompt: &[u32],
    max_tokens: usize,
    context_length: usize,
    eos_ids: &[u32],
    sampling: &SamplingParams,
    mut on_token: impl FnMut(u32) -> Control,
) -> Result<Generation> {
    if prompt.is_empty() {
        return Err(EngineError::Tokenizer("the prompt has no tokens".into()));
    }
    if prompt.len() >= context_length {
        return Err(EngineError::ContextLengthExceeded {
            prompt: prompt.len(),
            context: context_length,
        });
    }
    let max_tokens = max_tokens.min(context_length - prompt.len());
    let mut caches = KvCache::new_per_layer(model.num_layers());
    let mut rng = match sampling.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_os_rng(),
    };

    // As mlx-lm: all but the last prompt token fill the cache; the last one starts decoding.
    let started = Instant::now();
    let (head, last) = prompt.split_at(prompt.len() - 1);
    for chunk in head.chunks(PREFILL_STEP) {
        model.forward(&token_array(chunk), &mut caches)?;
        eval(caches.iter().flat_map(KvCache::arrays))?;
    }
    let mut history: Vec<u32> = prompt.to_vec();
    let mut tokens = Vec::new();
    let mut prompt_time = None;
    let mut finish_reason = FinishReason::Length;
    // Greedy decoding stays on the device and is pipelined as in mlx-lm: the next step is
    // queued (asynchronous evaluation) before the current token is read back.
    let on_device = sampling.temperature <= 0.0 && sampling.repetition_penalty == 1.0;
    let mut step = |input: &Array, history: &[u32]| -> Result<Array> {
        let logits = model.forward(&input.reshape(&[1, 1])?, &mut caches)?;
        let row = logits.reshape(&[-1])?;
        if on_device {
            let token = argmax_axis(&row, -1, None)?;
            async_eval([&token])?;
            Ok(token)
        } else {
            let token = sample(&row, history, sampling, &mut rng)?;
            Ok(Array::from_slice(&[token as i32], &[1]))
        }
    };
    let mut current = step(&token_array(last), &history)?;
    while tokens.len() < max_tokens {
        let upcoming = if on_device && tokens.len() + 1 < max_tokens {
            Some(step(&current, &history)?)
        } else {
            None
        };
        let token = read_token(&current)?;
        prompt_time.get_or_insert_with(|| started.elapsed());
        tokens.push(token);
        history.push(token);
        if eos_ids.contains(&token) {
            finish_reason = FinishReason::Stop;
            on_token(token);
            break;
        }
        match on_token(token) {
            Control::Continue => {}
            Control::Finish => {
                finish_reason = FinishReason::Stop;
                break;
            }
            Control::Cancel => {
                finish_reason = FinishReason::Cancelled;
                break;
            }
        }
        if tokens.len() >= max_tokens {
            break;
        }
        current = match upcoming {
            Some(next) => next,
            None => step(&Array::from_slice(&[token as i32], &[1]), &history)?,
        };
    }
    let prompt_time = prompt_time.unwrap_or_else(|| started.elapsed());
    if finish_reason == FinishReason::Cancelled {
        // The caches are dropped here; hand their memory back rather than keep it pooled.
        drop(caches);
        mlx_rs::memory::clear_cache()?;
    }
    Ok(Generation {
        prompt_tokens: prompt.len(),
        decode_time: started.elapsed().saturating_sub(prompt_time),
        prompt_time,
        finish_reason,
        tokens,
    })
}

/// Reads a one-element token array back to the host (waiting for it if it is still queued).
fn read_token(token: &Array) -> Result<u32> {
    eval([token])?;
    Ok(match token.dtype() {
        mlx_rs::Dtype::Uint32 => token.item_exact::<u32>(),
        _ => token.as_type::<i32>()?.item_exact::<i32>() as u32,
    })
}

fn token_array(tokens: &[u32]) -> Array {
    let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
    Array::from_slice(&ids, &[1, ids.len() as i32])
}

/// Picks the next token from one row of logits.
fn sample(
    logits: &Array,
    history: &[u32],
    params: &SamplingParams,
    rng: &mut StdRng,
) -> Result<u32> {
    let plain = params.repetition_penalty == 1.0 && params.temperature <= 0.0;
    if plain {
        let index = argmax_axis(logits, -1, None)?;
        eval([&index])?;
        return Ok(index.item_exact::<u32>());
    }
    let logits = logits.as_type::<f32>()?;
    let mut values: Vec<f32> = logits.as_slice::<f32>().to_vec();
    if params.repetition_penalty != 1.0 {
        let window = &history[history.len().saturating_sub(params.repetition_window)..];
        for &token in window {
            if let Some(v) = values.get_mut(token as usize) {
                *v = if *v > 0.0 {
                    *v / params.repetition_penalty
                } else {
                    *v * params.repetition_penalty
                };
            }
        }
    }
    if params.temperature <= 0.0 {
        return Ok(argmax(&values) as u32);
    }
    Ok(sample_filtered(&values, params, rng) as u32)
}

fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Softmax at `temperature`, then top-k, min-p and top-p filtering, then a draw.
fn sample_filtered(logits: &[f32], params: &SamplingParams, rng: &mut StdRng) -> usize {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let mut candidates: Vec<(usize, f32)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i, ((l - max) / params.temperature).exp()))
        .collect();
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1));
    if params.top_k > 0 {
        candidates.truncate(params.top_k);
    }
    if params.min_p > 0.0 {
        let threshold = candidates[0].1 * params.min_p;
        candidates.retain(|c| c.1 >= threshold);
    }
    let total: f32 = candidates.iter().map(|c| c.1).sum();
    if params.top_p < 1.0 {
        let mut cumulative = 0.0;
        let keep = candidates
            .iter()
            .position(|c| {
                cumulative += c.1 / total;
                cumulative >= params.top_p
            })
            .map_or(candidates.len(), |i| i + 1);
        candidates.truncate(keep);
    }
    let total: f32 = candidates.iter().map(|c| c.1).sum();
    let mut draw = rng.random::<f32>() * total;
    for (index, weight) in &candidates {
        if draw < *weight {
            return *index;
        }
        draw -= weight;
    }
    candidates.last().map_or(0, |c| c.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_keep_the_likely_tokens() {
        let logits = [0.0, 5.0, 4.9, -3.0, 1.0];
        let mut rng = StdRng::seed_from_u64(7);
        let params = SamplingParams {
            temperature: 1.0,
            top_k: 2,
            ..Default::default()
        };
        for _ in 0..50 {
            assert!(matches!(sample_filtered(&logits, &params, &mut rng), 1 | 2));
        }
        let params = SamplingParams {
            temperature: 1.0,
            top_p: 0.3,
            ..Default::default()
        };
        for _ in 0..20 {
            assert_eq!(sample_filtered(&logits, &params, &mut rng), 1);
        }
        let params = SamplingParams {
            temperature: 1.0,
            min_p: 0.5,
            ..Default::default()
        };
        for _ in 0..50 {
            assert!(matches!(sample_filtered(&logits, &params, &mut rng), 1 | 2));
        }
    }

    #[test]
    fn a_seed_repeats_the_draws() {
        let logits: Vec<f32> = (0..100).map(|i| (i % 7) as f32).collect();
        let params = SamplingParams {
            temperature: 0.8,
            seed: Some(3),
            ..Default::default()
        };
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (0..10)
                .map(|_| sample_filtered(&logits, &params, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
    }
}
