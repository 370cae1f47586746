//! Several sequences in one forward pass: prompts of different lengths prefilled alone, their
//! caches joined as the rows of one batch (left-padded to a common length), then decoded
//! together. Each row's logits are the ones it gets decoding alone, on every architecture's
//! tiny model (float32 and 4-bit, as published). Then the engine's `Batch`: sequences joining
//! in chunks between decode steps, leaving, finishing, each giving its tokens alone.

use std::rc::Rc;

use mlx_rs::transforms::eval;
use mlx_rs::Array;
use mlxk_engine::generate::RawLogprob;
use mlxk_engine::{
    AnswerOptions, Batch, ChatMessage, FinishReason, Generator, LanguageModel, LoadPolicy, Poll,
    Positions, PrefixCache, Prompt, SamplingChoice, SamplingParams, SeqId, Sequence, TextEvent,
    TextGeneration, TextModel,
};
use serde_json::Value;

use super::mlx;
use super::parity_tiny::{cases, sampling_of};
use super::reference::{ids, mlx_lm_greedy_many};

/// How far apart a row's logits may be from the same sequence's alone, relative to the largest
/// logit: the batched matmuls and the longer, padded attention group their sums differently,
/// which moves the last bits (seen: up to 3e-6, Gemma 2's hand-written attention the most).
const TOLERANCE: f32 = 1e-5;

/// Decoding steps taken together after the join.
const STEPS: usize = 4;

fn tokens(rows: &[u32]) -> Array {
    let ids: Vec<i32> = rows.iter().map(|&t| t as i32).collect();
    Array::from_slice(&ids, &[1, ids.len() as i32])
}

/// Logits `[rows, 1, vocab]` as host floats, one vector per row.
fn rows_of(logits: &Array, rows: usize) -> Vec<Vec<f32>> {
    let logits = logits
        .as_type::<f32>()
        .unwrap()
        .reshape(&[rows as i32, -1])
        .unwrap();
    eval([&logits]).unwrap();
    let vocab = logits.shape()[1] as usize;
    logits
        .as_slice::<f32>()
        .chunks(vocab)
        .map(<[f32]>::to_vec)
        .collect()
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// Prompts of 12, 5 and 38 tokens: the 38 runs past Gemma 3's window of 8, the 5 is padded.
fn prompts(reference: &Value) -> Vec<Vec<u32>> {
    let prompt = ids(&reference["prompt"]);
    let mut long: Vec<u32> = prompt.repeat(3);
    long.extend([9, 8]);
    vec![prompt.clone(), prompt[..5].to_vec(), long]
}

fn check_case(name: &str, model: &Rc<dyn LanguageModel>, prompts: &[Vec<u32>]) {
    // Each prompt but its last token, prefilled alone.
    let prefilled: Vec<_> = prompts
        .iter()
        .map(|prompt| {
            let mut caches = model.make_caches();
            let head = &prompt[..prompt.len() - 1];
            model
                .forward_positions(&tokens(head), &mut caches, Positions::Last)
                .unwrap();
            caches
        })
        .collect();
    // The rows joined: the first sequence's caches take the others as rows.
    let mut batch = prefilled[0].clone();
    for caches in &prefilled[1..] {
        for (layer, row) in batch.iter_mut().zip(caches.iter().cloned()) {
            layer.append_row(row).unwrap();
        }
    }
    let mut alone = prefilled;
    let mut next: Vec<u32> = prompts.iter().map(|p| *p.last().unwrap()).collect();
    for step in 0..STEPS {
        let ids: Vec<i32> = next.iter().map(|&t| t as i32).collect();
        let input = Array::from_slice(&ids, &[ids.len() as i32, 1]);
        let together = model
            .forward_positions(&input, &mut batch, Positions::Last)
            .unwrap();
        let together = rows_of(&together, prompts.len());
        for (r, caches) in alone.iter_mut().enumerate() {
            let solo = model
                .forward_positions(&tokens(&next[r..r + 1]), caches, Positions::Last)
                .unwrap();
            let solo = &rows_of(&solo, 1)[0];
            let worst = together[r]
                .iter()
                .zip(solo)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let largest = solo.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            assert!(
                worst <= TOLERANCE * largest,
                "{name}: row {r} (a prompt of {}) at step {step}: logits differ by {worst} \
                 (the largest is {largest})",
                prompts[r].len()
            );
            assert_eq!(
                argmax(&together[r]),
                argmax(solo),
                "{name}: row {r} at step {step}: the greedy token"
            );
            next[r] = argmax(solo);
        }
    }
}

#[test]
fn rows_joined_into_a_batch_decode_as_each_sequence_alone() {
    let _mlx = mlx();
    let checked = each_model(
        |architecture, name| {
            float_or_4bit(architecture, name) || name.starts_with("llama-rope-llama3")
        },
        |name, model, reference| check_case(name, model, &prompts(reference)),
    );
    // Every architecture, in float32 and 4-bit.
    assert_eq!(checked.len(), 16, "{checked:?}");
}

fn float_or_4bit(architecture: &str, name: &str) -> bool {
    name == architecture || name == format!("{architecture}-4bit")
}

/// The tiny models `keep` accepts (by architecture and folder name), each loaded as published
/// and checked with its reference; their names.
fn each_model(
    keep: impl Fn(&str, &str) -> bool,
    mut check: impl FnMut(&str, &Rc<dyn LanguageModel>, &Value),
) -> Vec<String> {
    let mut checked = Vec::new();
    for (architecture, dir) in cases() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        if !keep(architecture, &name) {
            continue;
        }
        let reference: Value =
            serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
        let model = mlxk_engine::load(dir, &LoadPolicy::as_published())
            .unwrap()
            .model;
        check(&name, &model, &reference);
        checked.push(name);
    }
    checked
}

