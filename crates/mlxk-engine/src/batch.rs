//! Several generations decoded together: one forward pass advances every row, and sequences
//! join and leave between steps (continuous batching, as mlx-lm's `BatchGenerator`).
//!
//! A sequence that joins is prefilled into one-row caches of its own, in chunks sized so that
//! the rows already decoding keep their pace ([`PrefillBudget`]). Sequences waiting together
//! move on together: one forward pass takes a chunk of each (their caches stacked as rows for
//! it, then split again), and that pass is the rows' own decode pass
//! ([`LanguageModel::forward_groups`]: the projections read each weight once for both). A
//! prompt's last chunk yields its first token, and its caches become a row of the batch's
//! (`KvCache::append_row`). Every row keeps its own sampler, seed, grammar and stop
//! conditions, so a sequence draws the same tokens whatever else shares its batch.
//!
//! After every [`Batch::step`], each row's caches hold all its tokens before the one queued for
//! it (sampled on the device, not yet read), and that token is in `next`.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mlx_rs::ops::concatenate;
use mlx_rs::ops::indexing::{argmax_axis, IndexOp};
use mlx_rs::transforms::{async_eval, eval};
use mlx_rs::{Array, Dtype};

use crate::error::{EngineError, Result};
use crate::generate::{token_array, FinishReason, Generation, Prefill, RawLogprob, Sequence};
use crate::kv_cache::KvCache;
use crate::models::{Group, LanguageModel, Positions};

/// Prompt tokens processed per forward pass when nothing else is decoding (mlx-lm's default).
pub const PREFILL_STEP: usize = 2048;

/// A batch shared by the generations in it and the loop that steps it, on one thread.
pub type SharedBatch = Rc<RefCell<Batch>>;

/// A sequence's place in its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SeqId(u64);

/// What a sequence has for its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Its next token.
    Token(u32),
    /// Nothing yet: the batch has to step.
    Pending,
    /// Finished, and every token taken.
    Done,
}

/// What one step does, decided before any of it runs (so that a leader can send it to
/// followers that only run it, for tensor parallelism): the rows that leave before the forward
/// pass, and the prompt chunks prefilled (the first wave in the rows' pass when rows decode).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPlan {
    pub drop: Vec<SeqId>,
    /// One forward pass each, in order: a chunk of each of its sequences' prompts.
    pub prefill: Vec<Vec<(SeqId, Range<usize>)>>,
}

/// The token in the padding after a shorter prompt's chunk (no query of the prompt sees it).
const PAD_TOKEN: i32 = 0;

/// Prompt chunks ready for one forward pass: their tokens over their caches (one sequence's
/// own, or several stacked as rows, each chunk padded on the right to the longest).
struct Wave {
    chunks: Vec<(SeqId, Range<usize>)>,
    tokens: Array,
    caches: Vec<KvCache>,
    positions: Positions,
    /// Per row, the padding after its chunk, when there are several.
    padding: Option<Vec<i32>>,
}

pub struct Batch {
    model: Rc<dyn LanguageModel>,
    /// Per layer, one row per entry of `rows`; empty when there are no rows.
    caches: Vec<KvCache>,
    rows: Vec<SeqId>,
    /// `[rows]` u32: each row's token sampled, not yet read, not yet fed.
    next: Option<Array>,
    /// The last tokens of sequences that are not fed again (`max_tokens`), read at the next
    /// step: `[1]` each.
    finals: Vec<(SeqId, Array)>,
    sequences: HashMap<SeqId, Sequence>,
    /// Sequences waiting for (or in the middle of) their prefill, first come first.
    joining: VecDeque<SeqId>,
    budget: PrefillBudget,
    next_id: u64,
    /// An error met where it could not be returned (a sequence leaving): the next step's.
    fault: Option<EngineError>,
}

impl Batch {
    pub fn new(model: Rc<dyn LanguageModel>) -> Self {
        Batch {
            model,
            caches: Vec::new(),
            rows: Vec::new(),
            next: None,
            finals: Vec::new(),
            sequences: HashMap::new(),
            joining: VecDeque::new(),
            budget: PrefillBudget::default(),
            next_id: 0,
            fault: None,
        }
    }

