//! `GET /metrics`: counters and histograms in Prometheus' text format.

use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

pub async fn metrics() -> Response {
    ApiError::not_implemented("metrics are not implemented yet").into_response()
}