// ---- The batch of sequences (mlxk_engine::Batch): joining, stepping, leaving. ----

/// Tokens and log-probabilities a sequence gave through the batch's polls.
#[derive(Default)]
struct Taken {
    tokens: Vec<u32>,
    logprobs: Vec<RawLogprob>,
}

/// Polls `id` until the batch has to step again; `true` once it is done.
fn take(batch: &mut Batch, id: SeqId, into: &mut Taken) -> bool {
    let done = loop {
        match batch.poll(id).unwrap() {
            Poll::Token(token) => into.tokens.push(token),
            Poll::Pending => break false,
            Poll::Done => break true,
        }
    };
    into.logprobs.extend(batch.take_logprobs(id));
    done
}

/// The same generation alone (the facade, a batch of one): tokens and log-probabilities with
/// two alternatives each.
fn alone(
    model: &Rc<dyn LanguageModel>,
    prompt: &[u32],
    max_tokens: usize,
    sampling: &SamplingParams,
) -> Taken {
    let mut generator = Generator::prepared(
        Rc::clone(model),
        prompt,
        max_tokens,
        512,
        &[],
        sampling,
        None,
    )
    .unwrap();
    generator.report_logprobs(2);
    generator.prefill().unwrap();
    let mut logprobs = Vec::new();
    while generator.next_token().unwrap().is_some() {
        logprobs.extend(generator.take_logprobs());
    }
    Taken {
        tokens: generator.into_generation().tokens,
        logprobs,
    }
}

fn sequence(prompt: &[u32], max_tokens: usize, sampling: &SamplingParams) -> Sequence {
    let mut sequence = Sequence::new(prompt, max_tokens, 512, &[], sampling, None).unwrap();
    sequence.report_logprobs(2);
    sequence
}

