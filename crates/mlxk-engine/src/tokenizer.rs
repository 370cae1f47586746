//! Text to token ids and back, and chat prompts rendered with the model's own template.

use std::fs;
use std::path::Path;

use minijinja::{context, Environment, Error as TemplateError, ErrorKind};
use serde::Serialize;
use serde_json::Value;
use tokenizers::Tokenizer as HfTokenizer;

use crate::error::{EngineError, Result};
use crate::text_model::Prompt;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: &str) -> Self {
        ChatMessage {
            role: role.to_string(),
            content: content.to_string(),
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

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// The text a prompt is sent to the model as: a conversation through the chat template
    /// (or, `raw` or without one, its messages' text joined by blank lines), text as it is.
    pub fn render_prompt(&self, prompt: &Prompt, raw: bool) -> Result<String> {
        match prompt {
            Prompt::Chat(messages) if !raw && self.has_chat_template() => {
                self.apply_chat_template(messages, true)
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
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| EngineError::Template("the model has no chat template".into()))?;
        render_chat_template(
            template,
            chat_context(
                messages,
                add_generation_prompt,
                self.bos_token.as_deref().unwrap_or_default(),
                self.eos_token.as_deref().unwrap_or_default(),
            ),
        )
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
}

impl StreamDecoder {
    /// The text `id` completes, if any.
    pub fn step(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let before = tokenizer.decode(&self.ids[self.prefix..self.read])?;
        let now = tokenizer.decode(&self.ids[self.prefix..])?;
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
