//! The OpenAI-compatible routes. Handlers validate and resolve; the worker generates.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::StreamExt;
use mlxk_core::{Library, ModelInfo};
use mlxk_engine::{ChatMessage, FinishReason, LoadPolicy, SamplingParams, TextEvent};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::worker::{Event, Job, Prompt, Worker};

pub struct AppState {
    pub config: ServerConfig,
    pub worker: Worker,
}

pub type Shared = Arc<AppState>;

/// Liveness and the queue: `status` as mlx-knife 2.0.8 answers, `healthy` as its tests read.
pub async fn health(State(state): State<Shared>) -> Json<Value> {
    let (waiting, active, capacity) = state.worker.queue().counts();
    Json(json!({
        "status": "ok",
        "healthy": true,
        "queue": {"waiting": waiting, "active": active, "capacity": capacity},
    }))
}

/// Bearer-token check for `/v1`, when an API key is configured.
pub async fn require_key(State(state): State<Shared>, request: Request, next: Next) -> Response {
    if let Some(key) = &state.config.api_key {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(request).await
}

fn runnable_models() -> Result<Vec<ModelInfo>, ApiError> {
    let models = Library::from_env()
        .list()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(models
        .into_iter()
        .filter(|m| m.is_healthy() && m.runtime.compatible)
        .collect())
}

fn model_object(model: &ModelInfo, loaded: Option<&str>, policy: &LoadPolicy) -> Value {
    let c = &model.classification;
    // How the engine will hold it here (dense float32 on the CPU, ...); `null` if unreadable.
    let weights = model
        .path
        .as_deref()
        .and_then(|dir| mlxk_engine::plan(dir, policy).ok())
        .map(|plan| {
            json!({
                "layout": plan.layout,
                "compute_dtype": plan.compute_dtype(),
                "memory_bytes": plan.memory_bytes,
                "reason": plan.reason,
            })
        });
    json!({
        "id": model.name,
        "object": "model",
        "created": model.last_modified.timestamp(),
        "owned_by": model.name.split_once('/').map_or("local", |(org, _)| org),
        "context_length": c.context_length,
        "capabilities": c.capabilities.iter().map(|cap| cap.label()).collect::<Vec<_>>(),
        "loaded": loaded == Some(model.name.as_str()),
        "weights": weights,
    })
}

pub async fn list_models(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    let loaded = state.worker.loaded_model();
    let policy = state.config.load_policy;
    let data = tokio::task::spawn_blocking(move || {
        runnable_models().map(|models| {
            models
                .iter()
                .map(|m| model_object(m, loaded.as_deref(), &policy))
                .collect::<Vec<_>>()
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(json!({"object": "list", "data": data})))
}

pub async fn get_model(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let loaded = state.worker.loaded_model();
    let policy = state.config.load_policy;
    let model = tokio::task::spawn_blocking(move || {
        resolve(&id).map(|model| model_object(&model, loaded.as_deref(), &policy))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))??;
    Ok(Json(model))
}

/// The model a request names, resolved as the CLI resolves names; it must be runnable.
fn resolve(name: &str) -> Result<ModelInfo, ApiError> {
    // The CLI's user owns the disk; an API client does not get to name folders on it.
    if mlxk_core::workspace::looks_like_path(name) {
        return Err(ApiError::model_not_found(
            "'model' names a path: the API serves models from the cache by name, never folders on disk",
        ));
    }
    let model = Library::from_env()
        .find(name)
        .map_err(|e| ApiError::model_not_found(format!("model '{name}': {e}")))?;
    if !model.is_healthy() || !model.runtime.compatible {
        let why = model.reason().unwrap_or_default();
        return Err(ApiError::model_not_found(format!(
            "model '{}' cannot run: {why}",
            model.name
        )));
    }
    Ok(model)
}

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
struct CompletionRequest {
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

fn parse(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<CompletionRequest, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(limit)
        } else if timed_out(&rejection) {
            ApiError::body_timeout()
        } else {
            ApiError::bad_request(rejection.body_text())
        }
    })?;
    // The path names the field a wrong type or value is in (`top_k: invalid value ...`).
    let mut json = serde_json::Deserializer::from_slice(&body);
    serde_path_to_error::deserialize(&mut json)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

/// Whether reading the body failed because it stopped arriving (the body timeout).
fn timed_out(rejection: &BytesRejection) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(rejection);
    while let Some(error) = cause {
        if error.is::<tower_http::timeout::TimeoutError>() {
            return true;
        }
        cause = error.source();
    }
    false
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
const MAX_TOP_K: u32 = 1 << 24;
const MAX_STOPS: usize = 16;

pub async fn chat_completions(
    State(state): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    complete(state, body, Endpoint::Chat)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub async fn completions(
    State(state): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    complete(state, body, Endpoint::Completion)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// A request, parsed and checked, ready to become a job once its model is resolved.
struct Prepared {
    model: String,
    prompt: Prompt,
    sampling: SamplingParams,
    /// As asked (capped by the server's limit), or the limit.
    max_tokens: usize,
    stops: Vec<String>,
    stream: bool,
    include_usage: bool,
}

/// Everything about a request that needs no model: parsing, validation, the prompt. Each
/// failure is a 4xx naming the field.
fn prepare(
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
    config: &ServerConfig,
) -> Result<Prepared, ApiError> {
    let request = parse(body, config.max_body_bytes)?;
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
    let limit = config.max_tokens;
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
            .map(|p| 1.0 + p))
        .unwrap_or(1.0);
    let sampling = SamplingParams {
        temperature: request.temperature.unwrap_or(1.0),
        top_p: request.top_p.unwrap_or(1.0),
        top_k: request.top_k.unwrap_or(0) as usize,
        min_p: request.min_p.unwrap_or(0.0),
        repetition_penalty: penalty,
        seed: request.seed,
        ..SamplingParams::default()
    };
    let stops = match request.stop {
        Some(StopField::One(s)) => vec![s],
        Some(StopField::Many(list)) => list,
        None => Vec::new(),
    };
    Ok(Prepared {
        model: request.model,
        prompt,
        sampling,
        max_tokens,
        stops,
        stream: request.stream,
        include_usage: request.stream_options.is_some_and(|o| o.include_usage),
    })
}

async fn complete(
    state: Shared,
    body: Result<Bytes, BytesRejection>,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    let request = prepare(body, endpoint, &state.config)?;
    let name = request.model.clone();
    let model = tokio::task::spawn_blocking(move || resolve(&name))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??;
    let (events, mut receiver) = unbounded_channel();
    state.worker.submit(Job {
        model: model.name.clone(),
        dir: model.path.clone().expect("a runnable model has a snapshot"),
        context_length: model
            .classification
            .context_length
            .map_or(4096, |n| n as usize),
        prompt: request.prompt,
        sampling: request.sampling,
        max_tokens: request.max_tokens,
        stops: request.stops,
        events,
    })?;
    // Waiting in the queue is bounded; loading and the prompt that follow are not.
    let waited = state.config.queue_timeout;
    match tokio::time::timeout(waited, receiver.recv()).await {
        Ok(Some(Event::Admitted)) => {}
        Ok(Some(Event::Failed(error))) => return Err(error),
        Ok(_) => return Err(ApiError::shutting_down()),
        Err(_) => return Err(ApiError::queue_timeout(waited)),
    }
    let id = response_id(endpoint);
    if request.stream {
        Ok(
            stream_response(receiver, endpoint, id, model.name, request.include_usage)
                .into_response(),
        )
    } else {
        Ok(Json(collect_response(receiver, endpoint, id, model.name).await?).into_response())
    }
}

/// The request checks alone, for the fuzz targets (`fuzz/`): no model, no worker.
#[doc(hidden)]
pub fn check_request(endpoint: Endpoint, body: &[u8]) -> Result<(), ApiError> {
    prepare(
        Ok(Bytes::copy_from_slice(body)),
        endpoint,
        &ServerConfig::default(),
    )
    .map(|_| ())
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

fn response_id(endpoint: Endpoint) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let prefix = if endpoint == Endpoint::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    };
    format!("{prefix}-{nanos:x}")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn reason(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Length => "length",
        FinishReason::Stop | FinishReason::Cancelled => "stop",
    }
}

fn usage(prompt_tokens: usize, completion_tokens: usize) -> Value {
    json!({"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens})
}

async fn collect_response(
    mut receiver: UnboundedReceiver<Event>,
    endpoint: Endpoint,
    id: String,
    model: String,
) -> Result<Value, ApiError> {
    let (mut content, mut reasoning) = (String::new(), String::new());
    while let Some(event) = receiver.recv().await {
        match event {
            Event::Text(TextEvent::Content(text)) => content.push_str(&text),
            Event::Text(TextEvent::Reasoning(text)) => reasoning.push_str(&text),
            Event::Failed(error) => return Err(error),
            Event::Admitted => {}
            Event::Done {
                finish_reason,
                prompt_tokens,
                completion_tokens,
            } => {
                let finish = reason(finish_reason);
                let choice = match endpoint {
                    Endpoint::Chat => {
                        let mut message = json!({"role": "assistant", "content": content});
                        if !reasoning.is_empty() {
                            message["reasoning_content"] = json!(reasoning);
                        }
                        json!({"index": 0, "message": message, "finish_reason": finish, "logprobs": null})
                    }
                    Endpoint::Completion => {
                        json!({"index": 0, "text": content, "finish_reason": finish, "logprobs": null})
                    }
                };
                let object = if endpoint == Endpoint::Chat {
                    "chat.completion"
                } else {
                    "text_completion"
                };
                return Ok(json!({
                    "id": id, "object": object, "created": now(), "model": model,
                    "choices": [choice], "usage": usage(prompt_tokens, completion_tokens),
                }));
            }
        }
    }
    Err(ApiError::shutting_down())
}

fn stream_response(
    receiver: UnboundedReceiver<Event>,
    endpoint: Endpoint,
    id: String,
    model: String,
    include_usage: bool,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, Infallible>>> {
    let object = if endpoint == Endpoint::Chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let created = now();
    let chunk = move |choice: Value| {
        let mut value = json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]});
        if include_usage {
            value["usage"] = Value::Null;
        }
        value
    };
    let first = match endpoint {
        Endpoint::Chat => vec![chunk(
            json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}),
        )],
        Endpoint::Completion => Vec::new(),
    };
    let body = UnboundedReceiverStream::new(receiver).flat_map(move |event| {
        let mut out: Vec<Value> = Vec::new();
        match event {
            Event::Text(text) => {
                let choice = match (endpoint, text) {
                    (Endpoint::Chat, TextEvent::Content(t)) => json!({"index": 0, "delta": {"content": t}, "finish_reason": null}),
                    (Endpoint::Chat, TextEvent::Reasoning(t)) => json!({"index": 0, "delta": {"reasoning_content": t}, "finish_reason": null}),
                    (Endpoint::Completion, TextEvent::Content(t) | TextEvent::Reasoning(t)) => json!({"index": 0, "text": t, "finish_reason": null, "logprobs": null}),
                };
                out.push(chunk(choice));
            }
            Event::Done { finish_reason, prompt_tokens, completion_tokens } => {
                let finish = reason(finish_reason);
                out.push(chunk(match endpoint {
                    Endpoint::Chat => json!({"index": 0, "delta": {}, "finish_reason": finish}),
                    Endpoint::Completion => json!({"index": 0, "text": "", "finish_reason": finish, "logprobs": null}),
                }));
                if include_usage {
                    let mut last = chunk(json!(null));
                    last["choices"] = json!([]);
                    last["usage"] = usage(prompt_tokens, completion_tokens);
                    out.push(last);
                }
                out.push(json!("[DONE]"));
            }
            Event::Failed(error) => out.push(error.body()),
            Event::Admitted => {}
        }
        futures_util::stream::iter(out)
    });
    let events = futures_util::stream::iter(first).chain(body).map(|value| {
        Ok(match value {
            Value::String(done) if done == "[DONE]" => SseEvent::default().data("[DONE]"),
            other => SseEvent::default().data(other.to_string()),
        })
    });
    Sse::new(events)
}
