//! Errors in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`, with the status.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::service::ServiceError;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<&'static str>,
    pub param: Option<&'static str>,
    pub message: String,
}

impl ApiError {
    fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            kind,
            code,
            param: None,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            message,
        )
    }

    pub fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            Some("invalid_api_key"),
            "missing or wrong API key",
        )
    }

    /// A request the server will not answer from where it came (host, origin).
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            Some(code),
            message,
        )
    }

    pub fn unsupported_media_type() -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            Some("unsupported_media_type"),
            "the request body must be JSON, sent with 'Content-Type: application/json'",
        )
    }

    /// The audio routes take OpenAI's multipart upload only.
    pub fn unsupported_media_type_for_audio() -> Self {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_request_error",
            Some("unsupported_media_type"),
            "send the audio as 'multipart/form-data' with a 'file' field, as OpenAI's clients do",
        )
    }

    fn model_not_found(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("model_not_found"),
            message,
        )
        .with_param("model")
    }

    /// The named model's own files make it unusable (an impossible `config.json`).
    fn model_unusable(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("model_unusable"),
            message,
        )
        .with_param("model")
    }

    pub fn too_large(limit: usize) -> Self {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            Some("request_too_large"),
            format!("the request body is larger than {limit} bytes"),
        )
    }

    pub fn body_timeout() -> Self {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request_error",
            Some("request_timeout"),
            "the request body did not arrive in time",
        )
    }

    /// The server cannot take the request now; the client may retry (`Retry-After`).
    fn unavailable(code: &'static str, message: String) -> Self {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            Some(code),
            message,
        )
    }

    fn insufficient_memory(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "server_error",
            Some("insufficient_memory"),
            message,
        )
    }

    fn context_length_exceeded(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("context_length_exceeded"),
            message,
        )
        .with_param("messages")
    }

    /// A route the server knows but does not serve yet.
    pub fn not_implemented(message: impl Into<String>) -> Self {
        ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "invalid_request_error",
            Some("not_implemented"),
            message,
        )
    }

    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        tracing::error!(error = %message, "request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            None,
            message,
        )
    }

    /// The body a client sees. Messages come from the engine, MLX and the file system too, so
    /// every absolute path in them is cut to its last component: a client learns which file
    /// and what went wrong, never this machine's directories (the log keeps the whole message).
    pub fn body(&self) -> serde_json::Value {
        let message = without_directories(&self.message);
        json!({"error": {"message": message, "type": self.kind, "param": self.param, "code": self.code}})
    }
}

/// The generation service's failures in OpenAI's terms.
impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        let message = error.to_string();
        match error {
            ServiceError::ModelNotFound(_) => ApiError::model_not_found(message),
            ServiceError::ModelUnusable(_) => ApiError::model_unusable(message),
            ServiceError::InvalidPrompt(_) => ApiError::bad_request(message),
            ServiceError::WrongModelKind(_) => ApiError::bad_request(message).with_param("model"),
            ServiceError::InvalidInput(param, _) => {
                ApiError::bad_request(message).with_param(param)
            }
            ServiceError::ContextLengthExceeded(_) => ApiError::context_length_exceeded(message),
            ServiceError::InsufficientMemory(_) => ApiError::insufficient_memory(message),
            ServiceError::Busy => ApiError::unavailable("server_busy", message),
            ServiceError::QueueTimeout(_) => ApiError::unavailable("queue_timeout", message),
            ServiceError::ShuttingDown => ApiError::unavailable("shutting_down", message),
            ServiceError::TooLarge(_) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid_request_error",
                Some("request_too_large"),
                message,
            )
            .with_param("file"),
            ServiceError::Internal(_) => ApiError::internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// Where a path may start: at the start of the text or after one of these.
const PATH_OPENERS: &[char] = &[' ', '\t', '\n', '\'', '"', '`', '(', '[', '{', '<', '='];
/// Where a path ends, but for the spaces [`path_end`] looks past.
const PATH_CLOSERS: &[char] = &[' ', '\t', '\n', '\'', '"', '`', ')', ']', '}', '>', ','];