    /// Prefills in chunks of `tokens`, whatever the timing (tests, and replaying a plan).
    pub fn with_prefill_chunk(mut self, tokens: usize) -> Self {
        self.budget.fixed = Some(tokens.max(1));
        self
    }

    pub fn shared(self) -> SharedBatch {
        Rc::new(RefCell::new(self))
    }

    /// Queues `sequence` for its prefill; nothing is computed until the next step.
    pub fn join(&mut self, mut sequence: Sequence) -> SeqId {
        let id = SeqId(self.next_id);
        self.next_id += 1;
        if sequence.max_tokens == 0 {
            sequence.finish(FinishReason::Length);
        } else {
            self.joining.push_back(id);
        }
        self.sequences.insert(id, sequence);
        id
    }

    pub(crate) fn sequence_mut(&mut self, id: SeqId) -> Option<&mut Sequence> {
        self.sequences.get_mut(&id)
    }

    /// Whether a step has work: a prompt to prefill, a row to decode or a last token to read.
    pub fn is_busy(&self) -> bool {
        !self.joining.is_empty()
            || !self.finals.is_empty()
            || self
                .rows
                .iter()
                .any(|id| self.sequences.get(id).is_some_and(|s| !s.is_finished()))
    }

    /// Still waiting for (or in) its prefill.
    pub fn is_joining(&self, id: SeqId) -> bool {
        self.joining.contains(&id)
    }

    /// How many of its prompt tokens have keys and values (reused ones included): less than
    /// the prompt while it joins. `None` for a sequence not in the batch.
    pub fn prefill_progress(&self, id: SeqId) -> Option<usize> {
        let sequence = self.sequences.get(&id)?;
        Some(match (&sequence.prefill, self.is_joining(id)) {
            (Some(prefill), true) => prefill.done,
            (None, true) => sequence.reused_tokens,
            (_, false) => sequence.prompt.len(),
        })
    }

    /// The rows decoding now, in row order.
    pub fn rows(&self) -> &[SeqId] {
        &self.rows
    }

    /// The memory the rows' keys and values hold.
    pub fn bytes(&self) -> usize {
        self.caches.iter().map(KvCache::bytes).sum()
    }

    /// Its next token if one was read (see [`Poll`]); an error of this sequence alone (its
    /// grammar) once.
    pub fn poll(&mut self, id: SeqId) -> Result<Poll> {
        match self.sequences.get_mut(&id) {
            Some(sequence) => sequence.poll(),
            None => Ok(Poll::Done),
        }
    }

    /// The log-probabilities of the tokens polled since the last call.
    pub fn take_logprobs(&mut self, id: SeqId) -> Vec<RawLogprob> {
        self.sequences
            .get_mut(&id)
            .map(Sequence::take_logprobs)
            .unwrap_or_default()
    }

    pub fn finish_reason(&self, id: SeqId) -> Option<FinishReason> {
        self.sequences.get(&id).and_then(Sequence::finish_reason)
    }

    /// Ends a sequence early (a stop string, a cancel): tokens read but not polled are dropped,
    /// a joiner stops prefilling, and a row leaves at the next step.
    pub fn finish(&mut self, id: SeqId, reason: FinishReason) {
        let Some(sequence) = self.sequences.get_mut(&id) else {
            return;
        };
        sequence.finish_early(reason);
        if let Some(at) = self.joining.iter().position(|&j| j == id) {
            self.joining.remove(at);
            // What it prefilled so far can still serve a later prompt.
            let prefill = sequence.prefill.take();
            if sequence.prefixes.is_some() {
                sequence.kept = prefill.map(|p| p.caches);
            }
        }
    }

