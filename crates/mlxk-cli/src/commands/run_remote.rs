//! `mlxk run --server`: the answer comes from a running server (which may already hold the
//! model) instead of a second copy loaded here. Same output as a local run: the answer streamed
//! to stdout, reasoning to stderr, the same JSON and `--verbose` numbers.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mlxk_engine::{ChatMessage, FinishReason};
use serde_json::{json, Value};

use super::run::{RunArgs, Stats};
use crate::local_server::LocalServer;
use crate::output::CliError;

/// What one streamed answer from the server came to.
pub struct RemoteAnswer {
    pub model: String,
    pub content: String,
    pub reasoning: String,
    pub stats: Stats,
}

/// Streams one chat answer from `server`: `stream` prints it as it comes; `cancel` ends it
/// (the server stops generating when the connection closes).
pub fn answer(
    server: &LocalServer,
    args: &RunArgs,
    messages: &[ChatMessage],
    stream: bool,
    cancel: &AtomicBool,
) -> Result<RemoteAnswer, CliError> {
    let body = request_body(args, messages);
    super::block_on(async {
        let started = Instant::now();
        let mut response = server.stream("/v1/chat/completions", &body).await?;
        let mut answer = RemoteAnswer {
            model: args.model.clone(),
            content: String::new(),
            reasoning: String::new(),
            stats: Stats {
                finish_reason: FinishReason::Cancelled,
                prompt_tokens: 0,
                cached_tokens: 0,
                generated_tokens: 0,
                prompt_time: Duration::ZERO,
                decode_time: Duration::ZERO,
            },
        };
        let mut first_token: Option<Instant> = None;
        let mut pending = String::new();
        'reading: while !cancel.load(Ordering::Relaxed) {
            let chunk = tokio::select! {
                chunk = response.chunk() => chunk,
                // Ctrl-C is noticed between chunks, and at least this often.
                () = tokio::time::sleep(Duration::from_millis(100)) => continue,
            };
            let Some(bytes) = chunk
                .map_err(|e| CliError::new("server_error", format!("the answer broke off: {e}")))?
            else {
                break;
            };
            pending.push_str(&String::from_utf8_lossy(&bytes));
            while let Some(end) = pending.find('\n') {
                let line: String = pending.drain(..=end).collect();
                let Some(data) = line.trim_end().strip_prefix("data: ") else {
                    continue;
                };
                if data == "[DONE]" {
                    break 'reading;
                }
                let event: Value = serde_json::from_str(data).map_err(|e| {
                    CliError::new("server_error", format!("an unreadable event ({e}): {data}"))
                })?;
                if let Some(message) = event["error"]["message"].as_str() {
                    return Err(CliError::new("server_error", message.to_string()));
                }
                answer.take(&event, stream, args.hide_reasoning, &mut first_token);
            }
        }
        let ended = Instant::now();
        let first = first_token.unwrap_or(ended);
        answer.stats.prompt_time = first - started;
        answer.stats.decode_time = ended - first;
        Ok(answer)
    })?
}

impl RemoteAnswer {
    /// Takes in one streamed chunk: text, the reason it ended, the token counts.
    fn take(
        &mut self,
        event: &Value,
        stream: bool,
        hide_reasoning: bool,
        first_token: &mut Option<Instant>,
    ) {
        if let Some(model) = event["model"].as_str() {
            self.model = model.to_string();
        }
        if let Some(usage) = event.get("usage").filter(|u| u.is_object()) {
            self.stats.prompt_tokens = usage["prompt_tokens"].as_u64().unwrap_or(0) as usize;
            self.stats.cached_tokens = usage["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0) as usize;
            self.stats.generated_tokens = usage["completion_tokens"].as_u64().unwrap_or(0) as usize;
        }
        let Some(choice) = event["choices"].get(0) else {
            return;
        };
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            first_token.get_or_insert_with(Instant::now);
            if stream {
                let mut stdout = io::stdout().lock();
                let _ = stdout.write_all(text.as_bytes());
                let _ = stdout.flush();
            }
            self.content.push_str(text);
        }
        if let Some(text) = delta["reasoning_content"].as_str() {
            first_token.get_or_insert_with(Instant::now);
            if stream && !hide_reasoning {
                eprint!("{text}");
            }
            self.reasoning.push_str(text);
        }
        self.stats.finish_reason = match choice["finish_reason"].as_str() {
            Some("stop") => FinishReason::Stop,
            Some("length") => FinishReason::Length,
            _ => self.stats.finish_reason,
        };
    }
}

/// The request: only the sampling values given here, so the server fills the rest from the
/// model's defaults as a local run does.
fn request_body(args: &RunArgs, messages: &[ChatMessage]) -> Value {
    let mut body = json!({
        "model": args.model,
        "messages": messages
            .iter()
            .map(|m| json!({"role": m.role, "content": m.content}))
            .collect::<Vec<_>>(),
        "max_tokens": args.max_tokens,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    let fields = [
        ("temperature", args.temperature.map(|v| json!(v))),
        ("top_p", args.top_p.map(|v| json!(v))),
        ("top_k", args.top_k.map(|v| json!(v))),
        ("min_p", args.min_p.map(|v| json!(v))),
        (
            "repetition_penalty",
            args.repetition_penalty.map(|v| json!(v)),
        ),
        ("seed", args.seed.map(|v| json!(v))),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            body[name] = value;
        }
    }
    if !args.stops.is_empty() {
        body["stop"] = json!(args.stops);
    }
    // Read (and checked) before the run began.
    match super::run::structured_output(args) {
        Ok(Some(super::run::StructuredOutput::Object)) => {
            body["response_format"] = json!({"type": "json_object"});
        }
        Ok(Some(super::run::StructuredOutput::Schema(schema))) => {
            body["response_format"] =
                json!({"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}});
        }
        Ok(None) | Err(_) => {}
    }
    body
}
