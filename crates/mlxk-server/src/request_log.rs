//! One log line per request: method, path, model, status, prompt / cached / generated tokens,
//! time to first token and duration. Never a prompt, an answer or a key. A streamed answer is
//! logged when its stream ends, when its tokens are known. The same moments feed the
//! [`Metrics`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::metrics::{self, Metrics};
use crate::service::{Event, Usage};

/// What is known of one request so far; handlers add to it, the middleware or the end of a
/// stream writes it once.
pub struct RequestLog {
    method: String,
    path: String,
    /// The API the path belongs to, as the metrics label it.
    api: &'static str,
    metrics: Arc<Metrics>,
    started: Instant,
    seen: Mutex<Seen>,
    /// The answer streams: the line waits for the stream's end.
    deferred: AtomicBool,
    written: AtomicBool,
}

#[derive(Default)]
struct Seen {
    model: Option<String>,
    usage: Option<Usage>,
    first_token: Option<Duration>,
    last_text: Option<Instant>,
}

impl RequestLog {
    fn new(method: &str, path: &str, metrics: Arc<Metrics>) -> Self {
        RequestLog {
            method: method.to_string(),
            path: path.to_string(),
            api: metrics::api_of(path),
            metrics,
            started: Instant::now(),
            seen: Mutex::default(),
            deferred: AtomicBool::new(false),
            written: AtomicBool::new(false),
        }
    }

    /// The model as the client named it: cut short and without control characters, so that
    /// a name can never forge or break a log line.
    pub fn model(&self, name: &str) {
        let shown: String = name
            .chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .take(200)
            .collect();
        self.seen().model = Some(shown);
    }

    /// Notes what a generation's event tells: its first text and the gaps between its texts,
    /// its token counts.
    pub fn saw(&self, event: &Event) {
        let mut seen = self.seen();
        match event {
            Event::Text(_) => {
                let now = Instant::now();
                match seen.last_text.replace(now) {
                    Some(last) => self.metrics.token_gap(self.api, now - last),
                    None => {
                        let first = now - self.started;
                        seen.first_token = Some(first);
                        self.metrics.first_token(self.api, first);
                    }
                }
            }
            Event::Done { usage, .. } => seen.usage = Some(*usage),
            _ => {}
        }
    }

    /// The tokens an answer without a generation read (embeddings).
    pub fn read_tokens(&self, prompt_tokens: usize) {
        self.seen().usage = Some(Usage {
            prompt_tokens,
            cached_tokens: 0,
            completion_tokens: 0,
        });
    }

    /// The answer streams: [`StreamEnd`] writes the line.
    pub fn defer(self: &Arc<Self>) -> StreamEnd {
        self.deferred.store(true, Ordering::SeqCst);
        StreamEnd(Arc::clone(self))
    }

    fn write(&self, status: u16) {
        if self.written.swap(true, Ordering::SeqCst) {
            return;
        }
        let seen = self.seen();
        let duration_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let ttft_ms = seen.first_token.map(|d| (d.as_secs_f64() * 1000.0).round());
        self.metrics.answered(self.api, status, seen.usage);
        let usage = seen.usage.unwrap_or_default();
        // Liveness probes every few seconds would drown the rest.
        if self.path == "/health" {
            tracing::debug!(method = %self.method, path = %self.path, status, "request");
            return;
        }
        match &seen.model {
            Some(model) => tracing::info!(
                method = %self.method,
                path = %self.path,
                model = %model,
                status,
                prompt_tokens = usage.prompt_tokens,
                cached_tokens = usage.cached_tokens,
                generated_tokens = usage.completion_tokens,
                ttft_ms,
                duration_ms = duration_ms.round(),
                "request"
            ),
            None => tracing::info!(
                method = %self.method,
                path = %self.path,
                status,
                duration_ms = duration_ms.round(),
                "request"
            ),
        }
    }

    fn seen(&self) -> std::sync::MutexGuard<'_, Seen> {
        self.seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Writes a streamed request's line when the stream is dropped (ended or abandoned).
pub struct StreamEnd(Arc<RequestLog>);

impl StreamEnd {
    pub fn log(&self) -> &RequestLog {
        &self.0
    }
}

impl Drop for StreamEnd {
    fn drop(&mut self) {
        self.0.write(200);
    }
}

/// The outermost layer: every request gets a [`RequestLog`] and, unless its answer streams, its
/// line as the response leaves. The server's [`Metrics`] go along for `/metrics` to read.
pub async fn log_requests(
    State(metrics): State<Arc<Metrics>>,
    mut request: Request,
    next: Next,
) -> Response {
    let log = Arc::new(RequestLog::new(
        request.method().as_str(),
        request.uri().path(),
        Arc::clone(&metrics),
    ));
    request.extensions_mut().insert(Arc::clone(&log));
    request.extensions_mut().insert(metrics);
    let response = next.run(request).await;
    if !log.deferred.load(Ordering::SeqCst) {
        log.write(response.status().as_u16());
    }
    response
}
