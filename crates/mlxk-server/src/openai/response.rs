//! OpenAI's response shapes: a whole completion, or server-sent chunks as they come.

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::response::sse::{Event as SseEvent, Sse};
use futures_util::StreamExt;
use mlxk_engine::{Candidate, FinishReason, TextEvent, TokenLogprob};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::request::Endpoint;
use crate::answer;
use crate::error::ApiError;
use crate::request_log::{RequestLog, StreamEnd};
use crate::service::{Event, Usage};

pub fn response_id(endpoint: Endpoint) -> String {
    answer::new_id(match endpoint {
        Endpoint::Chat => "chatcmpl-",
        Endpoint::Completion => "cmpl-",
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// OpenAI's `finish_reason`: an answer that ends after making calls ends for them.
fn reason(finish: FinishReason, made_calls: bool) -> &'static str {
    match finish {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled if made_calls => "tool_calls",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

/// Log-probabilities as each endpoint gives them: chat's `{"content": [{token, logprob, bytes,
/// top_logprobs}]}`, completions' parallel lists (`text_offset` counted from `offset`, the
/// characters of the answer before these tokens).
fn logprobs_json(endpoint: Endpoint, tokens: &[TokenLogprob], offset: usize) -> Value {
    match endpoint {
        Endpoint::Chat => {
            let entry =
                |c: &Candidate| json!({"token": c.text, "logprob": c.logprob, "bytes": c.bytes});
            let content: Vec<Value> = tokens
                .iter()
                .map(|t| {
                    let mut value = entry(&t.chosen);
                    value["top_logprobs"] = t.top.iter().map(entry).collect();
                    value
                })
                .collect();
            json!({"content": content, "refusal": null})
        }
        Endpoint::Completion => {
            let mut text_offset = Vec::with_capacity(tokens.len());
            let mut at = offset;
            for t in tokens {
                text_offset.push(at);
                at += t.chosen.text.chars().count();
            }
            json!({
                "tokens": tokens.iter().map(|t| &t.chosen.text).collect::<Vec<_>>(),
                "token_logprobs": tokens.iter().map(|t| t.chosen.logprob).collect::<Vec<_>>(),
                "top_logprobs": tokens
                    .iter()
                    .map(|t| t.top.iter().map(|c| (c.text.clone(), json!(c.logprob))).collect::<serde_json::Map<_, _>>())
                    .collect::<Vec<_>>(),
                "text_offset": text_offset,
            })
        }
    }
}

fn usage(used: Usage) -> Value {
    let Usage {
        prompt_tokens,
        cached_tokens,
        completion_tokens,
    } = used;
    json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": cached_tokens}})
}

pub async fn collect_response(
    receiver: UnboundedReceiver<Event>,
    endpoint: Endpoint,
    id: String,
    model: String,
    logprobs: bool,
    log: &RequestLog,
) -> Result<Value, ApiError> {
    let answer = answer::collect(receiver, log).await?;
    let logprobs = logprobs.then(|| logprobs_json(endpoint, &answer.logprobs, 0));
    let finish = reason(answer.finish, answer.ended_for_calls());
    let choice = match endpoint {
        Endpoint::Chat => {
            let mut message = json!({"role": "assistant", "content": answer.content});
            if !answer.reasoning.is_empty() {
                message["reasoning_content"] = json!(answer.reasoning);
            }
            if !answer.calls.is_empty() {
                message["tool_calls"] = answer
                    .calls
                    .iter()
                    .map(|call| json!({"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}))
                    .collect();
                if answer.content.is_empty() {
                    message["content"] = Value::Null;
                }
            }
            json!({"index": 0, "message": message, "finish_reason": finish, "logprobs": logprobs})
        }
        Endpoint::Completion => {
            json!({"index": 0, "text": answer.content, "finish_reason": finish, "logprobs": logprobs})
        }
    };
    let object = if endpoint == Endpoint::Chat {
        "chat.completion"
    } else {
        "text_completion"
    };
    Ok(json!({
        "id": id, "object": object, "created": now(), "model": model,
        "choices": [choice], "usage": usage(answer.usage),
    }))
}

pub fn stream_response(
    receiver: UnboundedReceiver<Event>,
    endpoint: Endpoint,
    id: String,
    model: String,
    include_usage: bool,
    logprobs: bool,
    end: StreamEnd,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let object = if endpoint == Endpoint::Chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let created = now();
    let chunk = move |choice: Value| {
        let mut value = json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]});
        if include_usage {
            value["usage"] = Value::Null;
        }
        value
    };
    let first = match endpoint {
        Endpoint::Chat => vec![chunk(
            json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}),
        )],
        Endpoint::Completion => Vec::new(),
    };
    let mut made_calls = false;
    // Log-probabilities go with the next chunk after their tokens (the text of a token can be
    // held back, for a stop string or a tag).
    let mut pending: Vec<TokenLogprob> = Vec::new();
    let mut text_offset = 0;
    let body = UnboundedReceiverStream::new(receiver).flat_map(move |event| {
        // Owned by the stream: the request's line is written when the stream is dropped.
        end.log().saw(&event);
        let mut out: Vec<Value> = Vec::new();
        let mut with_logprobs = |mut choice: Value, text: &str| {
            if logprobs && !pending.is_empty() {
                choice["logprobs"] = logprobs_json(endpoint, &std::mem::take(&mut pending), text_offset);
            }
            text_offset += text.chars().count();
            chunk(choice)
        };
        match event {
            Event::Text(text) => {
                let piece = match &text {
                    TextEvent::Content(t) | TextEvent::Reasoning(t) => t.clone(),
                    _ => String::new(),
                };
                let choice = match (endpoint, text) {
                    (Endpoint::Chat, TextEvent::Content(t)) => json!({"index": 0, "delta": {"content": t}, "finish_reason": null}),
                    (Endpoint::Chat, TextEvent::Reasoning(t)) => json!({"index": 0, "delta": {"reasoning_content": t}, "finish_reason": null}),
                    (Endpoint::Chat, TextEvent::ToolCallStart { index, id, name }) => {
                        made_calls = true;
                        json!({"index": 0, "delta": {"tool_calls": [{"index": index, "id": id, "type": "function", "function": {"name": name, "arguments": ""}}]}, "finish_reason": null})
                    }
                    (Endpoint::Chat, TextEvent::ToolCallArguments { index, fragment }) => json!({"index": 0, "delta": {"tool_calls": [{"index": index, "function": {"arguments": fragment}}]}, "finish_reason": null}),
                    (Endpoint::Completion, TextEvent::Content(t) | TextEvent::Reasoning(t)) => json!({"index": 0, "text": t, "finish_reason": null, "logprobs": null}),
                    // Completions take no tools (a 400 before any generation).
                    (Endpoint::Completion, TextEvent::ToolCallStart { .. } | TextEvent::ToolCallArguments { .. }) => return futures_util::stream::iter(out),
                };
                out.push(with_logprobs(choice, &piece));
            }
            Event::Done { finish_reason, usage: used, .. } => {
                let finish = reason(finish_reason, made_calls);
                out.push(with_logprobs(match endpoint {
                    Endpoint::Chat => json!({"index": 0, "delta": {}, "finish_reason": finish}),
                    Endpoint::Completion => json!({"index": 0, "text": "", "finish_reason": finish, "logprobs": null}),
                }, ""));
                if include_usage {
                    let mut last = chunk(json!(null));
                    last["choices"] = json!([]);
                    last["usage"] = usage(used);
                    out.push(last);
                }
                out.push(json!("[DONE]"));
            }
            Event::Failed(error) => out.push(ApiError::from(error).body()),
            Event::Logprobs(tokens) => pending.extend(tokens),
            Event::Admitted => {}
        }
        futures_util::stream::iter(out)
    });
    let events = futures_util::stream::iter(first).chain(body).map(|value| {
        Ok(match value {
            Value::String(done) if done == "[DONE]" => SseEvent::default().data("[DONE]"),
            other => SseEvent::default().data(other.to_string()),
        })
    });
    Sse::new(events)
}
