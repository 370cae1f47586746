//! Ollama's `/api/chat` and `/api/generate` bodies: parsed, checked field by field (each
//! failure a 400 naming the field) and turned into a [`GenerationRequest`], before anything
//! is queued.
//!
//! Chat: `messages` (`system`, `user`, `assistant` with `tool_calls`, `tool` results with
//! `tool_name`), `tools` (OpenAI's function tools; Ollama has no `tool_choice`: the model
//! decides). An assistant's `thinking` in the history is not shown to the model (templates
//! drop earlier reasoning). Generate: `prompt` with `system` through the model's chat
//! template, or `raw` as it is; `suffix`, `template`, `context` and `images` are refused (no
//! fill-in-the-middle, the model's own template only, no token context, no vision yet).

use mlxk_engine::tool_use::{ToolChoice, ToolUse};
use mlxk_engine::{ChatMessage, Prompt};
use serde::Deserialize;
use serde_json::{json, Value};

use super::keep_alive::{self, KeepAliveField};
use super::options::{self, Options};
use super::our_name;
use crate::checks;
use crate::error::ApiError;
use crate::openai::{function_tools, ToolParam};
use crate::service::GenerationRequest;

/// The body of `/api/chat` and of `/api/generate`: what both read, and what each reads
/// alone (a field of the other is ignored, as Ollama ignores fields it does not know). One
/// struct, so that a malformed field is named by its path.
#[derive(Debug, Deserialize)]
pub struct OllamaRequest {
    pub model: String,
    #[serde(default)]
    format: Option<Value>,
    #[serde(default)]
    options: Option<Options>,
    /// Ollama streams unless told not to.
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    think: Option<Value>,
    #[serde(default)]
    pub keep_alive: Option<KeepAliveField>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    top_logprobs: Option<u32>,
    // Chat.
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default)]
    tools: Option<Vec<ToolParam>>,
    // Generate.
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    raw: Option<bool>,
    #[serde(default)]
    suffix: Option<String>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    context: Option<Vec<Value>>,
    #[serde(default)]
    images: Option<Vec<Value>>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    role: String,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    images: Option<Vec<Value>>,
    #[serde(default)]
    tool_calls: Option<Vec<CallParam>>,
    /// A tool result's function.
    #[serde(default)]
    tool_name: Option<String>,
    /// A tool result's call, where the client kept the id a call came with.
    #[serde(default)]
    tool_call_id: Option<String>,
}

/// An earlier call in the history: `{"function": {"name", "arguments": {…}}}`, its `id` if
/// the client kept it.
#[derive(Debug, Deserialize)]
struct CallParam {
    #[serde(default)]
    id: Option<String>,
    function: CalledFunction,
}

#[derive(Debug, Deserialize)]
struct CalledFunction {
    name: String,
    /// An object (Ollama's shape); JSON object text is taken as well.
    #[serde(default)]
    arguments: Option<Value>,
}

/// One answer as a chat or generate request asks for it.
#[derive(Debug)]
pub struct Turn {
    pub generation: GenerationRequest,
    pub stream: bool,
    /// The model's reasoning goes into the reply (`thinking`).
    pub think: bool,
}

impl OllamaRequest {
    /// The turn, once the prompt is made; `limit` is the server's cap on new tokens.
    fn turn(&self, prompt: Prompt, tools: Option<ToolUse>, limit: usize) -> Result<Turn, ApiError> {
        let logprobs = checks::logprobs(self.logprobs == Some(true), self.top_logprobs)?;
        let sampling = self
            .options
            .as_ref()
            .map_or_else(|| Options::default().sampling(limit), |o| o.sampling(limit))?;
        let grammar = options::grammar(self.format.as_ref())?;
        checks::enforceable(
            tools.as_ref(),
            "tools",
            |i| format!("tools[{i}].function.parameters"),
            grammar.as_ref(),
            "format",
        )?;
        Ok(Turn {
            generation: GenerationRequest {
                model: our_name(&self.model),
                prompt,
                sampling: sampling.choice,
                max_tokens: sampling.max_tokens,
                stops: sampling.stops,
                tools,
                grammar,
                logprobs,
                keep_alive: keep_alive::requested(self.keep_alive.as_ref())?,
            },
            stream: self.stream.unwrap_or(true),
            think: options::think(self.think.as_ref())?,
        })
    }

    /// A chat's turn: the conversation and the tools.
    pub fn into_chat_turn(self, limit: usize) -> Result<Turn, ApiError> {
        let tools = tool_use(self.tools.as_deref())?;
        let messages = history(&self.messages)?;
        self.turn(Prompt::Chat(messages), tools, limit)
    }

