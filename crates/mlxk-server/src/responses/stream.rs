//! A response as server-sent events, in the order OpenAI sends them: `response.created` and
//! `response.in_progress`, then per output item `response.output_item.added`, its part and
//! text deltas (`response.output_text.*` for a message, `response.reasoning_text.*` for
//! reasoning, `response.function_call_arguments.*` for a call), `response.output_item.done`;
//! last `response.completed`, `response.incomplete` or, if the generation fails,
//! `response.failed`. Every event names its type and counts its `sequence_number` from 0.

use std::convert::Infallible;

use axum::response::sse::{Event as SseEvent, Sse};
use futures_util::{Stream, StreamExt};
use mlxk_engine::TextEvent;
use serde_json::{json, Value};
use tokio::sync::mpsc::UnboundedReceiver;

use super::output::{final_status, finished, Head, Item, Status};
use crate::answer::Call;
use crate::error::ApiError;
use crate::request_log::StreamEnd;
use crate::service::{Event, ServiceError};

/// The items of a streaming response, built as events arrive; the last one may still be open.
struct Output {
    head: Head,
    items: Vec<Item>,
    open: bool,
    /// The output index of each call, by the call's index among the answer's calls.
    calls: Vec<(usize, usize)>,
    sequence: u64,
    ended: bool,
}

impl Output {
    fn new(head: Head) -> Output {
        Output {
            head,
            items: Vec::new(),
            open: false,
            calls: Vec::new(),
            sequence: 0,
            ended: false,
        }
    }

