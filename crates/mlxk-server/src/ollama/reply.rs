//! Ollama's answers, from a generation's events: NDJSON lines as they come (the default), or one
//! whole object. Chat lines carry `message` (`content`, `thinking`, `tool_calls`), generate
//! lines `response` and `thinking`; the last line is `done: true` with `done_reason` (`stop` or
//! `length`), the token counts and the measured durations in nanoseconds. Tool calls go out
//! whole (Ollama's clients expect `arguments` as an object), each once its arguments end. A
//! failure after the first line is an `{"error"}` line, as Ollama sends one.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use mlxk_engine::logprobs::TokenLogprob;
use mlxk_engine::{FinishReason, TextEvent};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{rfc3339, OllamaError};
use crate::answer::{Call, Calls};
use crate::error::without_directories;
use crate::request_log::RequestLog;
use crate::routes::Shared;
use crate::service::{Event, ServiceError, Usage};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Chat,
    Generate,
}

/// When an answer's stages happened, for Ollama's durations.
struct Clock {
    /// The request arrived.
    started: Instant,
    /// The worker took it: loading (if needed), the prompt and the answer follow.
    admitted: Instant,
    admitted_at: SystemTime,
    /// The first text (the prompt was read), and how long of that went to loading the model.
    first: Option<(Instant, Duration)>,
}

/// What one event adds to an answer.
enum Piece {
    Content(String),
    Thinking(String),
    Call(usize, Call),
    /// The log-probabilities of the tokens of the text that follows.
    Logprobs(Vec<TokenLogprob>),
    Done(FinishReason, Usage),
    Failed(ServiceError),
}

/// Turns one generation's events into Ollama's pieces, and those into lines or a whole answer.
pub struct Reply {
    shape: Shape,
    /// The model as the client named it: Ollama answers with that name.
    model: String,
    /// The model as loaded, to read when it was loaded.
    loaded_name: String,
    think: bool,
    state: Shared,
    clock: Clock,
    calls: Calls,
    /// Calls sent so far; the one after them is still being written.
    calls_sent: usize,
    /// Log-probabilities not sent yet: they go with the next line.
    logprobs: Vec<Value>,
}

impl Reply {
    /// A reply to a request that arrived at `started` and was admitted just now.
    pub fn new(
        shape: Shape,
        model: String,
        loaded_name: String,
        think: bool,
        state: Shared,
        started: Instant,
    ) -> Reply {
        Reply {
            shape,
            model,
            loaded_name,
            think,
            state,
            clock: Clock {
                started,
                admitted: Instant::now(),
                admitted_at: SystemTime::now(),
                first: None,
            },
            calls: Calls::default(),
            calls_sent: 0,
            logprobs: Vec::new(),
        }
    }

    fn pieces(&mut self, event: Event) -> Vec<Piece> {
        if matches!(event, Event::Text(_) | Event::Done { .. }) && self.clock.first.is_none() {
            self.clock.first = Some((Instant::now(), self.load_time()));
        }
        let mut pieces = Vec::new();
        match event {
            Event::Text(TextEvent::ToolCallStart { index, id, name }) => {
                self.finished_calls(index, &mut pieces);
                self.calls.start(index, id, name);
            }
            Event::Text(TextEvent::ToolCallArguments { index, fragment }) => {
                self.calls.arguments(index, &fragment)
            }
            Event::Text(TextEvent::Content(text)) => {
                self.finished_calls(usize::MAX, &mut pieces);
                pieces.push(Piece::Content(text));
            }
            Event::Text(TextEvent::Reasoning(text)) => {
                self.finished_calls(usize::MAX, &mut pieces);
                if self.think {
                    pieces.push(Piece::Thinking(text));
                }
            }
            Event::Done {
                finish_reason,
                usage,
                ..
            } => {
                self.finished_calls(usize::MAX, &mut pieces);
                pieces.push(Piece::Done(finish_reason, usage));
            }
            Event::Logprobs(tokens) => pieces.push(Piece::Logprobs(tokens)),
            Event::Failed(error) => pieces.push(Piece::Failed(error)),
            Event::Admitted => {}
        }
        pieces
    }

