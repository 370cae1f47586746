//! The first of Ollama's routes, in Ollama's shapes: `GET /api/version`, `GET /api/ps` (the
//! model in memory), and `POST /api/generate` without a prompt, which loads a model or, with
//! `keep_alive: 0`, unloads it (what `ollama stop` and `mlxk stop` send). Generating through
//! `/api/generate` and `/api/chat` is not here yet: such a request is a clear 501.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::{without_directories, ApiError};
use crate::extract::ApiJson;
use crate::request_log::RequestLog;
use crate::routes::Shared;

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

/// The model in memory (one at a time today), as Ollama lists it, with when it was loaded.
pub async fn ps(State(state): State<Shared>) -> Json<Value> {
    let models: Vec<Value> = state
        .service
        .worker()
        .resident()
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
        let name = match worker.resident() {
            Some(resident) if resident.name == request.model => resident.name,
            _ => state.service.resolve(&request.model).await?.name,
        };
        let unloaded = worker.unload(&name).await?;
        return Ok(done(&name, "unload", Some(unloaded.label())));
    }
    let model = state.service.resolve(&request.model).await?;
    worker.load(model.clone()).await?;
    Ok(done(&model.name, "load", None))
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
