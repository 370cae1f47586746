//! A whole answer, put together from a generation's events: what every protocol's
//! non-streaming response is made from (each shapes it its own way).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mlxk_engine::{FinishReason, TextEvent, TokenLogprob};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::request_log::RequestLog;
use crate::service::{Event, ServiceError, Usage};

/// One tool call of an answer: its id, the function, the arguments as JSON object text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Call {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub content: String,
    /// The text of the model's reasoning block, split from the content.
    pub reasoning: String,
    pub calls: Vec<Call>,
    pub finish: FinishReason,
    /// The request's stop string the answer ended at, if it ended at one.
    pub stop_sequence: Option<String>,
    pub usage: Usage,
    /// Each token's log-probabilities, when the request asked for them.
    pub logprobs: Vec<TokenLogprob>,
}

impl Answer {
    /// Whether it ended to let the client run its calls (every API has its own word for it).
    pub fn ended_for_calls(&self) -> bool {
        !self.calls.is_empty() && self.finish != FinishReason::Length
    }
}

/// The calls of an answer as their events build them.
#[derive(Debug, Default)]
pub struct Calls(pub Vec<Call>);

impl Calls {
    pub fn start(&mut self, index: usize, id: String, name: String) {
        if self.0.len() <= index {
            self.0.resize(index + 1, Call::default());
        }
        self.0[index] = Call {
            id,
            name,
            arguments: String::new(),
        };
    }

    pub fn arguments(&mut self, index: usize, fragment: &str) {
        if let Some(call) = self.0.get_mut(index) {
            call.arguments.push_str(fragment);
        }
    }
}

/// An id with an API's prefix for its kind (`chatcmpl-`, `msg_`, `resp_`...), unique in this
/// process: the time, and a counter for ids made in the same instant.
pub fn new_id(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let count = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff;
    format!("{prefix}{nanos:x}{count:04x}")
}

/// How long a stream waits for its generation's first event before it answers 200: a failure
/// known at the start (a prompt longer than the context, a template that refuses it, a model
/// that fails to load meanwhile) is then a status in the API's error shape, not an error event
/// in a stream that began as a success. Longer work (loading, a long prefill) is not waited for:
/// the stream starts, and keeps the connection alive as its API does.
pub const OPENING_WAIT: Duration = Duration::from_millis(1500);

/// A generation's events for a stream, once its start did not fail within [`OPENING_WAIT`];
/// a failure first is returned as the error.
pub async fn opening(
    mut receiver: UnboundedReceiver<Event>,
) -> Result<UnboundedReceiver<Event>, ServiceError> {
    let first = match tokio::time::timeout(OPENING_WAIT, receiver.recv()).await {
        // Still loading or prefilling: stream now.
        Err(_) => return Ok(receiver),
        Ok(None) => return Err(ServiceError::ShuttingDown),
        Ok(Some(Event::Failed(error))) => return Err(error),
        Ok(Some(event)) => event,
    };
    // The event read goes first, then the rest as they come; a client that leaves drops the
    // relay, and with it the generation's receiver (which cancels it).
    let (relay, relayed) = unbounded_channel();
    let _ = relay.send(first);
    tokio::spawn(async move {
        while let Some(event) = receiver.recv().await {
            if relay.send(event).is_err() {
                break;
            }
        }
    });
    Ok(relayed)
}

/// Reads the events to the end; the first failure is the answer's.
pub async fn collect(
    mut receiver: UnboundedReceiver<Event>,
    log: &RequestLog,
) -> Result<Answer, ServiceError> {
    let (mut content, mut reasoning) = (String::new(), String::new());
    let mut calls = Calls::default();
    let mut logprobs = Vec::new();
    while let Some(event) = receiver.recv().await {
        log.saw(&event);
        match event {
            Event::Text(TextEvent::Content(text)) => content.push_str(&text),
            Event::Text(TextEvent::Reasoning(text)) => reasoning.push_str(&text),
            Event::Text(TextEvent::ToolCallStart { index, id, name }) => {
                calls.start(index, id, name)
            }
            Event::Text(TextEvent::ToolCallArguments { index, fragment }) => {
                calls.arguments(index, &fragment)
            }
            Event::Logprobs(tokens) => logprobs.extend(tokens),
            Event::Failed(error) => return Err(error),
            Event::Admitted => {}
            Event::Done {
                finish_reason,
                usage,
                stop_sequence,
            } => {
                return Ok(Answer {
                    content,
                    reasoning,
                    calls: calls.0,
                    finish: finish_reason,
                    stop_sequence,
                    usage,
                    logprobs,
                })
            }
        }
    }
    Err(ServiceError::ShuttingDown)
}
