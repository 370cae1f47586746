//! Ollama's API, a translator over the same generation service as every other route:
//! `GET /api/version`, `GET /api/tags` and `POST /api/show` (the models, in `models`),
//! `GET /api/ps` (the models in memory), `POST /api/chat` and `POST /api/generate` (parsed in
//! `request`, with `options` mapped in `options`, answered in `reply`: NDJSON unless
//! `stream: false`), and embeddings (`POST /api/embed`, and the older `POST /api/embeddings`).
//!
//! A chat without messages or a generate without a prompt loads the model, or with
//! `keep_alive: 0` unloads it (what `ollama stop` and `mlxk stop` send). `keep_alive` on a
//! request sets how long its model stays once idle (see `keep_alive`); a request without one
//! leaves the model the server's keep-alive, as Ollama gives it its default. Model names are
//! taken as Ollama's clients write them: `name:latest` is `name`, `name:tag` is `name@tag` (a
//! branch, tag or commit of the model), and the names `/api/tags` lists resolve as they are.
//! Errors are `{"error": "…"}`; an unknown model is a 404, and this server cannot pull one.

mod keep_alive;
mod models;
mod options;
mod reply;
mod request;

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use mlxk_engine::{EmbeddingInput, InputKind};

pub use models::{show, tags};

use crate::error::{without_directories, ApiError};
use crate::extract::ApiJson;
use crate::request_log::RequestLog;
use crate::routes::Shared;
use crate::service::{EmbeddingRequest, ServiceError};
use crate::worker::KeepAlive;
use keep_alive::KeepAliveField;
use reply::{Reply, Shape};
use request::{OllamaRequest, Turn};

/// An error as Ollama answers one: `{"error": "…"}` with the status.
#[derive(Debug)]
pub struct OllamaError {
    status: StatusCode,
    message: String,
}

impl From<ApiError> for OllamaError {
    fn from(error: ApiError) -> Self {
        OllamaError {
            status: error.status,
            message: error.message,
        }
    }
}

impl From<ServiceError> for OllamaError {
    fn from(error: ServiceError) -> Self {
        let not_found = matches!(error, ServiceError::ModelNotFound(_));
        let mut error = OllamaError::from(ApiError::from(error));
        if not_found {
            // Ollama's clients offer to pull a model on a 404: say why that cannot work here.
            error.message.push_str(
                "; this server serves the models in its cache and cannot pull (run mlxk pull on its machine)",
            );
        }
        error
    }
}

