//! Embedding models against their reference implementations on the same random weights
//! (tests/reference/make_tiny_embedders.py): BERT by mlx-embeddings (mean + normalise, CLS, max;
//! float32 and 4-bit) and a causal Qwen3 embedder by mlx-lm (last token, normalised, with a
//! query prompt; also saved as the bare transformer). Vectors agree to 1e-4, token counts and
//! cuts are the reference tokenizer's, and a padded batch gives what each text gives alone.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use mlxk_engine::{EmbeddingInput, EmbeddingModel, InputKind, LoadPolicy};
use serde_json::Value;

use super::mlx;
use super::reference::root;

/// The tiny embedders and their references, made once for this test binary.
fn cases() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("embedding_tiny");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let status = Command::new(root().join(".venv/bin/python"))
            .arg(root().join("tests/reference/make_tiny_embedders.py"))
            .arg(&dir)
            .status()
            .expect("the test virtualenv's python runs (./scripts/setup.sh)");
        assert!(status.success());
        dir
    })
}

fn vectors(value: &Value) -> Vec<Vec<f32>> {
    serde_json::from_value(value.clone()).unwrap()
}

fn worst_difference(ours: &[Vec<f32>], expected: &[Vec<f32>]) -> f32 {
    assert_eq!(ours.len(), expected.len());
    ours.iter()
        .zip(expected)
        .flat_map(|(a, b)| {
            assert_eq!(a.len(), b.len());
            a.iter().zip(b).map(|(x, y)| (x - y).abs())
        })
        .fold(0.0, f32::max)
}

fn check(case: &str) {
    let _mlx = mlx();
    let dir = cases().join(case);
    let reference: Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
    let texts: Vec<EmbeddingInput> = reference["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| EmbeddingInput::Text(t.as_str().unwrap().to_string()))
        .collect();
    let model = EmbeddingModel::load(&dir, &LoadPolicy::for_this_machine(None).unwrap())
        .unwrap_or_else(|e| panic!("{case}: {e}"));
    assert_eq!(
        model.max_tokens(),
        16,
        "{case}: sentence_bert_config's maximum"
    );

    let batched = model.embed(&texts, InputKind::Document).unwrap();
    let ours: Vec<Vec<f32>> = batched.iter().map(|e| e.vector.clone()).collect();
    let worst = worst_difference(&ours, &vectors(&reference["document"]));
    assert!(worst < 1e-4, "{case}: vectors differ by {worst}");
    let tokens: Vec<u64> = batched.iter().map(|e| e.tokens as u64).collect();
    let expected: Vec<u64> = serde_json::from_value(reference["tokens"].clone()).unwrap();
    assert_eq!(tokens, expected, "{case}: tokens read");
    let cut: Vec<bool> = batched.iter().map(|e| e.truncated).collect();
    assert_eq!(cut, [false, false, false, true, false], "{case}: cut texts");

    // Each text alone (no padding) gives what the padded batch gave.
    for (input, together) in texts.iter().zip(&ours) {
        let alone = model
            .embed(std::slice::from_ref(input), InputKind::Document)
            .unwrap();
        let worst = worst_difference(&[alone[0].vector.clone()], std::slice::from_ref(together));
        assert!(worst < 1e-5, "{case}: batched and alone differ by {worst}");
    }

    match reference.get("query") {
        Some(query) => {
            assert!(model.distinguishes_queries());
            let ours: Vec<Vec<f32>> = model
                .embed(&texts, InputKind::Query)
                .unwrap()
                .into_iter()
                .map(|e| e.vector)
                .collect();
            let worst = worst_difference(&ours, &vectors(query));
            assert!(worst < 1e-4, "{case}: query vectors differ by {worst}");
        }
        None => assert!(!model.distinguishes_queries()),
    }
}

#[test]
fn bert_mean_normalized_matches_mlx_embeddings() {
    check("bert-mean");
}

#[test]
fn bert_cls_matches_mlx_embeddings() {
    check("bert-cls");
}

#[test]
fn bert_max_matches_mlx_embeddings() {
    check("bert-max");
}

#[test]
fn bert_4bit_matches_mlx_embeddings() {
    check("bert-mean-4bit");
}

#[test]
fn qwen3_last_token_matches_mlx_lm() {
    check("qwen3-embedding");
}

#[test]
fn qwen3_saved_as_the_bare_transformer_matches_mlx_lm() {
    check("qwen3-embedding-bare");
}

#[test]
fn token_ids_outside_the_vocabulary_and_empty_inputs_are_refused() {
    let _mlx = mlx();
    let model = EmbeddingModel::load(
        &cases().join("bert-mean"),
        &LoadPolicy::for_this_machine(None).unwrap(),
    )
    .unwrap();
    let error = model
        .embed(
            &[EmbeddingInput::Tokens(vec![2, 999, 3])],
            InputKind::Document,
        )
        .unwrap_err()
        .to_string();
    assert!(error.contains("999"), "{error}");
    let error = model
        .embed(&[EmbeddingInput::Tokens(vec![])], InputKind::Document)
        .unwrap_err()
        .to_string();
    assert!(error.contains("no tokens"), "{error}");
    // Token ids are read as given, cut at the model's maximum.
    let long = model
        .embed(&[EmbeddingInput::Tokens(vec![5; 40])], InputKind::Document)
        .unwrap();
    assert_eq!((long[0].tokens, long[0].truncated), (16, true));
}

#[test]
fn the_runtime_table_names_the_architectures_the_engine_embeds_with() {
    let mut engine = vec!["bert"];
    engine.extend(mlxk_engine::embedding::CAUSAL_EMBEDDING_ARCHITECTURES);
    assert_eq!(
        mlxk_core::architectures::EMBEDDING_ARCHITECTURES,
        engine.as_slice()
    );
}
