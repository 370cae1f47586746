//! MLX Knife's inference engine, on mlx-rs and MLX.
//!
//! MLX runs on Metal on macOS and on the CPU elsewhere (the official `mlx-cpu` wheel). The
//! engine loads MLX model folders (one file per architecture under `models/`), tokenizes and
//! renders chat templates, and runs the token loop. The CLI, the server and the app all call it.

pub mod completion;
mod error;
pub mod generate;
mod kv_cache;
pub mod load_plan;
pub mod models;
pub mod runtime;
pub mod sampler;
pub mod text;
pub mod tokenizer;
mod weights;

pub use completion::TextGeneration;
pub use error::{EngineError, Result};
pub use generate::{generate, Control, FinishReason, Generation, Generator};
pub use load_plan::{LoadPlan, LoadPolicy, WeightLayout};
pub use models::{load, load_for_generation, plan, LanguageModel, LoadedModel, Positions};
pub use runtime::{Blas, DeviceKind, RuntimeInfo};
pub use sampler::{Sampler, SamplingParams};
pub use text::{TextEvent, TextStream};
pub use tokenizer::{ChatMessage, Tokenizer};
