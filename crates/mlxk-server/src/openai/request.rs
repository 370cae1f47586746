//! OpenAI's request bodies for `/v1/chat/completions` and `/v1/completions`: parsed, checked
//! field by field (each failure a 400 naming the field) and turned into a
//! [`GenerationRequest`]. Tools (`tools`, `tool_choice`, `parallel_tool_calls`, assistant
//! `tool_calls` and `tool` results in the history) and `response_format` are honoured or
//! refused, never ignored.

use std::collections::HashSet;

use mlxk_engine::constraint::Grammar;
use mlxk_engine::tool_use::{Tool, ToolChoice, ToolUse};
use mlxk_engine::{ChatMessage, Prompt, SamplingChoice};
use serde::Deserialize;
use serde_json::Value;

use crate::checks;
use crate::error::ApiError;
use crate::service::GenerationRequest;
use crate::worker::KeepAlive;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Debug, Deserialize)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    input_audio: Option<InputAudio>,
}

/// `{"type": "input_audio", "input_audio": {"data": base64, "format": "wav" | "mp3" | ...}}`.
#[derive(Debug, Deserialize)]
struct InputAudio {
    data: String,
    #[serde(default)]
    format: Option<String>,
}

/// The audio of a chat request for a speech-to-text model, and the request's transcription
/// options: its answer is the transcript.
#[derive(Debug)]
pub struct ChatAudio {
    pub model: String,
    pub audio: Vec<u8>,
    /// The part's `format` ("wav", "mp3", ...): a hint for the decoder.
    pub format: Option<String>,
    pub options: mlxk_engine::TranscribeOptions,
    pub delivery: Delivery,
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Option<Vec<CallParam>>,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

/// An earlier call in the history (an assistant message's `tool_calls`).
#[derive(Debug, Deserialize)]
struct CallParam {
    id: String,
    #[serde(rename = "type", default = "function_type")]
    kind: String,
    function: CalledFunction,
}

#[derive(Debug, Deserialize)]
struct CalledFunction {
    name: String,
    /// A JSON object as text (OpenAI's shape); an object is taken as well.
    #[serde(default)]
    arguments: Option<Value>,
}

fn function_type() -> String {
    "function".into()
}

/// A tool offered (`tools`): only functions exist. Ollama's requests offer them in this shape
/// too (where `type` may be left out).
#[derive(Debug, Deserialize)]
pub(crate) struct ToolParam {
    #[serde(rename = "type", default = "function_type")]
    kind: String,
    #[serde(default)]
    function: Option<FunctionParam>,
}

#[derive(Debug, Deserialize)]
struct FunctionParam {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    parameters: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

/// `"none"`, `"auto"`, `"required"`, or `{"type": "function", "function": {"name": ...}}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ToolChoiceParam {
    Mode(String),
    Named {
        #[serde(rename = "type")]
        kind: String,
        function: NamedFunction,
    },
}

#[derive(Debug, Deserialize)]
struct NamedFunction {
    name: String,
}

/// `{"type": "text" | "json_object" | "json_schema", "json_schema": {"name", "schema", "strict"}}`.
#[derive(Debug, Deserialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    json_schema: Option<JsonSchemaParam>,
}