    /// Takes a sequence out of the batch and sums it up; its caches go to its prefix cache. One
    /// that was not finished counts as cancelled. Never panics (it runs in `Drop`).
    pub fn leave(&mut self, id: SeqId) -> Generation {
        self.finish(id, FinishReason::Cancelled);
        if self.rows.contains(&id) {
            if let Err(error) = self.drop_rows(&[id]) {
                self.fault.get_or_insert(error);
            }
        }
        self.finals.retain(|(f, _)| *f != id);
        let Some(mut sequence) = self.sequences.remove(&id) else {
            return Generation {
                tokens: Vec::new(),
                finish_reason: FinishReason::Cancelled,
                prompt_tokens: 0,
                reused_tokens: 0,
                prompt_time: Duration::ZERO,
                decode_time: Duration::ZERO,
            };
        };
        let generation = sequence.summary();
        match (sequence.prefixes.take(), sequence.kept.take()) {
            (Some(prefixes), Some(mut kept)) => {
                // The caches hold every token fed: the prompt, then the answer but (usually) its
                // last token, or more when the caller dropped tokens already computed.
                let held = kept.first().map_or(0, |c| c.offset().max(0) as usize);
                let fed: Vec<u32> = sequence
                    .prompt
                    .iter()
                    .chain(&generation.tokens)
                    .copied()
                    .take(held)
                    .collect();
                let exact =
                    fed.len() == held || kept.iter_mut().all(|c| c.truncate(fed.len() as i32));
                // Borrowed already only if a panic unwinds through the prefix cache.
                if let (true, Ok(mut prefixes)) = (exact, prefixes.try_borrow_mut()) {
                    prefixes.store(fed, kept);
                }
            }
            _ if generation.finish_reason == FinishReason::Cancelled => {
                // Its caches are dropped; hand their memory back.
                let _ = mlx_rs::memory::clear_cache();
            }
            _ => {}
        }
        generation
    }

    /// One step: rows that finished leave, one forward pass decodes every other row (its
    /// token is read and the next one sampled), then prompt chunks are prefilled within the
    /// budget.
    pub fn step(&mut self) -> Result<()> {
        if let Some(fault) = self.fault.take() {
            return Err(fault);
        }
        let plan = self.plan();
        self.run(&plan)
    }

    /// What the next step does: rows finished between steps, or whose queued token is their
    /// last, leave before the forward pass. While rows decode, a chunk of every waiting prompt
    /// rides in their pass, so that clients that arrived together get their first tokens
    /// together; with none decoding, the first prompt goes whole (as fast as a generation
    /// alone), beside the short ones waiting with it.
    pub fn plan(&self) -> StepPlan {
        let drop: Vec<SeqId> = self
            .rows
            .iter()
            .copied()
            .filter(|id| {
                self.sequences
                    .get(id)
                    .is_none_or(|s| s.is_finished() || s.queued_is_last())
            })
            .collect();
        // A row leaving at its last token counts: that token is read at this step, and a whole
        // prompt's prefill would hold it back.
        let last_tokens = drop.iter().any(|id| {
            self.sequences
                .get(id)
                .is_some_and(|s| !s.is_finished() && s.queued_is_last())
        });
        let decoding = self.rows.len() > drop.len() || last_tokens || !self.finals.is_empty();
        // (sequence, prompt tokens done, prompt tokens), first come first.
        let waiting: Vec<(SeqId, usize, usize)> = self
            .joining
            .iter()
            .filter_map(|&id| {
                let total = self.sequences.get(&id)?.prompt.len();
                Some((id, self.prefill_progress(id)?, total))
            })
            .collect();
        let prefill = match waiting.first() {
            None => Vec::new(),
            Some(_) if decoding => {
                let chunk = self.budget.row_chunk(waiting.len());
                let wave = waiting
                    .iter()
                    .take((PREFILL_STEP / chunk).max(1))
                    .map(|&(id, done, total)| (id, done..(done + chunk).min(total)))
                    .collect();
                vec![wave]
            }
            Some(&(first, done, total)) => {
                let chunk = self.budget.chunk(false);
                if total - done > chunk {
                    (done..total)
                        .step_by(chunk)
                        .map(|at| vec![(first, at..(at + chunk).min(total))])
                        .collect()
                } else {
                    // Whole prompts that fit one pass of `PREFILL_STEP` tokens, padding included.
                    let mut wave = vec![(first, done..total)];
                    let mut width = total - done;
                    for &(id, done, total) in &waiting[1..] {
                        let wider = width.max(total - done);
                        if total - done > chunk || (wave.len() + 1) * wider > PREFILL_STEP {
                            break;
                        }
                        width = wider;
                        wave.push((id, done..total));
                    }
                    vec![wave]
                }
            }
        };
        StepPlan { drop, prefill }
    }

