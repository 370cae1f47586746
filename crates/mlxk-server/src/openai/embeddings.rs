//! `POST /v1/embeddings`, as OpenAI defines it: `input` as a string, strings or token arrays,
//! `encoding_format` `float` or `base64` (little-endian float32, what the official Python client
//! asks for by default), `dimensions`. Our additions: `truncate: false` refuses an input longer
//! than the model reads (else it is cut, and its item says `"truncated": true`), and
//! `input_type` `query` or `document` for models that embed them differently.

use std::sync::Arc;

use axum::extract::State;
use axum::{Extension, Json};
use base64::Engine as _;
use mlxk_engine::{Embedded, EmbeddingInput, InputKind};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::request_log::RequestLog;
use crate::routes::Shared;
use crate::service::EmbeddingRequest;
use crate::worker::KeepAlive;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Debug, Deserialize, PartialEq, Eq, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum Encoding {
    #[default]
    Float,
    Base64,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum InputType {
    Query,
    Document,
}

#[derive(Debug, Deserialize)]
pub struct EmbeddingsBody {
    model: String,
    input: Input,
    #[serde(default)]
    encoding_format: Encoding,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(default)]
    truncate: Option<bool>,
    #[serde(default)]
    input_type: Option<InputType>,
    /// OpenAI's end-user id: accepted, used for nothing.
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
}

impl EmbeddingsBody {
    fn into_request(self) -> (EmbeddingRequest, Encoding) {
        let inputs = match self.input {
            Input::Text(text) => vec![EmbeddingInput::Text(text)],
            Input::Texts(texts) => texts.into_iter().map(EmbeddingInput::Text).collect(),
            Input::Tokens(ids) => vec![EmbeddingInput::Tokens(ids)],
            Input::TokenLists(lists) => lists.into_iter().map(EmbeddingInput::Tokens).collect(),
        };
        let kind = match self.input_type {
            Some(InputType::Query) => InputKind::Query,
            Some(InputType::Document) | None => InputKind::Document,
        };
        (
            EmbeddingRequest {
                keep_alive: KeepAlive::Server,
                model: self.model,
                inputs,
                kind,
                dimensions: self.dimensions,
                truncate: self.truncate.unwrap_or(true),
            },
            self.encoding_format,
        )
    }
}

pub async fn embeddings(
    State(state): State<Shared>,
    Extension(log): Extension<Arc<RequestLog>>,
    ApiJson(body): ApiJson<EmbeddingsBody>,
) -> Result<Json<Value>, ApiError> {
    let (request, encoding) = body.into_request();
    log.model(&request.model);
    let (model, vectors) = state.service.embed(request).await?;
    log.model(&model.name);
    let tokens: usize = vectors.iter().map(|v| v.tokens).sum();
    log.read_tokens(tokens);
    let data: Vec<Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| item(index, v, encoding))
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": model.name,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

fn item(index: usize, embedded: &Embedded, encoding: Encoding) -> Value {
    let embedding = match encoding {
        Encoding::Float => json!(embedded.vector),
        Encoding::Base64 => {
            let bytes: Vec<u8> = embedded
                .vector
                .iter()
                .flat_map(|x| x.to_le_bytes())
                .collect();
            json!(base64::engine::general_purpose::STANDARD.encode(bytes))
        }
    };
    let mut item = json!({"object": "embedding", "index": index, "embedding": embedding});
    if embedded.truncated {
        item["truncated"] = json!(true);
    }
    item
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_is_little_endian_float32() {
        let embedded = Embedded {
            vector: vec![1.0, -2.5],
            tokens: 3,
            truncated: true,
        };
        let item = item(0, &embedded, Encoding::Base64);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(item["embedding"].as_str().unwrap())
            .unwrap();
        let values: Vec<f32> = bytes
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(values, [1.0, -2.5]);
        assert_eq!(item["truncated"], true);
    }

    #[test]
    fn every_input_shape_parses() {
        for (input, count) in [
            (json!("one"), 1),
            (json!(["a", "b"]), 2),
            (json!([101, 7592, 102]), 1),
            (json!([[101, 102], [101, 7592, 102]]), 2),
        ] {
            let body: EmbeddingsBody =
                serde_json::from_value(json!({"model": "m", "input": input})).unwrap();
            let (request, encoding) = body.into_request();
            assert_eq!((request.inputs.len(), encoding), (count, Encoding::Float));
            assert!(request.truncate);
        }
        let bad: Result<EmbeddingsBody, _> =
            serde_json::from_value(json!({"model": "m", "input": "x", "encoding_format": "int8"}));
        assert!(bad.is_err());
    }
}