#[derive(Debug, Deserialize)]
struct JsonSchemaParam {
    #[serde(default)]
    schema: Option<Value>,
    #[serde(default)]
    strict: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StopField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum PromptField {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The fields of both completion endpoints; unknown ones are ignored.
#[derive(Debug, Deserialize)]
pub struct CompletionRequest {
    model: String,
    #[serde(default)]
    messages: Option<Vec<Message>>,
    #[serde(default)]
    prompt: Option<PromptField>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<u32>,
    #[serde(default)]
    min_p: Option<f32>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop: Option<StopField>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    frequency_penalty: Option<f32>,
    #[serde(default)]
    presence_penalty: Option<f32>,
    /// mlx-lm's name for it; documented in the README.
    #[serde(default)]
    repetition_penalty: Option<f32>,
    #[serde(default)]
    tools: Option<Vec<ToolParam>>,
    #[serde(default)]
    tool_choice: Option<ToolChoiceParam>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    response_format: Option<ResponseFormat>,
    /// Chat: `true` for each token's log-probability; completions: the number of alternatives.
    #[serde(default)]
    logprobs: Option<Value>,
    /// Chat: alternatives per token (needs `logprobs: true`).
    #[serde(default)]
    top_logprobs: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

/// Every sampling field within the range it has meaning in, checked before any work; the
/// error names the field.
fn validate(request: &CompletionRequest) -> Result<(), ApiError> {
    checks::sampling(&request.sampling(), checks::SAMPLING_FIELDS)?;
    checks::in_range("frequency_penalty", request.frequency_penalty, -2.0, 2.0)?;
    checks::in_range("presence_penalty", request.presence_penalty, -2.0, 2.0)?;
    for (field, value) in [
        ("max_tokens", request.max_tokens),
        ("max_completion_tokens", request.max_completion_tokens),
    ] {
        if value == Some(0) {
            return Err(
                ApiError::bad_request(format!("'{field}' must be at least 1")).with_param(field),
            );
        }
    }
    let stops: &[String] = match &request.stop {
        Some(StopField::One(s)) => std::slice::from_ref(s),
        Some(StopField::Many(list)) => list,
        None => &[],
    };
    checks::stops("stop", stops)
}

/// How the answer is delivered.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub stream: bool,
    /// A last chunk with the token counts (`stream_options.include_usage`).
    pub include_usage: bool,
}

impl CompletionRequest {
    /// Whether a message holds an `input_audio` part: then the request is a transcription.
    pub fn has_audio(&self) -> bool {
        self.messages.iter().flatten().any(|m| {
            matches!(&m.content, Some(Content::Parts(parts)) if parts.iter().any(|p| p.kind == "input_audio"))
        })
    }

    /// A chat request with audio, for a speech-to-text model: the last user message's audio
    /// is transcribed, its text parts are the prompt Whisper is conditioned on (spelling,
    /// names). Whisper reads one recording and no conversation: the earlier messages are not
    /// read. What a transcription cannot honour (tools, a response format, log-probabilities,
    /// stops, n > 1) is refused, each a 400 naming its field.
    pub fn into_audio(self) -> Result<ChatAudio, ApiError> {
        validate(&self)?;
        let refuse = |field: &'static str, what: &str| {
            Err(ApiError::bad_request(format!(
                "{what} cannot be used with input_audio: a speech-to-text model writes the transcript only"
            ))
            .with_param(field))
        };
        if self.n.unwrap_or(1) != 1 {
            return refuse("n", "n > 1");
        }
        if self.tools.is_some() || self.tool_choice.is_some() {
            return refuse("tools", "'tools'");
        }
        if self
            .response_format
            .as_ref()
            .is_some_and(|f| f.kind != "text")
        {
            return refuse("response_format", "a 'response_format' other than text");
        }
        if matches!(self.logprobs, Some(Value::Bool(true))) || self.top_logprobs.is_some() {
            return refuse("logprobs", "'logprobs'");
        }
        if self.stop.is_some() {
            return refuse("stop", "'stop'");
        }
        if self.temperature.is_some_and(|t| t > 1.0) {
            return Err(ApiError::bad_request(
                "'temperature' is above 1: a speech-to-text model samples at 0 to 1",
            )
            .with_param("temperature"));
        }
        let messages = self.messages.unwrap_or_default();
        let last_user = messages.iter().rposition(|m| m.role == "user");
        let Some(Content::Parts(parts)) = last_user.and_then(|i| messages[i].content.as_ref())
        else {
            return Err(ApiError::bad_request(
                "the last user message holds no input_audio part: it is the audio transcribed",
            )
            .with_param("messages"));
        };
        let mut audio = None;
        let mut prompt = String::new();
        for part in parts {
            match (part.kind.as_str(), &part.input_audio) {
                ("text", _) => prompt.push_str(part.text.as_deref().unwrap_or("")),
                ("input_audio", Some(input)) if audio.is_none() => audio = Some(input),
                ("input_audio", Some(_)) => {
                    return Err(ApiError::bad_request(
                        "a message may hold one input_audio part: send one recording per request",
                    )
                    .with_param("messages"))
                }
                ("input_audio", None) => {
                    return Err(ApiError::bad_request(
                        "an input_audio part needs 'input_audio': {\"data\": base64, \"format\": \"wav\"}",
                    )
                    .with_param("messages"))
                }
                (other, _) => {
                    return Err(ApiError::bad_request(format!(
                        "content parts of type '{other}' are not supported"
                    ))
                    .with_param("messages"))
                }
            }
        }
        let Some(input) = audio else {
            return Err(ApiError::bad_request(
                "the last user message holds no input_audio part: it is the audio transcribed",
            )
            .with_param("messages"));
        };
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(input.data.trim())
            .map_err(|e| {
                ApiError::bad_request(format!("input_audio.data is not base64: {e}"))
                    .with_param("messages")
            })?;
        let options = super::audio::speech_options(
            mlxk_engine::Task::Transcribe,
            None,
            Some(prompt).filter(|p| !p.trim().is_empty()),
            self.temperature,
        )?;
        Ok(ChatAudio {
            model: self.model,
            audio: bytes,
            format: input.format.clone(),
            options,
            delivery: Delivery {
                stream: self.stream,
                include_usage: self.stream_options.is_some_and(|o| o.include_usage),
            },
        })
    }

    /// What the client chose; what it left out comes from the model's
    /// generation_config.json, then the defaults `mlxk run` shares. OpenAI's additive
    /// penalties have no exact mlx-lm counterpart; either maps onto the multiplicative
    /// repetition penalty (1 + penalty), as documented.
    fn sampling(&self) -> SamplingChoice {
        let penalty = checks::repetition_penalty(
            self.repetition_penalty,
            self.frequency_penalty,
            self.presence_penalty,
        );
        SamplingChoice {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k.map(|k| k as usize),
            min_p: self.min_p,
            repetition_penalty: penalty,
            seed: self.seed,
        }
    }

    /// Everything about a request that needs no model: validation and the prompt, each
    /// failure a 400 naming the field. `max_tokens` is the server's limit (and the default).
    pub fn into_generation(
        self,
        endpoint: Endpoint,
        max_tokens: usize,
    ) -> Result<(GenerationRequest, Delivery), ApiError> {
        prepare(self, endpoint, max_tokens)
    }
}

fn prepare(
    request: CompletionRequest,
    endpoint: Endpoint,
    limit: usize,
) -> Result<(GenerationRequest, Delivery), ApiError> {
    validate(&request)?;
    if request.n.unwrap_or(1) != 1 {
        return Err(ApiError::bad_request("only n = 1 is supported").with_param("n"));
    }
    let tools = tool_use(&request)?;
    let grammar = response_grammar(request.response_format.as_ref())?;
    checks::enforceable(
        tools.as_ref(),
        "tools",
        |i| format!("tools[{i}].function.parameters"),
        grammar.as_ref(),
        "response_format",
    )?;
    if endpoint == Endpoint::Completion && (tools.is_some() || request.tool_choice.is_some()) {
        return Err(ApiError::bad_request(
            "tools are for chat completions (v1/chat/completions), not raw completions",
        )
        .with_param("tools"));
    }
    let prompt = match endpoint {
        Endpoint::Chat => {
            let messages = request.messages.as_ref().ok_or_else(|| {
                ApiError::bad_request("'messages' is required").with_param("messages")
            })?;
            if messages.is_empty() {
                return Err(ApiError::bad_request("'messages' is empty").with_param("messages"));
            }
            check_tool_results(messages)?;
            Prompt::Chat(
                messages
                    .iter()
                    .map(chat_message)
                    .collect::<Result<_, _>>()?,
            )
        }
        Endpoint::Completion => match &request.prompt {
            Some(PromptField::One(text)) => Prompt::Text(text.clone()),
            Some(PromptField::Many(list)) if list.len() == 1 => Prompt::Text(list[0].clone()),
            Some(PromptField::Many(_)) => {
                return Err(
                    ApiError::bad_request("only one prompt per request is supported")
                        .with_param("prompt"),
                )
            }
            None => return Err(ApiError::bad_request("'prompt' is required").with_param("prompt")),
        },
    };
    if matches!(&prompt, Prompt::Text(text) if text.is_empty()) {
        return Err(ApiError::bad_request("'prompt' is empty").with_param("prompt"));
    }
    let max_tokens = request
        .max_completion_tokens
        .or(request.max_tokens)
        .map_or(limit, |n| (n as usize).min(limit));
    let sampling = request.sampling();
    let logprobs = logprobs(&request, endpoint)?;
    let stops = match request.stop {
        Some(StopField::One(s)) => vec![s],
        Some(StopField::Many(list)) => list,
        None => Vec::new(),
    };
    let delivery = Delivery {
        stream: request.stream,
        include_usage: request.stream_options.is_some_and(|o| o.include_usage),
    };
    let generation = GenerationRequest {
        model: request.model,
        prompt,
        sampling,
        max_tokens,
        stops,
        tools,
        grammar,
        logprobs,
        keep_alive: KeepAlive::Server,
    };
    Ok((generation, delivery))
}

/// `tools`, `tool_choice` and `parallel_tool_calls`, checked; `None` without tools.
fn tool_use(request: &CompletionRequest) -> Result<Option<ToolUse>, ApiError> {
    let bad = |field: &'static str, message: String| {
        Err(ApiError::bad_request(message).with_param(field))
    };
    let Some(params) = &request.tools else {
        if request.tool_choice.is_some() {
            return bad("tool_choice", "'tool_choice' needs 'tools'".into());
        }
        return Ok(None);
    };
    let tools = function_tools(params)?;
    let choice = match &request.tool_choice {
        None => ToolChoice::Auto,
        Some(ToolChoiceParam::Mode(mode)) => match mode.as_str() {
            "none" => ToolChoice::None,
            "auto" => ToolChoice::Auto,
            "required" => ToolChoice::Required,
            other => {
                return bad(
                    "tool_choice",
                    format!("'tool_choice' is '{other}': none, auto, required or a named function"),
                )
            }
        },
        Some(ToolChoiceParam::Named { kind, function }) => {
            if kind != "function" {
                return bad(
                    "tool_choice",
                    format!("tool_choice.type is '{kind}': only 'function' exists"),
                );
            }
            ToolChoice::Named(function.name.clone())
        }
    };
    let tool_use = ToolUse {
        tools,
        choice,
        parallel: request.parallel_tool_calls.unwrap_or(true),
    };
    checks::tool_choice(&tool_use, "tool_choice")?;
    Ok(Some(tool_use))
}

