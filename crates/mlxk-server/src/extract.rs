//! The one JSON body extractor of every endpoint: its rejection is an [`ApiError`] (413 over
//! the limit, 408 when the body stops arriving, 400 naming the field a wrong type is in).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::routes::AppState;

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<std::sync::Arc<AppState>> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(
        request: Request,
        state: &std::sync::Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let body = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| body_error(&rejection, state.config.max_body_bytes))?;
        parse_json(&body).map(ApiJson)
    }
}

/// Parses a body; the error names the path of the field (`top_k: invalid value ...`).
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut json = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut json)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

fn body_error(rejection: &BytesRejection, limit: usize) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::too_large(limit)
    } else if timed_out(rejection) {
        ApiError::body_timeout()
    } else {
        ApiError::bad_request(rejection.body_text())
    }
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
