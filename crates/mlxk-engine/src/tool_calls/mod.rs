//! Tool calls in a model's output: each family's markup read back into calls, as text streams.
//!
//! A model calls tools by writing markup its chat template taught it: Hermes' `<tool_call>`
//! JSON, Qwen3-Coder's `<function=…>` XML, a bare Llama 3 JSON object, Mistral's
//! `[TOOL_CALLS]`, gpt-oss' Harmony channels. [`ToolFormat::detect`] tells the family from the
//! template and the tokenizer's special tokens; a [`ToolCallParser`] turns decoded text into
//! [`ToolEvent`]s: the text meant for the user, and the calls.
//!
//! What every parser guarantees, whatever the family:
//! - Its results depend on the text only, never on how it was split into pieces: what a whole
//!   text gives ([`parse`]) is what the same text streamed in any pieces gives.
//! - Text streams as it comes; only what could still be the start of a call's markup is held
//!   back, until the next piece shows whether it is.
//! - No markup of a recognized call reaches the content, and no text is lost: markup that turns
//!   out not to be a call (malformed, or cut off when the output ended) comes back as content.
//! - Whitespace at the start of the output or after a call is dropped when a call or the end
//!   follows (the newlines between parallel calls are not an answer), and kept otherwise.
//! - Arguments are always a JSON object, serialized compactly, whichever way the model wrote it
//!   (`"arguments"` or Llama's `"parameters"`, an object or a string holding one).

mod detect;
mod harmony;
mod json_call;
mod llama3;
mod mistral;
mod output;
mod qwen3_xml;
mod scan;
mod tagged;
#[cfg(test)]
mod tests;

use harmony::HarmonyParser;
use llama3::Llama3Parser;
use mistral::MistralParser;
use output::Output;
use tagged::{Body, TaggedParser};

/// A model's tool-call markup family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolFormat {
    /// `<tool_call>{"name": …, "arguments": {…}}</tool_call>`: Qwen 2.5 and 3, NousHermes.
    Hermes,
    /// `<tool_call><function=name><parameter=key>value</parameter></function></tool_call>`:
    /// Qwen3-Coder.
    Qwen3Xml,
    /// The whole answer is `{"name": …, "parameters": {…}}` (`;` between several): Llama 3.x.
    Llama3Json,
    /// `[TOOL_CALLS][{"name": …, "arguments": {…}}]`, or `[TOOL_CALLS]name[ARGS]{…}` per call.
    Mistral,
    /// gpt-oss: messages on channels, a call addressed `to=functions.name`.
    Harmony,
}

impl ToolFormat {
    pub fn label(self) -> &'static str {
        match self {
            ToolFormat::Hermes => "hermes",
            ToolFormat::Qwen3Xml => "qwen3_xml",
            ToolFormat::Llama3Json => "llama3_json",
            ToolFormat::Mistral => "mistral",
            ToolFormat::Harmony => "harmony",
        }
    }

    /// Whether the format's markers are special tokens that a decoder skipping special tokens
    /// would drop, so the output must be decoded with them kept: Harmony's structure,
    /// Llama's `<|python_tag|>`, and `[TOOL_CALLS]` (a control token in Mistral's v3+
    /// tokenizers). Qwen's `<tool_call>` is an added token that is not special.
    pub fn needs_special_tokens(self) -> bool {
        matches!(
            self,
            ToolFormat::Harmony | ToolFormat::Llama3Json | ToolFormat::Mistral
        )
    }
}

/// A completed call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    /// Fresh for every call: `call_` and 24 letters or digits, as OpenAI's ids look; for
    /// Mistral 9 letters or digits, the only ids its chat templates accept back.
    pub id: String,
    pub name: String,
    /// A JSON object, serialized compactly.
    pub arguments: String,
}

/// What a piece of output turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolEvent {
    /// Text for the user.
    Content(String),
    /// Harmony's analysis channel (the model's reasoning); no other format writes it.
    Reasoning(String),
    CallStart {
        index: usize,
        id: String,
        name: String,
    },
    /// The fragments of one call, joined, are its arguments' JSON object.
    Arguments {
        index: usize,
        fragment: String,
    },
    CallEnd {
        index: usize,
    },
}

