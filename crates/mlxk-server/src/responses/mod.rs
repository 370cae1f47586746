//! OpenAI's Responses API, stateless: `POST /v1/responses`, a translator over the generation
//! service (the same models, queue, tools, grammars and reasoning split as chat completions).
//!
//! What differs from OpenAI's, by design: nothing is stored, so `previous_response_id`,
//! `conversation` and `background` are refused (send the whole conversation in `input`), and
//! `store` is accepted but echoed as `false`. Only function tools exist; functions are strict
//! unless `strict: false`, as OpenAI's are (their arguments are enforced by a grammar, optional
//! properties stay optional). `reasoning.effort` is accepted but changes nothing: a model
//! reasons as its chat template makes it, and its reasoning comes back as a `reasoning` item
//! with the text in `content` (`reasoning_text`) and no summary. Reasoning items given back in
//! `input` are dropped from the prompt, so `include: ["reasoning.encrypted_content"]` asks for
//! nothing missing; any other inclusion is refused. `usage` counts the prompt tokens the prefix
//! cache held, and no reasoning tokens apart from the rest of the output.

mod output;
mod request;
mod stream;

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use crate::answer;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::request_log::RequestLog;
use crate::routes::Shared;
use output::Head;
use request::ResponsesRequest;

pub async fn responses(
    State(state): State<Shared>,
    Extension(log): Extension<Arc<RequestLog>>,
    ApiJson(request): ApiJson<ResponsesRequest>,
) -> Result<Response, ApiError> {
    let parsed = request.into_generation(state.config.max_tokens)?;
    log.model(&parsed.generation.model);
    let (model, events) = state.service.generate(parsed.generation).await?;
    log.model(&model.name);
    let head = Head::new(model.name, parsed.settings);
    if parsed.stream {
        let events = answer::opening(events).await?;
        Ok(stream::stream_response(events, head, log.defer()).into_response())
    } else {
        let answer = answer::collect(events, &log).await?;
        Ok(Json(output::whole(&head, &answer)).into_response())
    }
}
