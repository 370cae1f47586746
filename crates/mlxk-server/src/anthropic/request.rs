//! Anthropic's request bodies for `/v1/messages` and `/v1/messages/count_tokens`: parsed,
//! checked field by field before anything is queued (each failure a 400 naming the field) and
//! turned into the service's [`GenerationRequest`]: the conversation (system, text, `tool_use`
//! and `tool_result` blocks) as chat messages for the model's template, the tools and
//! `tool_choice`, sampling, stop sequences, `thinking` and a JSON-schema output format.

use std::collections::HashMap;

use mlxk_engine::constraint::Grammar;
use mlxk_engine::tool_use::{Tool, ToolChoice, ToolUse};
use mlxk_engine::{ChatMessage, Prompt, SamplingChoice};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::checks;
use crate::error::ApiError;
use crate::service::GenerationRequest;
use crate::worker::KeepAlive;

/// Text, or a list of content blocks.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Blocks(Vec<Block>),
}

/// One content block, of any type: the fields of every type we read, checked per type.
#[derive(Debug, Deserialize)]
struct Block {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    /// `tool_use`: the call's id, the tool and its input object.
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    input: Option<Value>,
    /// `tool_result`: the call it answers, its content and whether the tool failed.
    #[serde(default)]
    tool_use_id: Option<String>,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    is_error: bool,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    content: Content,
}

/// A custom tool (`type` absent or `custom`); Anthropic's server tools cannot run here.
#[derive(Debug, Deserialize)]
struct ToolParam {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    input_schema: Option<Value>,
    #[serde(default)]
    strict: bool,
}

#[derive(Debug, Deserialize)]
struct ToolChoiceParam {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    disable_parallel_tool_use: bool,
}

#[derive(Debug, Deserialize)]
struct ThinkingParam {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    budget_tokens: Option<i64>,
    #[serde(default)]
    display: Option<String>,
}

/// `output_config`: `effort` (no local counterpart: accepted without effect) and `format`.
#[derive(Debug, Deserialize)]
struct OutputConfig {
    #[serde(default)]
    format: Option<OutputFormat>,
}

/// `{"type": "json_schema", "schema": {...}}`.
#[derive(Debug, Deserialize)]
struct OutputFormat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    schema: Option<Value>,
}

/// The fields of both endpoints. Unknown fields are ignored: those of Anthropic's cloud
/// (`metadata`, `cache_control`, `service_tier`, `container`, `output_config.effort`, ...)
/// have no meaning here.
#[derive(Debug, Deserialize)]
pub struct MessagesRequest {
    pub model: String,
    messages: Vec<Message>,
    #[serde(default)]
    system: Option<Content>,
    /// Required by `/v1/messages` (as Anthropic requires it), unused by `count_tokens`.
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    pub stream: bool,
    #[serde(default)]
    tools: Option<Vec<ToolParam>>,
    #[serde(default)]
    tool_choice: Option<ToolChoiceParam>,
    #[serde(default)]
    thinking: Option<ThinkingParam>,
    #[serde(default)]
    output_config: Option<OutputConfig>,
    /// The structured-outputs beta's name for `output_config.format`.
    #[serde(default)]
    output_format: Option<OutputFormat>,
    /// Remote MCP servers would offer tools this server cannot call.
    #[serde(default)]
    mcp_servers: Option<Vec<Value>>,
}

