//! Text to token ids and back, and chat prompts rendered with the model's own template.

use std::fs;
use std::path::Path;

use minijinja::{context, Environment, Error as TemplateError, ErrorKind};
use serde::Serialize;
use serde_json::Value;
use tokenizers::Tokenizer as HfTokenizer;

use crate::error::{EngineError, Result};
use crate::text_model::Prompt;

/// One message of a conversation, as Hugging Face's `apply_chat_template` hands it to a chat
/// template: the fields a message without tools lacks are left out, not null.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
    /// An assistant's calls, in OpenAI's shape with each call's `arguments` as an object
    /// (templates differ on strings; most expect `arguments | tojson` or iterate over it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<Value>>,
    /// A tool result's call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// A tool result's function name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.to_string(),
            content: content.to_string(),
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }
    }
}

pub struct Tokenizer {
    inner: HfTokenizer,
    chat_template: Option<String>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    /// Every token id that ends generation.
    eos_ids: Vec<u32>,
}

impl Tokenizer {
    /// Loads `tokenizer.json`, with the chat template and special tokens of
    /// `tokenizer_config.json` (or `chat_template.jinja`), and the EOS ids of `config.json`
    /// and `generation_config.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let inner = HfTokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| {
            EngineError::Tokenizer(format!("{}: {e}", dir.join("tokenizer.json").display()))
        })?;
        let read_json = |name: &str| -> Value {
            fs::read(dir.join(name))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or(Value::Null)
        };
        let tokenizer_config = read_json("tokenizer_config.json");
        let token_text = |key: &str| match tokenizer_config.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Object(o)) => o.get("content").and_then(Value::as_str).map(str::to_string),
            _ => None,
        };
        let chat_template = fs::read_to_string(dir.join("chat_template.jinja"))
            .ok()
            .or_else(|| {
                tokenizer_config
                    .get("chat_template")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            });
        let bos_token = token_text("bos_token");
        let eos_token = token_text("eos_token");

        let mut eos_ids = Vec::new();
        for source in [
            read_json("generation_config.json"),
            read_json("config.json"),
        ] {
            match source.get("eos_token_id") {
                Some(Value::Number(n)) => eos_ids.extend(n.as_u64().map(|v| v as u32)),
                Some(Value::Array(a)) => {
                    eos_ids.extend(a.iter().filter_map(Value::as_u64).map(|v| v as u32))
                }
                _ => {}
            }
        }
        if let Some(id) = eos_token.as_deref().and_then(|t| inner.token_to_id(t)) {
            eos_ids.push(id);
        }
        eos_ids.sort_unstable();
        eos_ids.dedup();
        Ok(Tokenizer {
            inner,
            chat_template,
            bos_token,
            eos_token,
            eos_ids,
        })
    }

    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// Token ids of a prompt. Special tokens are added only when the text does not already
    /// start with the BOS token (a rendered chat template usually does), as mlx-lm does.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let add_special = !self
            .bos_token
            .as_deref()
            .is_some_and(|bos| !bos.is_empty() && text.starts_with(bos));
        let encoding = self
            .inner
            .encode(text, add_special)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// Token ids of a piece of text, without any special tokens added.
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// The text a prompt is sent to the model as: a conversation through the chat template
    /// (or, `raw` or without one, its messages' text joined by blank lines), text as it is.
    /// `tools` (OpenAI's function objects) go to the template as `tools`.
    pub fn render_prompt(
        &self,
        prompt: &Prompt,
        raw: bool,
        tools: Option<&[Value]>,
    ) -> Result<String> {
        match prompt {
            Prompt::Chat(messages) if !raw && self.has_chat_template() => {
                self.apply_chat_template_with_tools(messages, true, tools)
            }
            Prompt::Chat(messages) => Ok(messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n\n")),
            Prompt::Text(text) => Ok(text.clone()),
        }
    }

    /// Renders the model's chat template, as `apply_chat_template(..., tokenize=False)` would.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        self.apply_chat_template_with_tools(messages, add_generation_prompt, None)
    }

    /// As [`Tokenizer::apply_chat_template`], with `tools=` as Hugging Face passes them.
    pub fn apply_chat_template_with_tools(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        tools: Option<&[Value]>,
    ) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| EngineError::Template("the model has no chat template".into()))?;
        let mut context = chat_context(
            messages,
            add_generation_prompt,
            self.bos_token.as_deref().unwrap_or_default(),
            self.eos_token.as_deref().unwrap_or_default(),
        );
        if let Some(tools) = tools {
            context = minijinja::context! { tools => tools, ..context };
        }
        render_chat_template(template, context)
    }

    /// The chat template's text, if the model has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The text of every added token (special or not): tool-call markers are among them.
    pub fn added_tokens(&self) -> Vec<String> {
        self.inner
            .get_added_tokens_decoder()
            .into_values()
            .map(|t| t.content)
            .collect()
    }

    /// The Hugging Face tokenizer itself (for the grammar's token trie).
    pub fn hf_tokenizer(&self) -> &HfTokenizer {
        &self.inner
    }

    /// Decodes keeping special tokens (tool-call markers some formats write as special tokens).
    pub fn decode_with_special(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }
}

