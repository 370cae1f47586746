//! The OpenAI-compatible routes: `/v1/models`, `/v1/chat/completions`, `/v1/completions`,
//! `/v1/embeddings`. Handlers parse and shape; the generation service resolves, queues and
//! generates.

mod audio;
mod embeddings;
mod request;
mod response;

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use axum::Json;
use mlxk_core::ModelInfo;
use mlxk_engine::LoadPolicy;
use serde_json::{json, Value};

pub use audio::{transcriptions, translations};
pub use embeddings::embeddings;
pub(crate) use request::{function_tools, ToolParam};
pub use request::{ChatAudio, CompletionRequest, Endpoint};

use crate::error::ApiError;
use crate::extract::{parse_json, ApiJson};
use crate::request_log::RequestLog;
use crate::routes::Shared;
use crate::service::{Event, TranscriptionRequest};
use crate::worker::KeepAlive;
use mlxk_engine::{FinishReason, TextEvent};

fn model_object(model: &ModelInfo, loaded: &[String], policy: &LoadPolicy) -> Value {
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
    // A workspace is served by its folder name, never its path on this machine.
    let (id, owned_by) = match &model.workspace {
        Some(_) => (crate::service::api_name(model), "workspace"),
        None => (
            model.name.clone(),
            model.name.split_once('/').map_or("local", |(org, _)| org),
        ),
    };
    // How tools reach it: its template's own format, or the generic one (`native: false`);
    // embedding and speech-to-text models take none.
    let tools = match (c.model_type, &model.path) {
        (mlxk_core::classify::ModelType::Embedding | mlxk_core::classify::ModelType::Audio, _)
        | (_, None) => Value::Null,
        (_, Some(dir)) => json!(mlxk_engine::tool_use::ToolSupport::of_folder(dir)),
    };
    json!({
        "id": id,
        "object": "model",
        "created": model.last_modified.timestamp(),
        "owned_by": owned_by,
        "context_length": c.context_length,
        "capabilities": c.capabilities.iter().map(|cap| cap.label()).collect::<Vec<_>>(),
        "loaded": loaded.contains(&id),
        "weights": weights,
        "tools": tools,
    })
}

pub async fn list_models(State(state): State<Shared>) -> Result<Json<Value>, ApiError> {
    let loaded = state.service.worker().loaded_models();
    let models = state.service.runnable_models().await?;
    let policy = state.config.load_policy;
    // Planning reads safetensors headers: off the async threads.
    let data = tokio::task::spawn_blocking(move || {
        models
            .iter()
            .map(|m| model_object(m, &loaded, &policy))
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!({"object": "list", "data": data})))
}

pub async fn get_model(
    State(state): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let loaded = state.service.worker().loaded_models();
    let model = state.service.resolve(&id).await?;
    let policy = state.config.load_policy;
    let object = tokio::task::spawn_blocking(move || model_object(&model.info, &loaded, &policy))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(object))
}

pub async fn chat_completions(
    State(state): State<Shared>,
    Extension(log): Extension<Arc<RequestLog>>,
    ApiJson(request): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    complete(state, log, request, Endpoint::Chat).await
}

pub async fn completions(
    State(state): State<Shared>,
    Extension(log): Extension<Arc<RequestLog>>,
    ApiJson(request): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    complete(state, log, request, Endpoint::Completion).await
}

async fn complete(
    state: Shared,
    log: Arc<RequestLog>,
    request: CompletionRequest,
    endpoint: Endpoint,
) -> Result<Response, ApiError> {
    if endpoint == Endpoint::Chat && request.has_audio() {
        return transcribe_chat(state, log, request.into_audio()?).await;
    }
    let (generation, delivery) = request.into_generation(endpoint, state.config.max_tokens)?;
    log.model(&generation.model);
    let logprobs = generation.logprobs.is_some();
    let (model, events) = state.service.generate(generation).await?;
    log.model(&model.name);
    let id = response::response_id(endpoint);
    if delivery.stream {
        let events = crate::answer::opening(events).await?;
        let end = log.defer();
        let stream = response::stream_response(
            events,
            endpoint,
            id,
            model.name,
            delivery.include_usage,
            logprobs,
            end,
        );
        Ok(stream.into_response())
    } else {
        let body =
            response::collect_response(events, endpoint, id, model.name, logprobs, &log).await?;
        Ok(Json(body).into_response())
    }
}

/// A chat request with audio for a speech-to-text model: the transcript is the assistant's
/// answer, finished with `stop`; streamed, it is one content chunk, then the end. Its events
/// are those a generation sends, so the answer is shaped by the same code.
async fn transcribe_chat(
    state: Shared,
    log: Arc<RequestLog>,
    audio: ChatAudio,
) -> Result<Response, ApiError> {
    log.model(&audio.model);
    let delivery = audio.delivery;
    let (model, transcript) = state
        .service
        .transcribe(TranscriptionRequest {
            model: audio.model,
            audio: audio.audio,
            file_name: audio.format,
            options: audio.options,
            keep_alive: KeepAlive::Server,
        })
        .await?;
    log.model(&model.name);
    let (sender, events) = tokio::sync::mpsc::unbounded_channel();
    let usage = audio::transcript_usage(&transcript);
    for event in [
        Event::Text(TextEvent::Content(transcript.text.trim().to_string())),
        Event::Done {
            finish_reason: FinishReason::Stop,
            usage,
            stop_sequence: None,
        },
    ] {
        let _ = sender.send(event);
    }
    let id = response::response_id(Endpoint::Chat);
    if delivery.stream {
        let end = log.defer();
        let stream = response::stream_response(
            events,
            Endpoint::Chat,
            id,
            model.name,
            delivery.include_usage,
            false,
            end,
        );
        Ok(stream.into_response())
    } else {
        let body =
            response::collect_response(events, Endpoint::Chat, id, model.name, false, &log).await?;
        Ok(Json(body).into_response())
    }
}

/// The request checks alone, for the fuzz targets (`fuzz/`): no model, no worker.
#[doc(hidden)]
pub fn check_request(endpoint: Endpoint, body: &[u8]) -> Result<(), ApiError> {
    let request: CompletionRequest = parse_json(body)?;
    let limit = crate::ServerConfig::default().max_tokens;
    request.into_generation(endpoint, limit).map(|_| ())
}