/// How many alternatives per token to report (`Some(0)`: the chosen token's log-probability
/// alone), in each endpoint's own way of asking: chat's `logprobs: true` with `top_logprobs`
/// (0 to 20), completions' `logprobs: N` (0 to 5).
fn logprobs(request: &CompletionRequest, endpoint: Endpoint) -> Result<Option<usize>, ApiError> {
    let bad = |field: &'static str, message: &str| {
        Err(ApiError::bad_request(message.to_string()).with_param(field))
    };
    match endpoint {
        Endpoint::Chat => {
            let wanted = match &request.logprobs {
                None | Some(Value::Null) | Some(Value::Bool(false)) => false,
                Some(Value::Bool(true)) => true,
                Some(_) => return bad("logprobs", "'logprobs' is true or false"),
            };
            checks::logprobs(wanted, request.top_logprobs)
        }
        Endpoint::Completion => {
            if request.top_logprobs.is_some() {
                return bad(
                    "top_logprobs",
                    "completions take the number of alternatives in 'logprobs' (0 to 5)",
                );
            }
            match &request.logprobs {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= 5) => {
                    Ok(n.as_u64().map(|n| n as usize))
                }
                Some(_) => bad("logprobs", "'logprobs' is a number of alternatives, 0 to 5"),
            }
        }
    }
}

