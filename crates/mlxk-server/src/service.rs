//! The generation service every protocol speaks to: a [`GenerationRequest`] in, [`Event`]s
//! out, failures as a [`ServiceError`]. A protocol module (OpenAI's today) parses its requests
//! into this shape and turns events and errors into its own answers; resolving models,
//! queueing and generating are done once, here and in the worker.

use std::time::Duration;

use mlxk_core::classify::{Capability, ModelType};
use mlxk_core::{CoreError, Library, ModelInfo, RunnableModel};
use mlxk_engine::constraint::Grammar;
use mlxk_engine::embedding::shortened;
use mlxk_engine::tool_use::ToolUse;
use mlxk_engine::{
    AnswerOptions, Embedded, EmbeddingInput, FinishReason, InputKind, Prompt, SamplingChoice, Task,
    TextEvent, TokenLogprob, TranscribeOptions, Transcript,
};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio::sync::{oneshot, Semaphore};

use crate::worker::{EmbedJob, Job, KeepAlive, TranscribeJob, Worker};

/// One generation, as every protocol asks for it.
#[derive(Debug, Clone)]
pub struct GenerationRequest {
    /// The model's name as a client gives it.
    pub model: String,
    pub prompt: Prompt,
    /// What the client chose; the model's defaults fill the rest.
    pub sampling: SamplingChoice,
    /// New tokens at most (already capped by the server's limit).
    pub max_tokens: usize,
    pub stops: Vec<String>,
    /// Tools offered, and whether a call is required.
    pub tools: Option<ToolUse>,
    /// A grammar the answer must match (`response_format`).
    pub grammar: Option<Grammar>,
    /// Each token's log-probability and this many alternatives (`Some(0)`: none), reported as
    /// [`Event::Logprobs`].
    pub logprobs: Option<usize>,
    /// How long the model stays once idle after this request (the server's unless an API
    /// says otherwise).
    pub keep_alive: KeepAlive,
}

/// Vectors for texts, as every protocol asks for them.
#[derive(Debug, Clone)]
pub struct EmbeddingRequest {
    pub model: String,
    pub inputs: Vec<EmbeddingInput>,
    pub kind: InputKind,
    /// Keep the first N dimensions, scaled back to length 1.
    pub dimensions: Option<usize>,
    /// Cut inputs longer than the model reads (else such an input is an error).
    pub truncate: bool,
    /// How long the model stays once idle after this request.
    pub keep_alive: KeepAlive,
}

/// Audio to text, as every protocol asks for it.
#[derive(Debug, Clone)]
pub struct TranscriptionRequest {
    pub model: String,
    /// The file's bytes, as uploaded (any format `mlxk_audio` reads).
    pub audio: Vec<u8>,
    /// The file's name or type as the client gave it: a hint for the decoder.
    pub file_name: Option<String>,
    pub options: TranscribeOptions,
    /// How long the model stays once idle after this request.
    pub keep_alive: KeepAlive,
}

/// Tokens a generation read and wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Of the prompt tokens, those whose keys and values came from the prefix cache.
    pub cached_tokens: usize,
    pub completion_tokens: usize,
}

/// What a generation reports, in order: text until `Done`, or a `Failed` at any point.
#[derive(Debug)]
pub enum Event {
    /// The worker took the job from the queue; loading and the prompt follow.
    Admitted,
    Text(TextEvent),
    /// The log-probabilities of the tokens since the last event (only when asked for).
    Logprobs(Vec<TokenLogprob>),
    Done {
        finish_reason: FinishReason,
        usage: Usage,
        /// The request's stop string the answer ended at, if it ended at one.
        stop_sequence: Option<String>,
    },
    Failed(ServiceError),
}