    /// Generate's turn: the prompt through the chat template with `system`, or raw.
    pub fn into_generate_turn(self, limit: usize) -> Result<Turn, ApiError> {
        let refused = [
            (
                "suffix",
                self.suffix.as_ref().is_some_and(|s| !s.is_empty()),
                "'suffix' is not supported: no fill-in-the-middle here",
            ),
            (
                "template",
                self.template.as_ref().is_some_and(|t| !t.is_empty()),
                "'template' is not supported: models answer through their own chat template ('raw': true sends the prompt as it is)",
            ),
            (
                "context",
                self.context.as_ref().is_some_and(|c| !c.is_empty()),
                "'context' is not supported: this server returns no token context; send the conversation to api/chat",
            ),
            (
                "images",
                self.images.as_ref().is_some_and(|i| !i.is_empty()),
                "'images' is not supported: no vision models here yet",
            ),
        ];
        if let Some((field, _, message)) = refused.into_iter().find(|(_, given, _)| *given) {
            return Err(ApiError::bad_request(message).with_param(field));
        }
        let text = self.prompt.clone().unwrap_or_default();
        let prompt = if self.raw == Some(true) {
            if self.system.is_some() {
                return Err(ApiError::bad_request(
                    "'system' does not apply to a raw prompt: put it in the prompt",
                )
                .with_param("system"));
            }
            Prompt::Text(text)
        } else {
            let system = self.system.as_ref().filter(|s| !s.is_empty());
            let mut messages: Vec<ChatMessage> = system
                .iter()
                .map(|s| ChatMessage::new("system", s))
                .collect();
            messages.push(ChatMessage::new("user", &text));
            Prompt::Chat(messages)
        };
        self.turn(prompt, None, limit)
    }
}

/// `tools` as the engine takes them; Ollama lets the model decide whether to call.
fn tool_use(params: Option<&[ToolParam]>) -> Result<Option<ToolUse>, ApiError> {
    let Some(params) = params.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    Ok(Some(ToolUse {
        tools: function_tools(params)?,
        choice: ToolChoice::Auto,
        parallel: true,
    }))
}

