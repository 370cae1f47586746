//! The prefix cache on tiny random-weight models: a second turn that starts with the first
//! turn's prompt and answer reuses their keys and values and yields exactly the tokens of a
//! cold run; a sliding-window model reuses what it can cut exactly and nothing else.

use std::rc::Rc;

use mlxk_engine::{Generator, LanguageModel, LoadPolicy, PrefixCache, SamplingParams};

use super::mlx;
use super::parity_tiny::cases;

fn model(architecture: &str) -> Rc<dyn LanguageModel> {
    let (_, dir) = cases()
        .iter()
        .find(|(arch, path)| arch == architecture && !path.to_string_lossy().contains("bit"))
        .unwrap_or_else(|| panic!("a float tiny {architecture} model"));
    mlxk_engine::load(dir, &LoadPolicy::as_published())
        .unwrap()
        .model
}

/// Greedy tokens after `prompt`; with `prefixes`, reusing and keeping caches there. Returns
/// the tokens and how many prompt tokens were reused.
fn run(
    model: &Rc<dyn LanguageModel>,
    prompt: &[u32],
    max_tokens: usize,
    prefixes: Option<&mlxk_engine::SharedPrefixCache>,
) -> (Vec<u32>, usize) {
    let greedy = SamplingParams::default();
    let mut generator = Generator::prepared(
        Rc::clone(model),
        prompt,
        max_tokens,
        4096,
        &[],
        &greedy,
        None,
    )
    .unwrap();
    if let Some(prefixes) = prefixes {
        generator.reuse_prefixes(prefixes);
    }
    generator.prefill().unwrap();
    while generator.next_token().unwrap().is_some() {}
    let generation = generator.into_generation();
    (generation.tokens, generation.reused_tokens)
}

fn check_second_turn(architecture: &str, first_turn: usize) {
    let _mlx = mlx();
    let model = model(architecture);
    let prefixes = PrefixCache::shared(1 << 30);
    let first: Vec<u32> = (0..first_turn as u32).map(|i| 3 + i * 7 % 90).collect();
    let (answer, reused) = run(&model, &first, 8, Some(&prefixes));
    assert_eq!(
        reused, 0,
        "{architecture}: nothing is kept before the first turn"
    );
    let mut second = first.clone();
    second.extend(&answer);
    second.extend([11, 12, 13, 14]);
    let (warm, reused) = run(&model, &second, 12, Some(&prefixes));
    let (cold, _) = run(&model, &second, 12, None);
    assert_eq!(
        warm, cold,
        "{architecture}: a reused prefix changes no token"
    );
    // The first turn's prompt and all of its answer but the last token were computed.
    assert_eq!(reused, first.len() + answer.len() - 1, "{architecture}");
    let stats = prefixes.borrow().stats();
    assert_eq!((stats.hits, stats.misses), (1, 1), "{architecture}");
    assert!(stats.bytes > 0);
}

#[test]
fn a_second_turn_reuses_the_first_and_equals_a_cold_run() {
    check_second_turn("llama", 40);
    check_second_turn("qwen3", 40);
}

#[test]
fn sliding_windows_reuse_only_what_can_be_cut_exactly() {
    // Past 256 positions, a window layer (8 positions here) has dropped the oldest: a second
    // turn that goes on from the end still reuses everything.
    check_second_turn("gemma3_text", 300);

    // A prompt that parts from the kept one early would need positions the window dropped
    // (a cache drops them when it grows past 512 positions, here during the answer).
    let _mlx = mlx();
    let model = model("gemma3_text");
    let prefixes = PrefixCache::shared(1 << 30);
    let first: Vec<u32> = (0..300u32).map(|i| 3 + i * 7 % 90).collect();
    run(&model, &first, 220, Some(&prefixes));
    let mut parting = first[..100].to_vec();
    parting.extend([11, 12, 13, 14]);
    let (warm, reused) = run(&model, &parting, 12, Some(&prefixes));
    let (cold, _) = run(&model, &parting, 12, None);
    assert_eq!(reused, 0, "no exact cut at position 100");
    assert_eq!(warm, cold);
}