/// Cuts every absolute path in `text` to its last component (`/a/b/config.json: denied` becomes
/// `config.json: denied`). A path starts with `/` at the start of the text or after a space,
/// quote or bracket, holds at least two `/`, and runs to the next quote, bracket or comma, or
/// to the next space that [`path_end`] does not take for part of a folder name
/// (`/Users/a/Library/Application Support/…`, an `HF_HOME` on `/Volumes/My Disk`).
pub fn without_directories(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut at_boundary = true;
    while let Some(c) = rest.chars().next() {
        if c == '/' && at_boundary {
            let end = path_end(rest);
            let path = &rest[..end];
            if path.matches('/').count() >= 2 {
                out.push_str(path.rsplit('/').next().unwrap_or(""));
            } else {
                out.push_str(path);
            }
            rest = &rest[end..];
            at_boundary = false;
            continue;
        }
        out.push(c);
        at_boundary = PATH_OPENERS.contains(&c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The length of the path `text` starts with. A space belongs to it when the word after it
/// goes on deeper into the path: it holds a `/` and starts as a folder name does (not with
/// `/`, a new path, nor with a bracket). So
/// `/a/Application Support/x/config.json: denied` runs to `config.json:`, and the message's own
/// words (`denied`, `failed: 1/2 read`) stay; a `:` before the space ends the path as messages
/// put one there (`PATH: why`) and folder names do not.
fn path_end(text: &str) -> usize {
    let mut end = text.find(PATH_CLOSERS).unwrap_or(text.len());
    while text[end..].starts_with(' ') && !text[..end].ends_with(':') {
        let next = &text[end + 1..];
        let word = &next[..next.find(PATH_CLOSERS).unwrap_or(next.len())];
        let folder_like = word.starts_with(|c: char| c.is_alphanumeric() || "._-~@+".contains(c));
        if !folder_like || !word.contains('/') {
            break;
        }
        end += 1 + word.len();
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_name_files_not_directories() {
        let cases = [
            (
                "loading org/m: reading /home/me/.cache/huggingface/hub/models--org--m/snapshots/abc/config.json: denied",
                "loading org/m: reading config.json: denied",
            ),
            (
                "MLX: [matmul] shapes (1,4) and (8,2) at /root/.cargo/registry/src/index.crates.io-1/mlx-sys-0.7.0/src/mlx-c/mlx/c/ops.cpp:1234",
                "MLX: [matmul] shapes (1,4) and (8,2) at ops.cpp:1234",
            ),
            ("cannot open '/tmp/x/y.json'", "cannot open 'y.json'"),
            ("a/b and 1/2 and / stay", "a/b and 1/2 and / stay"),
            ("no paths here", "no paths here"),
            // Two paths side by side stay two.
            ("copy /a/b/c /d/e/f failed", "copy c f failed"),
        ];
        for (given, expected) in cases {
            assert_eq!(without_directories(given), expected);
        }
        let body = ApiError::internal("reading /srv/cache/hub/x.safetensors failed").body();
        assert_eq!(body["error"]["message"], "reading x.safetensors failed");
    }

    #[test]
    fn paths_with_spaces_are_cut_whole() {
        let cases = [
            (
                "reading /Users/a/Library/Application Support/x/models--org--m/snapshots/abc/config.json: denied",
                "reading config.json: denied",
            ),
            (
                "loading org/m: reading /Volumes/My Disk/hf home/hub/models--org--m/snapshots/abc/model.safetensors: truncated",
                "loading org/m: reading model.safetensors: truncated",
            ),
            // Spaces in several folders, the whole path quoted.
            (
                "cannot open '/Users/Jane Doe/My Models/hub/x y/tokenizer.json'",
                "cannot open 'tokenizer.json'",
            ),
            // A space in the last component: the name reads whole, nothing before it shows.
            (
                "reading /Users/Jane Doe/models/my config.json failed",
                "reading my config.json failed",
            ),
            // The message's own words after the path stay, slashes and all.
            (
                "reading /srv/My Cache/hub/x.safetensors: read 1/2 of the bytes",
                "reading x.safetensors: read 1/2 of the bytes",
            ),
            (
                "at /root/.cargo/registry/src/index.crates.io-1/mlx-sys-0.7.0/src/mlx-c/mlx/c/ops.cpp:1234 (and/or elsewhere)",
                "at ops.cpp:1234 (and/or elsewhere)",
            ),
        ];
        for (given, expected) in cases {
            assert_eq!(without_directories(given), expected, "{given}");
        }
    }
}
