//! The body of `POST /v1/responses`, parsed and checked field by field (each failure a 400
//! naming the field) into a [`GenerationRequest`], with the settings a response echoes. A field
//! this server cannot honour is refused, never ignored: OpenAI itself refuses parameters it
//! does not know, and so do we.

use std::collections::{BTreeMap, HashMap};

use mlxk_engine::constraint::Grammar;
use mlxk_engine::tool_use::{close_objects, Tool, ToolChoice, ToolUse};
use mlxk_engine::{ChatMessage, Prompt, SamplingChoice};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::checks;
use crate::error::ApiError;
use crate::service::GenerationRequest;
use crate::worker::KeepAlive;

#[derive(Debug, Deserialize)]
pub struct ResponsesRequest {
    model: String,
    /// A string, or a list of items: read by [`prompt`], whose errors name the item.
    input: Value,
    #[serde(default)]
    instructions: Option<String>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    text: Option<TextParam>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    reasoning: Option<ReasoningParam>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    metadata: Option<BTreeMap<String, String>>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    truncation: Option<String>,
    #[serde(default)]
    previous_response_id: Option<String>,
    #[serde(default)]
    background: Option<bool>,
    #[serde(default)]
    include: Option<Vec<String>>,
    #[serde(default)]
    top_logprobs: Option<u32>,
    /// Everything else: accepted only if listed in [`WITHOUT_EFFECT`].
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// Parameters of OpenAI's that change nothing here: `store` (nothing is kept either way; a
/// response says `store: false`), billing and caching hints, identifiers for abuse detection
/// and the client's own bookkeeping (Codex sends `client_metadata` with every turn), a limit on
/// built-in tool calls (none run here), and stream obfuscation (padding against network side
/// channels; a local stream goes unpadded).
const WITHOUT_EFFECT: &[&str] = &[
    "store",
    "client_metadata",
    "service_tier",
    "safety_identifier",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "max_tool_calls",
    "stream_options",
];

/// Parameters of OpenAI's that need what this server does not have, and why.
const REFUSED: &[(&str, &str)] = &[
    (
        "conversation",
        "this server keeps no conversations: send the whole conversation in 'input'",
    ),
    (
        "prompt",
        "this server keeps no prompt templates: send the instructions and 'input' themselves",
    ),
    (
        "context_management",
        "this server does not compact conversations",
    ),
    ("moderation", "this server does not moderate"),
];

/// `{"format": {...}, "verbosity"}`.
#[derive(Debug, Deserialize)]
struct TextParam {
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    verbosity: Option<String>,
}

/// `{"effort", "summary"}` (`generate_summary` is the older name of `summary`).
#[derive(Debug, Deserialize)]
struct ReasoningParam {
    #[serde(default)]
    effort: Option<String>,
    #[serde(default)]
    summary: Option<String>,
    #[serde(default)]
    generate_summary: Option<String>,
}

/// A function tool in the Responses API's flat shape.
#[derive(Debug, Deserialize)]
struct FunctionTool {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
    #[serde(default)]
    defer_loading: Option<bool>,
}

/// What the request asked for, as a response repeats it (`instructions`, `tools`, `text`, ...).
pub type Settings = Map<String, Value>;

/// A parsed request: the generation, whether it streams, the settings to echo.
pub struct Parsed {
    pub generation: GenerationRequest,
    pub stream: bool,
    pub settings: Settings,
}

fn bad(field: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message).with_param(field)
}