/// A row's tokens and log-probabilities are those of the same sequence alone: tokens exactly
/// (on a mismatch, the margin between the two likeliest tokens alone says how close it was),
/// log-probabilities to 1e-4.
fn assert_same(what: &str, batched: &Taken, solo: &Taken) {
    if let Some(at) = (0..solo.tokens.len()).find(|&i| batched.tokens.get(i) != solo.tokens.get(i))
    {
        let margin = solo.logprobs.get(at).map(|l| {
            let top = &l.top;
            top.first().map_or(0.0, |a| a.1) - top.get(1).map_or(0.0, |b| b.1)
        });
        panic!(
            "{what}: tokens part at {at} (alone the top-2 margin there is {margin:?}): {:?} vs alone {:?}",
            batched.tokens, solo.tokens
        );
    }
    assert_eq!(batched.tokens, solo.tokens, "{what}");
    assert_eq!(batched.logprobs.len(), solo.logprobs.len(), "{what}");
    for (i, (b, s)) in batched.logprobs.iter().zip(&solo.logprobs).enumerate() {
        assert_eq!(b.token, s.token, "{what}: token {i}");
        assert!(
            (b.logprob - s.logprob).abs() < 1e-4,
            "{what}: token {i}: logprob {} vs alone {}",
            b.logprob,
            s.logprob
        );
        let alternatives = |l: &RawLogprob| l.top.iter().map(|t| t.0).collect::<Vec<_>>();
        assert_eq!(
            alternatives(b),
            alternatives(s),
            "{what}: token {i}: alternatives"
        );
    }
}

/// Engine test 2: one sequence decodes alone for a few steps, two more join (prefilled together
/// in chunks of 4 between decode steps, the shorter one's last chunk padded); each gives the
/// tokens of its sequence alone.
fn check_batched_equals_alone(name: &str, model: &Rc<dyn LanguageModel>, reference: &Value) {
    let prompts = prompts(reference);
    let greedy = SamplingParams::default();
    let mut batch = Batch::new(Rc::clone(model)).with_prefill_chunk(4);
    let mut seqs = vec![batch.join(sequence(&prompts[0], 12, &greedy))];
    let mut taken: Vec<Taken> = (0..prompts.len()).map(|_| Taken::default()).collect();
    for steps in 1.. {
        batch.step().unwrap();
        if steps == 3 {
            for prompt in &prompts[1..] {
                seqs.push(batch.join(sequence(prompt, 12, &greedy)));
            }
        }
        let mut done = seqs.len() == prompts.len();
        for (id, taken) in seqs.iter().zip(&mut taken) {
            done &= take(&mut batch, *id, taken);
        }
        if done {
            break;
        }
        assert!(steps < 100, "{name}: the batch does not end");
    }
    assert!(!batch.is_busy());
    for (r, (id, taken)) in seqs.iter().zip(&taken).enumerate() {
        let generation = batch.leave(*id);
        assert_eq!(generation.tokens, taken.tokens, "{name}: row {r}");
        assert_eq!(generation.finish_reason, FinishReason::Length);
        let solo = alone(model, &prompts[r], 12, &greedy);
        assert_same(&format!("{name}: row {r}"), taken, &solo);
    }
    assert_eq!(
        taken[0].tokens,
        ids(&reference["tokens"]),
        "{name}: mlx-lm's"
    );
}

/// The float32 and 4-bit tiny model of every architecture, as published.
fn each_case(check: impl FnMut(&str, &Rc<dyn LanguageModel>, &Value)) -> usize {
    each_model(float_or_4bit, check).len()
}

#[test]
fn sequences_batched_give_the_tokens_they_give_alone() {
    let _mlx = mlx();
    let checked = each_case(check_batched_equals_alone);
    assert_eq!(checked, 14, "every architecture in float32 and 4-bit");
}

fn float_model(architecture: &str) -> Rc<dyn LanguageModel> {
    let (_, dir) = cases()
        .iter()
        .find(|(arch, path)| {
            arch == architecture && path.file_name().unwrap().to_string_lossy() == architecture
        })
        .unwrap_or_else(|| panic!("a float tiny {architecture} model"));
    mlxk_engine::load(dir, &LoadPolicy::as_published())
        .unwrap()
        .model
}

/// A 300-token prompt: past Gemma 3's window of 8 and past a cache's first 256 slots.
fn long_prompt() -> Vec<u32> {
    (0..300u32).map(|i| 3 + i * 7 % 90).collect()
}

