//! MLX Knife's inference engine, on mlx-rs and MLX.
//!
//! MLX runs on Metal on macOS and on the CPU elsewhere (the official `mlx-cpu` wheel). The
//! engine loads MLX model folders (one file per architecture under `models/`), tokenizes and
//! renders chat templates, and runs the token loop. The CLI, the server and the app all call it.
//! Beside the language models: [`EmbeddingModel`] (text to vectors) and [`SpeechModel`]
//! (Whisper, speech to text; `models/whisper` is its network, `speech/` the log-mel front end
//! and mlx-whisper's decoding and seek loop, which its greedy tokens equal).
//!
//! # Adding an architecture
//!
//! Written from adding Qwen3 and Gemma 3:
//!
//! 1. **A file**, `models/<model_type>.rs`: an `Args` struct deserialized from `config.json`
//!    (serde defaults for what configs leave out, as mlx-lm's `ModelArgs`), and
//!    `pub fn load(config: &Value, weights: &mut Weights) -> Result<impl LanguageModel>`. A
//!    pre-norm decoder (Llama, Qwen) is a [`models`] `Decoder` from a `DecoderShape`
//!    (`AttentionShape { qk_norm: true, .. }` for per-head query/key norms); anything else
//!    (Gemma's sandwich norms, soft-capping) writes its blocks with `models/common`'s pieces.
//!    Take weights by their checkpoint names (`weights.linear("model.layers.0.self_attn.q_proj")`):
//!    a quantized layer is found by its `scales`, and every tensor asked for that the
//!    checkpoint lacks is named in one error (`Weights::finish`), so a wrong name cannot go
//!    unnoticed.
//! 2. **A table entry**: the `model_type` in `models::load`'s match, and in
//!    `mlxk_core::architectures::SUPPORTED_ARCHITECTURES` (what list, show, the server and the
//!    app call runnable). Limits a config can break belong in `models/config_check`.
//! 3. **A tiny model case**: a config in `tests/reference/make_tiny_models.py` (mlx-lm builds
//!    it with random weights and records its tokens and log-probabilities), and a line in the
//!    `parity!` list of `tests/engine/parity_tiny.rs`. The test fails until both agree with the
//!    table, and then until our tokens equal mlx-lm's under every load plan.

pub mod batch;
mod checkpoint;
pub mod completion;
pub mod constraint;
pub mod embedding;
mod error;
pub mod generate;
mod kv_cache;
pub mod load_plan;
pub mod logprobs;
pub mod models;
pub mod prefix_cache;
pub mod runtime;
pub mod sampler;
pub mod speech;
pub mod text;
mod text_model;
pub mod tokenizer;
pub mod tool_calls;
pub mod tool_use;

pub use batch::{Batch, Poll, PrefillBudget, SeqId, SharedBatch, StepPlan};
pub use completion::TextGeneration;
pub use embedding::{Embedded, EmbeddingInput, EmbeddingModel, InputKind, Pooling, PoolingMode};
pub use error::{EngineError, Result};
pub use generate::{generate, Control, FinishReason, Generation, Generator, Sequence};
pub use load_plan::{LoadPlan, LoadPolicy, WeightLayout};
pub use logprobs::{Candidate, TokenLogprob};
pub use models::{load, plan, Group, LanguageModel, LoadedModel, Positions};
pub use prefix_cache::{PrefixCache, PrefixStats, SharedPrefixCache};
pub use runtime::{Blas, DeviceKind, RuntimeInfo};
pub use sampler::{Sampler, SamplingChoice, SamplingParams, DEFAULT_TEMPERATURE, DEFAULT_TOP_P};
pub use speech::{
    resolve_language, Segment, SpeechModel, Task, TranscribeOptions, Transcript, Transcription,
    SAMPLE_RATE,
};
pub use text::{Reasoning, TextEvent, TextStream};
pub use text_model::{prompt_tokens, AnswerOptions, Prompt, TextModel};
pub use tokenizer::{ChatMessage, Tokenizer};
