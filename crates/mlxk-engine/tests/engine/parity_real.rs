//! The real models `scripts/setup.sh` converts from PyPI packages into the test cache
//! (`target/test-models-hf-home`): Qwen2.5-Coder-0.5B-Instruct (qwen2, Q4_K_M: Q5_0, Q8_0,
//! Q4_K re-packed, Q6_K dense) and Gemma 3 270M (gemma3, base). mlx-lm loads each folder and
//! our engine's greedy tokens, under its default load plan, equal mlx-lm's: a chat prompt for
//! Qwen (which must answer with Python code), a raw completion for Gemma.

use std::path::PathBuf;

use super::reference::{ids, mlx_lm_greedy, root};
use mlxk_engine::{generate, Control, LoadPolicy, SamplingParams, Tokenizer};

const TOKENS: usize = 32;

/// The snapshot folder of a model setup.sh installed into the test cache.
fn installed(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(root().join("target"), PathBuf::from);
    let repo = target
        .join("test-models-hf-home/hub")
        .join(format!("models--{}", name.replace('/', "--")));
    let commit = std::fs::read_to_string(repo.join("refs/main"))
        .unwrap_or_else(|_| panic!("{name} is not in the test cache: run ./scripts/setup.sh"));
    repo.join("snapshots").join(commit.trim())
}

/// Our greedy generation equals mlx-lm's on the same folder; returns our text.
fn check(name: &str, question: &str, chat: bool) -> String {
    let _mlx = super::mlx();
    let model_dir = installed(name);
    let reference = mlx_lm_greedy(&model_dir, question, TOKENS, !chat);
    let tokenizer = Tokenizer::load(&model_dir).unwrap();
    let prompt = if chat {
        let messages = [mlxk_engine::ChatMessage::new("user", question)];
        tokenizer.apply_chat_template(&messages, true).unwrap()
    } else {
        question.to_string()
    };
    assert_eq!(
        prompt,
        reference["prompt"].as_str().unwrap(),
        "{name}: prompt"
    );
    let prompt_ids = tokenizer.encode(&prompt).unwrap();
    assert_eq!(
        prompt_ids,
        ids(&reference["prompt_ids"]),
        "{name}: tokenization"
    );
    let loaded = mlxk_engine::load(&model_dir, &LoadPolicy::default()).unwrap();
    let generation = generate(
        &loaded.model,
        &prompt_ids,
        TOKENS,
        8192,
        tokenizer.eos_ids(),
        &SamplingParams::default(),
        |_| Control::Continue,
    )
    .unwrap();
    let text = tokenizer.decode(&generation.tokens).unwrap();
    assert_eq!(
        generation.tokens,
        ids(&reference["tokens"]),
        "{name} ({}): greedy tokens; ours: {text:?}, mlx-lm's: {:?}",
        loaded.plan.layout.label(),
        reference["text"]
    );
    text
}

#[test]
fn qwen2_coder_matches_mlx_lm_and_writes_python() {
    let text = check(
        "mlxk-test/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M-mlx",
        "Write a Python function that returns the sum of two numbers.",
        true,
    );
    assert!(text.contains("def "), "{text}");
}

#[test]
fn gemma3_matches_mlx_lm() {
    let text = check(
        "mlxk-test/gemma-3-270m-Q4_K_M-mlx",
        "The capital of France is",
        false,
    );
    assert!(!text.trim().is_empty());
}

/// A conversation with a tool offered, an assistant's call and its result renders through
/// Qwen's own template exactly as transformers' `apply_chat_template(tools=...)` renders it.
#[test]
fn qwen2_renders_tools_calls_and_results_as_transformers_does() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    use mlxk_engine::tool_use::{Tool, ToolChoice, ToolUse};
    use serde_json::json;

    let model_dir = installed("mlxk-test/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M-mlx");
    let tools = ToolUse {
        tools: vec![Tool {
            name: "get_weather".into(),
            description: Some("Get the current weather in a city".into()),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            strict: false,
        }],
        choice: ToolChoice::Auto,
        parallel: true,
    };
    let mut call = mlxk_engine::ChatMessage::new("assistant", "");
    call.tool_calls = Some(vec![json!({"id": "call_1", "type": "function",
        "function": {"name": "get_weather", "arguments": {"city": "Paris"}}})]);
    let mut result = mlxk_engine::ChatMessage::new("tool", "{\"temperature_celsius\": 31}");
    result.tool_call_id = Some("call_1".into());
    let messages = vec![
        mlxk_engine::ChatMessage::new("user", "What is the weather like in Paris today?"),
        call,
        result,
    ];
    let ours = Tokenizer::load(&model_dir)
        .unwrap()
        .apply_chat_template_with_tools(&messages, true, Some(&tools.template_tools()))
        .unwrap();

    let mut python = Command::new(root().join(".venv/bin/python"))
        .arg(root().join("tests/reference/render_chat.py"))
        .arg(&model_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the test virtualenv's python runs (./scripts/setup.sh)");
    let request = json!({"messages": messages, "tools": tools.template_tools()});
    python
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let output = python.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(ours, String::from_utf8(output.stdout).unwrap());
    assert!(ours.contains("<tool_response>\n{\"temperature_celsius\": 31}\n</tool_response>"));
}
