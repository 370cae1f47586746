//! Every route in one place, the shared state, and the checks that apply to all of them.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, OriginalUri, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::anthropic;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::guard::{self, RequestGuard};
use crate::metrics::{self, Metrics};
use crate::ollama;
use crate::openai;
use crate::request_log;
use crate::responses;
use crate::service::GenerationService;

pub struct AppState {
    pub config: ServerConfig,
    pub service: GenerationService,
}

pub type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    let guard = Arc::new(RequestGuard::new(
        &state.config.allowed_hosts,
        &state.config.cors_origins,
        state.config.max_body_bytes,
        state.config.max_audio_body_bytes(),
    ));
    let cors_guard = Arc::clone(&guard);
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            cors_guard.origin_allowed(origin.to_str().unwrap_or(""))
        }))
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-api-key"),
            header::HeaderName::from_static("anthropic-version"),
        ]);
    let audio_limit = DefaultBodyLimit::max(state.config.max_audio_body_bytes());
    let v1 = Router::new()
        .route("/models", get(openai::list_models))
        .route("/models/{*id}", get(openai::get_model))
        .route("/chat/completions", post(openai::chat_completions))
        .route("/completions", post(openai::completions))
        .route("/embeddings", post(openai::embeddings))
        // Uploads: multipart bodies with their own, larger limit (the guard lets them through).
        .route(
            "/audio/transcriptions",
            post(openai::transcriptions).layer(audio_limit),
        )
        .route(
            "/audio/translations",
            post(openai::translations).layer(audio_limit),
        )
        .route("/responses", post(responses::responses))
        .route("/messages", post(anthropic::messages))
        .route("/messages/count_tokens", post(anthropic::count_tokens))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_key,
        ));
    let ollama = Router::new()
        .route("/version", get(ollama::version))
        .route("/ps", get(ollama::ps))
        .route("/tags", get(ollama::tags))
        .route("/show", post(ollama::show))
        .route("/chat", post(ollama::chat))
        .route("/generate", post(ollama::generate))
        .route("/embed", post(ollama::embed))
        .route("/embeddings", post(ollama::embeddings))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_key,
        ));
    Router::new()
        .route("/health", get(health))
        .route(
            "/metrics",
            get(metrics::metrics).route_layer(middleware::from_fn_with_state(
                Arc::clone(&state),
                require_key,
            )),
        )
        .nest("/v1", v1)
        .nest("/api", ollama)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        // A body that stops arriving ends the request (408), never holds it.
        .layer(RequestBodyTimeoutLayer::new(state.config.read_timeout))
        .layer(middleware::from_fn_with_state(guard, guard::guard))
        .layer(cors)
        // Outermost: refusals by the layers above are logged and counted too.
        .layer(middleware::from_fn_with_state(
            Arc::new(Metrics::new()),
            request_log::log_requests,
        ))
        .with_state(state)
}

/// Liveness and the queue: `status` as mlx-knife 2.0.8 answers, `healthy` as its tests read.
async fn health(State(state): State<Shared>) -> Json<Value> {
    let (waiting, active, capacity) = state.service.worker().queue().counts();
    Json(json!({
        "status": "ok",
        "healthy": true,
        "queue": {"waiting": waiting, "active": active, "capacity": capacity},
    }))
}

/// The API key check for `/v1` and `/api`, when a key is configured: `Authorization: Bearer`
/// as OpenAI's clients send it, or `x-api-key` as Anthropic's do.
async fn require_key(State(state): State<Shared>, request: Request, next: Next) -> Response {
    if let Some(key) = state.config.required_key() {
        let headers = request.headers();
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
        if bearer != Some(key) && api_key != Some(key) {
            // In the shape of the API asked, so that its clients read it as what it is.
            let path = request
                .extensions()
                .get::<OriginalUri>()
                .map_or_else(|| request.uri().path(), |uri| uri.path());
            let refusal = ApiError::unauthorized();
            return if path.starts_with("/v1/messages") {
                anthropic::AnthropicError::from(refusal).into_response()
            } else if path.starts_with("/api/") {
                ollama::OllamaError::from(refusal).into_response()
            } else {
                refusal.into_response()
            };
        }
    }
    next.run(request).await
}
