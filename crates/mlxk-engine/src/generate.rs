//! The token loop: prefill the prompt, then one token at a time until a stop.
//!
//! A generation's own state is a [`Sequence`]; the model, the keys and values and the tokens
//! queued on the device belong to a [`Batch`], which decodes every sequence it holds in one
//! forward pass. [`Generator`] is one sequence in a batch of its own, driven token by token.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::ops::{self, concatenate};
use mlx_rs::transforms::{async_eval, eval};
use mlx_rs::Array;
use serde::Serialize;

use crate::batch::{Batch, Poll, SeqId, SharedBatch};
use crate::constraint::Constraint;
use crate::error::{EngineError, Result};
use crate::kv_cache::KvCache;
use crate::models::LanguageModel;
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

/// A sequence's own caches while its prompt is prefilled, before it becomes a row of the batch.
pub(crate) struct Prefill {
    pub(crate) caches: Vec<KvCache>,
    /// Prompt tokens whose keys and values the caches hold.
    pub(crate) done: usize,
}

/// One generation's state, apart from the model and the batch's caches: its prompt, sampler,
/// grammar, stop conditions, the tokens so far and those read but not yet taken.
pub struct Sequence {
    pub(crate) prompt: Vec<u32>,
    sampler: Sampler,
    /// Greedy with nothing that changes the logits: the batch may take one argmax for all such
    /// rows.
    greedy: bool,
    /// Every token so far, on the device, for the repetition penalty (as mlx-lm keeps it).
    history: Option<Array>,
    pub(crate) tokens: Vec<u32>,
    /// Tokens read from the device and not yet polled, with their log-probabilities if asked.
    out: VecDeque<(u32, Option<RawLogprob>)>,
    /// Log-probabilities of the tokens polled, not yet taken.
    logprobs: Vec<RawLogprob>,
    /// The distribution the queued token was drawn from (kept only when logprobs are asked).
    distribution: Option<Array>,
    /// Report logprobs with this many alternatives per token.
    top_logprobs: Option<usize>,
    pub(crate) max_tokens: usize,
    eos_ids: Vec<u32>,
    /// Prompt tokens whose keys and values came from the prefix cache.
    pub(crate) reused_tokens: usize,
    /// Where the caches go when the generation ends.
    pub(crate) prefixes: Option<SharedPrefixCache>,
    /// A grammar the output must match: each step's logits are masked to the tokens it allows.
    constraint: Option<Constraint>,
    /// The tokens that end a reasoning block the prompt opened: the grammar holds only after
    /// them (`None` once they came, or when there is no such block).
    constraint_after: Option<Vec<u32>>,
    finish_reason: Option<FinishReason>,
    /// An error of this sequence alone (its grammar), surfaced by the next poll.
    failed: Option<EngineError>,
    pub(crate) started: Instant,
    prompt_time: Option<Duration>,
    /// Its own caches while it joins (from the prefix cache, or fresh at the first chunk).
    pub(crate) prefill: Option<Prefill>,
    /// Its caches once it left the batch, for the prefix cache.
    pub(crate) kept: Option<Vec<KvCache>>,
}

impl Sequence {
    /// A generation of at most `max_tokens` after `prompt`, held to `constraint`'s grammar (if
    /// any). `context_length` bounds prompt plus output: a prompt that does not fit is an error
    /// naming both numbers. An unseeded sampler gets a random seed now, so that every draw is
    /// the row's own, whatever else shares its batch.
    pub fn new(
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
        let mut params = sampling.clone();
        let sampled = params.temperature > 0.0;
        if sampled {
            params.seed.get_or_insert_with(random_seed);
        }
        Ok(Sequence {
            prompt: prompt.to_vec(),
            sampler: Sampler::new(&params)?,
            greedy: !sampled && !params.uses_history(),
            history: match params.uses_history() {
                true => Some(token_array(prompt).reshape(&[-1])?),
                false => None,
            },
            tokens: Vec::new(),
            out: VecDeque::new(),
            logprobs: Vec::new(),
            distribution: None,
            top_logprobs: None,
            max_tokens: max_tokens.min(context_length - prompt.len()),
            eos_ids: eos_ids.to_vec(),
            reused_tokens: 0,
            prefixes: None,
            constraint,
            constraint_after: None,
            finish_reason: None,
            failed: None,
            started: Instant::now(),
            prompt_time: None,
            prefill: None,
            kept: None,
        })
    }