/// Engine tests 7 and 3: while a long prompt joins in chunks of 32, the decoding row gets
/// exactly one token per step; then both decode (past 256 slots, Gemma 3's windows too), and
/// each equals its sequence alone.
fn check_step_contract(architecture: &str) {
    let model = float_model(architecture);
    let greedy = SamplingParams::default();
    let short = vec![5, 17, 42, 9, 33];
    let long = long_prompt();
    let mut batch = Batch::new(Rc::clone(&model)).with_prefill_chunk(32);
    let decoding = batch.join(sequence(&short, 24, &greedy));
    let mut taken = [Taken::default(), Taken::default()];
    batch.step().unwrap();
    assert_eq!(batch.rows(), [decoding]);
    let joiner = batch.join(sequence(&long, 8, &greedy));
    let (mut progress, mut steps) = (0, 0);
    while batch.is_joining(joiner) {
        batch.step().unwrap();
        steps += 1;
        take(&mut batch, decoding, &mut taken[0]);
        assert_eq!(
            taken[0].tokens.len(),
            steps,
            "{architecture}: one token per step"
        );
        let now = batch.prefill_progress(joiner).unwrap();
        assert!(
            now > progress && now - progress <= 32,
            "{architecture}: step {steps} prefilled {progress}..{now}"
        );
        progress = now;
    }
    assert_eq!((progress, steps), (300, 10), "{architecture}");
    assert_eq!(batch.rows(), [decoding, joiner]);
    for _ in 0..3 {
        batch.step().unwrap();
        assert_eq!(count_into(&mut batch, decoding, &mut taken[0]), 1);
        assert_eq!(count_into(&mut batch, joiner, &mut taken[1]), 1);
    }
    while batch.is_busy() {
        batch.step().unwrap();
        take(&mut batch, decoding, &mut taken[0]);
        take(&mut batch, joiner, &mut taken[1]);
    }
    assert_same(
        &format!("{architecture}: short row"),
        &taken[0],
        &alone(&model, &short, 24, &greedy),
    );
    assert_same(
        &format!("{architecture}: long row"),
        &taken[1],
        &alone(&model, &long, 8, &greedy),
    );
}

fn count_into(batch: &mut Batch, id: SeqId, into: &mut Taken) -> usize {
    let before = into.tokens.len();
    take(batch, id, into);
    into.tokens.len() - before
}

#[test]
fn a_long_prompt_joins_in_chunks_while_rows_get_a_token_every_step() {
    let _mlx = mlx();
    check_step_contract("llama");
    check_step_contract("gemma3_text");
}

/// A row whose queued token is its last leaves at the next step, which reads that token: the
/// step prefills only a chunk of a waiting prompt (a whole prompt would hold the token back
/// until it is in), and the step after, with nothing decoding, the rest at once.
#[test]
fn a_rows_last_token_is_not_held_back_by_a_whole_prefill() {
    let _mlx = mlx();
    let model = float_model("llama");
    let greedy = SamplingParams::default();
    let mut batch = Batch::new(Rc::clone(&model)).with_prefill_chunk(32);
    let ending = batch.join(sequence(&[5, 17, 42, 9, 33], 2, &greedy));
    let mut taken = Taken::default();
    // Its prefill queues its first token; the next step reads it and queues the second.
    batch.step().unwrap();
    batch.step().unwrap();
    assert_eq!(count_into(&mut batch, ending, &mut taken), 1);
    let joiner = batch.join(sequence(&long_prompt(), 4, &greedy));
    // The row's second token is its last: it leaves, and its token is read at this step.
    let plan = batch.plan();
    assert_eq!(plan.drop, [ending]);
    assert_eq!(plan.prefill, [vec![(joiner, 0..32)]]);
    batch.step().unwrap();
    assert_eq!(count_into(&mut batch, ending, &mut taken), 1);
    assert_eq!(batch.poll(ending).unwrap(), Poll::Done);
    let plan = batch.plan();
    let chunks: Vec<_> = plan.prefill.concat();
    assert_eq!(chunks.first(), Some(&(joiner, 32..64)));
    assert_eq!(
        chunks.last().map(|(_, r)| r.end),
        Some(300),
        "the rest at once"
    );
}