/// The functions of `tools`, checked (each failure a 400 naming `tools`).
pub(crate) fn function_tools(params: &[ToolParam]) -> Result<Vec<Tool>, ApiError> {
    let bad = |message: String| Err(ApiError::bad_request(message).with_param("tools"));
    let mut tools = Vec::with_capacity(params.len());
    for (i, param) in params.iter().enumerate() {
        if param.kind != "function" {
            return bad(format!(
                "tools[{i}].type is '{}': only 'function' tools exist",
                param.kind
            ));
        }
        let Some(function) = &param.function else {
            return bad(format!("tools[{i}].function is missing"));
        };
        let parameters = match &function.parameters {
            None => serde_json::json!({"type": "object", "properties": {}}),
            Some(schema @ Value::Object(_)) => schema.clone(),
            Some(_) => {
                return bad(format!(
                    "tools[{i}].function.parameters must be a JSON Schema object"
                ))
            }
        };
        tools.push(Tool {
            name: function.name.clone(),
            description: function.description.clone(),
            parameters,
            strict: function.strict.unwrap_or(false),
        });
    }
    checks::tools(&tools, "tools", |i| format!("tools[{i}].function"))?;
    Ok(tools)
}

/// `response_format` as a grammar; `text` (or none) is free text.
fn response_grammar(format: Option<&ResponseFormat>) -> Result<Option<Grammar>, ApiError> {
    let Some(format) = format else {
        return Ok(None);
    };
    match format.kind.as_str() {
        "text" => Ok(None),
        "json_object" => Ok(Some(Grammar::JsonObject)),
        "json_schema" => match format.json_schema.as_ref().and_then(|s| s.schema.as_ref()) {
            Some(schema @ Value::Object(_)) => {
                let mut schema = schema.clone();
                if format.json_schema.as_ref().and_then(|s| s.strict) == Some(true) {
                    // OpenAI's strict mode: no properties but those listed.
                    mlxk_engine::tool_use::close_objects(&mut schema);
                }
                Ok(Some(Grammar::JsonSchema(schema)))
            }
            Some(_) => Err(ApiError::bad_request(
                "response_format.json_schema.schema must be a JSON Schema object",
            )
            .with_param("response_format")),
            None => Err(ApiError::bad_request(
                "response_format.json_schema.schema is required for type 'json_schema'",
            )
            .with_param("response_format")),
        },
        other => Err(ApiError::bad_request(format!(
            "response_format.type is '{other}': text, json_object or json_schema"
        ))
        .with_param("response_format")),
    }
}