/// What the answer shows besides the generation itself.
#[derive(Debug, Clone)]
pub struct Shape {
    /// The reasoning as `thinking` blocks; off with `thinking: {"type": "disabled"}` or
    /// `display: "omitted"` (a reasoning model still thinks: its tokens still count).
    pub show_thinking: bool,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

impl MessagesRequest {
    /// Everything `/v1/messages` needs before queueing: each failure a 400 naming the field.
    /// `limit` is the server's cap on new tokens.
    pub fn into_generation(self, limit: usize) -> Result<(GenerationRequest, Shape), ApiError> {
        let max_tokens = match self.max_tokens {
            None => return Err(bad("max_tokens: field required")),
            Some(0) => return Err(bad("max_tokens: must be at least 1")),
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX).min(limit),
        };
        let sampling = SamplingChoice {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k.map(|k| k as usize),
            ..SamplingChoice::default()
        };
        checks::sampling(&sampling, checks::SAMPLING_FIELDS)?;
        let stops = self.stop_sequences.clone().unwrap_or_default();
        checks::stops("stop_sequences", &stops)?;
        let show_thinking = self.show_thinking()?;
        let grammar = self.grammar()?;
        let (prompt, tools) = self.conversation()?;
        checks::enforceable(
            tools.as_ref(),
            "tools",
            |i| format!("tools[{i}].input_schema"),
            grammar.as_ref(),
            "output_config.format",
        )?;
        let generation = GenerationRequest {
            model: self.model,
            prompt,
            sampling,
            max_tokens,
            stops,
            tools,
            grammar,
            logprobs: None,
            keep_alive: KeepAlive::Server,
        };
        let shape = Shape { show_thinking };
        Ok((generation, shape))
    }

    /// The prompt and tools as the model reads them, checked: what `count_tokens` counts and
    /// what a generation prefills.
    pub fn conversation(&self) -> Result<(Prompt, Option<ToolUse>), ApiError> {
        if let Some(servers) = self.mcp_servers.as_ref().filter(|s| !s.is_empty()) {
            return Err(bad(format!(
                "mcp_servers: {} MCP server(s) given, but this server calls no remote tools; offer them as tools",
                servers.len()
            )));
        }
        let tools = self.tool_use()?;
        let messages = chat_messages(self.system.as_ref(), &self.messages)?;
        Ok((Prompt::Chat(messages), tools))
    }

    /// `thinking`: enabled, adaptive or disabled. A budget is not a separate limit here: the
    /// reasoning and the answer share `max_tokens`.
    fn show_thinking(&self) -> Result<bool, ApiError> {
        let Some(thinking) = &self.thinking else {
            return Ok(true);
        };
        let shown = match thinking.kind.as_str() {
            "enabled" => match thinking.budget_tokens {
                Some(n) if n >= 1 => true,
                Some(n) => {
                    return Err(bad(format!(
                        "thinking.budget_tokens: must be at least 1, not {n}"
                    )))
                }
                None => {
                    return Err(bad(
                        "thinking.budget_tokens: field required for type 'enabled'",
                    ))
                }
            },
            "adaptive" => true,
            "disabled" => false,
            other => {
                return Err(bad(format!(
                    "thinking.type: '{other}' is not one of enabled, adaptive, disabled"
                )))
            }
        };
        match thinking.display.as_deref() {
            None | Some("summarized") => Ok(shown),
            Some("omitted") => Ok(false),
            Some(other) => Err(bad(format!(
                "thinking.display: '{other}' is not one of summarized, omitted"
            ))),
        }
    }

