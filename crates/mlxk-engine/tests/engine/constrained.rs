//! Decoding under a grammar on the real demo model (SmolLM2-135M): the answer is a JSON object,
//! and a grammar set to hold after a reasoning block leaves the tokens until the block's end
//! free (here the end is the model's own first free token, so the test needs no reasoning
//! model): that token is the free run's, and what follows it is a JSON object.

use std::path::PathBuf;
use std::rc::Rc;

use mlxk_engine::constraint::{ConstraintFactory, Grammar};
use mlxk_engine::{generate, Control, Generator, LoadPolicy, SamplingParams, Tokenizer};
use serde_json::Value;

use super::reference::root;

/// The demo model as `scripts/setup.sh` installed it into the demo cache.
fn demo_model() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(root().join("target"), PathBuf::from);
    let repo = target.join("demo-hf-home/hub/models--mlxk-demo--SmolLM2-135M-Instruct-Q4_1-mlx");
    let commit = std::fs::read_to_string(repo.join("refs/main"))
        .expect("the demo model is installed: run ./scripts/setup.sh");
    repo.join("snapshots").join(commit.trim())
}

fn run(generator: &mut Generator) -> Vec<u32> {
    while generator.next_token().unwrap().is_some() {}
    generator.tokens().to_vec()
}

#[test]
fn a_grammar_holds_the_answer_and_can_wait_for_a_reasoning_block_to_end() {
    let _mlx = super::mlx();
    let dir = demo_model();
    let tokenizer = Tokenizer::load(&dir).unwrap();
    let loaded = mlxk_engine::load(&dir, &LoadPolicy::default()).unwrap();
    let messages = [mlxk_engine::ChatMessage::new(
        "user",
        "Describe a cat in a few words.",
    )];
    let prompt = tokenizer
        .encode(&tokenizer.apply_chat_template(&messages, true).unwrap())
        .unwrap();
    let vocab = loaded.config["vocab_size"].as_u64().unwrap() as usize;
    let factory =
        ConstraintFactory::new(tokenizer.hf_tokenizer(), tokenizer.eos_ids(), vocab).unwrap();
    let schema = serde_json::json!({"type": "object", "properties": {"words": {"type": "string", "maxLength": 40}},
        "required": ["words"], "additionalProperties": false});
    let greedy = SamplingParams::default();
    let model = Rc::clone(&loaded.model);

    let free = generate(
        &model,
        &prompt,
        8,
        2048,
        tokenizer.eos_ids(),
        &greedy,
        |_| Control::Continue,
    )
    .unwrap();
    let first = free.tokens[0];

    let mut held = Generator::prepared(
        Rc::clone(&model),
        &prompt,
        64,
        2048,
        tokenizer.eos_ids(),
        &greedy,
        Some(factory.start(&Grammar::JsonSchema(schema.clone())).unwrap()),
    )
    .unwrap();
    held.prefill().unwrap();
    let tokens = run(&mut held);
    let text = tokenizer.decode(&tokens).unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(answer["words"].is_string(), "{answer}");

    let mut after = Generator::new(model, &prompt, 64, 2048, tokenizer.eos_ids(), &greedy).unwrap();
    after.hold_after(
        factory.start(&Grammar::JsonSchema(schema)).unwrap(),
        vec![first],
    );
    let tokens = run(&mut after);
    assert_eq!(tokens[0], first, "the reasoning is free");
    let text = tokenizer.decode(&tokens[1..]).unwrap();
    let answer: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    assert!(answer["words"].is_string(), "{answer}");
}