impl ResponsesRequest {
    /// Everything about a request that needs no model: every check, the prompt and the
    /// grammars. `limit` is the server's token limit (and the default).
    pub fn into_generation(self, limit: usize) -> Result<Parsed, ApiError> {
        self.refuse_what_cannot_be_honoured()?;
        let sampling = SamplingChoice {
            temperature: self.temperature,
            top_p: self.top_p,
            ..SamplingChoice::default()
        };
        checks::sampling(&sampling, checks::SAMPLING_FIELDS)?;
        if self.max_output_tokens == Some(0) {
            return Err(bad(
                "max_output_tokens",
                "'max_output_tokens' must be at least 1",
            ));
        }
        let (tools, tools_echo) = tool_use(
            self.tools.as_deref(),
            self.tool_choice.as_ref(),
            self.parallel_tool_calls,
        )?;
        let (grammar, text_echo) = text_format(self.text.as_ref())?;
        checks::enforceable(
            tools.as_ref(),
            "tools",
            |i| format!("tools[{i}].parameters"),
            grammar.as_ref(),
            "text",
        )?;
        let reasoning = reasoning(self.reasoning.as_ref())?;
        let prompt = prompt(self.instructions.as_deref(), &self.input)?;
        let settings: Settings = [
            ("instructions", json!(self.instructions)),
            ("tools", tools_echo),
            (
                "tool_choice",
                self.tool_choice.clone().unwrap_or(json!("auto")),
            ),
            (
                "parallel_tool_calls",
                json!(self.parallel_tool_calls.unwrap_or(true)),
            ),
            ("temperature", json!(self.temperature)),
            ("top_p", json!(self.top_p)),
            ("max_output_tokens", json!(self.max_output_tokens)),
            ("text", text_echo),
            ("reasoning", reasoning),
            ("metadata", json!(self.metadata.unwrap_or_default())),
            ("user", json!(self.user)),
            // Nothing is kept, whatever the request said.
            ("store", json!(false)),
            ("truncation", json!("disabled")),
            ("previous_response_id", Value::Null),
            ("background", json!(false)),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_string(), value))
        .collect();
        let generation = GenerationRequest {
            model: self.model,
            prompt,
            sampling,
            max_tokens: self
                .max_output_tokens
                .map_or(limit, |n| (n as usize).min(limit)),
            stops: Vec::new(),
            tools,
            grammar,
            logprobs: None,
            keep_alive: KeepAlive::Server,
        };
        Ok(Parsed {
            generation,
            stream: self.stream.unwrap_or(false),
            settings,
        })
    }

    /// Parameters whose meaning this server cannot give: state kept between requests, work in
    /// the background, input dropped to fit, log probabilities, unknown parameters.
    fn refuse_what_cannot_be_honoured(&self) -> Result<(), ApiError> {
        if self.previous_response_id.is_some() {
            return Err(bad(
                "previous_response_id",
                "this server keeps no responses (it is stateless): send the whole conversation in 'input' instead of 'previous_response_id'",
            ));
        }
        if self.background == Some(true) {
            return Err(bad(
                "background",
                "'background' responses need stored responses, which this server does not keep",
            ));
        }
        if let Some(mode) = self.truncation.as_deref().filter(|m| *m != "disabled") {
            return Err(bad(
                "truncation",
                format!("'truncation' is '{mode}': only 'disabled' is supported (input is never dropped; too long an input is an error)"),
            ));
        }
        // Reasoning comes back as plain text and reasoning given back is dropped from the
        // prompt, so there is nothing to encrypt: that one inclusion asks for nothing missing.
        if let Some(what) = self
            .include
            .iter()
            .flatten()
            .find(|w| *w != "reasoning.encrypted_content")
        {
            return Err(bad(
                "include",
                format!("'include' asks for '{what}', which this server cannot give"),
            ));
        }
        if self.top_logprobs.is_some_and(|n| n > 0) {
            return Err(bad(
                "top_logprobs",
                "log probabilities are not available on the Responses API here: use v1/chat/completions",
            ));
        }
        if let Some(verbosity) = self
            .text
            .as_ref()
            .and_then(|t| t.verbosity.as_deref())
            .filter(|v| *v != "medium")
        {
            return Err(bad(
                "text",
                format!("text.verbosity '{verbosity}' cannot be honoured: only 'medium' (the model's own) is supported"),
            ));
        }
        for name in self
            .other
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(n, _)| n)
        {
            if WITHOUT_EFFECT.contains(&name.as_str()) {
                continue;
            }
            return Err(match REFUSED.iter().find(|(refused, _)| refused == name) {
                Some((field, why)) => bad(field, format!("'{field}' is not supported: {why}")),
                None => ApiError::bad_request(format!("unknown parameter '{name}'")),
            });
        }
        Ok(())
    }
}