    /// `output_config.format` (or the beta's `output_format`) as a grammar.
    fn grammar(&self) -> Result<Option<Grammar>, ApiError> {
        let config = self.output_config.as_ref().and_then(|c| c.format.as_ref());
        let (format, field) = match (config, &self.output_format) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "output_format: give the format once, in output_config.format",
                ))
            }
            (Some(format), None) => (format, "output_config.format"),
            (None, Some(format)) => (format, "output_format"),
            (None, None) => return Ok(None),
        };
        if format.kind != "json_schema" {
            return Err(bad(format!(
                "{field}.type: '{}' is not 'json_schema'",
                format.kind
            )));
        }
        match &format.schema {
            Some(schema @ Value::Object(_)) => {
                // Anthropic's structured outputs allow no properties but those listed.
                let mut schema = schema.clone();
                mlxk_engine::tool_use::close_objects(&mut schema);
                Ok(Some(Grammar::JsonSchema(schema)))
            }
            Some(_) => Err(bad(format!("{field}.schema: must be a JSON Schema object"))),
            None => Err(bad(format!("{field}.schema: field required"))),
        }
    }

    /// `tools` and `tool_choice`, checked; `None` without tools.
    fn tool_use(&self) -> Result<Option<ToolUse>, ApiError> {
        let mut tools = Vec::new();
        for (i, param) in self.tools.iter().flatten().enumerate() {
            if let Some(kind) = param.kind.as_deref().filter(|k| *k != "custom") {
                return Err(bad(format!(
                    "tools[{i}].type: '{kind}' is one of Anthropic's server tools, which cannot run here; offer custom tools (name, description, input_schema)"
                )));
            }
            let parameters = match &param.input_schema {
                Some(schema @ Value::Object(_)) => schema.clone(),
                Some(_) => {
                    return Err(bad(format!(
                        "tools[{i}].input_schema: must be a JSON Schema object"
                    )))
                }
                None => return Err(bad(format!("tools[{i}].input_schema: field required"))),
            };
            tools.push(Tool {
                name: param.name.clone(),
                description: param.description.clone(),
                parameters,
                strict: param.strict,
            });
        }
        checks::tools(&tools, "tools", |i| format!("tools[{i}]"))?;
        let (choice, parallel) = match &self.tool_choice {
            None => (ToolChoice::Auto, true),
            Some(param) => {
                let choice = match (param.kind.as_str(), &param.name) {
                    ("auto", _) => ToolChoice::Auto,
                    ("any", _) => ToolChoice::Required,
                    ("none", _) => ToolChoice::None,
                    ("tool", Some(name)) => ToolChoice::Named(name.clone()),
                    ("tool", None) => {
                        return Err(bad("tool_choice.name: field required for type 'tool'"))
                    }
                    (other, _) => {
                        return Err(bad(format!(
                            "tool_choice.type: '{other}' is not one of auto, any, tool, none"
                        )))
                    }
                };
                (choice, !param.disable_parallel_tool_use)
            }
        };
        let tool_use = ToolUse {
            tools,
            choice,
            parallel,
        };
        checks::tool_choice(&tool_use, "tool_choice")?;
        Ok(Some(tool_use).filter(|t| !t.tools.is_empty()))
    }
}

/// A call id as the engine and templates know it: Anthropic's `toolu_` prefix is ours.
fn engine_call_id(id: &str) -> String {
    id.strip_prefix("toolu_").unwrap_or(id).to_string()
}

/// The conversation as chat messages (OpenAI's shape, which chat templates read): the system
/// prompt first; assistant text with its `tool_use` blocks as `tool_calls`; each `tool_result`
/// as a `tool` message (a failed tool's result marked `Error:`), the user's text after it.
/// Earlier `thinking` blocks are left out, as reasoning models' templates leave them out.
fn chat_messages(
    system: Option<&Content>,
    messages: &[Message],
) -> Result<Vec<ChatMessage>, ApiError> {
    if messages.is_empty() {
        return Err(bad("messages: at least one message is required"));
    }
    if messages.last().is_some_and(|m| m.role == "assistant") {
        return Err(bad(
            "messages: the last message is the assistant's; continuing a prefilled answer is not supported, end with a user message",
        ));
    }
    let mut chat = Vec::new();
    if let Some(system) = system {
        let text = text_of(system, "system")?;
        if !text.is_empty() {
            chat.push(ChatMessage::new("system", &text));
        }
    }
    // The calls made so far: id to the tool's name.
    let mut calls: HashMap<String, String> = HashMap::new();
    for (i, message) in messages.iter().enumerate() {
        let place = format!("messages[{i}]");
        match message.role.as_str() {
            "user" => user_turn(&message.content, &place, &calls, &mut chat)?,
            "assistant" => chat.push(assistant_turn(&message.content, &place, &mut calls)?),
            "system" => chat.push(ChatMessage::new(
                "system",
                &text_of(&message.content, &format!("{place}.content"))?,
            )),
            other => {
                return Err(bad(format!(
                    "{place}.role: '{other}' is not one of user, assistant, system"
                )))
            }
        }
    }
    Ok(chat)
}

fn blocks(content: &Content) -> Vec<&Block> {
    match content {
        Content::Text(_) => Vec::new(),
        Content::Blocks(blocks) => blocks.iter().collect(),
    }
}

/// Text, or text blocks joined by blank lines; other blocks are refused.
fn text_of(content: &Content, place: &str) -> Result<String, ApiError> {
    match content {
        Content::Text(text) => Ok(text.clone()),
        Content::Blocks(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (j, block) in blocks.iter().enumerate() {
                texts.push(block_text(block, &format!("{place}[{j}]"))?);
            }
            Ok(texts.join("\n\n"))
        }
    }
}