    /// Starts from the longest prefix of the prompt `prefixes` holds, and gives the caches
    /// back to it when the generation ends (for the next turn of the conversation).
    pub fn reuse_prefixes(&mut self, prefixes: &SharedPrefixCache) {
        if let Some((caches, reused)) = prefixes.borrow_mut().lookup(&self.prompt) {
            self.prefill = Some(Prefill {
                caches,
                done: reused,
            });
            self.reused_tokens = reused;
        }
        self.prefixes = Some(Rc::clone(prefixes));
    }

    /// Holds the output to `constraint`'s grammar once `reasoning_end` (the tokens closing a
    /// reasoning block the prompt opened) has been generated; the thinking before is free.
    pub fn hold_after(&mut self, constraint: Constraint, reasoning_end: Vec<u32>) {
        self.constraint = Some(constraint);
        self.constraint_after = (!reasoning_end.is_empty()).then_some(reasoning_end);
    }

    /// Keeps the log-probability of each token, with the `top` likeliest alternatives at its
    /// place; before its first token is sampled to cover that one.
    pub fn report_logprobs(&mut self, top: usize) {
        self.top_logprobs = Some(top);
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finish_reason
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.finish_reason.is_some()
    }

    /// The token queued for it will be its last (`max_tokens`): it need not be fed.
    pub(crate) fn queued_is_last(&self) -> bool {
        self.tokens.len() + 1 >= self.max_tokens
    }

    /// Sampled by a plain argmax of its log-probabilities right now.
    pub(crate) fn plain_greedy(&self) -> bool {
        self.greedy && self.top_logprobs.is_none() && !self.grammar_holds()
    }

    fn grammar_holds(&self) -> bool {
        self.constraint.is_some() && self.constraint_after.is_none()
    }

    pub(crate) fn finish(&mut self, reason: FinishReason) {
        self.finish_reason.get_or_insert(reason);
    }

    /// Ends it for an error of its own (the batch goes on): the next poll returns the error.
    pub(crate) fn fail(&mut self, error: EngineError) {
        self.failed.get_or_insert(error);
        self.finish(FinishReason::Stop);
    }

    /// Ends it at the caller's request: tokens read but not polled are dropped, as if never
    /// generated.
    pub(crate) fn finish_early(&mut self, reason: FinishReason) {
        let unread = self.out.len();
        self.tokens
            .truncate(self.tokens.len().saturating_sub(unread));
        self.out.clear();
        self.finish(reason);
    }

    pub(crate) fn poll(&mut self) -> Result<Poll> {
        if let Some((token, logprob)) = self.out.pop_front() {
            self.logprobs.extend(logprob);
            return Ok(Poll::Token(token));
        }
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        Ok(match self.is_finished() {
            true => Poll::Done,
            false => Poll::Pending,
        })
    }

    /// The log-probabilities of the tokens polled since the last call.
    pub(crate) fn take_logprobs(&mut self) -> Vec<RawLogprob> {
        std::mem::take(&mut self.logprobs)
    }