/// Reads one output of a model as it streams. A call's events come together once the call is
/// complete (`CallStart`, its arguments in one fragment, `CallEnd`).
pub struct ToolCallParser {
    grammar: Grammar,
    output: Output,
}

/// One parser per family; `<tool_call>` families share one that differs only in the body.
/// What every format's parser does: text is buffered and read as far as it allows; at the end,
/// what is left is read as the end.
trait FormatParser {
    fn buffer(&mut self) -> &mut String;
    /// Reads as far as the text allows; `ended` when no more will come.
    fn advance(&mut self, out: &mut Output, ended: bool);

    fn push(&mut self, text: &str, out: &mut Output) {
        self.buffer().push_str(text);
        self.advance(out, false);
    }

    fn finish(&mut self, out: &mut Output) {
        self.advance(out, true);
    }
}

enum Grammar {
    /// Hermes before the answer's first visible character: an answer that opens with `{` is
    /// read as a bare JSON call (small Qwen 2.5 models leave the tags out), else as tagged.
    HermesUndecided(String),
    Tagged(TaggedParser),
    Llama3(Llama3Parser),
    Mistral(MistralParser),
    Harmony(HarmonyParser),
}

impl Grammar {
    /// The parser of a decided format.
    fn decided(&mut self) -> &mut dyn FormatParser {
        match self {
            Grammar::HermesUndecided(_) => unreachable!("decided before any parsing"),
            Grammar::Tagged(parser) => parser,
            Grammar::Llama3(parser) => parser,
            Grammar::Mistral(parser) => parser,
            Grammar::Harmony(parser) => parser,
        }
    }
}

impl ToolCallParser {
    pub fn new(format: ToolFormat) -> Self {
        let grammar = match format {
            ToolFormat::Hermes => Grammar::HermesUndecided(String::new()),
            ToolFormat::Qwen3Xml => Grammar::Tagged(TaggedParser::new(Body::Xml)),
            ToolFormat::Llama3Json => Grammar::Llama3(Llama3Parser::default()),
            ToolFormat::Mistral => Grammar::Mistral(MistralParser::default()),
            ToolFormat::Harmony => Grammar::Harmony(HarmonyParser::default()),
        };
        ToolCallParser {
            grammar,
            output: Output::new(format),
        }
    }

    /// Feeds decoded text, split anywhere (between whole characters).
    pub fn push(&mut self, text: &str) -> Vec<ToolEvent> {
        if let Grammar::HermesUndecided(pending) = &mut self.grammar {
            pending.push_str(text);
            let Some(first) = pending.trim_start().chars().next() else {
                return Vec::new();
            };
            let held = std::mem::take(pending);
            self.grammar = match first {
                '{' => Grammar::Llama3(Llama3Parser::default()),
                _ => Grammar::Tagged(TaggedParser::new(Body::Json)),
            };
            return self.push(&held);
        }
        self.grammar.decided().push(text, &mut self.output);
        self.output.take_events()
    }

    /// The output ended: what was held back comes out. A call cut off unfinished comes back as
    /// content, as written, unless what arrived of it is already a whole call.
    pub fn finish(&mut self) -> Vec<ToolEvent> {
        if let Grammar::HermesUndecided(pending) = &mut self.grammar {
            // Only whitespace, or nothing: the tagged reading keeps it as it was.
            let held = std::mem::take(pending);
            self.grammar = Grammar::Tagged(TaggedParser::new(Body::Json));
            let mut events = self.push(&held);
            events.extend(self.finish());
            return events;
        }
        self.grammar.decided().finish(&mut self.output);
        self.output.finish();
        self.output.take_events()
    }

    /// The calls completed so far, in order.
    pub fn calls(&self) -> &[ToolCall] {
        self.output.calls()
    }
}

/// A whole output at once: its content (reasoning left out) and its calls.
pub fn parse(format: ToolFormat, text: &str) -> (String, Vec<ToolCall>) {
    let mut parser = ToolCallParser::new(format);
    let mut events = parser.push(text);
    events.extend(parser.finish());
    let content = events
        .into_iter()
        .filter_map(|event| match event {
            ToolEvent::Content(text) => Some(text),
            _ => None,
        })
        .collect();
    (content, parser.calls().to_vec())
}
