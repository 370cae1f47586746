//! The token loop: prefill the prompt, then one token at a time until a stop.

use std::rc::Rc;
use std::time::{Duration, Instant};

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::ops::{self, concatenate};
use mlx_rs::transforms::{async_eval, eval};
use mlx_rs::Array;
use serde::Serialize;

use crate::constraint::Constraint;
use crate::error::{EngineError, Result};
use crate::kv_cache::KvCache;
use crate::models::{LanguageModel, Positions};
use crate::prefix_cache::SharedPrefixCache;
use crate::sampler::{Sampler, SamplingParams};

/// A token's log-probability and the likeliest alternatives (ids and log-probabilities, most
/// likely first), before they are given their text.
#[derive(Debug, Clone, PartialEq)]
pub struct RawLogprob {
    pub token: u32,
    pub logprob: f32,
    pub top: Vec<(u32, f32)>,
}

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
    /// Of the prompt tokens, those a prefix cache held (not computed again).
    pub reused_tokens: usize,
    pub prompt_time: Duration,
    pub decode_time: Duration,
}

impl Generation {
    pub fn prompt_tokens_per_second(&self) -> f64 {
        (self.prompt_tokens - self.reused_tokens) as f64 / self.prompt_time.as_secs_f64().max(1e-9)
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

/// A generation advanced one token at a time, so a caller can interleave several (the server
/// does) or stop between tokens. Sampling stays on the device and the steps are pipelined as in
/// mlx-lm: the next step is queued (asynchronous evaluation) before the current token is read.
pub struct Generator {
    model: Rc<dyn LanguageModel>,
    caches: Vec<KvCache>,
    sampler: Sampler,
    /// Every token so far, on the device, for the repetition penalty (as mlx-lm keeps it).
    history: Option<Array>,
    /// The token being computed (queued on the device), not yet read.
    current: Option<Array>,
    /// The distribution `current` is drawn from (lazily; read only when logprobs are asked).
    current_logprobs: Option<Array>,
    /// Report logprobs with this many alternatives per token.
    top_logprobs: Option<usize>,
    /// Logprobs of tokens read but not taken yet: (token, its logprob, alternatives).
    logprobs: Vec<RawLogprob>,
    tokens: Vec<u32>,
    max_tokens: usize,
    eos_ids: Vec<u32>,
    prompt: Vec<u32>,
    /// Prompt tokens whose keys and values came from the prefix cache.
    reused_tokens: usize,
    /// Where the caches go when the generation ends.
    prefixes: Option<SharedPrefixCache>,
    started: Instant,
    prompt_time: Option<Duration>,
    finish_reason: Option<FinishReason>,
    /// A grammar the output must match: each step's logits are masked to the tokens it allows.
    constraint: Option<Constraint>,
    /// The tokens that end a reasoning block the prompt opened: the grammar holds only after
    /// them (`None` once they came, or when there is no such block).
    constraint_after: Option<Vec<u32>>,
}

impl Generator {
    /// Prefills the prompt and queues the first token. `context_length` bounds prompt plus
    /// output: a prompt that does not fit is an error naming both numbers.
    pub fn new(
        model: Rc<dyn LanguageModel>,
        prompt: &[u32],
        max_tokens: usize,
        context_length: usize,
        eos_ids: &[u32],
        sampling: &SamplingParams,
    ) -> Result<Self> {
        let mut generator = Self::prepared(
            model,
            prompt,
            max_tokens,
            context_length,
            eos_ids,
            sampling,
            None,
        )?;
        generator.prefill()?;
        Ok(generator)
    }

    /// A generation held to `constraint`'s grammar (if any), not prefilled yet: a caller may
    /// first [`Generator::reuse_prefixes`], then must [`Generator::prefill`].
    pub fn prepared(
        model: Rc<dyn LanguageModel>,
        prompt: &[u32],
        max_tokens: usize,
        context_length: usize,
        eos_ids: &[u32],
        sampling: &SamplingParams,
        constraint: Option<Constraint>,
    ) -> Result<Self> {
        if prompt.is_empty() {
            return Err(EngineError::Tokenizer("the prompt has no tokens".into()));
        }
        if prompt.len() >= context_length {
            return Err(EngineError::ContextLengthExceeded {
                prompt: prompt.len(),
                context: context_length,
            });
        }
        Ok(Generator {
            caches: Vec::new(),
            model,
            sampler: Sampler::new(sampling)?,
            history: match sampling.uses_history() {
                true => Some(token_array(prompt).reshape(&[-1])?),
                false => None,
            },
            current: None,
            current_logprobs: None,
            top_logprobs: None,
            logprobs: Vec::new(),
            tokens: Vec::new(),
            max_tokens: max_tokens.min(context_length - prompt.len()),
            eos_ids: eos_ids.to_vec(),
            prompt: prompt.to_vec(),
            reused_tokens: 0,
            prefixes: None,
            started: Instant::now(),
            prompt_time: None,
            finish_reason: None,
            constraint,
            constraint_after: None,
        })
    }

    /// Starts from the longest prefix of the prompt `prefixes` holds, and gives the caches
    /// back to it when the generation ends (for the next turn of the conversation).
    pub fn reuse_prefixes(&mut self, prefixes: &SharedPrefixCache) {
        if let Some((caches, reused)) = prefixes.borrow_mut().lookup(&self.prompt) {
            self.caches = caches;
            self.reused_tokens = reused;
        }
        self.prefixes = Some(Rc::clone(prefixes));
    }

    /// Prefills the prompt (what a reused prefix does not hold) and queues the first token.
    pub fn prefill(&mut self) -> Result<()> {
        if self.caches.is_empty() {
            self.caches = self.model.make_caches();
        }
        self.started = Instant::now();
        let prompt = std::mem::take(&mut self.prompt);
        // Prompt chunks fill the cache; the last chunk also yields the first token (its logits
        // for the last position only), which saves a forward pass over mlx-lm's split.
        let chunks: Vec<&[u32]> = prompt[self.reused_tokens..].chunks(PREFILL_STEP).collect();
        let (last, head) = chunks
            .split_last()
            .expect("a prompt token is left to prefill");
        for chunk in head {
            self.model
                .forward_positions(&token_array(chunk), &mut self.caches, Positions::Last)?;
            eval(self.caches.iter().flat_map(KvCache::arrays))?;
        }
        if self.max_tokens == 0 {
            self.finish_reason = Some(FinishReason::Length);
        } else {
            self.current = Some(self.step(&token_array(last))?);
        }
        self.prompt = prompt;
        Ok(())
    }

    /// The next token, or `None` once finished (see [`Generator::finish_reason`]). An EOS token
    /// is returned, and ends the generation.
    pub fn next_token(&mut self) -> Result<Option<u32>> {
        if self.constraint.is_some() {
            return self.next_constrained_token();
        }
        let Some(current) = self.current.take() else {
            return Ok(None);
        };
        let distribution = self.current_logprobs.take();
        // The first token is read before the next step is queued: building and queueing that
        // step would add a decode step's latency to the time to first token. Later tokens are
        // read after it, so that the step overlaps with the caller's work.
        let first = match self.tokens.is_empty() {
            true => Some(read_token(&current)?),
            false => None,
        };
        if first.is_some() {
            self.prompt_time = Some(self.started.elapsed());
        }
        if self.tokens.len() + 1 < self.max_tokens {
            if let Some(h) = self.history.as_mut() {
                *h = concatenate(&[h.clone(), current.as_type::<i32>()?], 0)?;
            }
            self.current = Some(self.step(&current)?);
        }
        let token = match first {
            Some(token) => token,
            None => read_token(&current)?,
        };
        self.prompt_time
            .get_or_insert_with(|| self.started.elapsed());
        self.record_logprobs(token, distribution)?;
        self.tokens.push(token);
        if self.eos_ids.contains(&token) {
            self.finish(FinishReason::Stop);
        } else if self.current.is_none() {
            self.finish(FinishReason::Length);
        }
        Ok(Some(token))
    }

    /// The next token under a grammar: the step after it depends on the token (the grammar's
    /// next mask), so it is read before the next step is queued; the mask is computed on the
    /// CPU while the device computes that step's logits.
    fn next_constrained_token(&mut self) -> Result<Option<u32>> {
        let Some(current) = self.current.take() else {
            return Ok(None);
        };
        let distribution = self.current_logprobs.take();
        let token = read_token(&current)?;
        self.prompt_time
            .get_or_insert_with(|| self.started.elapsed());
        self.record_logprobs(token, distribution)?;
        self.tokens.push(token);
        if self.eos_ids.contains(&token) {
            self.finish(FinishReason::Stop);
            return Ok(Some(token));
        }
        let constraint = self.constraint.as_mut().expect("a constrained generation");
        match &self.constraint_after {
            // Still reasoning: free, until the block's end has been written.
            Some(end) => {
                if self.tokens.ends_with(end) {
                    self.constraint_after = None;
                }
            }
            None => constraint.commit(token)?,
        }
        if constraint.is_finished() {
            self.finish(FinishReason::Stop);
        } else if self.tokens.len() < self.max_tokens {
            if let Some(h) = self.history.as_mut() {
                *h = concatenate(&[h.clone(), current.as_type::<i32>()?], 0)?;
            }
            self.current = Some(self.step(&current)?);
        } else {
            self.finish(FinishReason::Length);
        }
        Ok(Some(token))
    }

    /// Holds the output to `constraint`'s grammar once `reasoning_end` (the tokens closing a
    /// reasoning block the prompt opened) has been generated; the thinking before is free. For
    /// a generation made without a constraint (its first token is already queued, free).
    pub fn hold_after(&mut self, constraint: Constraint, reasoning_end: Vec<u32>) {
        self.constraint = Some(constraint);
        self.constraint_after = (!reasoning_end.is_empty()).then_some(reasoning_end);
    }

    /// Ends the generation early (a stop string, a cancelled request).
    pub fn finish(&mut self, reason: FinishReason) {
        self.drain();
        self.finish_reason.get_or_insert(reason);
    }

    /// Waits for the step queued ahead (the pipelined next token) and drops it. MLX keeps
    /// computing queued work on its own thread: left running, it can outlive the arrays it uses,
    /// and at process exit it crashed inside the BLAS while libraries were being unloaded.
    fn drain(&mut self) {
        if let Some(queued) = self.current.take() {
            let _ = eval([&queued]);
        }
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish_reason
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The summary; a generation that was never finished counts as cancelled.
    pub fn into_generation(mut self) -> Generation {
        self.drain();
        let prompt_time = self.prompt_time.unwrap_or_else(|| self.started.elapsed());
        let finish_reason = self.finish_reason.unwrap_or(FinishReason::Cancelled);
        if let Some(prefixes) = self.prefixes.take() {
            // The caches hold every token fed to the model: the prompt, then the answer but
            // (usually) its last token.
            let held = self
                .caches
                .first()
                .map_or(0, |c| c.offset().max(0) as usize);
            let fed: Vec<u32> = self
                .prompt
                .iter()
                .chain(&self.tokens)
                .copied()
                .take(held)
                .collect();
            if fed.len() == held {
                prefixes
                    .borrow_mut()
                    .store(fed, std::mem::take(&mut self.caches));
            }
        } else if finish_reason == FinishReason::Cancelled {
            // The caches are dropped with the generator; hand their memory back.
            let _ = mlx_rs::memory::clear_cache();
        }
        Generation {
            prompt_tokens: self.prompt.len(),
            reused_tokens: self.reused_tokens,
            decode_time: self.started.elapsed().saturating_sub(prompt_time),
            prompt_time,
            finish_reason,
            tokens: std::mem::take(&mut self.tokens),
        }
    }

    /// One decoding step: the model on `input` (the token just chosen), then the sampler.
    fn step(&mut self, input: &Array) -> Result<Array> {
        let logits = self.model.forward_positions(
            &input.reshape(&[1, -1])?,
            &mut self.caches,
            Positions::Last,
        )?;
        let vocab = *logits
            .shape()
            .last()
            .expect("logits have a vocabulary axis");
        let mut row = logits.reshape(&[1, vocab])?;
        if let Some(constraint) = self
            .constraint
            .as_mut()
            .filter(|_| self.constraint_after.is_none())
        {
            // The device computes the logits while the CPU computes which tokens may follow.
            async_eval([&row])?;
            let allowed = allowed_tokens(constraint.allowed()?, vocab);
            row = ops::select(&allowed, &row, Array::from_f32(f32::NEG_INFINITY))?;
        }
        let logprobs = self.sampler.logprobs(&row, self.history.as_ref())?;
        let token = self.sampler.draw(&logprobs)?;
        async_eval([&token])?;
        // Kept only when asked for: a vocabulary-wide array per step otherwise held for nothing.
        if self.top_logprobs.is_some() {
            self.current_logprobs = Some(logprobs);
        }
        Ok(token)
    }

    /// Keeps the log-probability of each token, with the `top` likeliest alternatives at its
    /// place (read with [`Generator::take_logprobs`]); before [`Generator::prefill`] to cover
    /// the first token.
    pub fn report_logprobs(&mut self, top: usize) {
        self.top_logprobs = Some(top);
    }

    /// The log-probabilities of the tokens returned since the last call.
    pub fn take_logprobs(&mut self) -> Vec<RawLogprob> {
        std::mem::take(&mut self.logprobs)
    }

    fn record_logprobs(&mut self, token: u32, distribution: Option<Array>) -> Result<()> {
        let (Some(top), Some(distribution)) = (self.top_logprobs, distribution) else {
            return Ok(());
        };
        let row = distribution.reshape(&[-1])?;
        let chosen = row.index(token as i32);
        let vocab = row.shape()[0];
        let top = top.min(vocab.max(0) as usize) as i32;
        let alternatives = if top > 0 {
            let order = ops::argpartition_axis(&row.negative()?, top - 1, -1)?.index(..top);
            let values = row.take_axis(&order, 0)?;
            eval([&chosen, &order, &values])?;
            let ids = order.as_type::<u32>()?;
            let mut pairs: Vec<(u32, f32)> = ids
                .as_slice::<u32>()
                .iter()
                .copied()
                .zip(values.as_type::<f32>()?.as_slice::<f32>().iter().copied())
                .collect();
            // A grammar's mask leaves tokens at minus infinity: not alternatives (and JSON has
            // no number for them).
            pairs.retain(|(_, logprob)| logprob.is_finite());
            pairs.sort_by(|a, b| b.1.total_cmp(&a.1));
            pairs
        } else {
            eval([&chosen])?;
            Vec::new()
        };
        let logprob = chosen.as_type::<f32>()?.item_exact::<f32>();
        self.logprobs.push(RawLogprob {
            token,
            logprob,
            top: alternatives,
        });
        Ok(())
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.drain();
    }
}

/// Generates up to `max_tokens` after `prompt`, calling `on_token` with each new token (EOS
/// included, which ends the generation).
pub fn generate(
    model: &Rc<dyn LanguageModel>,
    prompt: &[u32],
    max_tokens: usize,
    context_length: usize,
    eos_ids: &[u32],
    sampling: &SamplingParams,
    mut on_token: impl FnMut(u32) -> Control,
) -> Result<Generation> {
    let mut generator = Generator::new(
        Rc::clone(model),
        prompt,
        max_tokens,
        context_length,
        eos_ids,
        sampling,
    )?;
    while let Some(token) = generator.next_token()? {
        match on_token(token) {
            Control::Continue => {}
            Control::Finish => generator.finish(FinishReason::Stop),
            Control::Cancel => generator.finish(FinishReason::Cancelled),
        }
    }
    Ok(generator.into_generation())
}

/// A grammar's bitmask (bit `i % 32` of word `i / 32` for token `i`) as a `[1, vocab]` boolean
/// array; tokens past the mask are not allowed.
fn allowed_tokens(mask: &[u32], vocab: i32) -> Array {
    let allowed: Vec<bool> = (0..vocab as usize)
        .map(|i| {
            mask.get(i / 32)
                .is_some_and(|word| word >> (i % 32) & 1 == 1)
        })
        .collect();
    Array::from_slice(&allowed, &[1, vocab])
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