    /// Takes the token read for it: the log-probability, EOS, the grammar (or the end of the
    /// reasoning it waits for), `max_tokens`, and the history the next draw penalises.
    pub(crate) fn accept(&mut self, token: u32) -> Result<()> {
        self.prompt_time
            .get_or_insert_with(|| self.started.elapsed());
        let logprob = self.record_logprobs(token)?;
        self.tokens.push(token);
        self.out.push_back((token, logprob));
        if self.eos_ids.contains(&token) {
            self.finish(FinishReason::Stop);
            return Ok(());
        }
        if let Some(constraint) = self.constraint.as_mut() {
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
                return Ok(());
            }
        }
        if self.tokens.len() >= self.max_tokens {
            self.finish(FinishReason::Length);
        } else if let Some(h) = self.history.as_mut() {
            *h = concatenate(&[h.clone(), Array::from_slice(&[token as i32], &[1])], 0)?;
        }
        Ok(())
    }

    /// Draws its next token from its row of logits (`[1, vocab]`): masked to what its grammar
    /// allows, then its own sampler (penalty over its own history, its own seed). Returns `[1]`,
    /// lazily.
    pub(crate) fn sample(&mut self, logits: &Array) -> Result<Array> {
        let vocab = *logits
            .shape()
            .last()
            .expect("logits have a vocabulary axis");
        let mut row = logits.clone();
        if self.grammar_holds() {
            if let Some(constraint) = self.constraint.as_mut() {
                // The device computes the logits while the CPU computes which tokens may
                // follow.
                async_eval([&row])?;
                let allowed = allowed_tokens(constraint.allowed()?, vocab);
                row = ops::select(&allowed, &row, Array::from_f32(f32::NEG_INFINITY))?;
            }
        }
        let logprobs = self.sampler.logprobs(&row, self.history.as_ref())?;
        let token = self.sampler.draw(&logprobs)?;
        // Kept only when asked for: a vocabulary-wide array per step otherwise held for nothing.
        if self.top_logprobs.is_some() {
            self.distribution = Some(logprobs);
        }
        Ok(token)
    }

    /// The summary; a generation that was never finished counts as cancelled.
    pub(crate) fn summary(&mut self) -> Generation {
        let prompt_time = self.prompt_time.unwrap_or_else(|| self.started.elapsed());
        Generation {
            prompt_tokens: self.prompt.len(),
            reused_tokens: self.reused_tokens,
            decode_time: self.started.elapsed().saturating_sub(prompt_time),
            prompt_time,
            finish_reason: self.finish_reason.unwrap_or(FinishReason::Cancelled),
            tokens: std::mem::take(&mut self.tokens),
        }
    }

    fn record_logprobs(&mut self, token: u32) -> Result<Option<RawLogprob>> {
        let (Some(top), Some(distribution)) = (self.top_logprobs, self.distribution.take()) else {
            return Ok(None);
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
        Ok(Some(RawLogprob {
            token,
            logprob,
            top: alternatives,
        }))
    }
}

/// A seed for an unseeded sampler: fresh for every generation, as an unseeded draw was.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

