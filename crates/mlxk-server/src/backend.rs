//! What the worker runs generations on: the MLX engine, or, in tests, any deterministic
//! stand-in. A backend lives on the worker thread (MLX state never leaves it), holds the
//! models the worker seats (several, of any kind: the worker decides which stay), and hands
//! out generations: each text model decodes its generations together, one batch step at a
//! time, and the worker reads every generation's new tokens after each step.

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
    /// The memory `model` takes once loaded (its load plan's, with a margin for activations and
    /// the runtime), which the worker counts against the models' budget; `InsufficientMemory`
    /// when it would not fit even with every model this backend holds let go.
    fn memory_needed(&self, model: &RunnableModel) -> Result<u64, ServiceError>;
    /// Loads the text model `model` beside those held (the worker makes room first); returns
    /// the memory it holds, in bytes.
    fn load(&mut self, model: &RunnableModel) -> Result<u64, ServiceError>;
    /// Frees the model of that name, whatever its kind (a no-op when none is held).
    fn unload(&mut self, name: &str);
    /// Renders the prompt and joins it to the held text model `model`'s batch: its template,
    /// grammar and length are checked now, its prefill is done by that model's steps.
    fn start(
        &mut self,
        model: &str,
        prompt: &Prompt,
        options: &AnswerOptions,
    ) -> Result<Box<dyn Generation>, ServiceError>;
    /// One step of `model`'s batch: every generation on it gets its next token, and a prompt
    /// that joined is prefilled a chunk further. An error leaves the batch in no known state:
    /// its generations fail and the worker lets the model go. A backend whose generations
    /// step themselves has nothing to do.
    fn step(&mut self, _model: &str) -> Result<(), ServiceError> {
        Ok(())
    }

    /// Loads the embedding model `model` beside the models held; returns the memory it holds,
    /// in bytes.
    fn load_embedder(&mut self, model: &RunnableModel) -> Result<u64, ServiceError> {
        Err(ServiceError::ModelUnusable(format!(
            "{}: this server makes no embeddings",
            model.name
        )))
    }
    /// What the text models' prefix caches did over the server's life (the counters of
    /// models let go included), and the bytes they hold now (`None`: no cache is kept).
    fn prefix_stats(&self) -> Option<PrefixStats> {
        None
    }
    /// The vectors of `inputs` from the held embedding model `model`, in their order.
    fn embed(
        &mut self,
        _model: &str,
        _inputs: &[EmbeddingInput],
        _kind: InputKind,
    ) -> Result<Vec<Embedded>, ServiceError> {
        Err(ServiceError::Internal(
            "no embedding model is loaded".into(),
        ))
    }

    /// Loads the speech-to-text model `model` beside the models held; returns the memory it
    /// holds, in bytes.
    fn load_transcriber(&mut self, model: &RunnableModel) -> Result<u64, ServiceError> {
        Err(ServiceError::ModelUnusable(format!(
            "{}: this server transcribes no audio",
            model.name
        )))
    }
    /// Starts transcribing 16 kHz mono `samples` on the held speech-to-text model `model` (its
    /// spectrogram, the language); the worker then steps it a window at a time.
    fn start_transcription(
        &mut self,
        _model: &str,
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
    /// The prefix caches' budget, shared by the text models held (see [`MlxBackend::load`]).
    prompt_cache_bytes: u64,
    usage: UsageLog,
    texts: Vec<HeldText>,
    embedders: Vec<(String, EmbeddingModel)>,
    transcribers: Vec<(String, SpeechModel)>,
    /// What each model held counts as needing ([`Backend::memory_needed`]).
    needed: Vec<(String, u64)>,
    /// The prefix counters of caches since dropped (models let go, caches given a smaller
    /// share), so that the server's totals only grow.
    retired: PrefixStats,
}

/// A text model held, and the part of the prompt-cache budget its prefix cache may hold.
struct HeldText {
    name: String,
    model: TextModel,
    prompt_cache_share: u64,
}