    /// The calls before `until`, whose arguments are complete, not yet sent.
    fn finished_calls(&mut self, until: usize, pieces: &mut Vec<Piece>) {
        let end = until.min(self.calls.0.len());
        while self.calls_sent < end {
            let call = std::mem::take(&mut self.calls.0[self.calls_sent]);
            pieces.push(Piece::Call(self.calls_sent, call));
            self.calls_sent += 1;
        }
    }

    /// How long loading the model took, if this request loaded it: the model shows when its
    /// load ended.
    fn load_time(&self) -> Duration {
        self.state
            .service
            .worker()
            .residents()
            .into_iter()
            .find(|r| r.name == self.loaded_name)
            .and_then(|r| r.loaded_at.duration_since(self.clock.admitted_at).ok())
            .unwrap_or_default()
    }

    /// A line (or the whole answer) with `fields`, the log-probabilities not sent yet, and
    /// `done`.
    fn object(&mut self, fields: Map<String, Value>, done: bool) -> Value {
        let mut object = Map::new();
        object.insert("model".into(), json!(self.model));
        object.insert("created_at".into(), json!(rfc3339(SystemTime::now())));
        object.extend(fields);
        if !self.logprobs.is_empty() {
            object.insert("logprobs".into(), json!(std::mem::take(&mut self.logprobs)));
        }
        object.insert("done".into(), json!(done));
        Value::Object(object)
    }

    /// The text fields: a chat's `message`, or generate's `response` and `thinking`.
    fn text_fields(
        &self,
        content: String,
        thinking: String,
        calls: Vec<Value>,
    ) -> Map<String, Value> {
        let mut fields = Map::new();
        match self.shape {
            Shape::Chat => {
                let mut message = json!({"role": "assistant", "content": content});
                if !thinking.is_empty() {
                    message["thinking"] = json!(thinking);
                }
                if !calls.is_empty() {
                    message["tool_calls"] = json!(calls);
                }
                fields.insert("message".into(), message);
            }
            // Generate takes no tools.
            Shape::Generate => {
                fields.insert("response".into(), json!(content));
                if !thinking.is_empty() {
                    fields.insert("thinking".into(), json!(thinking));
                }
            }
        }
        fields
    }