/// `reasoning` as the response echoes it. The effort is accepted but does not change how a
/// model reasons (it thinks as its chat template makes it); its reasoning comes back as text.
fn reasoning(param: Option<&ReasoningParam>) -> Result<Value, ApiError> {
    let Some(param) = param else {
        return Ok(json!({"effort": null, "summary": null}));
    };
    const EFFORTS: &[&str] = &["none", "minimal", "low", "medium", "high", "xhigh"];
    const SUMMARIES: &[&str] = &["auto", "concise", "detailed"];
    if let Some(effort) = param.effort.as_deref().filter(|e| !EFFORTS.contains(e)) {
        return Err(bad(
            "reasoning",
            format!(
                "reasoning.effort is '{effort}': one of {}",
                EFFORTS.join(", ")
            ),
        ));
    }
    let summary = param.summary.as_ref().or(param.generate_summary.as_ref());
    if let Some(summary) = summary.filter(|s| !SUMMARIES.contains(&s.as_str())) {
        return Err(bad(
            "reasoning",
            format!(
                "reasoning.summary is '{summary}': one of {}",
                SUMMARIES.join(", ")
            ),
        ));
    }
    Ok(json!({"effort": param.effort, "summary": summary}))
}

/// `tools`, `tool_choice` and `parallel_tool_calls`, checked, with the tools as echoed; `None`
/// without tools. Only functions exist here; built-in tools (web search, files, ...) are a 400.
fn tool_use(
    params: Option<&[Value]>,
    choice: Option<&Value>,
    parallel: Option<bool>,
) -> Result<(Option<ToolUse>, Value), ApiError> {
    let mut tools = Vec::new();
    for (i, param) in params.unwrap_or_default().iter().enumerate() {
        match param.get("type").and_then(Value::as_str) {
            Some("function") => {}
            Some(other) => {
                return Err(bad(
                    "tools",
                    format!("tools[{i}].type is '{other}': this server runs no built-in tools, only your own functions (type 'function')"),
                ))
            }
            None => return Err(bad("tools", format!("tools[{i}].type is missing"))),
        }
        let function: FunctionTool = serde_json::from_value(param.clone())
            .map_err(|e| bad("tools", format!("tools[{i}]: {e}")))?;
        if function.defer_loading == Some(true) {
            return Err(bad(
                "tools",
                format!(
                    "tools[{i}].defer_loading needs tool search, which this server does not have"
                ),
            ));
        }
        let parameters = match function.parameters {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(schema @ Value::Object(_)) => schema,
            Some(_) => {
                return Err(bad(
                    "tools",
                    format!("tools[{i}].parameters must be a JSON Schema object"),
                ))
            }
        };
        tools.push(Tool {
            name: function.name,
            description: function.description,
            parameters,
            // The Responses API's functions are strict unless they say otherwise.
            strict: function.strict.unwrap_or(true),
        });
    }
    checks::tools(&tools, "tools", |i| format!("tools[{i}]"))?;
    let use_ = ToolUse {
        choice: tool_choice(choice)?,
        parallel: parallel.unwrap_or(true),
        tools,
    };
    checks::tool_choice(&use_, "tool_choice")?;
    let echo = use_
        .tools
        .iter()
        .map(|t| {
            json!({"type": "function", "name": t.name, "description": t.description,
                "parameters": t.parameters, "strict": t.strict})
        })
        .collect();
    Ok(((!use_.tools.is_empty()).then_some(use_), echo))
}