impl MlxBackend {
    pub fn new(policy: LoadPolicy, cache: &HubCache, prompt_cache_bytes: u64) -> Self {
        MlxBackend {
            policy,
            prompt_cache_bytes,
            usage: UsageLog::for_cache(cache),
            texts: Vec::new(),
            embedders: Vec::new(),
            transcribers: Vec::new(),
            needed: Vec::new(),
            retired: PrefixStats::default(),
        }
    }

    fn text(&self, name: &str) -> Result<&TextModel, ServiceError> {
        self.texts
            .iter()
            .find(|t| t.name == name)
            .map(|t| &t.model)
            .ok_or_else(|| ServiceError::Internal(format!("{name} is not loaded")))
    }

    /// Counts what a prefix cache about to be dropped did.
    fn retire(&mut self, stats: Option<PrefixStats>) {
        if let Some(stats) = stats {
            self.retired.hits += stats.hits;
            self.retired.misses += stats.misses;
            self.retired.reused_tokens += stats.reused_tokens;
        }
    }

    /// Notes a model loaded: its memory counted, its use recorded.
    fn loaded(&mut self, model: &RunnableModel, memory_bytes: u64) {
        let needed = (memory_bytes as f64 * MEMORY_MARGIN) as u64;
        self.needed.push((model.name.clone(), needed));
        if let Err(e) = self.usage.record(&model.name) {
            tracing::warn!(model = %model.name, error = %e, "cannot record when the model was used");
        }
    }
}

impl Backend for MlxBackend {
    fn memory_needed(&self, model: &RunnableModel) -> Result<u64, ServiceError> {
        let plan = mlxk_engine::plan(&model.dir, &self.policy).map_err(load_error(model))?;
        let needed = (plan.memory_bytes as f64 * MEMORY_MARGIN) as u64;
        let mut system = sysinfo::System::new();
        system.refresh_memory();
        // Alone: what is free now plus what the models held (other than this one) would free.
        let held: u64 = self
            .needed
            .iter()
            .filter(|(name, _)| *name != model.name)
            .map(|(_, bytes)| bytes)
            .sum();
        let available = system.available_memory();
        if available > 0 && needed > available + held {
            return Err(ServiceError::InsufficientMemory(format!(
                "{} needs about {} MB but only {} MB are free",
                model.name,
                needed / 1_000_000,
                (available + held) / 1_000_000
            )));
        }
        Ok(needed)
    }

    /// Each text model's prefix cache gets an equal share of `--prompt-cache-size`, so that
    /// together they never hold more: a model joining the others shrinks the shares of those
    /// held (their caches start anew: a prefix cache cannot shrink in place), and a model let
    /// go leaves the others' shares as they are. (One cache shared by every model, keyed by
    /// model, is the later step that lets a lone model use the whole budget again.)
    fn load(&mut self, model: &RunnableModel) -> Result<u64, ServiceError> {
        let mut loaded = TextModel::load(&model.dir, &self.policy).map_err(load_error(model))?;
        let share = self.prompt_cache_bytes / (self.texts.len() as u64 + 1);
        let mut retired = Vec::new();
        for held in self
            .texts
            .iter_mut()
            .filter(|t| t.prompt_cache_share > share)
        {
            retired.push(held.model.prefix_stats());
            held.model.keep_prefixes(share as usize);
            held.prompt_cache_share = share;
        }
        for stats in retired {
            self.retire(stats);
        }
        loaded.keep_prefixes(share as usize);
        tracing::info!(model = %model.name, layout = ?loaded.plan.layout, prompt_cache_bytes = share, "model loaded");
        if loaded.tool_format_unknown {
            tracing::warn!(
                model = %model.name,
                "the chat template takes tools in a tool-call format this server does not know: tools are offered in the generic format and calls in the model's own markup stay in the content"
            );
        }
        let memory_bytes = loaded.plan.memory_bytes;
        self.loaded(model, memory_bytes);
        self.texts.push(HeldText {
            name: model.name.clone(),
            model: loaded,
            prompt_cache_share: share,
        });
        Ok(memory_bytes)
    }

