//! What the worker runs generations on: the MLX engine, or, in tests, any deterministic
//! stand-in. A backend lives on the worker thread (MLX state never leaves it), holds at most
//! one model, and hands out generations the worker steps one token at a time.

use mlxk_core::usage::UsageLog;
use mlxk_core::{HubCache, RunnableModel};
use mlxk_engine::{
    AnswerOptions, Embedded, EmbeddingInput, EmbeddingModel, EngineError, FinishReason, InputKind,
    LoadPolicy, PrefixStats, Prompt, SpeechModel, TextEvent, TextGeneration, TextModel,
    TokenLogprob, TranscribeOptions, Transcript, Transcription,
};

use crate::service::{ServiceError, Usage};

/// Memory a loaded model needs beyond its weights (activations, caches, the runtime).
const MEMORY_MARGIN: f64 = 1.2;

pub trait Backend {
    /// Loads `model`, replacing the one held (the worker calls it only for another model);
    /// returns the memory it now holds, in bytes.
    fn load(&mut self, model: &RunnableModel) -> Result<u64, ServiceError>;
    /// Frees the model held, if any.
    fn unload(&mut self);
    /// Renders and prefills the prompt on the loaded model.
    fn start(
        &mut self,
        prompt: &Prompt,
        options: &AnswerOptions,
    ) -> Result<Box<dyn Generation>, ServiceError>;

    /// Loads the embedding model `model`, held beside the text model (replacing another
    /// embedding model); returns the memory it now holds, in bytes.
    fn load_embedder(&mut self, model: &RunnableModel) -> Result<u64, ServiceError> {
        Err(ServiceError::ModelUnusable(format!(
            "{}: this server makes no embeddings",
            model.name
        )))
    }
    /// Frees the embedding model held, if any.
    fn unload_embedder(&mut self) {}
    /// What the text model's prefix cache did since it was loaded (`None`: no model, or no
    /// cache).
    fn prefix_stats(&self) -> Option<PrefixStats> {
        None
    }
    /// The vectors of `inputs` from the loaded embedding model, in their order.
    fn embed(
        &mut self,
        _inputs: &[EmbeddingInput],
        _kind: InputKind,
    ) -> Result<Vec<Embedded>, ServiceError> {
        Err(ServiceError::Internal(
            "no embedding model is loaded".into(),
        ))
    }

    /// Loads the speech-to-text model `model`, held beside the text and embedding models
    /// (replacing another speech model); returns the memory it now holds, in bytes.
    fn load_transcriber(&mut self, model: &RunnableModel) -> Result<u64, ServiceError> {
        Err(ServiceError::ModelUnusable(format!(
            "{}: this server transcribes no audio",
            model.name
        )))
    }
    /// Frees the speech-to-text model held, if any.
    fn unload_transcriber(&mut self) {}
    /// Starts transcribing 16 kHz mono `samples` on the loaded speech-to-text model (its
    /// spectrogram, the language); the worker then steps it a window at a time.
    fn start_transcription(
        &mut self,
        _samples: Vec<f32>,
        _options: TranscribeOptions,
    ) -> Result<Box<dyn TranscriptionRun>, ServiceError> {
        Err(ServiceError::Internal(
            "no speech-to-text model is loaded".into(),
        ))
    }
}

/// One running transcription.
pub trait TranscriptionRun {
    /// Does the next slice of work (an encoder layer, or a few tokens of a window); `Ok(true)` once
    /// the audio is done.
    fn step(&mut self) -> Result<bool, ServiceError>;
    /// The whole transcript (what was decoded, if it ended early).
    fn finish(self: Box<Self>) -> Transcript;
}

/// One running generation.
pub trait Generation {
    /// The text of the next token (often none, sometimes several pieces); `None` once over.
    fn next_events(&mut self) -> Result<Option<Vec<TextEvent>>, ServiceError>;
    /// Ends before the next token; what was held back still comes out of `next_events`.
    fn finish(&mut self, reason: FinishReason);
    /// Set once the generation has ended.
    fn finish_reason(&self) -> Option<FinishReason>;
    /// How it ended (never finished counts as cancelled) and the tokens it used.
    fn end(self: Box<Self>) -> (FinishReason, Usage);
    /// The stop string the answer ended at, if it ended at one (not at the end of its turn).
    fn matched_stop(&self) -> Option<String> {
        None
    }
    /// The log-probabilities of the tokens chosen since the last call, when they were asked
    /// for.
    fn take_logprobs(&mut self) -> Result<Vec<TokenLogprob>, ServiceError> {
        Ok(Vec::new())
    }
}

