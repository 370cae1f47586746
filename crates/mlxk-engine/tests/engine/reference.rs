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
    let mut command = Command::new(root().join(".venv/bin/python"));
    command
        .arg(root().join("tests/reference/mlx_lm_greedy.py"))
        .arg(model)
        .arg(prompt)
        .arg(max_tokens.to_string());
    if raw {
        command.arg("--raw");
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