/// Why a generation did not happen or did not finish. Each protocol maps these to its own
/// statuses and shapes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ServiceError {
    /// No runnable model by that name (or a name the API does not take).
    #[error("{0}")]
    ModelNotFound(String),
    /// The model's own files make it unusable (an impossible `config.json`).
    #[error("{0}")]
    ModelUnusable(String),
    /// The prompt cannot be rendered (the model's chat template refused it).
    #[error("{0}")]
    InvalidPrompt(String),
    /// The model is of the wrong kind for the request (an embedding model asked for text).
    #[error("{0}")]
    WrongModelKind(String),
    /// A request field the model cannot honour (the field, why).
    #[error("{1}")]
    InvalidInput(&'static str, String),
    #[error("{0}")]
    ContextLengthExceeded(String),
    #[error("{0}")]
    InsufficientMemory(String),
    /// The queue is full.
    #[error("too many requests are waiting; retry shortly")]
    Busy,
    #[error("the request waited {} s without a free slot; retry shortly", .0.as_secs())]
    QueueTimeout(Duration),
    #[error("the server is shutting down")]
    ShuttingDown,
    /// An upload over the server's limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// A fault of the engine or the machine, not of the request.
    #[error("{0}")]
    Internal(String),
}

/// The models the server offers and the queue in front of the worker.
pub struct GenerationService {
    library: Library,
    worker: Worker,
    queue_timeout: Duration,
    /// Token counts read a tokenizer from disk outside the queue: a few at a time.
    counting: Semaphore,
    /// Audio decodes outside the queue too, a few at a time.
    decoding: Semaphore,
    audio_limits: mlxk_audio::Limits,
}

/// Token counts computed at once, at most; more wait their turn.
const COUNTS_AT_ONCE: usize = 2;
/// Audio files decoded at once, at most.
const DECODES_AT_ONCE: usize = 2;

impl GenerationService {
    pub fn new(
        library: Library,
        worker: Worker,
        queue_timeout: Duration,
        audio_limits: mlxk_audio::Limits,
    ) -> Self {
        GenerationService {
            library,
            worker,
            queue_timeout,
            counting: Semaphore::new(COUNTS_AT_ONCE),
            decoding: Semaphore::new(DECODES_AT_ONCE),
            audio_limits,
        }
    }

    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// The cached models that can run here (healthy, implemented, no custom code).
    pub async fn runnable_models(&self) -> Result<Vec<ModelInfo>, ServiceError> {
        let library = self.library.clone();
        blocking(move || {
            let models = library
                .list()
                .map_err(|e| ServiceError::Internal(e.to_string()))?;
            Ok(models
                .into_iter()
                .filter(|m| m.runtime.compatible)
                .collect())
        })
        .await
    }

    /// The model a request names, resolved as the CLI resolves names; it must be runnable.
    pub async fn resolve(&self, name: &str) -> Result<RunnableModel, ServiceError> {
        // The CLI's user owns the disk; an API client does not get to name folders on it.
        if mlxk_core::workspace::looks_like_path(name) {
            return Err(ServiceError::ModelNotFound(
                "'model' names a path: the API serves models from the cache by name, never folders on disk".into(),
            ));
        }
        let (library, name) = (self.library.clone(), name.to_string());
        blocking(move || {
            let found = library.find_runnable(&name).map(|mut model| {
                model.name = api_name(&model.info);
                model
            });
            found.map_err(|e| match e {
                CoreError::NotRunnable { model, why } => {
                    ServiceError::ModelNotFound(format!("model '{model}' cannot run: {why}"))
                }
                other => ServiceError::ModelNotFound(format!("model '{name}': {other}")),
            })
        })
        .await
    }

