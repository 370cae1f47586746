//! MLX Knife's local OpenAI-compatible API server.
//!
//! [`start`] binds, serves and returns a [`ServerHandle`] with the bound address and a graceful
//! [`ServerHandle::stop`]; `mlxk serve` and the menu-bar app both run it in-process. All MLX
//! work happens on one inference worker thread that interleaves the active generations token by
//! token, so HTTP stays responsive and no request waits for another to finish.

mod api;
mod config;
mod connections;
mod error;
mod guard;
mod handle;
mod worker;

pub use config::{ServerConfig, UnprotectedExposure};
pub use error::ApiError;
pub use handle::{start, ServerHandle, StartError, Stopped};

/// Entry points for the fuzz targets in `fuzz/`; not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::api::{check_request, Endpoint};
}
