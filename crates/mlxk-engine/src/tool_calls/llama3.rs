//! Llama 3.x: a call is the whole answer, `{"name": "get_weather", "parameters": {…}}`,
//! perhaps after `<|python_tag|>`, several separated by `;`. Without markers, only an answer
//! that begins with such an object is a call; any other answer is text from its first word.

use super::json_call::{call_from_json, ArgumentsKey};
use super::output::Output;
use super::scan::{compatible_with, JsonExtent};
use super::FormatParser;

const PYTHON_TAG: &str = "<|python_tag|>";

#[derive(Default)]
pub(super) struct Llama3Parser {
    /// Text not yet given out.
    buffer: String,
    state: State,
    after_call: bool,
}

#[derive(Default)]
enum State {
    /// Before a call: at the start, or after one. Whitespace, `<|python_tag|>` and (after a
    /// call) `;` wait here until a `{` or anything else shows what comes.
    #[default]
    Lead,
    /// A `{` began at `json_at`; the object is arriving.
    Call { json_at: usize, extent: JsonExtent },
    /// An answer: given out as it comes, never a call again.
    Text,
}

impl FormatParser for Llama3Parser {
    fn buffer(&mut self) -> &mut String {
        &mut self.buffer
    }

    fn finish(&mut self, out: &mut Output) {
        self.advance(out, true);
        if self.after_call {
            // Only separators and whitespace are left after the calls.
            self.buffer.clear();
        } else {
            out.content(&std::mem::take(&mut self.buffer));
        }
    }

    fn advance(&mut self, out: &mut Output, ended: bool) {
        loop {
            match &mut self.state {
                State::Lead => match lead(&self.buffer, self.after_call) {
                    Lead::Call(json_at) => {
                        self.state = State::Call {
                            json_at,
                            extent: JsonExtent::default(),
                        }
                    }
                    Lead::Text => self.state = State::Text,
                    Lead::Undecided => return,
                },
                State::Call { json_at, extent } => {
                    let json_at = *json_at;
                    let Some(len) = extent.end(&self.buffer[json_at..]) else {
                        if ended {
                            self.state = State::Text;
                            continue;
                        }
                        return;
                    };
                    let call = serde_json::from_str(&self.buffer[json_at..json_at + len])
                        .ok()
                        .and_then(|value| call_from_json(&value, ArgumentsKey::Required));
                    match call {
                        Some(call) => {
                            out.call(call);
                            self.buffer.drain(..json_at + len);
                            self.after_call = true;
                            self.state = State::Lead;
                        }
                        None => self.state = State::Text,
                    }
                }
                State::Text => {
                    out.content(&std::mem::take(&mut self.buffer));
                    return;
                }
            }
        }
    }
}

enum Lead {
    /// A call's `{` is at this offset.
    Call(usize),
    /// Not a call: an answer begins.
    Text,
    /// Only what may precede a call so far.
    Undecided,
}

fn lead(text: &str, after_call: bool) -> Lead {
    let mut rest = text;
    loop {
        let trimmed = rest.trim_start();
        let trimmed = match trimmed.strip_prefix(';') {
            Some(after) if after_call => after,
            _ => trimmed,
        };
        match trimmed.strip_prefix(PYTHON_TAG) {
            Some(after) => rest = after,
            None if trimmed.len() == rest.len() => break,
            None => rest = trimmed,
        }
    }
    match rest.chars().next() {
        Some('{') => Lead::Call(text.len() - rest.len()),
        None => Lead::Undecided,
        Some(_) if compatible_with(rest, PYTHON_TAG) => Lead::Undecided,
        Some(_) => Lead::Text,
    }
}