    fn unload(&mut self, name: &str) {
        self.needed.retain(|(held, _)| held != name);
        let mut freed = false;
        if let Some(index) = self.texts.iter().position(|t| t.name == name) {
            let held = self.texts.remove(index);
            self.retire(held.model.prefix_stats());
            freed = true;
        }
        let before = self.embedders.len() + self.transcribers.len();
        self.embedders.retain(|(held, _)| held != name);
        self.transcribers.retain(|(held, _)| held != name);
        if freed || self.embedders.len() + self.transcribers.len() < before {
            let _ = mlxk_engine::runtime::clear_memory_cache();
        }
    }

    fn prefix_stats(&self) -> Option<PrefixStats> {
        if self.prompt_cache_bytes == 0 {
            return None;
        }
        let mut total = self.retired;
        total.bytes = 0;
        for stats in self.texts.iter().filter_map(|t| t.model.prefix_stats()) {
            total.hits += stats.hits;
            total.misses += stats.misses;
            total.reused_tokens += stats.reused_tokens;
            total.bytes += stats.bytes;
        }
        Some(total)
    }

    fn start(
        &mut self,
        model: &str,
        prompt: &Prompt,
        options: &AnswerOptions,
    ) -> Result<Box<dyn Generation>, ServiceError> {
        let generation = self
            .text(model)?
            .join(prompt, options)
            .map_err(|e| match e {
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

    fn step(&mut self, model: &str) -> Result<(), ServiceError> {
        let model = self.text(model)?;
        if model.is_busy() {
            model
                .step()
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
        }
        Ok(())
    }

    fn load_embedder(&mut self, model: &RunnableModel) -> Result<u64, ServiceError> {
        let loaded = EmbeddingModel::load(&model.dir, &self.policy).map_err(load_error(model))?;
        tracing::info!(model = %model.name, dimensions = loaded.dimensions(), "embedding model loaded");
        let memory_bytes = loaded.plan.memory_bytes;
        self.loaded(model, memory_bytes);
        self.embedders.push((model.name.clone(), loaded));
        Ok(memory_bytes)
    }

    fn embed(
        &mut self,
        model: &str,
        inputs: &[EmbeddingInput],
        kind: InputKind,
    ) -> Result<Vec<Embedded>, ServiceError> {
        let (_, embedder) = self
            .embedders
            .iter()
            .find(|(name, _)| name == model)
            .ok_or_else(|| ServiceError::Internal(format!("{model} is not loaded")))?;
        embedder.embed(inputs, kind).map_err(|e| match e {
            EngineError::Tokenizer(_) => ServiceError::InvalidPrompt(e.to_string()),
            other => ServiceError::Internal(other.to_string()),
        })
    }

    fn load_transcriber(&mut self, model: &RunnableModel) -> Result<u64, ServiceError> {
        let loaded = SpeechModel::load(&model.dir, &self.policy).map_err(load_error(model))?;
        tracing::info!(model = %model.name, multilingual = loaded.is_multilingual(), "speech-to-text model loaded");
        let memory_bytes = loaded.plan.memory_bytes;
        self.loaded(model, memory_bytes);
        self.transcribers.push((model.name.clone(), loaded));
        Ok(memory_bytes)
    }

    fn start_transcription(
        &mut self,
        model: &str,
        samples: Vec<f32>,
        options: TranscribeOptions,
    ) -> Result<Box<dyn TranscriptionRun>, ServiceError> {
        let (_, transcriber) = self
            .transcribers
            .iter()
            .find(|(name, _)| name == model)
            .ok_or_else(|| ServiceError::Internal(format!("{model} is not loaded")))?;
        transcriber.check(&options).map_err(speech_error)?;
        let run = transcriber.start(samples, options).map_err(speech_error)?;
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