/// Makes the backend on the worker thread.
pub type BackendFactory = Box<dyn FnOnce() -> Box<dyn Backend> + Send>;

/// The real backend: MLX models from the cache.
pub struct MlxBackend {
    policy: LoadPolicy,
    /// The prefix cache budget of each text model loaded.
    prompt_cache_bytes: u64,
    usage: UsageLog,
    loaded: Option<TextModel>,
    embedder: Option<EmbeddingModel>,
    transcriber: Option<SpeechModel>,
}

impl MlxBackend {
    pub fn new(policy: LoadPolicy, cache: &HubCache, prompt_cache_bytes: u64) -> Self {
        MlxBackend {
            policy,
            prompt_cache_bytes,
            usage: UsageLog::for_cache(cache),
            loaded: None,
            embedder: None,
            transcriber: None,
        }
    }

    /// Refuses a model that would not fit in the memory free now.
    fn check_memory(&self, model: &RunnableModel) -> Result<(), ServiceError> {
        let plan = mlxk_engine::plan(&model.dir, &self.policy).map_err(load_error(model))?;
        let mut system = sysinfo::System::new();
        system.refresh_memory();
        let needed = (plan.memory_bytes as f64 * MEMORY_MARGIN) as u64;
        let available = system.available_memory();
        if available > 0 && needed > available {
            return Err(ServiceError::InsufficientMemory(format!(
                "{} needs about {} MB but only {} MB are free",
                model.name,
                needed / 1_000_000,
                available / 1_000_000
            )));
        }
        Ok(())
    }
}

impl Backend for MlxBackend {
    fn load(&mut self, model: &RunnableModel) -> Result<u64, ServiceError> {
        self.unload();
        self.check_memory(model)?;
        let mut loaded = TextModel::load(&model.dir, &self.policy).map_err(load_error(model))?;
        loaded.keep_prefixes(self.prompt_cache_bytes as usize);
        tracing::info!(model = %model.name, layout = ?loaded.plan.layout, "model loaded");
        if loaded.tool_format_unknown {
            tracing::warn!(
                model = %model.name,
                "the chat template takes tools in a tool-call format this server does not know: tools are offered in the generic format and calls in the model's own markup stay in the content"
            );
        }
        if let Err(e) = self.usage.record(&model.name) {
            tracing::warn!(model = %model.name, error = %e, "cannot record when the model was used");
        }
        let memory_bytes = loaded.plan.memory_bytes;
        self.loaded = Some(loaded);
        Ok(memory_bytes)
    }

    fn unload(&mut self) {
        if self.loaded.take().is_some() {
            let _ = mlxk_engine::runtime::clear_memory_cache();
        }
    }

    fn prefix_stats(&self) -> Option<PrefixStats> {
        self.loaded.as_ref().and_then(TextModel::prefix_stats)
    }

    fn start(
        &mut self,
        prompt: &Prompt,
        options: &AnswerOptions,
    ) -> Result<Box<dyn Generation>, ServiceError> {
        let model = self
            .loaded
            .as_ref()
            .ok_or_else(|| ServiceError::Internal("no model is loaded".into()))?;
        let generation = model.start(prompt, options).map_err(|e| match e {
            EngineError::ContextLengthExceeded { .. } => {
                ServiceError::ContextLengthExceeded(e.to_string())
            }
            EngineError::Template(_) | EngineError::Grammar(_) => {
                ServiceError::InvalidPrompt(e.to_string())
            }
            other => ServiceError::Internal(other.to_string()),
        })?;
        Ok(Box::new(MlxGeneration(generation)))
    }

    fn load_embedder(&mut self, model: &RunnableModel) -> Result<u64, ServiceError> {
        self.unload_embedder();
        self.check_memory(model)?;
        let loaded = EmbeddingModel::load(&model.dir, &self.policy).map_err(load_error(model))?;
        tracing::info!(model = %model.name, dimensions = loaded.dimensions(), "embedding model loaded");
        if let Err(e) = self.usage.record(&model.name) {
            tracing::warn!(model = %model.name, error = %e, "cannot record when the model was used");
        }
        let memory_bytes = loaded.plan.memory_bytes;
        self.embedder = Some(loaded);
        Ok(memory_bytes)
    }