    /// Runs a plan (made by [`Batch::plan`], here or on a leader).
    pub fn run(&mut self, plan: &StepPlan) -> Result<()> {
        let started = Instant::now();
        self.drop_rows(&plan.drop)?;
        let mut waves = plan.prefill.iter();
        let input = match (&self.next, self.rows.len()) {
            (Some(next), rows) if rows > 0 => Some(next.reshape(&[rows as i32, 1])?),
            _ => None,
        };
        // The rows' pass carries the first prompt chunks too: each weight is read once for both.
        let mut fused = None;
        let decode = match input {
            Some(input) => {
                let mut wave = match waves.next() {
                    Some(wave) => self.prepare_wave(wave)?,
                    None => None,
                };
                let mut groups = vec![Group {
                    tokens: &input,
                    caches: &mut self.caches,
                    positions: Positions::Last,
                }];
                if let Some(wave) = wave.as_mut() {
                    groups.push(Group {
                        tokens: &wave.tokens,
                        caches: &mut wave.caches,
                        positions: wave.positions.clone(),
                    });
                }
                let mut logits = self.model.forward_groups(&mut groups)?.into_iter();
                let decoded = logits.next().expect("the rows' logits");
                async_eval([&decoded])?;
                fused = wave.map(|wave| (wave, logits.next().expect("the chunks' logits")));
                Some(decoded)
            }
            None => None,
        };
        // The device computes the forward pass while the tokens it takes are read.
        self.read()?;
        let decoded = decode.is_some();
        if let Some(logits) = decode {
            self.sample_rows(&logits)?;
        }
        if let Some((wave, logits)) = fused {
            self.finish_wave(wave, &logits)?;
        }
        for wave in waves {
            if let Some(mut wave) = self.prepare_wave(wave)? {
                let logits = self.model.forward_positions(
                    &wave.tokens,
                    &mut wave.caches,
                    wave.positions.clone(),
                )?;
                self.finish_wave(wave, &logits)?;
            }
        }
        if decoded {
            // The whole step: with the pipelining, a decode-only step's time is that of the
            // previous forward pass, and a chunk's evaluation waits for this one's too.
            let prefilled = plan.prefill.iter().flatten().map(|(_, r)| r.len()).sum();
            self.budget.stepped(started.elapsed(), prefilled);
        }
        Ok(())
    }