/// Engine test 9: a row finished (a stop string) and a row cancelled mid-batch leave at the
/// next step, the batch's caches shrink, and the row that stays decodes as alone.
#[test]
fn rows_finished_or_cancelled_mid_batch_leave_and_the_others_go_on() {
    let _mlx = mlx();
    let model = float_model("qwen3");
    let greedy = SamplingParams::default();
    let long = long_prompt();
    let prompts = [
        vec![5, 17, 42, 9, 33, 2, 8],
        long[..40].to_vec(),
        long[..90].to_vec(),
    ];
    let mut batch = Batch::new(Rc::clone(&model)).with_prefill_chunk(128);
    let seqs: Vec<SeqId> = prompts
        .iter()
        .map(|p| batch.join(sequence(p, 16, &greedy)))
        .collect();
    let mut taken: Vec<Taken> = (0..3).map(|_| Taken::default()).collect();
    // Nothing decodes yet: the three prompts go whole, in one forward pass, then four decode
    // steps.
    for _ in 0..5 {
        batch.step().unwrap();
        for (id, taken) in seqs.iter().zip(&mut taken) {
            take(&mut batch, *id, taken);
        }
    }
    assert_eq!(batch.rows(), seqs);
    assert_eq!(
        taken.iter().map(|t| t.tokens.len()).collect::<Vec<_>>(),
        [4, 4, 4]
    );
    let before = batch.bytes();
    batch.finish(seqs[1], FinishReason::Stop);
    batch.finish(seqs[2], FinishReason::Cancelled);
    assert_eq!(batch.poll(seqs[1]).unwrap(), Poll::Done);
    batch.step().unwrap();
    assert_eq!(batch.rows(), [seqs[0]]);
    assert!(batch.bytes() < before, "{} < {before}", batch.bytes());
    while !take(&mut batch, seqs[0], &mut taken[0]) {
        batch.step().unwrap();
    }
    assert_same(
        "the row that stays",
        &taken[0],
        &alone(&model, &prompts[0], 16, &greedy),
    );
    let stopped = batch.leave(seqs[1]);
    assert_eq!(
        (stopped.finish_reason, stopped.tokens.as_slice()),
        (FinishReason::Stop, &taken[1].tokens[..])
    );
    let cancelled = batch.leave(seqs[2]);
    assert_eq!(cancelled.finish_reason, FinishReason::Cancelled);
    assert_eq!(cancelled.tokens, taken[2].tokens);

    // A sequence leaving while it joins, and one leaving as a row, without a finish first.
    let row = batch.join(sequence(&prompts[0], 8, &greedy));
    batch.step().unwrap();
    let quitter = batch.join(sequence(&long, 8, &greedy));
    batch.step().unwrap();
    assert!(batch.is_joining(quitter));
    assert_eq!(batch.prefill_progress(quitter), Some(128));
    assert_eq!(batch.leave(quitter).finish_reason, FinishReason::Cancelled);
    batch.step().unwrap();
    assert_eq!(batch.rows(), [row]);
    let left = batch.leave(row);
    assert_eq!(left.finish_reason, FinishReason::Cancelled);
    assert_eq!(left.tokens.len(), 0, "nothing was polled");
    assert!(batch.rows().is_empty() && !batch.is_busy());
    assert_eq!(batch.bytes(), 0);
}

