//! What the hub was asked, for tests to read back (`GET /_testhub/requests` or
//! [`crate::TestHub::requests`]): method, path, `Range`, whether `Authorization` was present
//! (never its value), the status, and for uploads how many body bytes arrived.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub range: Option<String>,
    pub authorization: bool,
    pub status: u16,
    /// Body bytes received: counted by the upload handlers, else the `Content-Length`.
    pub request_bytes: Option<u64>,
    /// What a handler wants tests to see, e.g. the paths of a commit's operations.
    pub detail: Option<String>,
}

/// Attached by handlers to their response; the middleware moves it into the record.
#[derive(Debug, Clone, Default)]
pub struct LogNote {
    pub request_bytes: Option<u64>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct RequestLog {
    records: Arc<Mutex<Vec<RequestRecord>>>,
}

impl RequestLog {
    pub fn snapshot(&self) -> Vec<RequestRecord> {
        self.lock().clone()
    }

    pub fn clear(&self) {
        self.lock().clear();
    }

    fn push(&self, record: RequestRecord) {
        self.lock().push(record);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RequestRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Middleware: records every request except the test endpoints' own.
pub async fn record(State(log): State<RequestLog>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    if path.starts_with("/_testhub/") && !path.starts_with("/_testhub/lfs-upload/") {
        return next.run(request).await;
    }
    let method = request.method().to_string();
    let query = request.uri().query().map(str::to_string);
    let headers = request.headers();
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let authorization = headers.contains_key(header::AUTHORIZATION);
    let content_length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut response = next.run(request).await;
    let note = response
        .extensions_mut()
        .remove::<LogNote>()
        .unwrap_or_default();
    log.push(RequestRecord {
        method,
        path,
        query,
        range,
        authorization,
        status: response.status().as_u16(),
        request_bytes: note.request_bytes.or(content_length),
        detail: note.detail,
    });
    response
}