fn block_text<'a>(block: &'a Block, place: &str) -> Result<&'a str, ApiError> {
    match (block.kind.as_str(), &block.text) {
        ("text", Some(text)) => Ok(text),
        ("text", None) => Err(bad(format!("{place}.text: field required"))),
        (other, _) => Err(misplaced(other, place, "only text blocks are read here")),
    }
}

/// A block of a type its place does not hold (`holds` says what it does).
fn misplaced(kind: &str, place: &str, holds: &str) -> ApiError {
    bad(format!("{place}: {holds}, not '{kind}'"))
}

/// A user turn: its `tool_result` blocks as `tool` messages and its text as a user message, in
/// the order given.
fn user_turn(
    content: &Content,
    place: &str,
    calls: &HashMap<String, String>,
    chat: &mut Vec<ChatMessage>,
) -> Result<(), ApiError> {
    let Content::Blocks(list) = content else {
        chat.push(ChatMessage::new("user", &text_of(content, place)?));
        return Ok(());
    };
    let mut text: Vec<&str> = Vec::new();
    for (j, block) in list.iter().enumerate() {
        let place = format!("{place}.content[{j}]");
        match block.kind.as_str() {
            "text" => {
                text.push(block_text(block, &place)?);
                continue;
            }
            "tool_result" => {}
            other => {
                return Err(misplaced(
                    other,
                    &place,
                    "a user message holds text and tool_result blocks",
                ))
            }
        }
        if !text.is_empty() {
            chat.push(ChatMessage::new("user", &text.join("\n\n")));
            text.clear();
        }
        let id = block
            .tool_use_id
            .as_deref()
            .ok_or_else(|| bad(format!("{place}.tool_use_id: field required")))?;
        let Some(name) = calls.get(id) else {
            return Err(bad(format!(
                "{place}.tool_use_id: '{id}' answers no tool_use block of an earlier assistant message"
            )));
        };
        let result = match &block.content {
            Some(content) => text_of(content, &format!("{place}.content"))?,
            None => String::new(),
        };
        let result = if block.is_error {
            format!("Error: {result}")
        } else {
            result
        };
        let mut message = ChatMessage::new("tool", &result);
        message.tool_call_id = Some(engine_call_id(id));
        message.name = Some(name.clone());
        chat.push(message);
    }
    if !text.is_empty() || list.is_empty() {
        chat.push(ChatMessage::new("user", &text.join("\n\n")));
    }
    Ok(())
}

/// An assistant turn: its text, its `tool_use` blocks as `tool_calls` (noted in `calls`).
fn assistant_turn(
    content: &Content,
    place: &str,
    calls: &mut HashMap<String, String>,
) -> Result<ChatMessage, ApiError> {
    let mut text: Vec<&str> = Vec::new();
    let mut tool_calls = Vec::new();
    if let Content::Text(whole) = content {
        text.push(whole);
    }
    for (j, block) in blocks(content).into_iter().enumerate() {
        let place = format!("{place}.content[{j}]");
        match block.kind.as_str() {
            "text" => text.push(block_text(block, &place)?),
            // Earlier reasoning is not shown to the model again.
            "thinking" | "redacted_thinking" => {}
            "tool_use" => {
                let (Some(id), Some(name)) = (&block.id, &block.name) else {
                    return Err(bad(format!(
                        "{place}: a tool_use block needs 'id' and 'name'"
                    )));
                };
                let input = match &block.input {
                    Some(input @ Value::Object(_)) => input.clone(),
                    None => json!({}),
                    Some(_) => return Err(bad(format!("{place}.input: must be a JSON object"))),
                };
                calls.insert(id.clone(), name.clone());
                tool_calls.push(json!({"id": engine_call_id(id), "type": "function",
                    "function": {"name": name, "arguments": input}}));
            }
            other => {
                return Err(misplaced(
                    other,
                    &place,
                    "an assistant message holds text, tool_use and thinking blocks",
                ))
            }
        }
    }
    let mut message = ChatMessage::new("assistant", &text.join("\n\n"));
    message.tool_calls = Some(tool_calls).filter(|c| !c.is_empty());
    Ok(message)
}