/// The tokens of `prompt` under `sampling` in a batch: `company[0]` joins first, the sequence
/// at step `joins_at`, the rest of `company` a step later; prompts are prefilled in chunks of 4
/// between decode steps.
fn in_company(
    model: &Rc<dyn LanguageModel>,
    prompt: &[u32],
    sampling: &SamplingParams,
    company: &[SamplingParams],
    joins_at: usize,
) -> Vec<u32> {
    let mut batch = Batch::new(Rc::clone(model)).with_prefill_chunk(4);
    let companion = |p: &SamplingParams| sequence(&long_prompt()[..30], 16, p);
    let mut others = vec![batch.join(companion(&company[0]))];
    let mut mine = None;
    let mut taken = Taken::default();
    for step in 0..200 {
        if step == joins_at {
            mine = Some(batch.join(sequence(prompt, 12, sampling)));
        }
        if step == joins_at + 1 {
            others.extend(company[1..].iter().map(|p| batch.join(companion(p))));
        }
        batch.step().unwrap();
        for other in &others {
            take(&mut batch, *other, &mut Taken::default());
        }
        if let Some(id) = mine {
            if take(&mut batch, id, &mut taken) {
                return taken.tokens;
            }
        }
    }
    panic!("the sequence does not end");
}

/// Engine test 4: a seeded row draws mlx-lm's tokens whatever shares its batch (two other
/// seeded rows, or a greedy row and another seeded one, joined before and after it).
#[test]
fn a_seeded_row_draws_the_same_tokens_whatever_shares_its_batch() {
    let _mlx = mlx();
    let seeded = |temperature: f32, seed: u64| SamplingParams {
        temperature,
        seed: Some(seed),
        ..SamplingParams::default()
    };
    let company = [
        SamplingParams {
            top_k: 5,
            ..seeded(0.8, 1)
        },
        SamplingParams {
            top_p: 0.9,
            repetition_penalty: 1.3,
            ..seeded(1.0, 2)
        },
    ];
    let other_company = [
        SamplingParams::default(),
        SamplingParams {
            min_p: 0.1,
            ..seeded(0.7, 3)
        },
    ];
    let mut checked = 0;
    for (_, dir) in cases() {
        let reference: Value =
            serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
        let Some(sampling) = reference.get("sampling") else {
            continue;
        };
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let model = mlxk_engine::load(dir, &LoadPolicy::as_published())
            .unwrap()
            .model;
        let prompt = ids(&reference["prompt"]);
        let sampling = sampling_of(sampling);
        let expected = ids(&reference["sampled_tokens"]);
        assert_eq!(
            in_company(&model, &prompt, &sampling, &company, 1),
            expected,
            "{name}: beside two seeded rows"
        );
        assert_eq!(
            in_company(&model, &prompt, &sampling, &other_company, 3),
            expected,
            "{name}: beside a greedy and a seeded row, joined later"
        );
        checked += 1;
    }
    assert_eq!(checked, 4, "the seeded-sampling cases");
}