    fn unload_embedder(&mut self) {
        if self.embedder.take().is_some() {
            let _ = mlxk_engine::runtime::clear_memory_cache();
        }
    }

    fn embed(
        &mut self,
        inputs: &[EmbeddingInput],
        kind: InputKind,
    ) -> Result<Vec<Embedded>, ServiceError> {
        let model = self
            .embedder
            .as_ref()
            .ok_or_else(|| ServiceError::Internal("no embedding model is loaded".into()))?;
        model.embed(inputs, kind).map_err(|e| match e {
            EngineError::Tokenizer(_) => ServiceError::InvalidPrompt(e.to_string()),
            other => ServiceError::Internal(other.to_string()),
        })
    }

    fn load_transcriber(&mut self, model: &RunnableModel) -> Result<u64, ServiceError> {
        self.unload_transcriber();
        self.check_memory(model)?;
        let loaded = SpeechModel::load(&model.dir, &self.policy).map_err(load_error(model))?;
        tracing::info!(model = %model.name, multilingual = loaded.is_multilingual(), "speech-to-text model loaded");
        if let Err(e) = self.usage.record(&model.name) {
            tracing::warn!(model = %model.name, error = %e, "cannot record when the model was used");
        }
        let memory_bytes = loaded.plan.memory_bytes;
        self.transcriber = Some(loaded);
        Ok(memory_bytes)
    }

    fn unload_transcriber(&mut self) {
        if self.transcriber.take().is_some() {
            let _ = mlxk_engine::runtime::clear_memory_cache();
        }
    }

    fn start_transcription(
        &mut self,
        samples: Vec<f32>,
        options: TranscribeOptions,
    ) -> Result<Box<dyn TranscriptionRun>, ServiceError> {
        let model = self
            .transcriber
            .as_ref()
            .ok_or_else(|| ServiceError::Internal("no speech-to-text model is loaded".into()))?;
        model.check(&options).map_err(speech_error)?;
        let run = model.start(samples, options).map_err(speech_error)?;
        Ok(Box::new(MlxTranscription(run)))
    }
}

/// Options the model cannot honour are the request's fault; the rest is the engine's.
fn speech_error(e: EngineError) -> ServiceError {
    match e {
        EngineError::Speech(_) => ServiceError::InvalidPrompt(e.to_string()),
        other => ServiceError::Internal(other.to_string()),
    }
}

struct MlxTranscription(Transcription);

impl TranscriptionRun for MlxTranscription {
    fn step(&mut self) -> Result<bool, ServiceError> {
        if !self.0.is_done() {
            self.0.step().map_err(speech_error)?;
        }
        Ok(self.0.is_done())
    }

    fn finish(self: Box<Self>) -> Transcript {
        self.0.finish()
    }
}

/// A config no model can have makes the named model unusable (the request cannot succeed as
/// it is), not a fault of the server.
fn load_error(model: &RunnableModel) -> impl Fn(EngineError) -> ServiceError + '_ {
    move |e| match e {
        EngineError::Config(_) => ServiceError::ModelUnusable(format!("{}: {e}", model.name)),
        other => ServiceError::Internal(format!("loading {}: {other}", model.name)),
    }
}

struct MlxGeneration(TextGeneration);

impl Generation for MlxGeneration {
    fn next_events(&mut self) -> Result<Option<Vec<TextEvent>>, ServiceError> {
        self.0
            .next_events()
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    fn finish(&mut self, reason: FinishReason) {
        self.0.finish(reason);
    }

    fn finish_reason(&self) -> Option<FinishReason> {
        self.0.finish_reason()
    }

    fn matched_stop(&self) -> Option<String> {
        self.0.matched_stop().map(str::to_string)
    }

    fn take_logprobs(&mut self) -> Result<Vec<TokenLogprob>, ServiceError> {
        self.0
            .take_logprobs()
            .map_err(|e| ServiceError::Internal(e.to_string()))
    }

    fn end(self: Box<Self>) -> (FinishReason, Usage) {
        let generation = self.0.into_generation();
        let usage = Usage {
            prompt_tokens: generation.prompt_tokens,
            cached_tokens: generation.reused_tokens,
            completion_tokens: generation.tokens.len(),
        };
        (generation.finish_reason, usage)
    }
}