/// What a chat template sees, as `apply_chat_template` passes it.
pub fn chat_context(
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> minijinja::Value {
    context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    }
}

/// Template instructions one rendering may run. A long conversation with tools takes well
/// under a million; a template that loops for ever stops here instead of holding the worker
/// (50 million took about a minute in a debug build: too long to hold a worker or a fuzzer).
const TEMPLATE_FUEL: u64 = 5_000_000;
/// The most text one rendering may produce: far beyond any model's context window.
const MAX_RENDERED_BYTES: usize = 16 << 20;

/// Renders a chat template from a model file, which may be hostile: it runs on limited fuel
/// and its output is capped, so a template that loops or balloons is an error, not a hang or
/// an allocation that aborts the process.
pub fn render_chat_template(template: &str, context: minijinja::Value) -> Result<String> {
    let mut env = Environment::new();
    minijinja_contrib::add_to_environment(&mut env);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.add_filter("tojson", python_tojson);
    env.add_function(
        "raise_exception",
        |message: String| -> Result<String, TemplateError> {
            Err(TemplateError::new(ErrorKind::InvalidOperation, message))
        },
    );
    env.add_template("chat", template)
        .map_err(|e| EngineError::Template(e.to_string()))?;
    let mut output = CappedOutput::default();
    let rendered = env
        .get_template("chat")
        .and_then(|t| t.render_captured_to(context, &mut output).map(|_| ()));
    match rendered {
        Ok(_) => String::from_utf8(output.bytes)
            .map_err(|_| EngineError::Template("the rendered prompt is not UTF-8".into())),
        Err(_) if output.overflowed => Err(EngineError::Template(format!(
            "the chat template produced more than {} MiB of text; refusing it",
            MAX_RENDERED_BYTES >> 20
        ))),
        Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(EngineError::Template(format!(
            "the chat template did not finish within {TEMPLATE_FUEL} steps (it loops); refusing it"
        ))),
        Err(e) => Err(EngineError::Template(e.to_string())),
    }
}

/// `tojson` as transformers defines it for chat templates (`json.dumps` with
/// `ensure_ascii=False`): keys in their order, `", "` and `": "` between items (or Python's
/// indented layout with `indent`), nothing escaped for HTML. minijinja's own filter sorts keys,
/// writes no spaces and escapes `<` and `>`, so a tool's JSON in a prompt would differ from what
/// the model was trained on.
fn python_tojson(
    value: minijinja::Value,
    kwargs: minijinja::value::Kwargs,
) -> Result<minijinja::Value, TemplateError> {
    let indent: Option<usize> = kwargs.get("indent")?;
    // Accepted as transformers accepts them; its defaults are what this writes.
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    let _: Option<bool> = kwargs.get("sort_keys")?;
    let _: Option<minijinja::Value> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;
    let mut out = Vec::new();
    let written = match indent {
        Some(width) => {
            let spaces = vec![b' '; width];
            let mut ser = serde_json::Serializer::with_formatter(
                &mut out,
                serde_json::ser::PrettyFormatter::with_indent(&spaces),
            );
            serde::Serialize::serialize(&value, &mut ser)
        }
        None => {
            let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonJsonFormatter);
            serde::Serialize::serialize(&value, &mut ser)
        }
    };
    written.map_err(|e| TemplateError::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let text = String::from_utf8(out)
        .map_err(|e| TemplateError::new(ErrorKind::InvalidOperation, e.to_string()))?;
    Ok(minijinja::Value::from_safe_string(text))
}