/// Every `tool` message answers a call an earlier assistant message made (by its id).
fn check_tool_results(messages: &[Message]) -> Result<(), ApiError> {
    let mut calls = HashSet::new();
    for (i, message) in messages.iter().enumerate() {
        for call in message.tool_calls.iter().flatten() {
            if call.kind != "function" {
                return Err(ApiError::bad_request(format!(
                    "messages[{i}].tool_calls: type '{}' is not 'function'",
                    call.kind
                ))
                .with_param("messages"));
            }
            calls.insert(call.id.as_str());
        }
        if message.role == "tool" {
            match message.tool_call_id.as_deref() {
                None => {
                    return Err(ApiError::bad_request(format!(
                        "messages[{i}] is a tool result without 'tool_call_id'"
                    ))
                    .with_param("messages"))
                }
                Some(id) if !calls.contains(id) => {
                    return Err(ApiError::bad_request(format!(
                        "messages[{i}].tool_call_id '{id}' answers no earlier assistant tool call"
                    ))
                    .with_param("messages"))
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}

fn chat_message(message: &Message) -> Result<ChatMessage, ApiError> {
    if !matches!(
        message.role.as_str(),
        "system" | "user" | "assistant" | "developer" | "tool"
    ) {
        return Err(
            ApiError::bad_request(format!("unknown role '{}'", message.role))
                .with_param("messages"),
        );
    }
    let content = match &message.content {
        None => String::new(),
        Some(Content::Text(text)) => text.clone(),
        Some(Content::Parts(parts)) => {
            if parts.iter().any(|p| p.kind == "input_audio") {
                return Err(ApiError::bad_request(
                    "an input_audio part needs a speech-to-text model (Whisper): this request's model reads text only",
                )
                .with_param("messages"));
            }
            if let Some(part) = parts.iter().find(|p| p.kind != "text") {
                return Err(ApiError::bad_request(format!(
                    "content parts of type '{}' are not supported",
                    part.kind
                ))
                .with_param("messages"));
            }
            parts
                .iter()
                .filter_map(|p| p.text.as_deref())
                .collect::<Vec<_>>()
                .join("")
        }
    };
    let role = if message.role == "developer" {
        "system"
    } else {
        message.role.as_str()
    };
    let mut chat = ChatMessage::new(role, &content);
    chat.tool_calls = message.tool_calls.as_ref().map(|calls| {
        calls
            .iter()
            .map(|call| {
                // Templates get the arguments as an object (most write `arguments | tojson`);
                // text that is not JSON stays text.
                let arguments = match &call.function.arguments {
                    Some(Value::String(text)) => {
                        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
                    }
                    Some(other) => other.clone(),
                    None => serde_json::json!({}),
                };
                serde_json::json!({"id": call.id, "type": "function",
                    "function": {"name": call.function.name, "arguments": arguments}})
            })
            .collect()
    });
    chat.tool_call_id = message.tool_call_id.clone();
    chat.name = message.name.clone();
    Ok(chat)
}
