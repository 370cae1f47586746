//! Mistral: `[TOOL_CALLS]` then a JSON list of calls (v3 tokenizers: Mistral 7B v0.3, Nemo,
//! Small 3), or `[TOOL_CALLS]name[ARGS]{…}` per call, with `[CALL_ID]id` before `[ARGS]` in
//! some templates (newer tokenizers: Magistral, Devstral). No marker ends a call: the end of
//! its JSON does.

use serde_json::Value;

use super::json_call::{arguments_object, call_from_json, ArgumentsKey, ParsedCall};
use super::output::Output;
use super::scan::{compatible_with, partial_marker_len, JsonExtent};
use super::FormatParser;

const TOOL_CALLS: &str = "[TOOL_CALLS]";
const ARGS: &str = "[ARGS]";
const CALL_ID: &str = "[CALL_ID]";
/// A `name[CALL_ID]id` longer than this is text, not a call's header.
pub(super) const MAX_HEADER_LEN: usize = 256;

#[derive(Default)]
pub(super) struct MistralParser {
    /// Text not yet given out; after `[TOOL_CALLS]`, from just after it.
    buffer: String,
    state: State,
}

#[derive(Default)]
enum State {
    #[default]
    Text,
    /// Just after `[TOOL_CALLS]`: a list, or a `name[ARGS]` header.
    Marker,
    /// JSON arriving from `json_at`: a call's arguments once the header named it, else the
    /// list of calls (or a lone call object).
    Json {
        json_at: usize,
        name: Option<String>,
        extent: JsonExtent,
    },
}

impl FormatParser for MistralParser {
    fn buffer(&mut self) -> &mut String {
        &mut self.buffer
    }

    fn advance(&mut self, out: &mut Output, ended: bool) {
        loop {
            match &mut self.state {
                State::Text => {
                    if let Some(at) = self.buffer.find(TOOL_CALLS) {
                        out.content(&self.buffer[..at]);
                        self.buffer.drain(..at + TOOL_CALLS.len());
                        self.state = State::Marker;
                        continue;
                    }
                    let held = if ended {
                        0
                    } else {
                        partial_marker_len(&self.buffer, &[TOOL_CALLS])
                    };
                    let ready = self.buffer.len() - held;
                    out.content(&self.buffer[..ready]);
                    self.buffer.drain(..ready);
                    return;
                }
                State::Marker => match after_marker(&self.buffer) {
                    AfterMarker::Json { json_at, name } => {
                        self.state = State::Json {
                            json_at,
                            name,
                            extent: JsonExtent::default(),
                        }
                    }
                    AfterMarker::Undecided if !ended => return,
                    AfterMarker::Undecided | AfterMarker::NotACall => self.not_a_call(out),
                },
                State::Json {
                    json_at,
                    name,
                    extent,
                } => {
                    let json_at = *json_at;
                    let Some(len) = extent.end(&self.buffer[json_at..]) else {
                        if ended {
                            self.not_a_call(out);
                            continue;
                        }
                        return;
                    };
                    let json = &self.buffer[json_at..json_at + len];
                    let calls = match name.take() {
                        Some(name) => serde_json::from_str(json)
                            .ok()
                            .and_then(|value| arguments_object(&value))
                            .map(|arguments| vec![ParsedCall { name, arguments }]),
                        None => calls_from_json(json),
                    };
                    let Some(calls) = calls else {
                        self.not_a_call(out);
                        continue;
                    };
                    calls.into_iter().for_each(|call| out.call(call));
                    self.buffer.drain(..json_at + len);
                    self.state = State::Text;
                }
            }
        }
    }
}

impl MistralParser {
    /// The `[TOOL_CALLS]` was text after all; what followed it is read again as text.
    fn not_a_call(&mut self, out: &mut Output) {
        out.content(TOOL_CALLS);
        self.state = State::Text;
    }
}

/// `[{"name": …, "arguments": …}, …]`, or one such object alone.
fn calls_from_json(json: &str) -> Option<Vec<ParsedCall>> {
    let calls = match serde_json::from_str(json).ok()? {
        Value::Array(items) => items
            .iter()
            .map(|item| call_from_json(item, ArgumentsKey::Optional))
            .collect::<Option<Vec<_>>>()?,
        object => vec![call_from_json(&object, ArgumentsKey::Optional)?],
    };
    (!calls.is_empty()).then_some(calls)
}

enum AfterMarker {
    /// The JSON starts at `json_at`; `name` when a header named the call.
    Json {
        json_at: usize,
        name: Option<String>,
    },
    NotACall,
    Undecided,
}

fn after_marker(text: &str) -> AfterMarker {
    let trimmed = text.trim_start();
    let offset = text.len() - trimmed.len();
    match trimmed.chars().next() {
        None => AfterMarker::Undecided,
        Some('[' | '{') => AfterMarker::Json {
            json_at: offset,
            name: None,
        },
        Some(_) => match header(trimmed) {
            AfterMarker::Json { json_at, name } => AfterMarker::Json {
                json_at: offset + json_at,
                name,
            },
            other => other,
        },
    }
}

/// `name[ARGS]{`, or `name[CALL_ID]id[ARGS]{`, at the start of `text`.
fn header(text: &str) -> AfterMarker {
    let Some(args_at) = text.find(ARGS).filter(|&at| at <= MAX_HEADER_LEN) else {
        return if could_be_header(text) {
            AfterMarker::Undecided
        } else {
            AfterMarker::NotACall
        };
    };
    let (name, id) = match text[..args_at].split_once(CALL_ID) {
        Some((name, id)) => (name.trim_end(), Some(id.trim_end())),
        None => (text[..args_at].trim_end(), None),
    };
    let id_ok = id.is_none_or(|id| !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric()));
    if name.is_empty() || !name.chars().all(is_name_char) || !id_ok {
        return AfterMarker::NotACall;
    }
    let after = &text[args_at + ARGS.len()..];
    let arguments = after.trim_start();
    match arguments.chars().next() {
        None => AfterMarker::Undecided,
        Some('{') => AfterMarker::Json {
            json_at: text.len() - arguments.len(),
            name: Some(name.to_string()),
        },
        Some(_) => AfterMarker::NotACall,
    }
}

/// Whether `text`, in which `[ARGS]` has not arrived, can still grow into a header.
fn could_be_header(text: &str) -> bool {
    // Room for `[ARGS]` arriving after the longest header.
    if text.len() > MAX_HEADER_LEN + ARGS.len() {
        return false;
    }
    let after_name = text.trim_start_matches(is_name_char);
    if after_name.len() == text.len() {
        return text.is_empty();
    }
    let after_name = after_name.trim_start();
    let before_args = match after_name.strip_prefix(CALL_ID) {
        Some(id) => id
            .trim_start_matches(|c: char| c.is_ascii_alphanumeric())
            .trim_start(),
        None if compatible_with(after_name, CALL_ID) => return true,
        None => after_name,
    };
    compatible_with(before_args, ARGS)
}

/// What OpenAI allows in a function's name, and dots.
fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_recognized_while_they_arrive() {
        let header = "get_weather[CALL_ID]a1b2c3d4e[ARGS]";
        for end in 0..header.len() {
            assert!(could_be_header(&header[..end]), "{:?}", &header[..end]);
        }
        for text in [
            "get weather[ARGS]",
            "get_weather[ARG ",
            "f[CALL_ID]a-b",
            "[ARGS]",
        ] {
            assert!(!could_be_header(text), "{text:?}");
        }
        assert!(!could_be_header(
            &"a".repeat(MAX_HEADER_LEN + ARGS.len() + 1)
        ));
    }
}
