//! `<tool_call>…</tool_call>`: Hermes' JSON body (Qwen 2.5 and 3, NousHermes) and
//! Qwen3-Coder's XML body share the markers and differ in what lies between them.

use serde_json::Value;

use super::json_call::{call_from_json, ArgumentsKey, ParsedCall};
use super::output::Output;
use super::qwen3_xml;
use super::scan::{compatible_with, find_first, partial_marker_len};
use super::FormatParser;

const CALL_START: &str = "<tool_call>";
const CALL_END: &str = "</tool_call>";

/// What a `<tool_call>` holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Body {
    /// `{"name": "get_weather", "arguments": {"city": "Paris"}}`
    Json,
    /// `<function=get_weather><parameter=city>Paris</parameter></function>`
    Xml,
}

impl Body {
    /// Whether a body beginning so can still be a call. A body that cannot is released at once
    /// as text (the model wrote about the tag) instead of being held until `</tool_call>`.
    fn could_begin(self, body: &str) -> bool {
        let body = body.trim_start();
        match self {
            Body::Json => body.is_empty() || body.starts_with('{'),
            Body::Xml => compatible_with(body, qwen3_xml::FUNCTION_START),
        }
    }

    /// The calls in a whole body (one, or several that a model put in one tag).
    fn parse(self, body: &str) -> Option<Vec<ParsedCall>> {
        let calls = match self {
            Body::Json => serde_json::Deserializer::from_str(body)
                .into_iter::<Value>()
                .map(|value| call_from_json(&value.ok()?, ArgumentsKey::Optional))
                .collect::<Option<Vec<_>>>()?,
            Body::Xml => qwen3_xml::parse_functions(body)?,
        };
        (!calls.is_empty()).then_some(calls)
    }
}

pub(super) struct TaggedParser {
    body: Body,
    /// Text not yet given out; inside a call, from just after `<tool_call>`.
    buffer: String,
    state: State,
}

enum State {
    Text,
    /// Inside `<tool_call>`; `</tool_call>` is not in the first `searched` bytes.
    Call {
        searched: usize,
    },
}

impl TaggedParser {
    pub(super) fn new(body: Body) -> Self {
        TaggedParser {
            body,
            buffer: String::new(),
            state: State::Text,
        }
    }
}

impl FormatParser for TaggedParser {
    fn buffer(&mut self) -> &mut String {
        &mut self.buffer
    }

    /// Reads as far as the text allows; `ended` when no more will come.
    fn advance(&mut self, out: &mut Output, ended: bool) {
        loop {
            match self.state {
                State::Text => {
                    if let Some(at) = self.buffer.find(CALL_START) {
                        out.content(&self.buffer[..at]);
                        self.buffer.drain(..at + CALL_START.len());
                        self.state = State::Call { searched: 0 };
                        continue;
                    }
                    let held = if ended {
                        0
                    } else {
                        partial_marker_len(&self.buffer, &[CALL_START])
                    };
                    let ready = self.buffer.len() - held;
                    out.content(&self.buffer[..ready]);
                    self.buffer.drain(..ready);
                    return;
                }
                State::Call { searched } => {
                    if !self.body.could_begin(&self.buffer) {
                        self.not_a_call(out);
                        continue;
                    }
                    let end = find_first(&self.buffer, &[CALL_END], searched).map(|(at, _)| at);
                    let body_len = match end {
                        Some(at) => at,
                        None if ended => self.buffer.len(),
                        None => {
                            self.state = State::Call {
                                searched: self.buffer.len(),
                            };
                            return;
                        }
                    };
                    let Some(calls) = self.body.parse(&self.buffer[..body_len]) else {
                        self.not_a_call(out);
                        continue;
                    };
                    calls.into_iter().for_each(|call| out.call(call));
                    let consumed = end.map_or(body_len, |at| at + CALL_END.len());
                    self.buffer.drain(..consumed);
                    self.state = State::Text;
                }
            }
        }
    }
}

impl TaggedParser {
    /// The `<tool_call>` was text after all; what followed it is read again as text, so a
    /// real call after a stray tag is still found.
    fn not_a_call(&mut self, out: &mut Output) {
        out.content(CALL_START);
        self.state = State::Text;
    }
}
