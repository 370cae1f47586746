//! Anthropic's whole `message`, and the pieces a streamed one shares with it: ids, content
//! blocks, `stop_reason` and `usage`.

use mlxk_engine::FinishReason;
use serde_json::{json, Value};

use super::request::Shape;
use crate::answer::{Answer, Call};
use crate::service::Usage;

/// The signature of a `thinking` block: Anthropic's proves Claude wrote it; a local model's
/// reasoning has none, and this server reads none back.
pub const NO_SIGNATURE: &str = "";

/// A call's id as Anthropic writes them (`toolu_...`); the request side takes the prefix off.
pub fn tool_use_id(engine_id: &str) -> String {
    format!(
        "toolu_{}",
        engine_id.strip_prefix("call_").unwrap_or(engine_id)
    )
}

/// A call's arguments as the `input` object (none: an empty one).
fn input(call: &Call) -> Value {
    match serde_json::from_str(&call.arguments) {
        Ok(object @ Value::Object(_)) => object,
        _ if call.arguments.trim().is_empty() => json!({}),
        _ => {
            // The engine's parsers hand on objects only; a malformed one is a bug to see.
            tracing::warn!(tool = %call.name, "a tool call's arguments are not a JSON object");
            json!({})
        }
    }
}

/// Why the answer ended, and the stop sequence it ended at (as the engine matched it).
pub fn stop_reason(
    finish: FinishReason,
    ended_for_calls: bool,
    matched_stop: Option<String>,
) -> (&'static str, Option<String>) {
    // A stop string matched by the last token allowed still cut the text there: it wins.
    match (finish, matched_stop) {
        _ if ended_for_calls => ("tool_use", None),
        (_, Some(stop)) => ("stop_sequence", Some(stop)),
        (FinishReason::Length, None) => ("max_tokens", None),
        (FinishReason::Stop | FinishReason::Cancelled, None) => ("end_turn", None),
    }
}

/// Token counts as Anthropic splits them: `input_tokens` are those computed, the prompt tokens
/// the prefix cache held are `cache_read_input_tokens` (nothing is written on request, so no
/// cache creation is counted).
pub fn usage(used: Usage) -> Value {
    json!({
        "input_tokens": used.prompt_tokens.saturating_sub(used.cached_tokens),
        "output_tokens": used.completion_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": used.cached_tokens,
    })
}

/// A whole answer as Anthropic's `message`: thinking, text, then the calls.
pub fn message(answer: &Answer, id: String, model: &str, shape: &Shape) -> Value {
    let mut content = Vec::new();
    if shape.show_thinking && !answer.reasoning.is_empty() {
        content.push(
            json!({"type": "thinking", "thinking": answer.reasoning, "signature": NO_SIGNATURE}),
        );
    }
    if !answer.content.is_empty() {
        content.push(json!({"type": "text", "text": answer.content}));
    }
    for call in &answer.calls {
        content.push(json!({"type": "tool_use", "id": tool_use_id(&call.id),
            "name": call.name, "input": input(call)}));
    }
    let (reason, sequence) = stop_reason(
        answer.finish,
        answer.ended_for_calls(),
        answer.stop_sequence.clone(),
    );
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage(answer.usage),
    })
}