/// `"none"`, `"auto"`, `"required"`, or `{"type": "function", "name"}`.
fn tool_choice(choice: Option<&Value>) -> Result<ToolChoice, ApiError> {
    let Some(choice) = choice.filter(|c| !c.is_null()) else {
        return Ok(ToolChoice::Auto);
    };
    match (choice.as_str(), choice.get("type").and_then(Value::as_str)) {
        (Some("none"), _) => Ok(ToolChoice::None),
        (Some("auto"), _) => Ok(ToolChoice::Auto),
        (Some("required"), _) => Ok(ToolChoice::Required),
        (Some(other), _) => Err(bad(
            "tool_choice",
            format!("'tool_choice' is '{other}': none, auto, required or {{\"type\": \"function\", \"name\": ...}}"),
        )),
        (None, Some("function")) => match choice.get("name").and_then(Value::as_str) {
            Some(name) => Ok(ToolChoice::Named(name.to_string())),
            None => Err(bad("tool_choice", "tool_choice.name is missing")),
        },
        (None, kind) => Err(bad(
            "tool_choice",
            format!(
                "tool_choice.type is '{}': only 'function' tools exist here",
                kind.unwrap_or("")
            ),
        )),
    }
}

/// `text.format` as a grammar (`text` or none is free text), and `text` as echoed.
fn text_format(text: Option<&TextParam>) -> Result<(Option<Grammar>, Value), ApiError> {
    let format = text
        .and_then(|t| t.format.clone())
        .filter(|f| !f.is_null())
        .unwrap_or(json!({"type": "text"}));
    let echo = json!({"format": format, "verbosity": "medium"});
    let grammar = match format.get("type").and_then(Value::as_str) {
        Some("text") => None,
        Some("json_object") => Some(Grammar::JsonObject),
        Some("json_schema") => {
            if let Some(name) = format.get("name").and_then(Value::as_str) {
                if !checks::valid_function_name(name) {
                    return Err(bad(
                        "text",
                        format!(
                            "text.format.name '{name}' must be 1 to 64 letters, digits, '_' or '-'"
                        ),
                    ));
                }
            }
            let mut schema = match format.get("schema") {
                Some(schema @ Value::Object(_)) => schema.clone(),
                Some(_) => {
                    return Err(bad(
                        "text",
                        "text.format.schema must be a JSON Schema object",
                    ))
                }
                None => {
                    return Err(bad(
                        "text",
                        "text.format.schema is required for type 'json_schema'",
                    ))
                }
            };
            if format.get("strict") == Some(&Value::Bool(true)) {
                // OpenAI's strict mode: no properties but those listed.
                close_objects(&mut schema);
            }
            Some(Grammar::JsonSchema(schema))
        }
        other => {
            return Err(bad(
                "text",
                format!(
                    "text.format.type is '{}': text, json_object or json_schema",
                    other.unwrap_or("")
                ),
            ))
        }
    };
    Ok((grammar, echo))
}

/// The chat the model reads: `instructions` as a system message first, then the items of
/// `input` (a string is one user message). Function calls join the assistant turn before
/// them; each function output must answer an earlier call; reasoning items are dropped (chat
/// templates leave earlier reasoning out).
fn prompt(instructions: Option<&str>, input: &Value) -> Result<Prompt, ApiError> {
    let mut messages: Vec<ChatMessage> = instructions
        .map(|text| ChatMessage::new("system", text))
        .into_iter()
        .collect();
    match input {
        Value::String(text) if text.is_empty() => return Err(bad("input", "'input' is empty")),
        Value::String(text) => messages.push(ChatMessage::new("user", text)),
        Value::Array(items) if items.is_empty() => return Err(bad("input", "'input' is empty")),
        Value::Array(items) => {
            // The name of each call so far, by its call id.
            let mut calls: HashMap<String, String> = HashMap::new();
            for (i, item) in items.iter().enumerate() {
                add_item(&mut messages, &mut calls, i, item)?;
            }
        }
        _ => return Err(bad("input", "'input' must be a string or a list of items")),
    }
    Ok(Prompt::Chat(messages))
}

