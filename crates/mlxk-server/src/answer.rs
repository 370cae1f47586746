//! A whole answer, put together from a generation's events: what every protocol's
//! non-streaming response is made from (each shapes it its own way).

use mlxk_engine::{FinishReason, TextEvent, TokenLogprob};
use tokio::sync::mpsc::UnboundedReceiver;

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