/// Engine test 6: a second turn that joins a batch while another row decodes starts from the
/// first turn's kept caches and gives the tokens and log-probabilities (1e-4) of a cold run;
/// so does another second turn of a different length, and a new prompt, joining with it (the
/// three prefilled together, each from its own caches).
#[test]
fn a_prefix_hit_joins_a_batch_and_equals_a_cold_run() {
    let _mlx = mlx();
    let model = float_model("llama");
    let greedy = SamplingParams::default();
    let prefixes = PrefixCache::shared(1 << 30);
    let first: Vec<u32> = long_prompt()[..40].to_vec();
    let mut turn =
        Generator::prepared(Rc::clone(&model), &first, 8, 512, &[], &greedy, None).unwrap();
    turn.reuse_prefixes(&prefixes);
    turn.prefill().unwrap();
    while turn.next_token().unwrap().is_some() {}
    let answer = turn.into_generation().tokens;
    let mut second = first.clone();
    second.extend(&answer);
    second.extend([11, 12, 13, 14]);

    let mut batch = Batch::new(Rc::clone(&model)).with_prefill_chunk(16);
    let companion = batch.join(sequence(&long_prompt()[100..150], 20, &greedy));
    batch.step().unwrap();
    batch.step().unwrap();
    let mut other_second = first.clone();
    other_second.extend(&answer);
    other_second.extend((20..57).collect::<Vec<u32>>());
    let cold = long_prompt()[200..223].to_vec();
    let prompts = [second, other_second, cold];
    let ids: Vec<SeqId> = prompts
        .iter()
        .enumerate()
        .map(|(i, prompt)| {
            let mut joiner = sequence(prompt, 12, &greedy);
            if i < 2 {
                joiner.reuse_prefixes(&prefixes);
            }
            batch.join(joiner)
        })
        .collect();
    let plan = batch.plan();
    assert_eq!(plan.prefill.len(), 1, "one forward pass");
    assert_eq!(plan.prefill[0].len(), 3, "a chunk of each prompt");
    let mut taken: Vec<Taken> = (0..3).map(|_| Taken::default()).collect();
    for steps in 0.. {
        assert!(steps < 200, "the batch does not end");
        batch.step().unwrap();
        take(&mut batch, companion, &mut Taken::default());
        let mut done = true;
        for (id, taken) in ids.iter().zip(&mut taken) {
            done &= take(&mut batch, *id, taken);
        }
        if done {
            break;
        }
    }
    for (i, prompt) in prompts.iter().enumerate() {
        assert_same(
            &format!("joiner {i} in a batch"),
            &taken[i],
            &alone(&model, prompt, 12, &greedy),
        );
    }
    let generation = batch.leave(ids[0]);
    assert_eq!(generation.reused_tokens, first.len() + answer.len() - 1);
    let stats = prefixes.borrow().stats();
    assert_eq!((stats.hits, stats.misses), (2, 1));
    assert!(stats.bytes > 0);
}

/// The demo model as `scripts/setup.sh` installed it into the demo cache (as
/// `constrained.rs` finds it).
fn demo_model() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(
        super::reference::root().join("target"),
        std::path::PathBuf::from,
    );
    let repo = target.join("demo-hf-home/hub/models--mlxk-demo--SmolLM2-135M-Instruct-Q4_1-mlx");
    let commit = std::fs::read_to_string(repo.join("refs/main"))
        .expect("the demo model is installed: run ./scripts/setup.sh");
    repo.join("snapshots").join(commit.trim())
}

/// A generation's text (answer and reasoning) until it ends, as `next_events` gives it;
/// `step` runs before each call.
#[derive(Default)]
struct Text {
    answer: String,
    reasoning: String,
    ended: bool,
}

impl Text {
    fn take(&mut self, generation: &mut TextGeneration) {
        match generation.next_events().unwrap() {
            None => self.ended = true,
            Some(events) => {
                for event in events {
                    match event {
                        TextEvent::Content(text) => self.answer.push_str(&text),
                        TextEvent::Reasoning(text) => self.reasoning.push_str(&text),
                        other => panic!("no tools were offered: {other:?}"),
                    }
                }
            }
        }
    }
}

/// Each request answered alone (`TextModel::start`), then all joined to the model's batch and
/// stepped by its owner (`TextModel::step` while `is_busy`): each joined answer's text, tokens
/// and finish equal its answer alone. Returns the answers alone.
fn joined_equal_alone(
    model: &TextModel,
    requests: &[(Prompt, AnswerOptions)],
) -> Vec<(Text, mlxk_engine::Generation)> {
    let mut alone = Vec::new();
    for (prompt, options) in requests {
        let mut generation = model.start(prompt, options).unwrap();
        let mut text = Text::default();
        while !text.ended {
            text.take(&mut generation);
        }
        alone.push((text, generation.into_generation()));
    }
    let mut joined: Vec<TextGeneration> = requests
        .iter()
        .map(|(prompt, options)| model.join(prompt, options).unwrap())
        .collect();
    let mut texts: Vec<Text> = joined.iter().map(|_| Text::default()).collect();
    assert!(model.is_busy());
    let mut steps = 0;
    while texts.iter().any(|t| !t.ended) {
        if model.is_busy() {
            model.step().unwrap();
            steps += 1;
        }
        for (generation, text) in joined.iter_mut().zip(&mut texts) {
            if !text.ended {
                text.take(generation);
            }
        }
        assert!(steps < 200, "the batch does not end");
    }
    for (i, (generation, text)) in joined.into_iter().zip(&texts).enumerate() {
        let (solo, solo_generation) = &alone[i];
        assert_eq!(text.answer, solo.answer, "request {i}");
        assert_eq!(text.reasoning, solo.reasoning, "request {i}");
        let generation = generation.into_generation();
        assert_eq!(generation.tokens, solo_generation.tokens, "request {i}");
        assert_eq!(generation.finish_reason, solo_generation.finish_reason);
    }
    assert!(!model.is_busy());
    alone
}