    /// `done_reason`, the counts and the durations, in nanoseconds.
    fn end_fields(&self, finish: FinishReason, usage: Usage) -> Map<String, Value> {
        let now = Instant::now();
        let (first, load) = self.clock.first.unwrap_or((now, Duration::ZERO));
        let prompt = first
            .duration_since(self.clock.admitted)
            .saturating_sub(load);
        let nanos = |d: Duration| json!(d.as_nanos() as u64);
        let reason = match finish {
            FinishReason::Length => "length",
            FinishReason::Stop | FinishReason::Cancelled => "stop",
        };
        [
            ("done_reason", json!(reason)),
            (
                "total_duration",
                nanos(now.duration_since(self.clock.started)),
            ),
            ("load_duration", nanos(load)),
            ("prompt_eval_count", json!(usage.prompt_tokens)),
            ("prompt_eval_duration", nanos(prompt)),
            ("eval_count", json!(usage.completion_tokens)),
            ("eval_duration", nanos(now.duration_since(first))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The line of one piece; log-probabilities wait for the line of their text.
    fn line(&mut self, piece: Piece) -> Option<Value> {
        let (content, thinking, calls) = match piece {
            Piece::Content(content) => (content, String::new(), Vec::new()),
            Piece::Thinking(thinking) => (String::new(), thinking, Vec::new()),
            Piece::Call(index, call) => {
                (String::new(), String::new(), vec![call_object(index, call)])
            }
            Piece::Logprobs(tokens) => {
                self.logprobs.extend(tokens.iter().map(logprob_object));
                return None;
            }
            Piece::Done(finish, usage) => {
                let mut fields = self.text_fields(String::new(), String::new(), Vec::new());
                fields.extend(self.end_fields(finish, usage));
                return Some(self.object(fields, true));
            }
            Piece::Failed(error) => {
                let message = OllamaError::from(error).message;
                return Some(json!({"error": without_directories(&message)}));
            }
        };
        let fields = self.text_fields(content, thinking, calls);
        Some(self.object(fields, false))
    }

    /// The lines of one event.
    fn lines(&mut self, event: Event) -> Vec<Value> {
        let pieces = self.pieces(event);
        pieces
            .into_iter()
            .filter_map(|piece| self.line(piece))
            .collect()
    }

    /// The whole answer: every event read, the first failure the request's.
    pub async fn whole(
        mut self,
        mut events: UnboundedReceiver<Event>,
        log: &RequestLog,
    ) -> Result<Value, OllamaError> {
        let (mut content, mut thinking, mut calls) = (String::new(), String::new(), Vec::new());
        while let Some(event) = events.recv().await {
            log.saw(&event);
            for piece in self.pieces(event) {
                match piece {
                    Piece::Content(text) => content.push_str(&text),
                    Piece::Thinking(text) => thinking.push_str(&text),
                    Piece::Call(index, call) => calls.push(call_object(index, call)),
                    Piece::Logprobs(tokens) => {
                        self.logprobs.extend(tokens.iter().map(logprob_object))
                    }
                    Piece::Failed(error) => return Err(error.into()),
                    Piece::Done(finish, usage) => {
                        let mut fields = self.text_fields(content, thinking, calls);
                        fields.extend(self.end_fields(finish, usage));
                        return Ok(self.object(fields, true));
                    }
                }
            }
        }
        Err(ServiceError::ShuttingDown.into())
    }

    /// The answer as NDJSON lines. The first event is awaited before the response starts, so
    /// that a model that fails to load, or a prompt it refuses, is an error status rather than
    /// a stream that breaks (and is logged as that status: the stream's own log line waits
    /// until it has begun).
    pub async fn stream(
        mut self,
        mut events: UnboundedReceiver<Event>,
        log: Arc<RequestLog>,
    ) -> Result<Response, OllamaError> {
        let first = loop {
            let event = events.recv().await.ok_or(ServiceError::ShuttingDown)?;
            log.saw(&event);
            match event {
                Event::Failed(error) => return Err(error.into()),
                // Log-probabilities come before their text: the text settles it.
                Event::Logprobs(_) => {
                    self.lines(event);
                }
                event => break event,
            }
        };
        let opening = self.lines(first);
        let end = log.defer();
        let rest = UnboundedReceiverStream::new(events).flat_map(move |event| {
            // Owned by the stream: the request's line is written when the stream is dropped.
            end.log().saw(&event);
            futures_util::stream::iter(self.lines(event))
        });
        let body = futures_util::stream::iter(opening)
            .chain(rest)
            .map(|line| Ok::<_, Infallible>(format!("{line}\n")));
        Ok((
            [(header::CONTENT_TYPE, "application/x-ndjson")],
            Body::from_stream(body),
        )
            .into_response())
    }
}

/// A call as Ollama writes one: the arguments an object (the engine's parsers always make
/// one; text that is somehow not JSON stays text).
fn call_object(index: usize, call: Call) -> Value {
    let arguments =
        serde_json::from_str::<Value>(&call.arguments).unwrap_or(Value::String(call.arguments));
    json!({"id": call.id, "function": {"index": index, "name": call.name, "arguments": arguments}})
}

/// A token's log-probability as Ollama writes one, with its alternatives.
fn logprob_object(token: &TokenLogprob) -> Value {
    let entry = |c: &mlxk_engine::logprobs::Candidate| json!({"token": c.text, "logprob": c.logprob, "bytes": c.bytes});
    let mut object = entry(&token.chosen);
    if !token.top.is_empty() {
        object["top_logprobs"] = token.top.iter().map(entry).collect();
    }
    object
}
