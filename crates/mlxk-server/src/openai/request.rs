//! OpenAI's request bodies for `/v1/chat/completions` and `/v1/completions`: parsed, checked
//! field by field (each failure a 400 naming the field) and turned into a
//! [`GenerationRequest`].

use mlxk_engine::{ChatMessage, Prompt, SamplingChoice};
use serde::Deserialize;

use crate::error::ApiError;
use crate::service::GenerationRequest;

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
}

#[derive(Debug, Deserialize)]
struct Message {
    role: String,
    #[serde(default)]
    content: Option<Content>,
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

/// Every sampling field within the range it has meaning in, checked before any work; the
/// error names the field.
fn validate(request: &CompletionRequest) -> Result<(), ApiError> {
    let range = |field: &'static str, value: Option<f32>, low: f32, high: f32| match value {
        Some(v) if !(v.is_finite() && (low..=high).contains(&v)) => Err(ApiError::bad_request(
            format!("'{field}' must be between {low} and {high}, not {v}"),
        )
        .with_param(field)),
        _ => Ok(()),
    };
    range("temperature", request.temperature, 0.0, 2.0)?;
    range("top_p", request.top_p, 0.0, 1.0)?;
    range("min_p", request.min_p, 0.0, 1.0)?;
    range("frequency_penalty", request.frequency_penalty, -2.0, 2.0)?;
    range("presence_penalty", request.presence_penalty, -2.0, 2.0)?;
    range("repetition_penalty", request.repetition_penalty, 0.01, 10.0)?;
    if let Some(k) = request.top_k.filter(|k| *k > MAX_TOP_K) {
        return Err(ApiError::bad_request(format!(
            "'top_k' must be at most {MAX_TOP_K} (0 turns it off), not {k}"
        ))
        .with_param("top_k"));
    }
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
    if stops.len() > MAX_STOPS || stops.iter().any(String::is_empty) {
        return Err(ApiError::bad_request(format!(
            "'stop' takes up to {MAX_STOPS} non-empty strings"
        ))
        .with_param("stop"));
    }
    Ok(())
}

/// Larger than any vocabulary: a `top_k` beyond it filters nothing.
const MAX_TOP_K: u32 = mlxk_engine::sampler::MAX_TOP_K as u32;
const MAX_STOPS: usize = 16;

/// How the answer is delivered.
#[derive(Debug, Clone, Copy)]
pub struct Delivery {
    pub stream: bool,
    /// A last chunk with the token counts (`stream_options.include_usage`).
    pub include_usage: bool,
}

impl CompletionRequest {
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
    let prompt = match endpoint {
        Endpoint::Chat => {
            let messages = request.messages.as_ref().ok_or_else(|| {
                ApiError::bad_request("'messages' is required").with_param("messages")
            })?;
            if messages.is_empty() {
                return Err(ApiError::bad_request("'messages' is empty").with_param("messages"));
            }
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
    // OpenAI's additive penalties have no exact mlx-lm counterpart; either maps onto the
    // multiplicative repetition penalty (1 + penalty), as documented.
    let penalty = request
        .repetition_penalty
        .or(request
            .frequency_penalty
            .filter(|p| *p > 0.0)
            .map(|p| 1.0 + p))
        .or(request
            .presence_penalty
            .filter(|p| *p > 0.0)
            .map(|p| 1.0 + p));
    // What the client left out comes from the model's generation_config.json, then the
    // defaults `mlxk run` shares.
    let sampling = SamplingChoice {
        temperature: request.temperature,
        top_p: request.top_p,
        top_k: request.top_k.map(|k| k as usize),
        min_p: request.min_p,
        repetition_penalty: penalty,
        seed: request.seed,
    };
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
    };
    Ok((generation, delivery))
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
    Ok(ChatMessage::new(role, &content))
}