    /// Takes rows out before the forward pass: their caches go to their sequences (for the
    /// prefix cache), and a token still queued for an unfinished one is its last, read at this
    /// step.
    fn drop_rows(&mut self, ids: &[SeqId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let (leaving, keep): (Vec<usize>, Vec<usize>) =
            (0..self.rows.len()).partition(|&r| ids.contains(&self.rows[r]));
        let alone = keep.is_empty() && leaving.len() == 1;
        for &r in &leaving {
            let id = self.rows[r];
            let Some(sequence) = self.sequences.get_mut(&id) else {
                continue;
            };
            if sequence.prefixes.is_some() {
                sequence.kept = Some(match alone {
                    // The only row: its caches as they are, no copy.
                    true => std::mem::take(&mut self.caches),
                    false => self
                        .caches
                        .iter()
                        .map(|c| c.extract_row(r))
                        .collect::<Result<_>>()?,
                });
            }
            if !sequence.is_finished() {
                if let Some(next) = &self.next {
                    let r = r as i32;
                    self.finals.push((id, next.index(r..r + 1)));
                }
            }
        }
        if keep.is_empty() {
            // Wait for the queued work before its arrays go (see `Drop`).
            if let Some(next) = self.next.take() {
                eval([&next])?;
            }
            self.caches.clear();
        } else {
            for cache in &mut self.caches {
                cache.filter_rows(&keep)?;
            }
            let indices: Vec<i32> = keep.iter().map(|&r| r as i32).collect();
            let indices = Array::from_slice(&indices, &[indices.len() as i32]);
            if let Some(next) = self.next.take() {
                self.next = Some(next.take_axis(&indices, 0)?);
            }
        }
        self.rows = keep.iter().map(|&r| self.rows[r]).collect();
        Ok(())
    }

    /// Reads every queued token in one evaluation and gives each to its sequence.
    fn read(&mut self) -> Result<()> {
        let finals = std::mem::take(&mut self.finals);
        let next = self.next.as_ref().filter(|_| !self.rows.is_empty());
        let pending: Vec<&Array> = next
            .into_iter()
            .chain(finals.iter().map(|(_, token)| token))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        eval(pending)?;
        let read: Vec<(SeqId, u32)> = match next {
            Some(next) => self.rows.iter().copied().zip(host_tokens(next)?).collect(),
            None => Vec::new(),
        };
        let mut last = Vec::with_capacity(finals.len());
        for (id, token) in &finals {
            last.push((*id, host_tokens(token)?[0]));
        }
        for (id, token) in read.into_iter().chain(last) {
            if let Some(sequence) = self.sequences.get_mut(&id).filter(|s| !s.is_finished()) {
                if let Err(error) = sequence.accept(token) {
                    sequence.fail(error);
                }
            }
        }
        Ok(())
    }

    /// Samples every row's next token from the logits `[rows, 1, vocab]`: each on its own row,
    /// or one argmax for all when every row is plainly greedy.
    fn sample_rows(&mut self, logits: &Array) -> Result<()> {
        let rows = self.rows.len() as i32;
        let vocab = *logits
            .shape()
            .last()
            .expect("logits have a vocabulary axis");
        let logits = logits.reshape(&[rows, vocab])?;
        let plain = self.rows.iter().all(|id| {
            self.sequences
                .get(id)
                .is_none_or(|s| s.is_finished() || s.plain_greedy())
        });
        let next = if plain {
            // What a greedy sampler does, for all rows at once.
            let logprobs = logits.subtract(logits.logsumexp_axis(-1, true)?)?;
            argmax_axis(&logprobs, -1, None)?
        } else {
            let mut picks = Vec::with_capacity(self.rows.len());
            for (i, id) in self.rows.iter().enumerate() {
                let row = match rows {
                    1 => logits.clone(),
                    _ => logits.index(i as i32..i as i32 + 1),
                };
                let pick = match self.sequences.get_mut(id).filter(|s| !s.is_finished()) {
                    Some(sequence) => match sequence.sample(&row) {
                        Ok(token) => Some(token),
                        Err(error) => {
                            sequence.fail(error);
                            None
                        }
                    },
                    None => None,
                };
                // A finished row's token is never read: any placeholder will do.
                picks.push(match pick {
                    Some(token) => as_u32(token.reshape(&[1])?)?,
                    None => Array::from_slice(&[0u32], &[1]),
                });
            }
            concatenate(&picks, 0)?
        };
        async_eval([&next])?;
        self.next = Some(next);
        Ok(())
    }

    /// A wave's chunks ready for their forward pass, each sequence's caches taken out of it
    /// (`None` when every sequence in it finished since the plan was made).
    fn prepare_wave(&mut self, wave: &[(SeqId, Range<usize>)]) -> Result<Option<Wave>> {
        let chunks: Vec<(SeqId, Range<usize>)> = wave
            .iter()
            .filter(|(id, _)| self.sequences.get(id).is_some_and(|s| !s.is_finished()))
            .cloned()
            .collect();
        let mut caches = Vec::with_capacity(chunks.len());
        let mut tokens = Vec::with_capacity(chunks.len());
        for (id, range) in &chunks {
            let sequence = self.sequences.get_mut(id).expect("not finished");
            if range.start == sequence.reused_tokens {
                sequence.started = Instant::now();
            }
            let prefill = sequence.prefill.get_or_insert_with(|| Prefill {
                caches: self.model.make_caches(),
                done: sequence.reused_tokens,
            });
            caches.push(std::mem::take(&mut prefill.caches));
            prefill.done = range.end;
        }
        for (id, range) in &chunks {
            tokens.push(&self.sequences[id].prompt[range.clone()]);
        }
        Ok(match (tokens.as_slice(), caches.len()) {
            (_, 0) => None,
            ([tokens], 1) => Some(Wave {
                tokens: token_array(tokens),
                caches: caches.pop().expect("one"),
                positions: Positions::Last,
                padding: None,
                chunks,
            }),
            _ => {
                // Several prompts as the rows of one cache, each chunk padded on the right to
                // the longest: a row's padding comes after its tokens, so none of them attends
                // to it, and its keys are cut off again after the pass.
                let width = tokens.iter().map(|t| t.len()).max().unwrap_or(0);
                let mut padded = Vec::with_capacity(tokens.len() * width);
                for chunk in &tokens {
                    padded.extend(chunk.iter().map(|&t| t as i32));
                    padded.extend(std::iter::repeat_n(PAD_TOKEN, width - chunk.len()));
                }
                let rows = tokens.len() as i32;
                let lasts = tokens.iter().map(|t| t.len() as i32 - 1).collect();
                let padding = tokens.iter().map(|t| (width - t.len()) as i32).collect();
                let mut each = caches.into_iter();
                let mut stacked = each.next().unwrap_or_default();
                for own in each {
                    for (layer, row) in stacked.iter_mut().zip(own) {
                        layer.append_row(row)?;
                    }
                }
                Some(Wave {
                    tokens: Array::from_slice(&padded, &[rows, width as i32]),
                    caches: stacked,
                    positions: Positions::LastOf(lasts),
                    padding: Some(padding),
                    chunks,
                })
            }
        })
    }

    /// After a wave's pass (`logits` `[rows, 1, vocab]`, one row per chunk): each sequence's
    /// caches go back to it; a prompt that is in samples its first token and becomes a row.
    fn finish_wave(&mut self, wave: Wave, logits: &Array) -> Result<()> {
        let caches: Vec<Vec<KvCache>> = match &wave.padding {
            None => vec![wave.caches],
            Some(padding) => {
                let mut split: Vec<Vec<KvCache>> = padding.iter().map(|_| Vec::new()).collect();
                for layer in &wave.caches {
                    for (own, row) in split.iter_mut().zip(layer.split_rows(padding)?) {
                        own.push(row);
                    }
                }
                split
            }
        };
        let mut evaluate = Vec::new();
        let mut complete = Vec::new();
        for (r, ((id, _), caches)) in wave.chunks.iter().zip(caches).enumerate() {
            let sequence = self.sequences.get_mut(id).expect("in the wave");
            let prefill = sequence.prefill.as_mut().expect("made for the wave");
            prefill.caches = caches;
            if prefill.done < sequence.prompt.len() {
                evaluate.extend(prefill.caches.iter().flat_map(KvCache::arrays).cloned());
            } else {
                let r = r as i32;
                complete.push((*id, logits.index(r..r + 1)));
            }
        }
        if !evaluate.is_empty() {
            eval(&evaluate)?;
        }
        for (id, logits) in complete {
            self.become_row(id, &logits)?;
        }
        Ok(())
    }

    /// A joiner whose prompt is in: its first token is sampled from `logits` (its last
    /// position's, which saves a forward pass over mlx-lm's split) and it becomes a row.
    fn become_row(&mut self, id: SeqId, logits: &Array) -> Result<()> {
        let Some(sequence) = self.sequences.get_mut(&id) else {
            return Ok(());
        };
        self.joining.retain(|&j| j != id);
        let vocab = *logits
            .shape()
            .last()
            .expect("logits have a vocabulary axis");
        let first = match sequence.sample(&logits.reshape(&[1, vocab])?) {
            Ok(token) => as_u32(token.reshape(&[1])?)?,
            Err(error) => {
                sequence.fail(error);
                return Ok(());
            }
        };
        async_eval([&first])?;
        let caches = sequence
            .prefill
            .take()
            .map(|p| p.caches)
            .unwrap_or_default();
        if sequence.queued_is_last() {
            if sequence.prefixes.is_some() {
                sequence.kept = Some(caches);
            }
            self.finals.push((id, first));
            return Ok(());
        }
        if self.caches.is_empty() {
            self.caches = caches;
        } else {
            for (layer, own) in self.caches.iter_mut().zip(caches) {
                layer.append_row(own)?;
            }
        }
        self.next = Some(match self.next.take() {
            Some(next) => concatenate(&[next, first], 0)?,
            None => first,
        });
        self.rows.push(id);
        Ok(())
    }
}

impl Drop for Batch {
    /// Waits for the queued tokens. MLX keeps computing queued work on its own thread: left
    /// running, it can outlive the arrays it uses, and at process exit it crashed inside the
    /// BLAS while libraries were being unloaded. Never panics.
    fn drop(&mut self) {
        let pending: Vec<&Array> = self
            .next
            .iter()
            .chain(self.finals.iter().map(|(_, token)| token))
            .collect();
        if !pending.is_empty() {
            let _ = eval(pending);
        }
    }
}

fn as_u32(tokens: Array) -> Result<Array> {
    Ok(match tokens.dtype() {
        Dtype::Uint32 => tokens,
        _ => tokens.as_type::<u32>()?,
    })
}

/// Token ids (already evaluated) back on the host.
fn host_tokens(tokens: &Array) -> Result<Vec<u32>> {
    let tokens = as_u32(tokens.clone())?;
    eval([&tokens])?;
    Ok(tokens.as_slice::<u32>().to_vec())
}

/// How much of the waiting prompts one step prefills while rows decode: a step with chunks
/// should take about `1 + PREFILL_SHARE` times a step without, so that the longest gap between
/// two tokens of a running stream stays well under three times the usual, noise included. (The
/// chunks ride in the rows' pass; a pass of their own would read every weight again, which on a
/// CPU costs about a decode step whatever its length.) Learnt from the steps themselves
/// (moving averages of a decode-only step's time and of the time a prompt token adds to a step),
/// so it follows the device, the model, the number of rows and how far the prompt has got (its
/// later tokens attend to more). A chunk at most doubles from one step to the next, so that an
/// estimate learnt on another prompt cannot make one step long. With no rows decoding, whole
/// prompts go at full speed.
#[derive(Debug, Clone, Default)]
pub struct PrefillBudget {
    /// A chunk size given (tests; a plan replayed), whatever the timing.
    fixed: Option<usize>,
    /// Seconds per decode-only step.
    decode: Option<f64>,
    /// Seconds a prompt token adds to a step.
    per_token: Option<f64>,
    /// Prompt tokens in the last step that had some while rows decoded.
    last: Option<usize>,
}

/// The time a chunk adds to a step, as a fraction of a decode-only step's. Measured here (a
/// 2,000-token prompt beside one stream, 2 CPUs): at 1.0 the longest gap was 2.6x to 3.4x the
/// usual; at 0.6, 2.1x to 2.6x.
const PREFILL_SHARE: f64 = 0.6;
/// The smallest chunk: fewer tokens would make a long prompt wait far longer for little gain in
/// the gap.
const MIN_CHUNK: usize = 2;
/// The smallest chunk of each prompt when several wait: a burst of chat questions gets its
/// first tokens within a few steps.
const MIN_SHARED_CHUNK: usize = 4;
/// The chunk before anything was measured.
const FIRST_CHUNK: usize = 8;
/// The weight of a new measurement in the moving averages.
const ALPHA: f64 = 0.3;

impl PrefillBudget {
    /// Prompt tokens in the next step's chunks, `decoding` when rows wait for the step.
    pub fn chunk(&self, decoding: bool) -> usize {
        if let Some(fixed) = self.fixed {
            return fixed;
        }
        if !decoding {
            return PREFILL_STEP;
        }
        let estimate = match (self.decode, self.per_token) {
            (Some(decode), Some(per_token)) => {
                (decode * PREFILL_SHARE / per_token.max(1e-9)).round() as usize
            }
            _ => FIRST_CHUNK,
        };
        let ramp = self.last.map_or(PREFILL_STEP, |last| 2 * last);
        estimate.min(ramp).clamp(MIN_CHUNK, PREFILL_STEP)
    }

