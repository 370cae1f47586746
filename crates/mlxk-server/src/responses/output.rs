//! The response object and its output items, shared by whole answers and streams: a whole
//! answer's items are those its stream would have closed, in the same shapes.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use super::request::Settings;
use crate::answer::{new_id, Answer, Call};
use crate::error::ApiError;
use crate::service::Usage;

/// One output item, as its text grows.
#[derive(Debug, Clone)]
pub enum Item {
    Reasoning { id: String, text: String },
    Message { id: String, text: String },
    Call { id: String, call: Call },
}

impl Item {
    pub fn reasoning(text: &str) -> Item {
        Item::Reasoning {
            id: new_id("rs_"),
            text: text.to_string(),
        }
    }

    pub fn message(text: &str) -> Item {
        Item::Message {
            id: new_id("msg_"),
            text: text.to_string(),
        }
    }

    pub fn call(call: Call) -> Item {
        Item::Call {
            id: new_id("fc_"),
            call,
        }
    }

    pub fn id(&self) -> &str {
        match self {
            Item::Reasoning { id, .. } | Item::Message { id, .. } | Item::Call { id, .. } => id,
        }
    }

    /// The item's one content part, complete (`None` for a call, which has no parts).
    pub fn part(&self) -> Option<Value> {
        match self {
            Item::Reasoning { text, .. } => Some(json!({"type": "reasoning_text", "text": text})),
            Item::Message { text, .. } => Some(
                json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []}),
            ),
            Item::Call { .. } => None,
        }
    }

    /// The item as an output list holds it. `done`: with its part and `status`
    /// (`completed`, or `incomplete` when the answer was cut off in it); else as it starts,
    /// empty and `in_progress`.
    pub fn json(&self, status: Status) -> Value {
        let done = status != Status::InProgress;
        let parts = match self.part() {
            Some(part) if done => vec![part],
            _ => Vec::new(),
        };
        let status = status.label();
        match self {
            Item::Reasoning { id, .. } => {
                json!({"type": "reasoning", "id": id, "summary": [], "content": parts, "status": status})
            }
            Item::Message { id, .. } => {
                json!({"type": "message", "id": id, "role": "assistant", "status": status, "content": parts})
            }
            Item::Call { id, call } => json!({
                "type": "function_call", "id": id, "call_id": call.id, "name": call.name,
                "arguments": if done { call.arguments.as_str() } else { "" }, "status": status,
            }),
        }
    }
}

/// The status of a response or an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Completed,
    /// Cut off by `max_output_tokens`.
    Incomplete,
    Failed,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Incomplete => "incomplete",
            Status::Failed => "failed",
        }
    }
}

/// What every response object of one request shares.
pub struct Head {
    pub id: String,
    pub created_at: u64,
    pub model: String,
    pub settings: Settings,
}

impl Head {
    pub fn new(model: String, settings: Settings) -> Head {
        let created_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        Head {
            id: new_id("resp_"),
            created_at,
            model,
            settings,
        }
    }

    /// The response object: `output` and `usage` as far as known, `error` for a failure.
    pub fn response(
        &self,
        status: Status,
        output: Vec<Value>,
        usage: Option<Usage>,
        error: Option<&ApiError>,
    ) -> Value {
        let mut response = json!({
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status.label(),
            "model": self.model,
            "output": output,
            "usage": usage.map(usage_json),
            "error": error.map(|e| {
                // The message a client sees is the one its error body would show.
                let message = e.body()["error"]["message"].clone();
                let code = if e.status.is_server_error() { "server_error" } else { "invalid_prompt" };
                json!({"code": code, "message": message})
            }),
            "incomplete_details": (status == Status::Incomplete)
                .then(|| json!({"reason": "max_output_tokens"})),
        });
        if status == Status::Completed {
            response["completed_at"] = json!(now());
        }
        for (key, value) in &self.settings {
            response[key] = value.clone();
        }
        response
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// OpenAI's usage, with the prompt tokens the prefix cache held; reasoning tokens are not
/// counted apart from the rest of the output (0).
fn usage_json(usage: Usage) -> Value {
    let Usage {
        prompt_tokens,
        cached_tokens,
        completion_tokens,
    } = usage;
    json!({
        "input_tokens": prompt_tokens,
        "input_tokens_details": {"cached_tokens": cached_tokens, "cache_write_tokens": 0},
        "output_tokens": completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt_tokens + completion_tokens,
    })
}

/// Whether an answer that ended so is complete.
pub fn final_status(finish: mlxk_engine::FinishReason) -> Status {
    match finish {
        mlxk_engine::FinishReason::Length => Status::Incomplete,
        _ => Status::Completed,
    }
}

/// The items of a whole answer, as its stream would have made them: its reasoning, its text,
/// its calls; a message even when empty if there is nothing else.
pub fn items_of(answer: &Answer) -> Vec<Item> {
    let mut items = Vec::new();
    if !answer.reasoning.is_empty() {
        items.push(Item::reasoning(&answer.reasoning));
    }
    if !answer.content.is_empty() || (items.is_empty() && answer.calls.is_empty()) {
        items.push(Item::message(&answer.content));
    }
    items.extend(answer.calls.iter().cloned().map(Item::call));
    items
}

/// Items as a finished response lists them: the last one `incomplete` if the answer was cut
/// off (in it), all others `completed`.
pub fn finished(items: &[Item], status: Status) -> Vec<Value> {
    let last = items.len().saturating_sub(1);
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            item.json(if i == last && status == Status::Incomplete {
                Status::Incomplete
            } else {
                Status::Completed
            })
        })
        .collect()
}

/// A whole answer's response object.
pub fn whole(head: &Head, answer: &Answer) -> Value {
    let status = final_status(answer.finish);
    let output = finished(&items_of(answer), status);
    head.response(status, output, Some(answer.usage), None)
}
