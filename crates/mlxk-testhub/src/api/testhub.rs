//! Test endpoints: the request log and the download knobs.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use super::Shared;
use crate::config::Knobs;
use crate::request_log::RequestRecord;

pub async fn requests(State(state): State<Shared>) -> Json<Vec<RequestRecord>> {
    Json(state.log.snapshot())
}

pub async fn clear_requests(State(state): State<Shared>) -> StatusCode {
    state.log.clear();
    StatusCode::NO_CONTENT
}

pub async fn knobs(State(state): State<Shared>) -> Json<Knobs> {
    Json(
        state
            .knobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    )
}

pub async fn set_knobs(State(state): State<Shared>, Json(knobs): Json<Knobs>) -> Json<Knobs> {
    *state.knobs.lock().unwrap_or_else(|e| e.into_inner()) = knobs.clone();
    Json(knobs)
}
