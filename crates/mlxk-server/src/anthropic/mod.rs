//! Anthropic's Messages API: `POST /v1/messages` (whole or streamed) and
//! `/v1/messages/count_tokens`, a translator over the generation service: the same model
//! resolution, queue, tools, grammars, reasoning split and stop strings as every API, with
//! Anthropic's request fields, content blocks, events and error shape.
//!
//! What differs from Anthropic's cloud: `model` names a model of this server; a reasoning
//! model thinks whatever `thinking` says (`disabled` hides its `thinking` blocks, a budget is
//! not a separate limit: reasoning and answer share `max_tokens`); thinking blocks carry an
//! empty signature and are left out of the prompt when sent back; `temperature`, `top_p` and
//! `top_k` are read at the top level (where older SDKs and `extra_body` put them); fields of
//! the cloud (`metadata`, `cache_control`, `service_tier`, `output_config.effort`) have no
//! effect; an answer cannot continue a prefilled assistant message, and server tools and
//! non-text blocks (images, documents) are refused.

mod request;
mod response;
mod stream;

use std::sync::Arc;

use axum::extract::{FromRequest, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use crate::answer;
use crate::error::{without_directories, ApiError};
use crate::extract::ApiJson;
use crate::request_log::RequestLog;
use crate::routes::Shared;
use crate::service::ServiceError;
use request::MessagesRequest;

/// An error in Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`, with the
/// status the server gives it on every API.
#[derive(Debug)]
pub struct AnthropicError(ApiError);

impl From<ApiError> for AnthropicError {
    fn from(error: ApiError) -> Self {
        AnthropicError(error)
    }
}

impl From<ServiceError> for AnthropicError {
    fn from(error: ServiceError) -> Self {
        AnthropicError(ApiError::from(error))
    }
}

impl AnthropicError {
    /// Anthropic's name for an error of this status.
    fn kind(&self) -> &'static str {
        match self.0.status {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::FORBIDDEN => "permission_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
            StatusCode::TOO_MANY_REQUESTS => "rate_limit_error",
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => "timeout_error",
            StatusCode::SERVICE_UNAVAILABLE => "overloaded_error",
            status if status.is_client_error() => "invalid_request_error",
            _ => "api_error",
        }
    }

    /// The body a client sees (paths cut to their last component, as on every API).
    pub fn body(&self) -> Value {
        json!({"type": "error", "error": {
            "type": self.kind(),
            "message": without_directories(&self.0.message),
        }})
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let mut response = (self.0.status, Json(self.body())).into_response();
        if self.0.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A JSON body whose rejection is in Anthropic's shape.
pub struct AnthropicJson<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest<Shared> for AnthropicJson<T> {
    type Rejection = AnthropicError;

    async fn from_request(request: Request, state: &Shared) -> Result<Self, AnthropicError> {
        let ApiJson(value) = ApiJson::<T>::from_request(request, state).await?;
        Ok(AnthropicJson(value))
    }
}

/// `POST /v1/messages`: one assistant message, whole or as server-sent events.
pub async fn messages(
    State(state): State<Shared>,
    Extension(log): Extension<Arc<RequestLog>>,
    AnthropicJson(request): AnthropicJson<MessagesRequest>,
) -> Result<Response, AnthropicError> {
    log.model(&request.model);
    let streamed = request.stream;
    let (generation, shape) = request.into_generation(state.config.max_tokens)?;
    let (model, events) = state.service.generate(generation).await?;
    log.model(&model.name);
    let id = answer::new_id("msg_");
    if streamed {
        let events = answer::opening(events).await?;
        let end = log.defer();
        return Ok(stream::stream(events, id, model.name, shape, end).into_response());
    }
    let answer = answer::collect(events, &log).await?;
    Ok(Json(response::message(&answer, id, &model.name, &shape)).into_response())
}

/// `POST /v1/messages/count_tokens`: the tokens the request's system prompt, messages and
/// tools take, as the model's chat template renders them (`{"input_tokens": N}`).
pub async fn count_tokens(
    State(state): State<Shared>,
    Extension(log): Extension<Arc<RequestLog>>,
    AnthropicJson(request): AnthropicJson<MessagesRequest>,
) -> Result<Response, AnthropicError> {
    log.model(&request.model);
    let (prompt, tools) = request.conversation()?;
    let (model, count) = state
        .service
        .count_tokens(&request.model, prompt, tools)
        .await?;
    log.model(&model.name);
    log.read_tokens(count);
    Ok(Json(json!({"input_tokens": count})).into_response())
}
