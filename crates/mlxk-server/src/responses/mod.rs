//! OpenAI's Responses API (stateless): `POST /v1/responses`, a translator over the generation
//! service.

use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub async fn responses() -> Response {
    ApiError::not_implemented("OpenAI's Responses API is not implemented yet").into_response()
}
