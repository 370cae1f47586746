//! `GET /metrics`: counters and histograms in Prometheus' text format (version 0.0.4), which
//! every Prometheus-compatible scraper reads.
//!
//! Per request, labelled by API and status only: requests (also those the guard layers
//! refuse: the request log is outermost), prompt and generated tokens, time to the first text,
//! and the gaps between text events. Read at scrape time: the queue (waiting, active,
//! capacity) and the models in memory with their bytes. A client names any model it likes, so
//! no per-request metric carries a model name (its series would grow without bound); only the
//! loaded models do, a path outside the cache shown by its last component. Never a prompt, an
//! answer or a key. The prefix cache's hits, misses, reused tokens and bytes are read at scrape
//! time too.
//!
//! When an API key is configured, `/metrics` needs it like `/v1` and `/api` (Prometheus sends
//! it with `authorization: {credentials: KEY}` in its scrape config): model names and usage are
//! what the key keeps from the network. Without a key the server listens on loopback only,
//! unless told otherwise, and `/metrics` is open like everything else.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::error::ApiError;
use crate::routes::Shared;
use crate::service::Usage;
use crate::worker::Worker;

/// The server's metrics: one registry per server, shared by the request log (which records)
/// and the `/metrics` route (which reads).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    prompt_tokens: Family<ApiLabel, Counter>,
    generated_tokens: Family<ApiLabel, Counter>,
    time_to_first_token: Family<ApiLabel, Histogram, Buckets>,
    token_gap: Family<ApiLabel, Histogram, Buckets>,
    waiting: Gauge,
    active: Gauge,
    capacity: Gauge,
    model_memory: Family<ModelLabel, Gauge>,
    prefix_hits: Counter,
    prefix_misses: Counter,
    prefix_reused_tokens: Counter,
    prefix_bytes: Gauge,
    /// One scrape at a time: the gauges read at scrape time are set, then encoded.
    scraping: Mutex<()>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    api: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ApiLabel {
    api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: String,
}

/// A histogram's upper bounds in seconds: `count` doublings from `start`.
#[derive(Clone, Copy, Debug)]
struct Buckets {
    start: f64,
    count: u16,
}

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        Histogram::new(exponential_buckets(self.start, 2.0, self.count))
    }
}

/// The first text comes after queueing, loading and the prompt: 25 ms to about 100 s.
const FIRST_TOKEN_BUCKETS: Buckets = Buckets {
    start: 0.025,
    count: 13,
};
/// One decoding step with the other generations' steps between: 1 ms to about 4 s.
const TOKEN_GAP_BUCKETS: Buckets = Buckets {
    start: 0.001,
    count: 13,
};

impl Metrics {
    pub fn new() -> Metrics {
        let metrics = Metrics {
            registry: Registry::with_prefix("mlxk"),
            requests: Family::default(),
            prompt_tokens: Family::default(),
            generated_tokens: Family::default(),
            time_to_first_token: Family::new_with_constructor(FIRST_TOKEN_BUCKETS),
            token_gap: Family::new_with_constructor(TOKEN_GAP_BUCKETS),
            waiting: Gauge::default(),
            active: Gauge::default(),
            capacity: Gauge::default(),
            model_memory: Family::default(),
            prefix_hits: Counter::default(),
            prefix_misses: Counter::default(),
            prefix_reused_tokens: Counter::default(),
            prefix_bytes: Gauge::default(),
            scraping: Mutex::new(()),
        };
        metrics.described()
    }

    /// Names and describes each metric in the registry.
    fn described(mut self) -> Metrics {
        let registry = &mut self.registry;
        registry.register(
            "requests",
            "Requests answered, by API and HTTP status, refusals included",
            self.requests.clone(),
        );
        registry.register(
            "prompt_tokens",
            "Prompt tokens read, by API",
            self.prompt_tokens.clone(),
        );
        registry.register(
            "generated_tokens",
            "Tokens generated, by API",
            self.generated_tokens.clone(),
        );
        registry.register_with_unit(
            "time_to_first_token",
            "From a request's arrival to its first text, queueing and loading included, by API",
            Unit::Seconds,
            self.time_to_first_token.clone(),
        );
        registry.register_with_unit(
            "inter_token",
            "Gaps between one generation's text events, by API",
            Unit::Seconds,
            self.token_gap.clone(),
        );
        registry.register(
            "queue_waiting",
            "Requests waiting for a place",
            self.waiting.clone(),
        );
        registry.register("queue_active", "Generations running", self.active.clone());
        registry.register(
            "queue_capacity",
            "Requests that may wait at most",
            self.capacity.clone(),
        );
        registry.register_with_unit(
            "model_memory",
            "Models in memory and what they hold",
            Unit::Bytes,
            self.model_memory.clone(),
        );
        registry.register(
            "prefix_cache_hits",
            "Prompts that started from kept keys and values",
            self.prefix_hits.clone(),
        );
        registry.register(
            "prefix_cache_misses",
            "Prompts that found nothing to reuse",
            self.prefix_misses.clone(),
        );
        registry.register(
            "prefix_cache_reused_tokens",
            "Prompt tokens not computed again",
            self.prefix_reused_tokens.clone(),
        );
        registry.register_with_unit(
            "prefix_cache",
            "Keys and values the prefix cache holds now",
            Unit::Bytes,
            self.prefix_bytes.clone(),
        );
        self
    }