fn chat(question: &str) -> Prompt {
    Prompt::Chat(vec![ChatMessage::new("user", question)])
}

fn greedy(max_tokens: usize, stops: Vec<String>) -> AnswerOptions {
    let greedy = SamplingChoice {
        temperature: Some(0.0),
        ..SamplingChoice::default()
    };
    AnswerOptions::text(greedy, max_tokens, 2048, stops, false)
}

/// `TextModel::join`: chat generations joined to the model's batch give the text and tokens
/// `TextModel::start` gives each alone, and mlx-lm's for each alone, a stop string ending one
/// of them mid-batch.
#[test]
fn joined_text_generations_give_the_text_they_give_alone() {
    let _mlx = mlx();
    let model = TextModel::load(&demo_model(), &LoadPolicy::default()).unwrap();
    let questions = [
        "Describe a cat in a few words.",
        "What is two plus two?",
        "Name three colours of the rainbow, and say which of them you like best and why.",
    ];
    let stops = |i: usize| match i {
        1 => vec![" classic".to_string()],
        _ => Vec::new(),
    };
    let requests: Vec<(Prompt, AnswerOptions)> = questions
        .iter()
        .enumerate()
        .map(|(i, q)| (chat(q), greedy(12, stops(i))))
        .collect();
    let alone = joined_equal_alone(&model, &requests);
    let mlx_lm = mlx_lm_greedy_many(&demo_model(), &questions, 12);
    for (i, (_, solo)) in alone.iter().enumerate() {
        let theirs = ids(&mlx_lm[i]["tokens"]);
        // mlx-lm knows no stop strings: the answer a stop string ended is the start of its.
        assert!(
            theirs.starts_with(&solo.tokens) && !solo.tokens.is_empty(),
            "question {i}: ours {:?}, mlx-lm's {theirs:?} ({:?})",
            solo.tokens,
            mlx_lm[i]["text"]
        );
    }
    assert_eq!(
        alone[1].1.finish_reason,
        FinishReason::Stop,
        "{}",
        alone[1].0.answer
    );
}

/// A row held to a JSON schema (its grammar masks its logits) beside free rows: each gives the
/// answer it gives alone, and the constrained one is an object of that schema.
#[test]
fn a_grammar_row_beside_free_rows_gives_its_answer_alone() {
    let _mlx = mlx();
    let model = TextModel::load(&demo_model(), &LoadPolicy::default()).unwrap();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"city": {"type": "string", "maxLength": 12}},
        "required": ["city"],
        "additionalProperties": false,
    });
    let mut constrained = greedy(40, Vec::new());
    constrained.grammar = Some(mlxk_engine::constraint::Grammar::JsonSchema(schema));
    let requests = [
        (
            chat("Describe a cat in a few words."),
            greedy(12, Vec::new()),
        ),
        (chat("Which city is the capital of France?"), constrained),
        (chat("What is two plus two?"), greedy(10, Vec::new())),
    ];
    let alone = joined_equal_alone(&model, &requests);
    let (text, generation) = &alone[1];
    assert_eq!(
        generation.finish_reason,
        FinishReason::Stop,
        "{}",
        text.answer
    );
    let answer: Value = serde_json::from_str(&text.answer).unwrap();
    assert!(answer["city"].as_str().is_some(), "{answer}");
    assert_eq!(answer.as_object().unwrap().len(), 1, "{answer}");
}