fn add_item(
    messages: &mut Vec<ChatMessage>,
    calls: &mut HashMap<String, String>,
    i: usize,
    item: &Value,
) -> Result<(), ApiError> {
    let text_field = |key: &str| {
        item.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| bad("input", format!("input[{i}].{key} must be a string")))
    };
    // A message may leave its type out (`{"role", "content"}`).
    match item.get("type").and_then(Value::as_str).unwrap_or("message") {
        "message" => messages.push(message(i, item)?),
        "function_call" => {
            let (call_id, name) = (text_field("call_id")?, text_field("name")?);
            let arguments = text_field("arguments")?;
            calls.insert(call_id.to_string(), name.to_string());
            let call = json!({"id": call_id, "type": "function",
                "function": {"name": name, "arguments": arguments_value(arguments)}});
            match messages.last_mut().filter(|m| m.role == "assistant") {
                Some(turn) => turn.tool_calls.get_or_insert_with(Vec::new).push(call),
                None => {
                    let mut turn = ChatMessage::new("assistant", "");
                    turn.tool_calls = Some(vec![call]);
                    messages.push(turn);
                }
            }
        }
        "function_call_output" => {
            let call_id = text_field("call_id")?;
            let Some(name) = calls.get(call_id) else {
                return Err(bad(
                    "input",
                    format!("input[{i}] is the output of call '{call_id}', which no earlier function_call item made"),
                ));
            };
            let output = match item.get("output") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Array(parts)) => text_of(i, parts)?,
                _ => {
                    return Err(bad(
                        "input",
                        format!("input[{i}].output must be a string or a list of input_text parts"),
                    ))
                }
            };
            let mut result = ChatMessage::new("tool", &output);
            result.tool_call_id = Some(call_id.to_string());
            result.name = Some(name.clone());
            messages.push(result);
        }
        "reasoning" => {}
        other => {
            return Err(bad(
                "input",
                format!("input[{i}].type is '{other}': message, function_call, function_call_output or reasoning"),
            ))
        }
    }
    Ok(())
}

/// A message item: a role and its text (a string, or text parts).
fn message(i: usize, item: &Value) -> Result<ChatMessage, ApiError> {
    let role = match item.get("role").and_then(Value::as_str) {
        Some(role @ ("user" | "assistant" | "system")) => role,
        // Chat templates know no developer; it is the system's voice.
        Some("developer") => "system",
        Some(other) => {
            return Err(bad(
                "input",
                format!("input[{i}].role is '{other}': user, assistant, system or developer"),
            ))
        }
        None => return Err(bad("input", format!("input[{i}].role is missing"))),
    };
    let content = match item.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => text_of(i, parts)?,
        _ => {
            return Err(bad(
                "input",
                format!("input[{i}].content must be a string or a list of parts"),
            ))
        }
    };
    Ok(ChatMessage::new(role, &content))
}

/// The text of content parts; only text reaches these models.
fn text_of(i: usize, parts: &[Value]) -> Result<String, ApiError> {
    let mut text = String::new();
    for part in parts {
        match part.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text") => {
                text.push_str(part.get("text").and_then(Value::as_str).unwrap_or(""))
            }
            Some("refusal") => {
                text.push_str(part.get("refusal").and_then(Value::as_str).unwrap_or(""))
            }
            kind => {
                return Err(bad(
                    "input",
                    format!(
                        "input[{i}] has a content part of type '{}': only text (input_text, output_text) is supported",
                        kind.unwrap_or("")
                    ),
                ))
            }
        }
    }
    Ok(text)
}

/// A call's arguments as templates take them: an object (most write `arguments | tojson`);
/// text that is not JSON stays text.
fn arguments_value(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}