    /// A request's first text, `after` its arrival.
    pub fn first_token(&self, api: &'static str, after: Duration) {
        let api = ApiLabel { api };
        self.time_to_first_token
            .get_or_create(&api)
            .observe(after.as_secs_f64());
    }

    /// The time between two text events of one generation.
    pub fn token_gap(&self, api: &'static str, gap: Duration) {
        let api = ApiLabel { api };
        self.token_gap
            .get_or_create(&api)
            .observe(gap.as_secs_f64());
    }

    /// A request answered, with the tokens it read and generated, if any.
    pub fn answered(&self, api: &'static str, status: u16, usage: Option<Usage>) {
        self.requests
            .get_or_create(&RequestLabels { api, status })
            .inc();
        if let Some(usage) = usage {
            let api = ApiLabel { api };
            let count = |tokens: usize| u64::try_from(tokens).unwrap_or(u64::MAX);
            self.prompt_tokens
                .get_or_create(&api)
                .inc_by(count(usage.prompt_tokens));
            self.generated_tokens
                .get_or_create(&api)
                .inc_by(count(usage.completion_tokens));
        }
    }

    /// Everything in Prometheus' text format, the queue and the models read now.
    fn scrape(&self, worker: &Worker) -> Result<String, std::fmt::Error> {
        let _one_at_a_time = self
            .scraping
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (waiting, active, capacity) = worker.queue().counts();
        let gauge = |count: usize| i64::try_from(count).unwrap_or(i64::MAX);
        self.waiting.set(gauge(waiting));
        self.active.set(gauge(active));
        self.capacity.set(gauge(capacity));
        self.model_memory.clear();
        for resident in worker.residents() {
            let model = ModelLabel {
                model: shown_model(&resident.name),
            };
            let bytes = i64::try_from(resident.memory_bytes).unwrap_or(i64::MAX);
            self.model_memory.get_or_create(&model).set(bytes);
        }
        // The worker's totals; a counter only grows, by what it has not counted yet.
        let prefix = worker.prefix_cache();
        for (counter, total) in [
            (&self.prefix_hits, prefix.hits),
            (&self.prefix_misses, prefix.misses),
            (&self.prefix_reused_tokens, prefix.reused_tokens),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        self.prefix_bytes
            .set(i64::try_from(prefix.bytes).unwrap_or(i64::MAX));
        let mut text = String::new();
        prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// A model's name as a label: a folder outside the cache by its last component, never the
/// directories of this machine.
fn shown_model(name: &str) -> String {
    if !mlxk_core::workspace::looks_like_path(name) {
        return name.to_string();
    }
    std::path::Path::new(name)
        .file_name()
        .map(|last| last.to_string_lossy().into_owned())
        .unwrap_or_else(|| "local folder".to_string())
}

/// Which API a path belongs to: a label from a fixed set, whatever path a client sends.
pub fn api_of(path: &str) -> &'static str {
    match path {
        "/v1/chat/completions" => "openai_chat",
        "/v1/completions" => "openai_completions",
        "/v1/embeddings" => "openai_embeddings",
        "/v1/models" => "openai_models",
        p if p.starts_with("/v1/models/") => "openai_models",
        "/v1/responses" => "responses",
        "/v1/messages" => "anthropic_messages",
        "/v1/messages/count_tokens" => "anthropic_count_tokens",
        "/api/chat" => "ollama_chat",
        "/api/generate" => "ollama_generate",
        "/api/embed" => "ollama_embed",
        "/api/embeddings" => "ollama_embeddings",
        "/api/tags" => "ollama_tags",
        "/api/show" => "ollama_show",
        "/api/ps" => "ollama_ps",
        "/api/version" => "ollama_version",
        "/health" => "health",
        "/metrics" => "metrics",
        _ => "other",
    }
}

pub async fn metrics(
    State(state): State<Shared>,
    Extension(metrics): Extension<Arc<Metrics>>,
) -> Response {
    match metrics.scrape(state.service.worker()) {
        Ok(text) => (
            [(header::CONTENT_TYPE, prometheus_text::CONTENT_TYPE)],
            text,
        )
            .into_response(),
        Err(_) => ApiError::internal("the metrics could not be encoded").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_names_its_api_from_a_fixed_set() {
        assert_eq!(api_of("/v1/chat/completions"), "openai_chat");
        assert_eq!(api_of("/v1/models/mlx-community/x"), "openai_models");
        assert_eq!(api_of("/api/chat"), "ollama_chat");
        assert_eq!(api_of("/v1/chat/completions/"), "other");
        assert_eq!(api_of("/anything/a/client/sends"), "other");
    }

    #[test]
    fn a_folder_model_is_shown_without_its_directories() {
        assert_eq!(shown_model("mlx-community/Qwen"), "mlx-community/Qwen");
        assert_eq!(shown_model("/Users/me/models/my-model"), "my-model");
        assert_eq!(shown_model("./my-model"), "my-model");
        assert_eq!(shown_model("."), "local folder");
    }
}
