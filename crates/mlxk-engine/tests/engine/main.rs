//! The engine's tests in one binary: MLX operations against independent references, and every
//! architecture (and the demo model, and the real models converted from GGUF) token for token
//! against mlx-lm.

use std::sync::{Mutex, MutexGuard};

mod batch;
mod config_without_weights;
mod constrained;
mod embedding_tiny;
mod mlx_smoke;
mod parity_demo;
mod parity_real;
mod parity_tiny;
mod parity_whisper;
mod prefix_cache;
mod reference;
mod speech_model;
mod whisper_mel;

/// MLX is not thread-safe: every test that touches it holds this.
fn mlx() -> MutexGuard<'static, ()> {
    static MLX: Mutex<()> = Mutex::new(());
    MLX.lock().unwrap_or_else(|p| p.into_inner())
}
