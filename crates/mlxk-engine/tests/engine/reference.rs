//! What the parity tests share: the repository root, and mlx-lm's greedy answer on a folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// mlx-lm's greedy generation (tests/reference/mlx_lm_greedy.py): the prompt's token ids and
/// `max_tokens` new ones; `raw` sends the prompt without the chat template.
pub fn mlx_lm_greedy(model: &Path, prompt: &str, max_tokens: usize, raw: bool) -> Value {
    run_mlx_lm_greedy(model, prompt, max_tokens, raw, false)
}

/// [`mlx_lm_greedy`] of each chat question in `questions`, each answered alone by one mlx-lm
/// process (the model loaded once); the results in their order.
pub fn mlx_lm_greedy_many(model: &Path, questions: &[&str], max_tokens: usize) -> Vec<Value> {
    let questions = serde_json::to_string(questions).unwrap();
    match run_mlx_lm_greedy(model, &questions, max_tokens, false, true) {
        Value::Array(results) => results,
        other => panic!("mlx_lm_greedy.py --many gave {other}"),
    }
}

fn run_mlx_lm_greedy(
    model: &Path,
    prompt: &str,
    max_tokens: usize,
    raw: bool,
    many: bool,
) -> Value {
    let mut command = Command::new(root().join(".venv/bin/python"));
    command
        .arg(root().join("tests/reference/mlx_lm_greedy.py"))
        .arg(model)
        .arg(prompt)
        .arg(max_tokens.to_string());
    if raw {
        command.arg("--raw");
    }
    if many {
        command.arg("--many");
    }
    let output = command
        .output()
        .expect("the test virtualenv's python runs (./scripts/setup.sh)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// A JSON list of token ids.
pub fn ids(value: &Value) -> Vec<u32> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect()
}