/// Python's `json.dumps` separators: `", "` between items, `": "` after keys.
struct PythonJsonFormatter;

impl serde_json::ser::Formatter for PythonJsonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(writer, first)
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        item_separator(writer, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

fn item_separator<W: ?Sized + std::io::Write>(writer: &mut W, first: bool) -> std::io::Result<()> {
    if first {
        Ok(())
    } else {
        writer.write_all(b", ")
    }
}

/// Collects rendered text up to [`MAX_RENDERED_BYTES`]; a write past it fails the rendering.
#[derive(Default)]
struct CappedOutput {
    bytes: Vec<u8>,
    overflowed: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_RENDERED_BYTES {
            self.overflowed = true;
            return Err(std::io::Error::other("rendered prompt too large"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Turns generated token ids into text as they come: UTF-8 safe (a character split across
/// tokens waits for its last byte) and constant work per token (only the tokens since the last
/// emitted text are decoded again, never the whole answer). It owns no tokenizer, so it can live
/// beside one in a long-running session.
#[derive(Debug, Default, Clone)]
pub struct StreamDecoder {
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
    /// Special tokens are text too (a tool-call format whose markers are special tokens).
    keep_special: bool,
}

impl StreamDecoder {
    /// A decoder that keeps special tokens in the text.
    pub fn keeping_special_tokens() -> Self {
        StreamDecoder {
            keep_special: true,
            ..StreamDecoder::default()
        }
    }

    /// The text `id` completes, if any.
    pub fn step(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let decode = |ids: &[u32]| match self.keep_special {
            true => tokenizer.decode_with_special(ids),
            false => tokenizer.decode(ids),
        };
        let before = decode(&self.ids[self.prefix..self.read])?;
        let now = decode(&self.ids[self.prefix..])?;
        if now.len() > before.len()
            && !now.ends_with('\u{FFFD}')
            && now.is_char_boundary(before.len())
        {
            let piece = now[before.len()..].to_string();
            self.prefix = self.read;
            self.read = self.ids.len();
            // Keep the decoded window short: older tokens no longer change the text.
            if self.prefix > 64 {
                self.ids.drain(..self.prefix);
                self.read -= self.prefix;
                self.prefix = 0;
            }
            Ok(Some(piece))
        } else {
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str) -> Result<String> {
        render_chat_template(
            template,
            context! { messages => vec![ChatMessage::new("user", "hi")] },
        )
    }

    #[test]
    fn renders_an_ordinary_template() {
        let text = render("{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}");
        assert_eq!(text.unwrap(), "<user>hi");
    }

    #[test]
    fn hostile_templates_are_errors_not_hangs_or_aborts() {
        let cases = [
            (
                "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
                "did not finish",
            ),
            (
                "{% for x in [1] * 1000000000000 %}{% endfor %}",
                "did not finish",
            ),
            (
                "{% for a in range(100000) %}{{ 'x' * 1000000 }}{% endfor %}",
                "more than 16 MiB",
            ),
            (
                "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
                "recursion",
            ),
            ("{{ 'x' * 1000000000000 }}", "too large"),
            ("{{ raise_exception('no tools here') }}", "no tools here"),
        ];
        for (template, expected) in cases {
            let started = std::time::Instant::now();
            let error = render(template).unwrap_err().to_string();
            assert!(error.contains(expected), "{template}: {error}");
            assert!(started.elapsed().as_secs() < 60, "{template} took too long");
        }
    }
}
