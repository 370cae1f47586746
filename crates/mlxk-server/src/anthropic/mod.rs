//! Anthropic's Messages API: `POST /v1/messages` and `/v1/messages/count_tokens`, a
//! translator over the generation service.

use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

fn not_yet() -> Response {
    ApiError::not_implemented("Anthropic's Messages API is not implemented yet").into_response()
}

pub async fn messages() -> Response {
    not_yet()
}

pub async fn count_tokens() -> Response {
    not_yet()
}
