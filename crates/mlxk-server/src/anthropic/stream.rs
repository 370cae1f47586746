//! A streamed Anthropic message: `message_start`, each content block as
//! `content_block_start`, its deltas and `content_block_stop`, then `message_delta` (why it
//! ended, the token counts) and `message_stop`; `ping` while nothing else is sent (a long
//! prefill), and a failure as an `error` event.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event as SseEvent, Sse};
use mlxk_engine::{FinishReason, TextEvent};
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use super::request::Shape;
use super::response::{stop_reason, tool_use_id, usage, NO_SIGNATURE};
use super::AnthropicError;
use crate::request_log::StreamEnd;
use crate::service::{Event, ServiceError, Usage};

/// Quiet time after which a `ping` is sent: a long prefill sends nothing else, and clients
/// and proxies give up on a silent connection.
const PING_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Thinking,
    Text,
    /// The call of this index among the answer's calls.
    Call(usize),
}

/// Turns a generation's events into Anthropic's, block by block.
struct Blocks {
    shape: Shape,
    /// The block being written, with its index.
    open: Option<(usize, BlockKind)>,
    count: usize,
    /// Each call's block.
    calls: HashMap<usize, usize>,
}

/// One event of the stream: its name and data.
type Out = (&'static str, Value);

impl Blocks {
    fn new(shape: Shape) -> Self {
        Blocks {
            shape,
            open: None,
            count: 0,
            calls: HashMap::new(),
        }
    }

    /// The block of `kind`, started (and the one before it stopped) if it is not the open one.
    fn block(&mut self, kind: BlockKind, start: Value, out: &mut Vec<Out>) -> usize {
        if let Some((index, open)) = self.open {
            if open == kind {
                return index;
            }
        }
        self.stop(out);
        let index = self.count;
        self.count += 1;
        self.open = Some((index, kind));
        out.push((
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": start}),
        ));
        index
    }

    fn stop(&mut self, out: &mut Vec<Out>) {
        if let Some((index, _)) = self.open.take() {
            out.push((
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn text(&mut self, event: TextEvent) -> Vec<Out> {
        let mut out = Vec::new();
        let (index, delta) = match event {
            TextEvent::Reasoning(_) if !self.shape.show_thinking => return out,
            TextEvent::Reasoning(text) => {
                let start = json!({"type": "thinking", "thinking": "", "signature": NO_SIGNATURE});
                let index = self.block(BlockKind::Thinking, start, &mut out);
                (index, json!({"type": "thinking_delta", "thinking": text}))
            }
            TextEvent::Content(text) => {
                let start = json!({"type": "text", "text": ""});
                let index = self.block(BlockKind::Text, start, &mut out);
                (index, json!({"type": "text_delta", "text": text}))
            }
            TextEvent::ToolCallStart { index, id, name } => {
                let start =
                    json!({"type": "tool_use", "id": tool_use_id(&id), "name": name, "input": {}});
                let block = self.block(BlockKind::Call(index), start, &mut out);
                self.calls.insert(index, block);
                return out;
            }
            TextEvent::ToolCallArguments { index, fragment } => {
                let Some(&block) = self.calls.get(&index) else {
                    return out;
                };
                (
                    block,
                    json!({"type": "input_json_delta", "partial_json": fragment}),
                )
            }
        };
        out.push((
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        ));
        out
    }

    fn done(&mut self, finish: FinishReason, used: Usage, matched: Option<String>) -> Vec<Out> {
        let mut out = Vec::new();
        self.stop(&mut out);
        let ended_for_calls = !self.calls.is_empty() && finish != FinishReason::Length;
        let (reason, sequence) = stop_reason(finish, ended_for_calls, matched);
        out.push((
            "message_delta",
            json!({"type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": sequence},
                "usage": usage(used)}),
        ));
        out.push(("message_stop", json!({"type": "message_stop"})));
        out
    }
}

fn ping() -> Out {
    ("ping", json!({"type": "ping"}))
}

fn failure(error: ServiceError) -> Out {
    ("error", AnthropicError::from(error).body())
}

/// What the stream holds between two of its events.
struct Streaming {
    receiver: UnboundedReceiver<Event>,
    blocks: Blocks,
    ready: VecDeque<Out>,
    ended: bool,
    /// Writes the request's log line when the stream is dropped.
    end: StreamEnd,
}

impl Streaming {
    /// The next event to send; `None` once the message is over.
    async fn next(&mut self) -> Option<Out> {
        loop {
            if let Some(out) = self.ready.pop_front() {
                return Some(out);
            }
            if self.ended {
                return None;
            }
            let event = match tokio::time::timeout(PING_EVERY, self.receiver.recv()).await {
                Err(_) => {
                    self.ready.push_back(ping());
                    continue;
                }
                // The worker went away without an end: the server is stopping.
                Ok(None) => Event::Failed(ServiceError::ShuttingDown),
                Ok(Some(event)) => event,
            };
            self.end.log().saw(&event);
            match event {
                Event::Text(text) => self.ready.extend(self.blocks.text(text)),
                Event::Done {
                    finish_reason,
                    usage,
                    stop_sequence,
                } => {
                    self.ready
                        .extend(self.blocks.done(finish_reason, usage, stop_sequence));
                    self.ended = true;
                }
                Event::Failed(error) => {
                    self.ready.push_back(failure(error));
                    self.ended = true;
                }
                _ => {}
            }
        }
    }
}

/// The stream of one message. Its input tokens are known only when it ends: `message_start`
/// says 0 and `message_delta` gives the count (its usage holds totals, as Anthropic's does).
pub fn stream(
    receiver: UnboundedReceiver<Event>,
    id: String,
    model: String,
    shape: Shape,
    end: StreamEnd,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let start = json!({"type": "message_start", "message": {
        "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": null, "stop_sequence": null, "usage": usage(Usage::default()),
    }});
    let state = Streaming {
        receiver,
        blocks: Blocks::new(shape),
        ready: VecDeque::from([("message_start", start), ping()]),
        ended: false,
        end,
    };
    let events = futures_util::stream::unfold(state, |mut state| async move {
        let (name, data) = state.next().await?;
        let event = SseEvent::default().event(name).data(data.to_string());
        Some((Ok(event), state))
    });
    Sse::new(events)
}
