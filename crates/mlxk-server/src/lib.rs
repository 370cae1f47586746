//! MLX Knife's local OpenAI-compatible API server.
//!
//! [`start`] binds, serves and returns a [`ServerHandle`] with the bound address and a graceful
//! [`ServerHandle::stop`]; `mlxk serve` and the menu-bar app both run it in-process. All MLX
//! work happens on one inference worker thread that interleaves the active generations token by
//! token, so HTTP stays responsive and no request waits for another to finish.
//!
//! Layers, outside in: `connections` (accepting, limits), `request_log` (one line per
//! request, never content), `guard` (host, origin, content type),
//! `routes`, a protocol module (`openai`, `responses`, `anthropic`, `ollama`: translators, each
//! parsing requests into the protocol-neutral `service` with the shared `checks`, and shaping
//! its events, a whole `answer` or a stream), then the `service`, which resolves models and queues jobs for the `worker`, which steps generations
//! on a [`backend::Backend`] (the MLX engine, or a stand-in in tests).

mod answer;
mod anthropic;
pub mod backend;
mod checks;
mod config;
mod connections;
mod error;
mod extract;
mod guard;
mod handle;
mod metrics;
mod ollama;
mod openai;
mod request_log;
mod responses;
mod routes;
mod service;
mod worker;

pub use config::{ServerConfig, UnprotectedExposure};
pub use error::ApiError;
pub use handle::{start, start_with_backend, Models, ServerHandle, StartError, Stopped};
pub use service::{ServiceError, Usage};
pub use worker::{Resident, Unloaded};

/// Entry points for the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::openai::{check_request, Endpoint};
}