    /// Resolves the model, queues the job and waits until the worker takes it (at most the
    /// queue timeout; loading and the prompt that follow are not bounded). The events of the
    /// generation follow on the returned receiver.
    pub async fn generate(
        &self,
        request: GenerationRequest,
    ) -> Result<(RunnableModel, UnboundedReceiver<Event>), ServiceError> {
        let model = self.resolve(&request.model).await?;
        match model.info.classification.model_type {
            ModelType::Embedding => {
                return Err(ServiceError::WrongModelKind(format!(
                    "model '{}' is an embedding model: it makes vectors (v1/embeddings), not text",
                    model.name
                )))
            }
            ModelType::Audio => return Err(needs_audio(&model)),
            _ => {}
        }
        let (events, mut receiver) = unbounded_channel();
        self.worker.submit(Job {
            options: AnswerOptions {
                sampling: request.sampling,
                max_tokens: request.max_tokens,
                context_length: model.context_length,
                stops: request.stops,
                raw: false,
                tools: request.tools,
                grammar: request.grammar,
                logprobs: request.logprobs,
            },
            model: model.clone(),
            prompt: request.prompt,
            keep_alive: request.keep_alive,
            events,
        })?;
        match tokio::time::timeout(self.queue_timeout, receiver.recv()).await {
            Ok(Some(Event::Admitted)) => Ok((model, receiver)),
            Ok(Some(Event::Failed(error))) => Err(error),
            Ok(_) => Err(ServiceError::ShuttingDown),
            Err(_) => Err(ServiceError::QueueTimeout(self.queue_timeout)),
        }
    }

    /// How many tokens `prompt` takes with `tools` offered, as the model it names would read it
    /// (the usage's prompt tokens of the same request). Only the model's tokenizer and chat
    /// template are read, off the async threads: the worker and the model in memory are not
    /// involved.
    pub async fn count_tokens(
        &self,
        model: &str,
        prompt: Prompt,
        tools: Option<ToolUse>,
    ) -> Result<(RunnableModel, usize), ServiceError> {
        let model = self.resolve(model).await?;
        match model.info.classification.model_type {
            ModelType::Embedding => {
                return Err(ServiceError::WrongModelKind(format!(
                    "model '{}' is an embedding model: it reads no conversations",
                    model.name
                )))
            }
            ModelType::Audio => return Err(needs_audio(&model)),
            _ => {}
        }
        let (dir, name) = (model.dir.clone(), model.name.clone());
        let _turn = self
            .counting
            .acquire()
            .await
            .map_err(|_| ServiceError::ShuttingDown)?;
        let count = blocking(move || {
            mlxk_engine::prompt_tokens(&dir, &prompt, tools.as_ref()).map_err(|e| match e {
                mlxk_engine::EngineError::Template(_) => ServiceError::InvalidPrompt(e.to_string()),
                other => ServiceError::Internal(format!("reading {name}'s tokenizer: {other}")),
            })
        })
        .await?;
        Ok((model, count))
    }

    /// The vectors of the request's inputs, in order, from the embedding model it names. The
    /// worker runs them between two tokens of the generations in progress, together with the
    /// other embedding requests that arrived meanwhile.
    pub async fn embed(
        &self,
        request: EmbeddingRequest,
    ) -> Result<(RunnableModel, Vec<Embedded>), ServiceError> {
        if request.inputs.is_empty() {
            return Err(ServiceError::InvalidInput(
                "input",
                "'input' is empty: give at least one text".into(),
            ));
        }
        let model = self.resolve(&request.model).await?;
        if model.info.classification.model_type != ModelType::Embedding {
            return Err(ServiceError::WrongModelKind(format!(
                "model '{}' is a {} model, not an embedding model (it declares no pooling): embeddings need one such as a sentence-transformers model",
                model.name,
                model.info.classification.model_type.label()
            )));
        }
        let (reply, answer) = oneshot::channel();
        self.worker.submit_embedding(EmbedJob {
            model: model.clone(),
            keep_alive: request.keep_alive,
            inputs: request.inputs,
            kind: request.kind,
            reply,
        })?;
        let mut vectors = answer.await.map_err(|_| ServiceError::ShuttingDown)??;
        if !request.truncate {
            if let Some((i, cut)) = vectors.iter().enumerate().find(|(_, v)| v.truncated) {
                // A cut input holds as many tokens as the model reads.
                return Err(ServiceError::InvalidInput(
                    "input",
                    format!(
                        "input {i} is longer than the {} tokens model '{}' reads, and truncation is off",
                        cut.tokens, model.name
                    ),
                ));
            }
        }
        if let Some(n) = request.dimensions {
            let native = vectors.first().map_or(0, |v| v.vector.len());
            if n == 0 || n > native {
                return Err(ServiceError::InvalidInput(
                    "dimensions",
                    format!(
                        "'dimensions' is {n}, but model '{}' makes vectors of {native}",
                        model.name
                    ),
                ));
            }
            for v in &mut vectors {
                v.vector = shortened(&v.vector, n);
            }
        }
        Ok((model, vectors))
    }
}