/// The conversation as the engine takes it. Ollama's history has no call ids: each earlier
/// call gets one (`call_<message>_<call>`, unless the client kept the id it came with), and
/// each tool result answers the call it names (`tool_call_id`), else the first unanswered call
/// of its `tool_name`, else the first unanswered call; chat templates that pair results with
/// calls need them.
fn history(messages: &[Message]) -> Result<Vec<ChatMessage>, ApiError> {
    let bad = |message: String| Err(ApiError::bad_request(message).with_param("messages"));
    // The calls of the last assistant message not answered yet: (id, name).
    let mut open: Vec<(String, String)> = Vec::new();
    let mut history = Vec::with_capacity(messages.len());
    for (i, message) in messages.iter().enumerate() {
        if !matches!(
            message.role.as_str(),
            "system" | "user" | "assistant" | "tool"
        ) {
            return bad(format!(
                "messages[{i}].role is '{}': system, user, assistant or tool",
                message.role
            ));
        }
        if message.images.as_ref().is_some_and(|i| !i.is_empty()) {
            return bad(format!(
                "messages[{i}].images: no vision models here yet, images are not supported"
            ));
        }
        let mut chat = ChatMessage::new(&message.role, message.content.as_deref().unwrap_or(""));
        if let Some(calls) = message.tool_calls.as_ref().filter(|c| !c.is_empty()) {
            if message.role != "assistant" {
                return bad(format!(
                    "messages[{i}].tool_calls: only an assistant makes calls"
                ));
            }
            open.clear();
            let mut shown = Vec::with_capacity(calls.len());
            for (j, call) in calls.iter().enumerate() {
                let id = call.id.clone().unwrap_or_else(|| format!("call_{i}_{j}"));
                // Templates get the arguments as an object (most write `arguments | tojson`).
                let arguments = match &call.function.arguments {
                    Some(Value::String(text)) => {
                        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.clone()))
                    }
                    Some(other) => other.clone(),
                    None => json!({}),
                };
                shown.push(json!({"id": id, "type": "function",
                    "function": {"name": call.function.name, "arguments": arguments}}));
                open.push((id, call.function.name.clone()));
            }
            chat.tool_calls = Some(shown);
        }
        if message.role == "tool" {
            let answered = match (&message.tool_call_id, &message.tool_name) {
                (Some(id), _) => open.iter().position(|(open_id, _)| open_id == id),
                (None, Some(name)) => open.iter().position(|(_, open_name)| open_name == name),
                (None, None) => (!open.is_empty()).then_some(0),
            };
            let (id, name) = match answered {
                Some(at) => {
                    let (id, name) = open.remove(at);
                    (Some(id), Some(name))
                }
                None => (message.tool_call_id.clone(), None),
            };
            chat.tool_call_id = id;
            chat.name = message.tool_name.clone().or(name);
        }
        history.push(chat);
    }
    Ok(history)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::KeepAlive;

    fn turn(body: Value) -> Result<Turn, ApiError> {
        serde_json::from_value::<OllamaRequest>(body)
            .unwrap()
            .into_chat_turn(256)
    }

    fn messages(turn: &Turn) -> &[ChatMessage] {
        match &turn.generation.prompt {
            Prompt::Chat(messages) => messages,
            Prompt::Text(_) => panic!("a chat is messages"),
        }
    }

    #[test]
    fn tool_results_answer_the_calls_they_name_or_the_next_open_one() {
        let turn = turn(json!({"model": "m:latest", "messages": [
            {"role": "user", "content": "weather and time?"},
            {"role": "assistant", "content": "", "tool_calls": [
                {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
                {"function": {"name": "get_time", "arguments": "{\"city\": \"Paris\"}"}},
            ]},
            {"role": "tool", "content": "12:00", "tool_name": "get_time"},
            {"role": "tool", "content": "sunny"},
        ]}))
        .unwrap();
        assert_eq!(turn.generation.model, "m");
        assert!(turn.stream && turn.think && turn.generation.keep_alive == KeepAlive::Server);
        let history = messages(&turn);
        let calls = history[1].tool_calls.as_ref().unwrap();
        assert_eq!(calls[0]["id"], "call_1_0");
        assert_eq!(calls[1]["function"]["arguments"], json!({"city": "Paris"}));
        assert_eq!(
            (
                history[2].tool_call_id.as_deref(),
                history[2].name.as_deref()
            ),
            (Some("call_1_1"), Some("get_time"))
        );
        assert_eq!(
            (
                history[3].tool_call_id.as_deref(),
                history[3].name.as_deref()
            ),
            (Some("call_1_0"), Some("get_weather"))
        );
    }

    #[test]
    fn what_cannot_be_honoured_is_a_400_naming_the_field() {
        let chat = |extra: Value| {
            let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            turn(body).unwrap_err().message
        };
        assert!(
            chat(json!({"messages": [{"role": "robot", "content": "x"}]}))
                .contains("messages[0].role")
        );
        assert!(
            chat(json!({"messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}))
                .contains("images")
        );
        assert!(chat(json!({"format": "yaml"})).contains("'format'"));
        assert!(chat(json!({"think": "high"})).contains("'think'"));
        assert!(chat(json!({"keep_alive": "soon"})).contains("'keep_alive'"));
        assert!(chat(json!({"top_logprobs": 2})).contains("'top_logprobs' needs"));
        assert!(chat(json!({"logprobs": true, "top_logprobs": 21})).contains("between 0 and 20"));
        assert!(
            chat(json!({"tools": [{"type": "function", "function": {"name": "a b"}}]}))
                .contains("tools[0].function")
        );
        let generate = |extra: Value| {
            let mut body = json!({"model": "m", "prompt": "hi"});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            serde_json::from_value::<OllamaRequest>(body)
                .unwrap()
                .into_generate_turn(256)
                .unwrap_err()
        };
        for field in ["suffix", "template", "images", "context"] {
            let value = if matches!(field, "images" | "context") {
                json!([1])
            } else {
                json!("x")
            };
            assert_eq!(generate(json!({field: value})).param, Some(field));
        }
        assert_eq!(
            generate(json!({"raw": true, "system": "s"})).param,
            Some("system")
        );
    }

    #[test]
    fn generate_goes_through_the_template_unless_raw() {
        let parse = |body: Value| {
            serde_json::from_value::<OllamaRequest>(body)
                .unwrap()
                .into_generate_turn(256)
                .unwrap()
        };
        let turn = parse(
            json!({"model": "m:v1.0", "prompt": "hi", "system": "be brief", "stream": false}),
        );
        assert_eq!(turn.generation.model, "m@v1.0");
        assert!(!turn.stream);
        assert_eq!(
            turn.generation.prompt,
            Prompt::Chat(vec![
                ChatMessage::new("system", "be brief"),
                ChatMessage::new("user", "hi")
            ])
        );
        let raw = parse(json!({"model": "m", "prompt": "<s>hi", "raw": true}));
        assert_eq!(raw.generation.prompt, Prompt::Text("<s>hi".into()));
    }
}
