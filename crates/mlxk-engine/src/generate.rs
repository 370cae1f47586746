//! The token loop: prefill the prompt, then one token at a time until a stop.

use std::time::{Duration, Instant};

use mlx_rs::ops::concatenate;
use mlx_rs::transforms::{async_eval, eval};
use mlx_rs::Array;
use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::kv_cache::KvCache;
use crate::models::LanguageModel;
use crate::sampler::{Sampler, SamplingParams};

/// Prompt tokens processed per forward pass during prefill (mlx-lm's default).
const PREFILL_STEP: usize = 2048;

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
    let mut caches = model.make_caches();
    let mut sampler = Sampler::new(sampling)?;
    // Every token so far, on the device, for the repetition penalty (as mlx-lm keeps it).
    let mut history = match sampling.uses_history() {
        true => Some(token_array(prompt).reshape(&[-1])?),
        false => None,
    };

    // As mlx-lm: all but the last prompt token fill the cache; the last one starts decoding.
    let started = Instant::now();
    let (head, last) = prompt.split_at(prompt.len() - 1);
    for chunk in head.chunks(PREFILL_STEP) {
        model.forward(&token_array(chunk), &mut caches)?;
        eval(caches.iter().flat_map(KvCache::arrays))?;
    }
    let mut tokens = Vec::new();
    let mut prompt_time = None;
    let mut finish_reason = FinishReason::Length;
    // Sampling stays on the device and the loop is pipelined as in mlx-lm: the next step is
    // queued (asynchronous evaluation) before the current token is read back.
    let mut current = next_token(
        model,
        &mut caches,
        &mut sampler,
        &token_array(last),
        history.as_ref(),
    )?;
    while tokens.len() < max_tokens {
        let upcoming = if tokens.len() + 1 < max_tokens {
            if let Some(h) = history.as_mut() {
                *h = concatenate(&[h.clone(), current.as_type::<i32>()?], 0)?;
            }
            Some(next_token(
                model,
                &mut caches,
                &mut sampler,
                &current,
                history.as_ref(),
            )?)
        } else {
            None
        };
        let token = read_token(&current)?;
        prompt_time.get_or_insert_with(|| started.elapsed());
        tokens.push(token);
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
        match upcoming {
            Some(next) => current = next,
            None => break,
        }
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

/// One decoding step: the model on `input` (the token just chosen), then the sampler.
fn next_token(
    model: &dyn LanguageModel,
    caches: &mut [KvCache],
    sampler: &mut Sampler,
    input: &Array,
    history: Option<&Array>,
) -> Result<Array> {
    let logits = model.forward(&input.reshape(&[1, -1])?, caches)?;
    let vocab = *logits
        .shape()
        .last()
        .expect("logits have a vocabulary axis");
    let last = logits.shape()[1] - 1;
    let row = logits
        .reshape(&[-1, vocab])?
        .take_axis(Array::from_slice(&[last], &[1]), 0)?;
    let token = sampler.sample(&row, history)?;
    async_eval([&token])?;
    Ok(token)
}
