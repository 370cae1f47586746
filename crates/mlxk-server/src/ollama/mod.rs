//! The first of Ollama's routes, in Ollama's shapes: `GET /api/version`, `GET /api/ps` (the
//! models in memory), `POST /api/generate` without a prompt, which loads a model or, with
//! `keep_alive: 0`, unloads it (what `ollama stop` and `mlxk stop` send), and embeddings
//! (`POST /api/embed`, and the older `POST /api/embeddings`). Generating through
//! `/api/generate` and `/api/chat` is not here yet: such a request is a clear 501.

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

use crate::error::{without_directories, ApiError};
use crate::extract::ApiJson;
use crate::request_log::RequestLog;
use crate::routes::Shared;
use crate::service::EmbeddingRequest;

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

impl From<crate::service::ServiceError> for OllamaError {
    fn from(error: crate::service::ServiceError) -> Self {
        ApiError::from(error).into()
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

pub async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

/// The models in memory (a text model, an embedding model), as Ollama lists them, with when
/// they were loaded.
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

#[derive(Debug, Deserialize)]
pub struct GenerateRequest {
    model: String,
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    keep_alive: Option<KeepAlive>,
}

/// Ollama's `keep_alive`: seconds as a number, or a duration such as `"0"`, `"0s"`, `"5m"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum KeepAlive {
    Seconds(f64),
    Text(String),
}

impl KeepAlive {
    fn is_zero(&self) -> bool {
        match self {
            KeepAlive::Seconds(s) => *s == 0.0,
            KeepAlive::Text(t) => {
                let digits = t.trim().trim_end_matches(|c: char| c.is_ascii_alphabetic());
                digits.parse::<f64>().is_ok_and(|n| n == 0.0)
            }
        }
    }
}

/// `{"model"}` loads, `{"model", "keep_alive": 0}` unloads; a prompt asks for generation,
/// which this server offers on `/v1/chat/completions` and `/v1/completions` for now.
pub async fn generate(
    State(state): State<Shared>,
    Extension(log): Extension<Arc<RequestLog>>,
    OllamaJson(request): OllamaJson<GenerateRequest>,
) -> Result<Response, OllamaError> {
    log.model(&request.model);
    if request.prompt.as_deref().is_some_and(|p| !p.is_empty()) {
        return Err(OllamaError {
            status: StatusCode::NOT_IMPLEMENTED,
            // No leading slashes: client messages lose anything that looks like a path.
            message: "generating through Ollama's api/generate is not implemented yet: use the OpenAI-compatible endpoints on this port (v1/chat/completions, v1/completions)".into(),
        });
    }
    let worker = state.service.worker();
    if request.keep_alive.as_ref().is_some_and(KeepAlive::is_zero) {
        // The model in memory by the name given, even if its files are gone from the cache
        // since: letting go of memory never needs the disk.
        let name = match worker
            .loaded_models()
            .into_iter()
            .find(|n| *n == request.model)
        {
            Some(resident) => resident,
            None => state.service.resolve(&request.model).await?.name,
        };
        let unloaded = worker.unload(&name).await?;
        return Ok(done(&name, "unload", Some(unloaded.label())));
    }
    let model = state.service.resolve(&request.model).await?;
    worker.load(model.clone()).await?;
    Ok(done(&model.name, "load", None))
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
    let inputs = match request.input {
        EmbedInput::One(text) => vec![EmbeddingInput::Text(text)],
        EmbedInput::Many(texts) => texts.into_iter().map(EmbeddingInput::Text).collect(),
    };
    let (model, vectors) = state
        .service
        .embed(EmbeddingRequest {
            model: request.model,
            inputs,
            kind: InputKind::Document,
            dimensions: request.dimensions,
            truncate: request.truncate.unwrap_or(true),
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
}

/// `POST /api/embeddings` (Ollama's older endpoint): `{"model", "prompt"}` to `{"embedding"}`.
pub async fn embeddings(
    State(state): State<Shared>,
    Extension(log): Extension<Arc<RequestLog>>,
    OllamaJson(request): OllamaJson<LegacyEmbeddingRequest>,
) -> Result<Response, OllamaError> {
    log.model(&request.model);
    let (model, vectors) = state
        .service
        .embed(EmbeddingRequest {
            model: request.model,
            inputs: vec![EmbeddingInput::Text(request.prompt)],
            kind: InputKind::Document,
            dimensions: None,
            truncate: true,
        })
        .await?;
    log.model(&model.name);
    log.read_tokens(vectors.iter().map(|v| v.tokens).sum());
    let embedding = vectors.into_iter().next().map(|v| v.vector);
    Ok(Json(json!({ "embedding": embedding.unwrap_or_default() })).into_response())
}

/// Ollama's answer to an empty generate; `unloaded` (ours) says whether the model went now,
/// goes when its answers end, or was not loaded.
fn done(model: &str, reason: &str, unloaded: Option<&str>) -> Response {
    let mut body = json!({
        "model": model,
        "created_at": rfc3339(SystemTime::now()),
        "response": "",
        "done": true,
        "done_reason": reason,
    });
    if let Some(unloaded) = unloaded {
        body["unloaded"] = json!(unloaded);
    }
    Json(body).into_response()
}

fn rfc3339(time: SystemTime) -> String {
    DateTime::<Utc>::from(time).to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `GET /api/tags`: the models on disk, as Ollama lists them.
pub async fn tags() -> Response {
    OllamaError {
        status: StatusCode::NOT_IMPLEMENTED,
        message: "api/tags is not implemented yet".into(),
    }
    .into_response()
}

/// `POST /api/show`: one model's details and capabilities.
pub async fn show() -> Response {
    OllamaError {
        status: StatusCode::NOT_IMPLEMENTED,
        message: "api/show is not implemented yet".into(),
    }
    .into_response()
}

/// `POST /api/chat`: a chat turn, NDJSON when streamed.
pub async fn chat() -> Response {
    OllamaError {
        status: StatusCode::NOT_IMPLEMENTED,
        message: "api/chat is not implemented yet".into(),
    }
    .into_response()
}
