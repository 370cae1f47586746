//! Where the parsers put what they found: events in order, the completed calls, fresh ids.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::json_call::ParsedCall;
use super::{ToolCall, ToolEvent, ToolFormat};

pub(super) struct Output {
    format: ToolFormat,
    events: Vec<ToolEvent>,
    calls: Vec<ToolCall>,
    /// At the start and right after a call: leading whitespace waits in `gap`, dropped if a
    /// call or the end comes next, sent with the text if text does.
    at_boundary: bool,
    gap: String,
}

impl Output {
    pub(super) fn new(format: ToolFormat) -> Self {
        Output {
            format,
            events: Vec::new(),
            calls: Vec::new(),
            at_boundary: true,
            gap: String::new(),
        }
    }

    pub(super) fn content(&mut self, text: &str) {
        if !self.at_boundary {
            self.text(text, ToolEvent::Content);
            return;
        }
        let rest = text.trim_start();
        self.gap.push_str(&text[..text.len() - rest.len()]);
        if !rest.is_empty() {
            self.at_boundary = false;
            let mut text = std::mem::take(&mut self.gap);
            text.push_str(rest);
            self.text(&text, ToolEvent::Content);
        }
    }

    pub(super) fn reasoning(&mut self, text: &str) {
        self.text(text, ToolEvent::Reasoning);
    }

    pub(super) fn call(&mut self, call: ParsedCall) {
        self.gap.clear();
        self.at_boundary = true;
        let index = self.calls.len();
        let id = new_call_id(self.format);
        let arguments = serde_json::Value::Object(call.arguments).to_string();
        self.events.extend([
            ToolEvent::CallStart {
                index,
                id: id.clone(),
                name: call.name.clone(),
            },
            ToolEvent::Arguments {
                index,
                fragment: arguments.clone(),
            },
            ToolEvent::CallEnd { index },
        ]);
        self.calls.push(ToolCall {
            id,
            name: call.name,
            arguments,
        });
    }

    /// The output ended: whitespace still waiting is the answer only when there was no call.
    pub(super) fn finish(&mut self) {
        let gap = std::mem::take(&mut self.gap);
        if self.calls.is_empty() {
            self.text(&gap, ToolEvent::Content);
        }
    }

    pub(super) fn calls(&self) -> &[ToolCall] {
        &self.calls
    }

    pub(super) fn take_events(&mut self) -> Vec<ToolEvent> {
        std::mem::take(&mut self.events)
    }

    /// Appends text, joined to the last event when that is text of the same kind.
    fn text(&mut self, text: &str, kind: fn(String) -> ToolEvent) {
        if text.is_empty() {
            return;
        }
        match (self.events.last_mut(), kind(text.to_string())) {
            (Some(ToolEvent::Content(last)), ToolEvent::Content(more))
            | (Some(ToolEvent::Reasoning(last)), ToolEvent::Reasoning(more)) => {
                last.push_str(&more)
            }
            (_, event) => self.events.push(event),
        }
    }
}

const ID_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// A serial number hashed with keys drawn once per process: unique within the process, and
/// unguessable across processes, without a random-number crate.
fn new_call_id(format: ToolFormat) -> String {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    static KEYS: OnceLock<RandomState> = OnceLock::new();
    let keys = KEYS.get_or_init(RandomState::new);
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let (prefix, random_len) = match format {
        ToolFormat::Mistral => ("", 9),
        _ => ("call_", 24),
    };
    let mut id = String::from(prefix);
    let base = ID_ALPHABET.len() as u64;
    for block in 0u64.. {
        // 10 letters of a 62-letter alphabet fit in one 64-bit hash.
        let mut bits = keys.hash_one((serial, block));
        for _ in 0..10 {
            if id.len() == prefix.len() + random_len {
                return id;
            }
            id.push(ID_ALPHABET[(bits % base) as usize] as char);
            bits /= base;
        }
    }
    unreachable!("the loop over blocks returns once the id is long enough")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_look_like_openai_s_and_mistral_s_and_never_repeat() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = new_call_id(ToolFormat::Hermes);
            let random = id.strip_prefix("call_").expect("call_ prefix");
            assert_eq!(random.len(), 24);
            assert!(random.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
            assert!(seen.insert(id));
        }
        let id = new_call_id(ToolFormat::Mistral);
        assert_eq!(id.len(), 9);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
    }

    #[test]
    fn whitespace_around_calls_is_dropped_but_not_inside_an_answer() {
        let call = || ParsedCall {
            name: "f".into(),
            arguments: serde_json::Map::new(),
        };
        let mut out = Output::new(ToolFormat::Hermes);
        out.content("\n\n");
        out.call(call());
        out.content("\n");
        out.call(call());
        out.content(" \n");
        out.finish();
        assert!(!out
            .take_events()
            .iter()
            .any(|e| matches!(e, ToolEvent::Content(_))));

        let mut out = Output::new(ToolFormat::Hermes);
        out.content("\n ");
        out.content(" ");
        out.finish();
        assert_eq!(out.take_events(), [ToolEvent::Content("\n  ".into())]);

        let mut out = Output::new(ToolFormat::Hermes);
        out.call(call());
        out.content("\n");
        out.content("Done.\n");
        out.finish();
        let events = out.take_events();
        assert_eq!(events.last(), Some(&ToolEvent::Content("\nDone.\n".into())));
    }
}