impl GenerationService {
    /// The transcript of the request's audio. Everything a request can get wrong is refused
    /// before it queues: the model's kind, a translation asked of an English-only model, a file
    /// that does not decode or is too large or too long (decoded here, off the async threads).
    /// The worker then runs it a slice at a time (an encoder layer, or a few tokens) between the
    /// tokens of the generations in progress.
    pub async fn transcribe(
        &self,
        request: TranscriptionRequest,
    ) -> Result<(RunnableModel, Transcript), ServiceError> {
        let model = self.resolve(&request.model).await?;
        check_speech_model(&model, &request.options)?;
        let audio = {
            let _turn = self
                .decoding
                .acquire()
                .await
                .map_err(|_| ServiceError::ShuttingDown)?;
            let limits = self.audio_limits;
            let (bytes, hint) = (request.audio, request.file_name);
            blocking(move || {
                mlxk_audio::decode_bytes(bytes, hint.as_deref(), &limits).map_err(audio_error)
            })
            .await?
        };
        let (reply, answer) = oneshot::channel();
        self.worker.submit_transcription(TranscribeJob {
            model: model.clone(),
            samples: audio.samples,
            options: request.options,
            keep_alive: request.keep_alive,
            reply,
        })?;
        let transcript = answer.await.map_err(|_| ServiceError::ShuttingDown)??;
        Ok((model, transcript))
    }
}

/// A speech-to-text model that can do what `options` ask.
fn check_speech_model(
    model: &RunnableModel,
    options: &TranscribeOptions,
) -> Result<(), ServiceError> {
    let classification = &model.info.classification;
    if classification.model_type != ModelType::Audio {
        return Err(ServiceError::WrongModelKind(format!(
            "model '{}' is a {} model, not a speech-to-text model (Whisper): audio needs one such as whisper-tiny.en",
            model.name,
            classification.model_type.label()
        )));
    }
    let translates = classification
        .capabilities
        .contains(&Capability::AudioTranslateEn);
    if options.task == Task::Translate && !translates {
        return Err(ServiceError::WrongModelKind(format!(
            "model '{}' is English-only: it transcribes but cannot translate (a multilingual Whisper model can)",
            model.name
        )));
    }
    Ok(())
}

/// Text asked of a speech-to-text model.
fn needs_audio(model: &RunnableModel) -> ServiceError {
    ServiceError::WrongModelKind(format!(
        "model '{}' is a speech-to-text model: send audio (v1/audio/transcriptions, or an input_audio part in v1/chat/completions)",
        model.name
    ))
}

/// A file that cannot be transcribed: too large is a 413, the rest are the request's `file`.
fn audio_error(error: mlxk_audio::AudioError) -> ServiceError {
    match error {
        mlxk_audio::AudioError::TooLarge { .. } => ServiceError::TooLarge(error.to_string()),
        other => ServiceError::InvalidInput("file", other.to_string()),
    }
}

/// How the API names a model: its repository id, or a workspace's folder name (a client never
/// learns where a workspace lies on this machine).
pub fn api_name(model: &ModelInfo) -> String {
    match (&model.workspace, &model.path) {
        (Some(_), Some(path)) => path
            .file_name()
            .map_or_else(|| model.name.clone(), |n| n.to_string_lossy().to_string()),
        _ => model.name.clone(),
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServiceError::Internal(e.to_string()))?
}