    /// Tokens of each of `prompts` waiting prompts in the next step's chunks while rows decode:
    /// they share the step's budget, but each moves on by at least `MIN_SHARED_CHUNK`, so that
    /// every client that arrived gets its first token soon, not one after another.
    pub fn row_chunk(&self, prompts: usize) -> usize {
        match self.fixed {
            Some(fixed) => fixed,
            None if prompts <= 1 => self.chunk(true),
            None => (self.chunk(true) / prompts).max(MIN_SHARED_CHUNK),
        }
    }

    /// A step that decoded rows took `elapsed`, prefilling `prefilled` prompt tokens besides.
    pub fn stepped(&mut self, elapsed: Duration, prefilled: usize) {
        let elapsed = elapsed.as_secs_f64();
        if prefilled == 0 {
            self.decode = Some(average(self.decode, elapsed));
            return;
        }
        self.last = Some(prefilled);
        if let Some(decode) = self.decode {
            // What the chunk added (never less than a tenth of a decode step: timing noise).
            let added = (elapsed - decode).max(decode / 10.0);
            self.per_token = Some(average(self.per_token, added / prefilled as f64));
        }
    }
}

fn average(old: Option<f64>, new: f64) -> f64 {
    old.map_or(new, |old| old + ALPHA * (new - old))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefill_chunk_follows_the_decode_step_and_the_prefill_rate() {
        let mut budget = PrefillBudget::default();
        assert_eq!(budget.chunk(false), PREFILL_STEP, "nothing decodes: whole");
        assert_eq!(budget.chunk(true), FIRST_CHUNK, "nothing measured yet");
        // A chunk before any decode-only step teaches nothing but its size.
        budget.stepped(Duration::from_millis(500), 8);
        assert_eq!(budget.chunk(true), FIRST_CHUNK);
        // 100 ms per decode-only step; a step with 8 tokens took 140 ms: 5 ms per token, so
        // 60 ms (PREFILL_SHARE of a step) buy 12 tokens.
        budget.stepped(Duration::from_millis(100), 0);
        budget.stepped(Duration::from_millis(140), 8);
        assert_eq!(budget.chunk(true), 12);
        // Dearer tokens (20 ms each): the average moves by ALPHA, to 9.5 ms, so 6 tokens.
        budget.stepped(Duration::from_millis(340), 12);
        assert_eq!(budget.chunk(true), 6);
        // Bounded below.
        for _ in 0..8 {
            budget.stepped(Duration::from_secs(10), 2);
        }
        assert_eq!(budget.chunk(true), MIN_CHUNK);
        // Cheap tokens (0.1 ms each: 600 would fit), but the chunk at most doubles from one
        // step to the next.
        let mut ramp = PrefillBudget::default();
        ramp.stepped(Duration::from_millis(100), 0);
        ramp.stepped(Duration::from_millis(110), 100);
        assert_eq!(ramp.chunk(true), 200, "twice the last step's");
        // Bounded above.
        budget.stepped(Duration::from_millis(100), 0);
        for _ in 0..40 {
            budget.stepped(Duration::from_millis(110), 1_000_000);
        }
        assert_eq!(budget.chunk(true), PREFILL_STEP);
        assert_eq!(budget.row_chunk(1), PREFILL_STEP);
        assert_eq!(
            budget.row_chunk(8),
            PREFILL_STEP / 8,
            "shared by the waiting prompts"
        );
        assert_eq!(
            budget.row_chunk(4096),
            MIN_SHARED_CHUNK,
            "but each moves on"
        );
        let fixed = PrefillBudget {
            fixed: Some(5),
            ..budget
        };
        assert_eq!(
            (fixed.chunk(true), fixed.chunk(false), fixed.row_chunk(8)),
            (5, 5, 5),
            "a given chunk size holds for every prompt"
        );
    }
}