/// A generation advanced one token at a time, so a caller can interleave several or stop
/// between tokens: one sequence of a [`Batch`], by default a batch of its own that it steps
/// itself. Sampling stays on the device and the steps are pipelined as in mlx-lm: the next
/// step is queued (asynchronous evaluation) before the current token is read.
pub struct Generator {
    batch: SharedBatch,
    id: SeqId,
    /// The batch is its own: a token not there yet is computed by stepping it.
    drives: bool,
    /// Left the batch ([`Generator::into_generation`]).
    left: bool,
    /// The tokens returned so far.
    tokens: Vec<u32>,
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
        let sequence = Sequence::new(
            prompt,
            max_tokens,
            context_length,
            eos_ids,
            sampling,
            constraint,
        )?;
        Ok(Self::solo(model, sequence))
    }

    /// `sequence` in a batch of its own, not prefilled yet.
    pub fn solo(model: Rc<dyn LanguageModel>, sequence: Sequence) -> Self {
        let batch = Rc::new(RefCell::new(Batch::new(model)));
        let mut generator = Self::joining(&batch, sequence);
        generator.drives = true;
        generator
    }

    /// `sequence` joined to a shared batch, which its owner steps: the generation only polls
    /// it (its prompt is prefilled by the batch's steps).
    pub fn joining(batch: &SharedBatch, sequence: Sequence) -> Self {
        let id = batch.borrow_mut().join(sequence);
        Generator {
            batch: Rc::clone(batch),
            id,
            drives: false,
            left: false,
            tokens: Vec::new(),
        }
    }

    fn with_sequence(&self, change: impl FnOnce(&mut Sequence)) {
        if let Some(sequence) = self.batch.borrow_mut().sequence_mut(self.id) {
            change(sequence);
        }
    }

    /// Starts from the longest prefix of the prompt `prefixes` holds, and gives the caches
    /// back to it when the generation ends (for the next turn of the conversation).
    pub fn reuse_prefixes(&mut self, prefixes: &SharedPrefixCache) {
        self.with_sequence(|s| s.reuse_prefixes(prefixes));
    }

    /// Prefills the prompt (what a reused prefix does not hold) and queues the first token: the
    /// batch is stepped until the sequence is prefilled.
    pub fn prefill(&mut self) -> Result<()> {
        let mut batch = self.batch.borrow_mut();
        while batch.is_joining(self.id) {
            batch.step()?;
        }
        Ok(())
    }

    /// Whether it steps its own batch (else the batch's owner does).
    pub fn drives(&self) -> bool {
        self.drives
    }

    /// One step of its batch (every sequence in it advances).
    pub fn step(&mut self) -> Result<()> {
        self.batch.borrow_mut().step()
    }

    /// The next token if one was read, without stepping the batch.
    pub fn poll(&mut self) -> Result<Poll> {
        let poll = self.batch.borrow_mut().poll(self.id)?;
        if let Poll::Token(token) = poll {
            self.tokens.push(token);
        }
        Ok(poll)
    }

    /// The next token, or `None` once finished (see [`Generator::finish_reason`]). An EOS token
    /// is returned, and ends the generation. Steps the batch until it has one.
    pub fn next_token(&mut self) -> Result<Option<u32>> {
        loop {
            match self.poll()? {
                Poll::Token(token) => return Ok(Some(token)),
                Poll::Done => return Ok(None),
                Poll::Pending => self.step()?,
            }
        }
    }

    /// Holds the output to `constraint`'s grammar once `reasoning_end` (the tokens closing a
    /// reasoning block the prompt opened) has been generated; the thinking before is free. For
    /// a generation made without a constraint (its first token is already queued, free).
    pub fn hold_after(&mut self, constraint: Constraint, reasoning_end: Vec<u32>) {
        self.with_sequence(|s| s.hold_after(constraint, reasoning_end));
    }

    /// Ends the generation early (a stop string, a cancelled request); it leaves the batch's
    /// rows at the next step.
    pub fn finish(&mut self, reason: FinishReason) {
        self.batch.borrow_mut().finish(self.id, reason);
    }

    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.batch.borrow().finish_reason(self.id)
    }

    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The summary; a generation that was never finished counts as cancelled. Its caches go to
    /// the prefix cache when it reuses one.
    pub fn into_generation(mut self) -> Generation {
        self.left = true;
        self.batch.borrow_mut().leave(self.id)
    }

    /// Keeps the log-probability of each token, with the `top` likeliest alternatives at its
    /// place (read with [`Generator::take_logprobs`]); before [`Generator::prefill`] to cover
    /// the first token.
    pub fn report_logprobs(&mut self, top: usize) {
        self.with_sequence(|s| s.report_logprobs(top));
    }

    /// The log-probabilities of the tokens returned since the last call.
    pub fn take_logprobs(&mut self) -> Vec<RawLogprob> {
        self.batch.borrow_mut().take_logprobs(self.id)
    }
}

impl Drop for Generator {
    /// Leaves the batch (never panics: a batch borrowed by an unwinding step is left alone).
    fn drop(&mut self) {
        if self.left {
            return;
        }
        if let Ok(mut batch) = self.batch.try_borrow_mut() {
            batch.finish(self.id, FinishReason::Cancelled);
            let _ = batch.leave(self.id);
        }
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

pub(crate) fn token_array(tokens: &[u32]) -> Array {
    let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
    Array::from_slice(&ids, &[1, ids.len() as i32])
}