    /// An event of `kind` with these fields, numbered.
    fn event(&mut self, kind: &str, mut fields: Value) -> Value {
        fields["type"] = json!(kind);
        fields["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        fields
    }

    fn start(&mut self) -> Vec<Value> {
        let response = self
            .head
            .response(Status::InProgress, Vec::new(), None, None);
        vec![
            self.event("response.created", json!({"response": response})),
            self.event("response.in_progress", json!({"response": response})),
        ]
    }

    fn on(&mut self, event: Event) -> Vec<Value> {
        match event {
            // Never asked for: `top_logprobs` and logprob inclusions are refused.
            Event::Admitted | Event::Logprobs(_) => Vec::new(),
            Event::Text(text) => self.text(text),
            Event::Done {
                finish_reason,
                usage,
                ..
            } => {
                let status = final_status(finish_reason);
                let mut out = if self.items.is_empty() {
                    // An answer without any text is still a message.
                    self.open_item(Item::message(""))
                } else {
                    Vec::new()
                };
                out.extend(self.close(status));
                let response =
                    self.head
                        .response(status, finished(&self.items, status), Some(usage), None);
                let kind = match status {
                    Status::Incomplete => "response.incomplete",
                    _ => "response.completed",
                };
                out.push(self.event(kind, json!({"response": response})));
                self.ended = true;
                out
            }
            Event::Failed(error) => self.fail(error),
        }
    }

    fn text(&mut self, text: TextEvent) -> Vec<Value> {
        match text {
            TextEvent::Content(delta) | TextEvent::Reasoning(delta) if delta.is_empty() => {
                Vec::new()
            }
            TextEvent::Content(delta) => {
                let mut out = Vec::new();
                if !matches!(self.open_item_ref(), Some(Item::Message { .. })) {
                    out.extend(self.close(Status::Completed));
                    out.extend(self.open_item(Item::message("")));
                }
                out.push(self.delta("response.output_text.delta", &delta));
                out
            }
            TextEvent::Reasoning(delta) => {
                let mut out = Vec::new();
                if !matches!(self.open_item_ref(), Some(Item::Reasoning { .. })) {
                    out.extend(self.close(Status::Completed));
                    out.extend(self.open_item(Item::reasoning("")));
                }
                out.push(self.delta("response.reasoning_text.delta", &delta));
                out
            }
            TextEvent::ToolCallStart { index, id, name } => {
                let mut out = self.close(Status::Completed);
                self.calls.push((index, self.items.len()));
                out.extend(self.open_item(Item::call(Call {
                    id,
                    name,
                    arguments: String::new(),
                })));
                out
            }
            TextEvent::ToolCallArguments { index, fragment } => {
                let Some(&(_, at)) = self.calls.iter().find(|(i, _)| *i == index) else {
                    return Vec::new();
                };
                let Item::Call { id, call } = &mut self.items[at] else {
                    return Vec::new();
                };
                call.arguments.push_str(&fragment);
                let item_id = id.clone();
                vec![self.event(
                    "response.function_call_arguments.delta",
                    json!({"item_id": item_id, "output_index": at, "delta": fragment}),
                )]
            }
        }
    }

    fn open_item_ref(&self) -> Option<&Item> {
        self.items.last().filter(|_| self.open)
    }

    /// Adds an item and its empty part.
    fn open_item(&mut self, item: Item) -> Vec<Value> {
        let at = self.items.len();
        let mut out = vec![self.event(
            "response.output_item.added",
            json!({"output_index": at, "item": item.json(Status::InProgress)}),
        )];
        if let Some(mut part) = item.part() {
            part["text"] = json!("");
            out.push(self.event(
                "response.content_part.added",
                json!({"item_id": item.id(), "output_index": at, "content_index": 0, "part": part}),
            ));
        }
        self.items.push(item);
        self.open = true;
        out
    }

    /// A text delta of the open item (a message's or reasoning's one part).
    fn delta(&mut self, kind: &str, delta: &str) -> Value {
        let at = self.items.len() - 1;
        let item_id = match &mut self.items[at] {
            Item::Message { id, text } | Item::Reasoning { id, text } => {
                text.push_str(delta);
                id.clone()
            }
            Item::Call { id, .. } => id.clone(),
        };
        let mut fields =
            json!({"item_id": item_id, "output_index": at, "content_index": 0, "delta": delta});
        if kind == "response.output_text.delta" {
            fields["logprobs"] = json!([]);
        }
        self.event(kind, fields)
    }

    /// Ends the open item, if any: its text done, its part done, the item done.
    fn close(&mut self, status: Status) -> Vec<Value> {
        if !self.open {
            return Vec::new();
        }
        self.open = false;
        let at = self.items.len() - 1;
        let item = self.items[at].clone();
        let id = item.id().to_string();
        let mut out = Vec::new();
        match &item {
            Item::Message { text, .. } => out.push(self.event(
                "response.output_text.done",
                json!({"item_id": id, "output_index": at, "content_index": 0, "text": text, "logprobs": []}),
            )),
            Item::Reasoning { text, .. } => out.push(self.event(
                "response.reasoning_text.done",
                json!({"item_id": id, "output_index": at, "content_index": 0, "text": text}),
            )),
            Item::Call { call, .. } => out.push(self.event(
                "response.function_call_arguments.done",
                json!({"item_id": id, "output_index": at, "name": call.name, "arguments": call.arguments}),
            )),
        }
        if let Some(part) = item.part() {
            out.push(self.event(
                "response.content_part.done",
                json!({"item_id": id, "output_index": at, "content_index": 0, "part": part}),
            ));
        }
        out.push(self.event(
            "response.output_item.done",
            json!({"output_index": at, "item": item.json(status)}),
        ));
        out
    }

    /// The generation failed after the stream began: the open item ends incomplete, and the
    /// response fails with the error its request would have had.
    fn fail(&mut self, error: ServiceError) -> Vec<Value> {
        let mut out = self.close(Status::Incomplete);
        let error = ApiError::from(error);
        let output = finished(&self.items, Status::Incomplete);
        let response = self
            .head
            .response(Status::Failed, output, None, Some(&error));
        out.push(self.event("response.failed", json!({"response": response})));
        self.ended = true;
        out
    }
}

/// The events of a generation as a Responses stream. `end` writes the request's log line when
/// the stream is dropped.
pub fn stream_response(
    receiver: UnboundedReceiver<Event>,
    head: Head,
    end: StreamEnd,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let mut output = Output::new(head);
    let first = output.start();
    let state = Some((receiver, output, end));
    let body = futures_util::stream::unfold(state, |state| async move {
        let (mut receiver, mut output, end) = state?;
        if output.ended {
            return None;
        }
        let events = match receiver.recv().await {
            Some(event) => {
                end.log().saw(&event);
                output.on(event)
            }
            // The worker let go without an end: it is shutting down.
            None => output.fail(ServiceError::ShuttingDown),
        };
        Some((events, Some((receiver, output, end))))
    });
    let events = futures_util::stream::iter(first)
        .chain(body.flat_map(futures_util::stream::iter))
        .map(|value| {
            let kind = value["type"].as_str().unwrap_or_default().to_string();
            Ok(SseEvent::default().event(kind).data(value.to_string()))
        });
    Sse::new(events)
}