impl IntoResponse for OllamaError {
    fn into_response(self) -> Response {
        let body = json!({"error": without_directories(&self.message)});
        let mut response = (self.status, Json(body)).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A JSON body whose rejection is in Ollama's shape.
pub struct OllamaJson<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<Shared> for OllamaJson<T> {
    type Rejection = OllamaError;

    async fn from_request(request: Request, state: &Shared) -> Result<Self, OllamaError> {
        let ApiJson(value) = ApiJson::<T>::from_request(request, state).await?;
        Ok(OllamaJson(value))
    }
}

/// A model name as Ollama's clients write it, in this server's terms: `name:latest` is
/// `name`, `name:tag` is `name@tag` (a branch, tag or commit of the model's repository).
fn our_name(name: &str) -> String {
    match name.rsplit_once(':') {
        Some((base, "latest")) if !base.is_empty() => base.to_string(),
        Some((base, tag)) if !base.is_empty() && !tag.is_empty() && !tag.contains('/') => {
            format!("{base}@{tag}")
        }
        _ => name.to_string(),
    }
}

pub async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

/// The models in memory (text, embedding and speech-to-text models), as Ollama lists them,
/// with when each was loaded and when it goes if no request comes.
pub async fn ps(State(state): State<Shared>) -> Json<Value> {
    let models: Vec<Value> = state
        .service
        .worker()
        .residents()
        .into_iter()
        .map(|resident| {
            json!({
                "name": resident.name,
                "model": resident.name,
                "size": resident.memory_bytes,
                // No GPU memory on this path; on Apple silicon the memory is unified.
                "size_vram": if cfg!(target_os = "macos") { resident.memory_bytes } else { 0 },
                "digest": "",
                "details": {"format": "mlx"},
                "expires_at": resident.expires_at.map(rfc3339),
                "loaded_at": rfc3339(resident.loaded_at),
            })
        })
        .collect();
    Json(json!({"models": models}))
}

/// `POST /api/chat`: a chat turn; without messages, a load (or with `keep_alive: 0`, an
/// unload).
pub async fn chat(
    State(state): State<Shared>,
    Extension(log): Extension<Arc<RequestLog>>,
    OllamaJson(request): OllamaJson<OllamaRequest>,
) -> Result<Response, OllamaError> {
    let started = Instant::now();
    log.model(&request.model);
    if request.messages.is_empty() {
        return load_or_unload(&state, &request.model, request.keep_alive, Shape::Chat).await;
    }
    let shown = request.model.clone();
    let turn = request.into_chat_turn(state.config.max_tokens)?;
    answer(state, log, turn, shown, Shape::Chat, started).await
}

/// `POST /api/generate`: an answer to a prompt; without one, a load (or with
/// `keep_alive: 0`, an unload).
pub async fn generate(
    State(state): State<Shared>,
    Extension(log): Extension<Arc<RequestLog>>,
    OllamaJson(request): OllamaJson<OllamaRequest>,
) -> Result<Response, OllamaError> {
    let started = Instant::now();
    log.model(&request.model);
    if request.prompt.as_deref().is_none_or(str::is_empty) {
        return load_or_unload(&state, &request.model, request.keep_alive, Shape::Generate).await;
    }
    let shown = request.model.clone();
    let turn = request.into_generate_turn(state.config.max_tokens)?;
    answer(state, log, turn, shown, Shape::Generate, started).await
}

/// Queues the turn and answers it, streamed or whole, under the name the client gave.
async fn answer(
    state: Shared,
    log: Arc<RequestLog>,
    turn: Turn,
    shown: String,
    shape: Shape,
    started: Instant,
) -> Result<Response, OllamaError> {
    let (model, events) = state.service.generate(turn.generation).await?;
    log.model(&model.name);
    let reply = Reply::new(
        shape,
        shown,
        model.name,
        turn.think,
        Arc::clone(&state),
        started,
    );
    if turn.stream {
        reply.stream(events, log).await
    } else {
        Ok(Json(reply.whole(events, &log).await?).into_response())
    }
}

/// A load (the model stays as `keep_alive` says), or with `keep_alive: 0` an unload.
async fn load_or_unload(
    state: &Shared,
    name: &str,
    keep_alive_field: Option<KeepAliveField>,
    shape: Shape,
) -> Result<Response, OllamaError> {
    let keep = keep_alive::requested(keep_alive_field.as_ref())?;
    let worker = state.service.worker();
    if keep == KeepAlive::For(std::time::Duration::ZERO) {
        // The model in memory by the name given, even if its files are gone from the cache
        // since: letting go of memory never needs the disk.
        let ours = our_name(name);
        let loaded = worker.loaded_models().into_iter().find(|n| *n == ours);
        let model = match loaded {
            Some(resident) => resident,
            None => state.service.resolve(&ours).await?.name,
        };
        let unloaded = worker.unload(&model).await?;
        return Ok(done(&model, shape, "unload", Some(unloaded.label())));
    }
    let model = state.service.resolve(&our_name(name)).await?;
    worker.load(model.clone()).await?;
    worker.keep_alive(&model.name, keep).await?;
    Ok(done(&model.name, shape, "load", None))
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum EmbedInput {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub struct EmbedRequest {
    model: String,
    input: EmbedInput,
    #[serde(default)]
    keep_alive: Option<KeepAliveField>,
    /// Cut inputs longer than the model reads (Ollama's default); `false` makes them an error.
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    dimensions: Option<usize>,
}

/// `POST /api/embed`: `{"model", "input": text or texts}` to `{"embeddings": [[...]]}`.
pub async fn embed(
    State(state): State<Shared>,
    Extension(log): Extension<Arc<RequestLog>>,
    OllamaJson(request): OllamaJson<EmbedRequest>,
) -> Result<Response, OllamaError> {
    log.model(&request.model);
    let started = Instant::now();
    let keep = keep_alive::requested(request.keep_alive.as_ref())?;
    let inputs = match request.input {
        EmbedInput::One(text) => vec![EmbeddingInput::Text(text)],
        EmbedInput::Many(texts) => texts.into_iter().map(EmbeddingInput::Text).collect(),
    };
    let (model, vectors) = state
        .service
        .embed(EmbeddingRequest {
            model: our_name(&request.model),
            inputs,
            kind: InputKind::Document,
            dimensions: request.dimensions,
            truncate: request.truncate.unwrap_or(true),
            keep_alive: keep,
        })
        .await?;
    log.model(&model.name);
    let tokens: usize = vectors.iter().map(|v| v.tokens).sum();
    log.read_tokens(tokens);
    let embeddings: Vec<&[f32]> = vectors.iter().map(|v| v.vector.as_slice()).collect();
    Ok(Json(json!({
        "model": model.name,
        "embeddings": embeddings,
        "total_duration": started.elapsed().as_nanos() as u64,
        "load_duration": 0,
        "prompt_eval_count": tokens,
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
pub struct LegacyEmbeddingRequest {
    model: String,
    prompt: String,
    #[serde(default)]
    keep_alive: Option<KeepAliveField>,
}

/// `POST /api/embeddings` (Ollama's older endpoint): `{"model", "prompt"}` to `{"embedding"}`.
pub async fn embeddings(
    State(state): State<Shared>,
    Extension(log): Extension<Arc<RequestLog>>,
    OllamaJson(request): OllamaJson<LegacyEmbeddingRequest>,
) -> Result<Response, OllamaError> {
    log.model(&request.model);
    let keep = keep_alive::requested(request.keep_alive.as_ref())?;
    let (model, vectors) = state
        .service
        .embed(EmbeddingRequest {
            model: our_name(&request.model),
            inputs: vec![EmbeddingInput::Text(request.prompt)],
            kind: InputKind::Document,
            dimensions: None,
            truncate: true,
            keep_alive: keep,
        })
        .await?;
    log.model(&model.name);
    log.read_tokens(vectors.iter().map(|v| v.tokens).sum());
    let embedding = vectors.into_iter().next().map(|v| v.vector);
    Ok(Json(json!({ "embedding": embedding.unwrap_or_default() })).into_response())
}

/// Ollama's answer to a load or an unload, naming the model as it is held (`mlxk stop` shows
/// which one went); `unloaded` (ours) says whether it went now, goes when its answers end, or
/// was not loaded.
fn done(model: &str, shape: Shape, reason: &str, unloaded: Option<&str>) -> Response {
    let mut body = json!({
        "model": model,
        "created_at": rfc3339(SystemTime::now()),
        "done": true,
        "done_reason": reason,
    });
    match shape {
        Shape::Chat => body["message"] = json!({"role": "assistant", "content": ""}),
        Shape::Generate => body["response"] = json!(""),
    }
    if let Some(unloaded) = unloaded {
        body["unloaded"] = json!(unloaded);
    }
    Json(body).into_response()
}

fn rfc3339(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Millis, true)
}
