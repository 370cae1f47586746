//! gpt-oss' Harmony format: the answer is a sequence of messages,
//! `<|start|>assistant<|channel|>final<|message|>text<|end|>` (the prompt already wrote the
//! first `<|start|>assistant`). The `analysis` channel is reasoning; a message whose header
//! names a recipient `to=functions.name` (after the role or after the channel) is a call whose
//! text is its JSON arguments, ended by `<|call|>`; any other message is content. The
//! structure's tokens are dropped.

use serde_json::Value;

use super::json_call::{arguments_object, ParsedCall};
use super::output::Output;
use super::scan::{compatible_with, find_first, partial_marker_len};
use super::FormatParser;

const START: &str = "<|start|>";
const END: &str = "<|end|>";
const MESSAGE: &str = "<|message|>";
const CHANNEL: &str = "<|channel|>";
const CONSTRAIN: &str = "<|constrain|>";
const CALL: &str = "<|call|>";
const RETURN: &str = "<|return|>";
/// What ends a message's text: `<|start|>` too, when a model leaves out the end.
const MESSAGE_ENDS: [&str; 4] = [END, CALL, RETURN, START];
/// What a header can begin with, once whitespace is skipped.
const HEADER_OPENINGS: [&str; 5] = [START, CHANNEL, CONSTRAIN, "to=", "assistant"];
/// A header longer than this, or one spanning lines, is text that merely began like one.
pub(super) const MAX_HEADER_LEN: usize = 512;
const FUNCTIONS: &str = "functions.";

#[derive(Default)]
pub(super) struct HarmonyParser {
    /// Text not yet given out, from the start of the current header or message text.
    buffer: String,
    state: State,
}

#[derive(Default)]
enum State {
    /// Reading a header, up to `<|message|>`.
    #[default]
    Header,
    /// A message's text, up to what ends it.
    Message { route: Route },
    /// A call's arguments, held whole; `header` as written, for when they are not JSON.
    Call {
        name: String,
        header: String,
        searched: usize,
    },
}

/// Where a message's text goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Reasoning,
    Content,
}

impl FormatParser for HarmonyParser {
    fn buffer(&mut self) -> &mut String {
        &mut self.buffer
    }

    fn advance(&mut self, out: &mut Output, ended: bool) {
        loop {
            match &mut self.state {
                State::Header => {
                    if let Some(at) = self.buffer.find(MESSAGE) {
                        if could_be_header(&self.buffer[..at]) {
                            let header: String = self.buffer.drain(..at + MESSAGE.len()).collect();
                            self.state = read_header(&header[..at]);
                            continue;
                        }
                    }
                    // What may be the start of `<|message|>` is not judged as part of the header.
                    let arrived = self.buffer.len() - partial_marker_len(&self.buffer, &[MESSAGE]);
                    if ended || !could_be_header(&self.buffer[..arrived]) {
                        // Not a header after all: text without the structure, read as content.
                        self.state = State::Message {
                            route: Route::Content,
                        };
                        continue;
                    }
                    return;
                }
                State::Message { route } => {
                    let route = *route;
                    let end = find_first(&self.buffer, &MESSAGE_ENDS, 0);
                    let ready = match end {
                        Some((at, _)) => at,
                        None if ended => self.buffer.len(),
                        None => self.buffer.len() - partial_marker_len(&self.buffer, &MESSAGE_ENDS),
                    };
                    match route {
                        Route::Reasoning => out.reasoning(&self.buffer[..ready]),
                        Route::Content => out.content(&self.buffer[..ready]),
                    }
                    self.buffer.drain(..ready);
                    match end {
                        Some((_, marker)) => {
                            self.end_message(marker);
                            continue;
                        }
                        None => return,
                    }
                }
                State::Call {
                    name,
                    header,
                    searched,
                } => {
                    let end = find_first(&self.buffer, &MESSAGE_ENDS, *searched);
                    let arguments_len = match end {
                        Some((at, _)) => at,
                        None if ended => self.buffer.len(),
                        None => {
                            *searched = self.buffer.len();
                            return;
                        }
                    };
                    let arguments = serde_json::from_str::<Value>(&self.buffer[..arguments_len])
                        .ok()
                        .and_then(|value| arguments_object(&value));
                    let Some(arguments) = arguments else {
                        // Not JSON: the message comes back as written, its text read as content.
                        out.content(header);
                        out.content(MESSAGE);
                        self.state = State::Message {
                            route: Route::Content,
                        };
                        continue;
                    };
                    let name = std::mem::take(name);
                    out.call(ParsedCall { name, arguments });
                    self.buffer.drain(..arguments_len);
                    match end {
                        Some((_, marker)) => self.end_message(marker),
                        None => self.state = State::Header,
                    }
                }
            }
        }
    }
}

impl HarmonyParser {
    /// After a message's text: its end marker is dropped; a `<|start|>` stays, as the next
    /// header's first token.
    fn end_message(&mut self, marker: &str) {
        if marker != START {
            self.buffer.drain(..marker.len());
        }
        self.state = State::Header;
    }
}

/// Whether `text` (up to `<|message|>`, or all that has arrived) is, or can still become, a
/// header.
fn could_be_header(text: &str) -> bool {
    let text = text.trim_start();
    text.len() <= MAX_HEADER_LEN
        && !text.contains('\n')
        && HEADER_OPENINGS
            .iter()
            .any(|opening| compatible_with(text, opening))
}

/// The route a header gives its message: a recipient in `functions` makes it a call; else the
/// channel decides (a built-in tool's message, `to=python` or `to=browser.search`, goes by
/// its channel too).
fn read_header(header: &str) -> State {
    let word_after = |marker: &str| {
        let (_, rest) = header.split_once(marker)?;
        let rest = rest.trim_start();
        let len = rest
            .find(|c: char| c.is_whitespace() || c == '<')
            .unwrap_or(rest.len());
        Some(&rest[..len])
    };
    let function = word_after("to=")
        .and_then(|recipient| recipient.strip_prefix(FUNCTIONS))
        .filter(|name| !name.is_empty());
    if let Some(name) = function {
        return State::Call {
            name: name.to_string(),
            header: header.to_string(),
            searched: 0,
        };
    }
    let route = match word_after(CHANNEL) {
        Some("analysis") => Route::Reasoning,
        _ => Route::Content,
    };
    State::Message { route }
}
