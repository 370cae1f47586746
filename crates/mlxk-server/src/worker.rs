//! The inference worker: one thread owns MLX, the loaded model and every active generation, and
//! steps the generations round-robin, one token each, so none waits for another to finish.
//! An embedding model is held beside the text model: the embedding requests that arrived run
//! together, in one batch per model, between two tokens of the generations. A speech-to-text
//! model is held beside them too: each loop turn does a bounded slice of one active
//! transcription (in turn: one encoder layer, or at most 16 tokens of a window), between two
//! tokens of the generations, so streams keep flowing while a long recording is transcribed.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use mlxk_core::classify::ModelType;
use mlxk_core::RunnableModel;
use mlxk_engine::{
    AnswerOptions, Embedded, EmbeddingInput, FinishReason, InputKind, PrefixStats, Prompt,
    TranscribeOptions, Transcript,
};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::oneshot;

use crate::backend::{Backend, BackendFactory, Generation, TranscriptionRun};
use crate::config::ServerConfig;
use crate::service::{Event, ServiceError};

/// One generation request, already validated and resolved to a runnable model.
pub struct Job {
    pub model: RunnableModel,
    pub prompt: Prompt,
    pub options: AnswerOptions,
    /// How long the model stays once idle, from this request on (Ollama's `keep_alive`; the
    /// server's for the other APIs, which also undoes an earlier request's).
    pub keep_alive: KeepAlive,
    pub events: UnboundedSender<Event>,
}

/// One embedding request, resolved to a runnable embedding model.
pub struct EmbedJob {
    pub model: RunnableModel,
    /// As [`Job::keep_alive`], for the embedding model.
    pub keep_alive: KeepAlive,
    pub inputs: Vec<EmbeddingInput>,
    pub kind: InputKind,
    pub reply: oneshot::Sender<Result<Vec<Embedded>, ServiceError>>,
}

/// One transcription, resolved to a runnable speech-to-text model, its audio decoded.
pub struct TranscribeJob {
    pub model: RunnableModel,
    /// 16 kHz mono.
    pub samples: Vec<f32>,
    pub options: TranscribeOptions,
    /// As [`Job::keep_alive`], for the speech-to-text model.
    pub keep_alive: KeepAlive,
    pub reply: oneshot::Sender<Result<Transcript, ServiceError>>,
}

enum Message {
    Job(Box<Job>),
    Embed(Box<EmbedJob>),
    Transcribe(Box<TranscribeJob>),
    /// Load a model before any request asks for it (`serve --model`, Ollama's empty generate).
    Load {
        model: Box<RunnableModel>,
        done: oneshot::Sender<Result<(), ServiceError>>,
    },
    /// Let go of a model now, or once its generations end.
    Unload {
        model: String,
        done: oneshot::Sender<Unloaded>,
    },
    /// How long a model in memory stays once idle; answers whether it was in memory.
    KeepAlive {
        model: String,
        keep: KeepAlive,
        done: oneshot::Sender<bool>,
    },
    Shutdown,
}

/// What an unload did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unloaded {
    /// The model was let go at once.
    Now,
    /// It was answering: it goes once its answers end, unless a new request comes first.
    WhenIdle,
    /// It was not in memory.
    NotLoaded,
}

impl Unloaded {
    pub fn was_loaded(self) -> bool {
        self != Unloaded::NotLoaded
    }

    pub fn label(self) -> &'static str {
        match self {
            Unloaded::Now => "now",
            Unloaded::WhenIdle => "when_idle",
            Unloaded::NotLoaded => "not_loaded",
        }
    }
}

/// How long a model stays in memory once idle, as the last request that said so asked
/// (Ollama's `keep_alive`); a model loaded anew starts with the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// The server's keep-alive (`serve --keep-alive`).
    Server,
    /// This long after its last work; zero lets it go as soon as its answers end.
    For(Duration),
    /// Until it is unloaded or another model takes its place.
    Forever,
}

/// Load and unload requests in the channel at once, at most: they must never take the places
/// of jobs, nor the one kept for a shutdown.
const CONTROL_SLOTS: usize = 8;

/// A keep-alive longer than this is "for ever" when shown: no date that far out is useful,
/// and calendars overflow.
const FOREVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The model in memory, as `/api/ps` and `mlxk ps` show it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resident {
    pub name: String,
    pub memory_bytes: u64,
    pub loaded_at: SystemTime,
    /// When it is let go if no request comes; `None` while it generates or when kept for ever.
    pub expires_at: Option<SystemTime>,
}

/// The models in memory: the text model the generations use, an embedding model and a
/// speech-to-text model.
#[derive(Debug, Default)]
struct Shown {
    text: Option<Resident>,
    embedder: Option<Resident>,
    transcriber: Option<Resident>,
}

impl Shown {
    fn all(&self) -> Vec<Resident> {
        self.text
            .iter()
            .chain(&self.embedder)
            .chain(&self.transcriber)
            .cloned()
            .collect()
    }
}

/// The prefix caches' counters over the server's life: each model's cache counts from zero
/// when the model loads, so they are summed per model.
#[derive(Debug, Default)]
struct PrefixCounters {
    totals: PrefixStats,
    last: Option<(String, PrefixStats)>,
}

impl PrefixCounters {
    fn note(&mut self, model: &str, now: Option<PrefixStats>) {
        let Some(now) = now else {
            // Unloaded: the cache is gone; a model loaded again counts from zero.
            self.totals.bytes = 0;
            self.last = None;
            return;
        };
        let before = match &self.last {
            Some((name, stats)) if name == model => *stats,
            _ => PrefixStats::default(),
        };
        self.totals.hits += now.hits - before.hits;
        self.totals.misses += now.misses - before.misses;
        self.totals.reused_tokens += now.reused_tokens - before.reused_tokens;
        self.totals.bytes = now.bytes;
        self.last = Some((model.to_string(), now));
    }
}

/// How many requests wait and run: bounds admission, and `/health` shows it.
#[derive(Debug, Default)]
pub struct QueueState {
    waiting: AtomicUsize,
    active: AtomicUsize,
    capacity: usize,
    /// Load and unload requests sent and not yet read by the worker.
    control: AtomicUsize,
    /// Set by a shutdown: the worker stops at its next step even with jobs in the channel.
    stopping: AtomicBool,
}

impl QueueState {
    /// (waiting, active, capacity of the queue).
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.waiting.load(Ordering::SeqCst),
            self.active.load(Ordering::SeqCst),
            self.capacity,
        )
    }
}

pub struct Worker {
    jobs: SyncSender<Message>,
    queue: Arc<QueueState>,
    resident: Arc<Mutex<Shown>>,
    prefix: Arc<Mutex<PrefixCounters>>,
    thread: Mutex<WorkerThread>,
    shutdown_timeout: Duration,
}

enum WorkerThread {
    Running(JoinHandle<()>),
    Ended(WorkerStop),
}

/// How a [`Worker::shutdown`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkerStop {
    /// The worker finished its generations and ended.
    Stopped,
    /// The worker did not end within the shutdown timeout (stuck in a chat template or a
    /// computation); it was left behind, and ends with the process.
    Abandoned,
}

impl Worker {
    /// Starts the worker thread; `backend` is made on it.
    pub fn spawn(config: &ServerConfig, backend: BackendFactory) -> Worker {
        // Room for every waiting job, the control messages, and one shutdown.
        let (jobs, receiver) = sync_channel(config.queue_capacity + CONTROL_SLOTS + 1);
        let queue = Arc::new(QueueState {
            capacity: config.queue_capacity,
            ..QueueState::default()
        });
        let worker_queue = Arc::clone(&queue);
        let resident = Arc::new(Mutex::new(Shown::default()));
        let shown = Arc::clone(&resident);
        let prefix = Arc::new(Mutex::new(PrefixCounters::default()));
        let worker_prefix = Arc::clone(&prefix);
        let (keep_alive, max_active) = (config.keep_alive, config.max_active.max(1));
        // MLX state never leaves this thread: it is created here.
        let thread = std::thread::Builder::new()
            .name("mlxk-inference".into())
            .spawn(move || {
                WorkerLoop {
                    receiver,
                    queue: worker_queue,
                    shown,
                    unload_when_idle: false,
                    keep_alive,
                    text_keep: KeepAlive::Server,
                    embedder_keep: KeepAlive::Server,
                    transcriber_keep: KeepAlive::Server,
                    idle_since: Instant::now(),
                    max_active,
                    backend: backend(),
                    loaded: None,
                    embedder: None,
                    embed_jobs: Vec::new(),
                    transcriber: None,
                    transcribe_waiting: VecDeque::new(),
                    transcriptions: Vec::new(),
                    next_transcription: 0,
                    prefix: worker_prefix,
                    active: Vec::new(),
                    waiting: VecDeque::new(),
                }
                .run()
            })
            .expect("spawning the inference worker");
        Worker {
            jobs,
            queue,
            resident,
            prefix,
            thread: Mutex::new(WorkerThread::Running(thread)),
            shutdown_timeout: config.shutdown_timeout,
        }
    }

    /// Queues a job; a full queue is a 503 the client can retry. At most the queue capacity
    /// of jobs wait at any time, however fast they arrive.
    pub fn submit(&self, job: Job) -> Result<(), ServiceError> {
        self.enqueue(Message::Job(Box::new(job)))
    }

    /// Queues an embedding request, within the same bound as generations.
    pub fn submit_embedding(&self, job: EmbedJob) -> Result<(), ServiceError> {
        self.enqueue(Message::Embed(Box::new(job)))
    }

    /// Queues a transcription, within the same bound as generations.
    pub fn submit_transcription(&self, job: TranscribeJob) -> Result<(), ServiceError> {
        self.enqueue(Message::Transcribe(Box::new(job)))
    }

    fn enqueue(&self, message: Message) -> Result<(), ServiceError> {
        if self.queue.stopping.load(Ordering::SeqCst) {
            return Err(ServiceError::ShuttingDown);
        }
        if self.queue.waiting.fetch_add(1, Ordering::SeqCst) >= self.queue.capacity {
            self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(ServiceError::Busy);
        }
        let refused = match self.jobs.try_send(message) {
            Ok(()) => return Ok(()),
            Err(TrySendError::Full(_)) => ServiceError::Busy,
            Err(TrySendError::Disconnected(_)) => ServiceError::ShuttingDown,
        };
        self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
        Err(refused)
    }

    pub fn queue(&self) -> &QueueState {
        &self.queue
    }

    /// The names of the models in memory.
    pub fn loaded_models(&self) -> Vec<String> {
        self.residents().into_iter().map(|r| r.name).collect()
    }

    /// The prefix caches' hits, misses and reused tokens so far, and the bytes they hold now.
    pub fn prefix_cache(&self) -> PrefixStats {
        self.prefix.lock().map(|p| p.totals).unwrap_or_default()
    }

    /// The models in memory: the text model first, then the embedding model, then the
    /// speech-to-text model.
    pub fn residents(&self) -> Vec<Resident> {
        self.resident.lock().map(|g| g.all()).unwrap_or_default()
    }

    /// Loads `model` now (replacing an idle one); waits for the worker's answer.
    pub async fn load(&self, model: RunnableModel) -> Result<(), ServiceError> {
        let (done, answer) = oneshot::channel();
        self.send(Message::Load {
            model: Box::new(model),
            done,
        })?;
        answer.await.map_err(|_| ServiceError::ShuttingDown)?
    }

    /// Unloads `model` now, or once its running generations end.
    pub async fn unload(&self, model: &str) -> Result<Unloaded, ServiceError> {
        let (done, answer) = oneshot::channel();
        self.send(Message::Unload {
            model: model.to_string(),
            done,
        })?;
        answer.await.map_err(|_| ServiceError::ShuttingDown)
    }

    /// Sets how long `model` stays once idle, if it is in memory (else `Ok(false)`); a
    /// zero lets it go as soon as its answers end.
    pub async fn keep_alive(&self, model: &str, keep: KeepAlive) -> Result<bool, ServiceError> {
        let (done, answer) = oneshot::channel();
        self.send(Message::KeepAlive {
            model: model.to_string(),
            keep,
            done,
        })?;
        answer.await.map_err(|_| ServiceError::ShuttingDown)
    }

    /// Sends a load or an unload, within the control messages' own budget.
    fn send(&self, message: Message) -> Result<(), ServiceError> {
        if self.queue.stopping.load(Ordering::SeqCst) {
            return Err(ServiceError::ShuttingDown);
        }
        if self.queue.control.fetch_add(1, Ordering::SeqCst) >= CONTROL_SLOTS {
            self.queue.control.fetch_sub(1, Ordering::SeqCst);
            return Err(ServiceError::Busy);
        }
        self.jobs.try_send(message).map_err(|e| {
            self.queue.control.fetch_sub(1, Ordering::SeqCst);
            match e {
                TrySendError::Full(_) => ServiceError::Busy,
                TrySendError::Disconnected(_) => ServiceError::ShuttingDown,
            }
        })
    }

    /// Ends active generations cleanly (`finish_reason: stop`), refuses waiting ones and
    /// waits for the worker thread, at most the shutdown timeout: a worker stuck in a hostile
    /// chat template must not keep the server from stopping. Blocking; a later (or concurrent)
    /// call waits for the first and returns how it ended.
    pub fn shutdown(&self) -> WorkerStop {
        // Held for the whole stop, so that every caller learns the one outcome.
        let Ok(mut state) = self.thread.lock() else {
            return WorkerStop::Abandoned;
        };
        let thread = match std::mem::replace(&mut *state, WorkerThread::Ended(WorkerStop::Stopped))
        {
            WorkerThread::Ended(outcome) => {
                *state = WorkerThread::Ended(outcome);
                return outcome;
            }
            WorkerThread::Running(thread) => thread,
        };
        let outcome = self.stop_thread(thread);
        *state = WorkerThread::Ended(outcome);
        outcome
    }

    fn stop_thread(&self, thread: JoinHandle<()>) -> WorkerStop {
        let deadline = Instant::now() + self.shutdown_timeout;
        self.queue.stopping.store(true, Ordering::SeqCst);
        // The queue may be full while the worker is stuck: never block on it.
        while let Err(TrySendError::Full(_)) = self.jobs.try_send(Message::Shutdown) {
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                tracing::error!(
                    timeout_s = self.shutdown_timeout.as_secs_f64(),
                    "the inference worker did not stop in time (a chat template or a computation is stuck); stopping without it"
                );
                return WorkerStop::Abandoned;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = thread.join();
        WorkerStop::Stopped
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// How long each model in memory has left while idle; `None`: not held, or for ever.
#[derive(Debug, Clone, Copy, Default)]
struct Expiry {
    text: Option<Duration>,
    embedder: Option<Duration>,
    transcriber: Option<Duration>,
}

struct Session {
    generation: Box<dyn Generation>,
    events: UnboundedSender<Event>,
}

/// A transcription under way, and where its transcript goes.
struct Transcribing {
    run: Box<dyn TranscriptionRun>,
    model: String,
    reply: oneshot::Sender<Result<Transcript, ServiceError>>,
}

struct WorkerLoop {
    receiver: Receiver<Message>,
    queue: Arc<QueueState>,
    /// What `/api/ps` shows of the models held.
    shown: Arc<Mutex<Shown>>,
    /// An unload asked for while the model generated: done once it is idle.
    unload_when_idle: bool,
    /// The server's keep-alive; zero keeps models for ever.
    keep_alive: Duration,
    /// How long the text, embedding and speech-to-text models stay once idle.
    text_keep: KeepAlive,
    embedder_keep: KeepAlive,
    transcriber_keep: KeepAlive,
    /// Since the last work (a job, an embedding, a load).
    idle_since: Instant,
    max_active: usize,
    backend: Box<dyn Backend>,
    /// The name of the text model the backend holds.
    loaded: Option<String>,
    /// The name of the embedding model the backend holds.
    embedder: Option<String>,
    /// Embedding requests read since the last step: they run before the next one.
    embed_jobs: Vec<EmbedJob>,
    /// The name of the speech-to-text model the backend holds.
    transcriber: Option<String>,
    /// Transcriptions waiting for a place (or for their model).
    transcribe_waiting: VecDeque<TranscribeJob>,
    /// Transcriptions under way: one of them takes a step (a slice of a window) per loop turn, in
    /// turn.
    transcriptions: Vec<Transcribing>,
    /// The transcription whose turn is next.
    next_transcription: usize,
    /// The prefix caches' counters, for the metrics.
    prefix: Arc<Mutex<PrefixCounters>>,
    active: Vec<Session>,
    waiting: VecDeque<Box<Job>>,
}

impl WorkerLoop {
    fn run(mut self) {
        loop {
            let message = if self.idle() {
                if self.unload_when_idle {
                    self.unload();
                }
                let left = self.let_expired_go();
                let wait = [left.text, left.embedder, left.transcriber]
                    .into_iter()
                    .flatten()
                    .min()
                    .unwrap_or(Duration::from_secs(3600));
                match self.receiver.recv_timeout(wait) {
                    Ok(message) => Some(message),
                    // The next iteration lets the model that expired go.
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            } else {
                self.receiver.try_recv().ok()
            };
            let mut messages: Vec<Message> = message.into_iter().collect();
            messages.extend(self.receiver.try_iter());
            // Only work keeps a model: an unload of another one does not renew its keep-alive.
            let mut used = false;
            for message in messages {
                match message {
                    Message::Job(job) => {
                        used = true;
                        self.waiting.push_back(job);
                    }
                    Message::Embed(job) => {
                        used = true;
                        self.embed_jobs.push(*job);
                    }
                    Message::Transcribe(job) => {
                        used = true;
                        self.transcribe_waiting.push_back(*job);
                    }
                    Message::Load { model, done } => {
                        self.queue.control.fetch_sub(1, Ordering::SeqCst);
                        used = true;
                        let _ = done.send(self.preload(&model));
                    }
                    Message::Unload { model, done } => {
                        self.queue.control.fetch_sub(1, Ordering::SeqCst);
                        let outcome = if self.embedder.as_ref() == Some(&model) {
                            self.unload_embedder();
                            Unloaded::Now
                        } else if self.transcriber.as_ref() == Some(&model) {
                            // Transcriptions under way hold the model until they end.
                            self.unload_transcriber();
                            Unloaded::Now
                        } else if self.loaded.as_ref() != Some(&model) {
                            Unloaded::NotLoaded
                        } else if self.active.is_empty() {
                            self.unload();
                            Unloaded::Now
                        } else {
                            self.unload_when_idle = true;
                            Unloaded::WhenIdle
                        };
                        let _ = done.send(outcome);
                    }
                    Message::KeepAlive { model, keep, done } => {
                        self.queue.control.fetch_sub(1, Ordering::SeqCst);
                        let held = if self.loaded.as_ref() == Some(&model) {
                            self.text_keep = keep;
                            true
                        } else if self.embedder.as_ref() == Some(&model) {
                            self.embedder_keep = keep;
                            true
                        } else if self.transcriber.as_ref() == Some(&model) {
                            self.transcriber_keep = keep;
                            true
                        } else {
                            false
                        };
                        // Idle already: the new keep-alive holds from now on (and is shown).
                        if held && self.idle() {
                            self.let_expired_go();
                        }
                        let _ = done.send(held);
                    }
                    Message::Shutdown => return self.shut_down(),
                }
            }
            if self.queue.stopping.load(Ordering::SeqCst) {
                return self.shut_down();
            }
            self.run_embeddings();
            self.admit();
            self.admit_transcriptions();
            let busy = !self.active.is_empty() || !self.transcriptions.is_empty();
            if busy {
                self.show_expiry(Expiry::default());
            }
            self.step_all();
            self.step_transcription();
            self.queue.active.store(
                self.active.len() + self.transcriptions.len(),
                Ordering::SeqCst,
            );
            if used || busy {
                self.idle_since = Instant::now();
            }
        }
    }

    /// Starts waiting jobs while there is room; a job for another model waits until the active
    /// generations of the loaded one finish (one model in memory at a time).
    fn admit(&mut self) {
        // Requests whose clients gave up (the queue timeout) free their places at once.
        let before = self.waiting.len();
        self.waiting.retain(|job| !job.events.is_closed());
        self.queue
            .waiting
            .fetch_sub(before - self.waiting.len(), Ordering::SeqCst);
        while self.active.len() < self.max_active {
            let Some(job) = self.waiting.front() else {
                break;
            };
            let switching = self.loaded.as_ref().is_some_and(|l| *l != job.model.name);
            if switching && !self.active.is_empty() {
                break;
            }
            let job = self.waiting.pop_front().expect("front exists");
            self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
            if job.events.send(Event::Admitted).is_err() {
                continue; // the client gave up waiting
            }
            // A model file can make the engine panic: that fails this request, never the worker.
            match catch_unwind(AssertUnwindSafe(|| self.start(&job))) {
                Ok(Ok(session)) => self.active.push(session),
                Ok(Err(error)) => {
                    let _ = job.events.send(Event::Failed(error));
                }
                Err(panic) => {
                    let _ = job
                        .events
                        .send(Event::Failed(engine_panic(&job.model.name, &panic)));
                    self.unload();
                }
            }
        }
    }

    fn start(&mut self, job: &Job) -> Result<Session, ServiceError> {
        self.hold(&job.model)?;
        self.text_keep = job.keep_alive;
        let generation = self.backend.start(&job.prompt, &job.options)?;
        self.note_prefix_cache();
        Ok(Session {
            generation,
            events: job.events.clone(),
        })
    }

    /// Reads the prefix cache's counters after it was used (a prompt looked up, an answer
    /// kept).
    fn note_prefix_cache(&mut self) {
        let model = self.loaded.clone().unwrap_or_default();
        let stats = self.backend.prefix_stats();
        if let Ok(mut counters) = self.prefix.lock() {
            counters.note(&model, stats);
        }
    }

    /// Makes `model` the one in memory (a no-op when it already is).
    fn hold(&mut self, model: &RunnableModel) -> Result<(), ServiceError> {
        self.unload_when_idle = false;
        if self.loaded.as_ref() == Some(&model.name) {
            return Ok(());
        }
        self.unload();
        let memory_bytes = self.backend.load(model)?;
        self.shown.lock().expect("not poisoned").text = Some(Resident {
            name: model.name.clone(),
            memory_bytes,
            loaded_at: SystemTime::now(),
            expires_at: None,
        });
        self.loaded = Some(model.name.clone());
        Ok(())
    }

    /// Makes `model` the embedding model in memory (a no-op when it already is).
    fn hold_embedder(&mut self, model: &RunnableModel) -> Result<(), ServiceError> {
        if self.embedder.as_ref() == Some(&model.name) {
            return Ok(());
        }
        self.unload_embedder();
        let memory_bytes = self.backend.load_embedder(model)?;
        self.shown.lock().expect("not poisoned").embedder = Some(Resident {
            name: model.name.clone(),
            memory_bytes,
            loaded_at: SystemTime::now(),
            expires_at: None,
        });
        self.embedder = Some(model.name.clone());
        Ok(())
    }

    fn unload_embedder(&mut self) {
        self.embedder_keep = KeepAlive::Server;
        if let Some(name) = self.embedder.take() {
            self.backend.unload_embedder();
            tracing::info!(model = %name, "embedding model unloaded");
        }
        self.shown.lock().expect("not poisoned").embedder = None;
    }

    /// Runs the embedding requests read since the last step: one batch per model and kind
    /// (queries, documents), so that requests of several clients share forward passes.
    fn run_embeddings(&mut self) {
        let jobs = std::mem::take(&mut self.embed_jobs);
        self.queue.waiting.fetch_sub(jobs.len(), Ordering::SeqCst);
        let mut groups: Vec<Vec<EmbedJob>> = Vec::new();
        for job in jobs.into_iter().filter(|job| !job.reply.is_closed()) {
            match groups
                .iter_mut()
                .find(|group| group[0].model.name == job.model.name && group[0].kind == job.kind)
            {
                Some(group) => group.push(job),
                None => groups.push(vec![job]),
            }
        }
        for group in groups {
            match self.embed_together(&group) {
                Ok(vectors) => {
                    let mut vectors = vectors.into_iter();
                    for job in group {
                        let mine = vectors.by_ref().take(job.inputs.len()).collect();
                        let _ = job.reply.send(Ok(mine));
                    }
                }
                // One request's bad input must not fail the others: each alone, then.
                Err(_) if group.len() > 1 => {
                    for job in group {
                        let result = self.embed_together(std::slice::from_ref(&job));
                        let _ = job.reply.send(result);
                    }
                }
                Err(error) => {
                    for job in group {
                        let _ = job.reply.send(Err(error.clone()));
                    }
                }
            }
        }
    }

    /// The vectors of every input of `jobs` (one model, one kind), in order; a panic in the
    /// engine fails these requests only.
    fn embed_together(&mut self, jobs: &[EmbedJob]) -> Result<Vec<Embedded>, ServiceError> {
        let model = &jobs[0].model;
        let inputs: Vec<EmbeddingInput> = jobs
            .iter()
            .flat_map(|job| job.inputs.iter().cloned())
            .collect();
        let kind = jobs[0].kind;
        match catch_unwind(AssertUnwindSafe(|| {
            self.hold_embedder(model)?;
            if let Some(last) = jobs.last() {
                self.embedder_keep = last.keep_alive;
                // Shown now: the replies can reach their clients before the worker is idle
                // again, which is when expiries are otherwise shown.
                let at = expiry_at(self.hold_time(self.embedder_keep));
                if let Some(resident) = &mut self.shown.lock().expect("not poisoned").embedder {
                    resident.expires_at = at;
                }
            }
            self.backend.embed(&inputs, kind)
        })) {
            Ok(result) => result,
            Err(panic) => {
                self.unload_embedder();
                Err(engine_panic(&model.name, &panic))
            }
        }
    }

    /// Makes `model` the speech-to-text model in memory (a no-op when it already is).
    fn hold_transcriber(&mut self, model: &RunnableModel) -> Result<(), ServiceError> {
        if self.transcriber.as_ref() == Some(&model.name) {
            return Ok(());
        }
        self.unload_transcriber();
        let memory_bytes = self.backend.load_transcriber(model)?;
        self.shown.lock().expect("not poisoned").transcriber = Some(Resident {
            name: model.name.clone(),
            memory_bytes,
            loaded_at: SystemTime::now(),
            expires_at: None,
        });
        self.transcriber = Some(model.name.clone());
        Ok(())
    }

    fn unload_transcriber(&mut self) {
        self.transcriber_keep = KeepAlive::Server;
        if let Some(name) = self.transcriber.take() {
            self.backend.unload_transcriber();
            tracing::info!(model = %name, "speech-to-text model unloaded");
        }
        self.shown.lock().expect("not poisoned").transcriber = None;
    }

    /// Starts waiting transcriptions while there is room; one for another speech model waits
    /// until those of the loaded one end.
    fn admit_transcriptions(&mut self) {
        while self.transcriptions.len() < self.max_active {
            let Some(job) = self.transcribe_waiting.front() else {
                break;
            };
            let switching = self
                .transcriber
                .as_ref()
                .is_some_and(|t| *t != job.model.name);
            if switching && !self.transcriptions.is_empty() {
                break;
            }
            let job = self.transcribe_waiting.pop_front().expect("front exists");
            self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
            if job.reply.is_closed() {
                continue; // the client gave up waiting
            }
            let TranscribeJob {
                model,
                samples,
                options,
                keep_alive,
                reply,
            } = job;
            let started = catch_unwind(AssertUnwindSafe(|| {
                self.hold_transcriber(&model)?;
                self.transcriber_keep = keep_alive;
                self.backend.start_transcription(samples, options)
            }));
            match started {
                Ok(Ok(run)) => self.transcriptions.push(Transcribing {
                    run,
                    model: model.name,
                    reply,
                }),
                Ok(Err(error)) => {
                    let _ = reply.send(Err(error));
                }
                Err(panic) => {
                    let _ = reply.send(Err(engine_panic(&model.name, &panic)));
                    self.unload_transcriber();
                }
            }
        }
    }

    /// Takes a step of the transcription whose turn it is; a finished one gets its
    /// transcript, one whose client left is dropped.
    fn step_transcription(&mut self) {
        self.transcriptions.retain(|t| !t.reply.is_closed());
        if self.transcriptions.is_empty() {
            return;
        }
        let index = self.next_transcription % self.transcriptions.len();
        let stepped = catch_unwind(AssertUnwindSafe(|| self.transcriptions[index].run.step()));
        if matches!(stepped, Ok(Ok(false))) {
            self.next_transcription = index + 1;
            return;
        }
        // Over: the next one in turn slides into its place.
        self.next_transcription = index;
        let over = self.transcriptions.remove(index);
        let result = match stepped {
            Ok(Ok(_)) => Ok(over.run.finish()),
            Ok(Err(error)) => Err(error),
            Err(panic) => {
                self.unload_transcriber();
                Err(engine_panic(&over.model, &panic))
            }
        };
        if result.is_ok() && self.transcriptions.is_empty() && self.active.is_empty() {
            // Shown now: the reply can reach its client before the worker is idle again,
            // which is when expiries are otherwise shown.
            let at = expiry_at(self.hold_time(self.transcriber_keep));
            if let Some(resident) = &mut self.shown.lock().expect("not poisoned").transcriber {
                resident.expires_at = at;
            }
        }
        let _ = over.reply.send(result);
    }

    /// A load asked for ahead of requests: refused while another model generates (one model in
    /// memory at a time), and a panic in the engine fails the load only.
    fn preload(&mut self, model: &RunnableModel) -> Result<(), ServiceError> {
        if model.info.classification.model_type == ModelType::Audio {
            let switching = self.transcriber.as_ref().is_some_and(|t| *t != model.name);
            if switching && !self.transcriptions.is_empty() {
                return Err(ServiceError::Busy);
            }
            return match catch_unwind(AssertUnwindSafe(|| self.hold_transcriber(model))) {
                Ok(result) => result,
                Err(panic) => {
                    self.unload_transcriber();
                    Err(engine_panic(&model.name, &panic))
                }
            };
        }
        if model.info.classification.model_type == ModelType::Embedding {
            return match catch_unwind(AssertUnwindSafe(|| self.hold_embedder(model))) {
                Ok(result) => result,
                Err(panic) => {
                    self.unload_embedder();
                    Err(engine_panic(&model.name, &panic))
                }
            };
        }
        let switching = self.loaded.as_ref().is_some_and(|l| *l != model.name);
        if switching && !self.active.is_empty() {
            return Err(ServiceError::Busy);
        }
        match catch_unwind(AssertUnwindSafe(|| self.hold(model))) {
            Ok(result) => result,
            Err(panic) => {
                self.unload();
                Err(engine_panic(&model.name, &panic))
            }
        }
    }

    fn idle(&self) -> bool {
        self.active.is_empty()
            && self.waiting.is_empty()
            && self.transcriptions.is_empty()
            && self.transcribe_waiting.is_empty()
    }

    /// How long `keep` holds a model once idle; `None` for ever.
    fn hold_time(&self, keep: KeepAlive) -> Option<Duration> {
        match keep {
            KeepAlive::Server if self.keep_alive.is_zero() => None,
            KeepAlive::Server => Some(self.keep_alive),
            KeepAlive::For(time) => Some(time),
            KeepAlive::Forever => None,
        }
    }

    /// While idle: unloads the models whose keep-alive has run out, shows when the others go,
    /// and returns how long each has left (`None`: not held, or held for ever).
    fn let_expired_go(&mut self) -> Expiry {
        let idle = self.idle_since.elapsed();
        let left = |held: bool, keep| {
            self.hold_time(keep)
                .filter(|_| held)
                .map(|time| time.saturating_sub(idle))
        };
        let text = left(self.loaded.is_some(), self.text_keep);
        let embedder = left(self.embedder.is_some(), self.embedder_keep);
        let transcriber = left(self.transcriber.is_some(), self.transcriber_keep);
        if text.is_some_and(|left| left.is_zero()) {
            self.unload();
        }
        if embedder.is_some_and(|left| left.is_zero()) {
            self.unload_embedder();
        }
        if transcriber.is_some_and(|left| left.is_zero()) {
            self.unload_transcriber();
        }
        let left = Expiry {
            text: text.filter(|left| !left.is_zero()),
            embedder: embedder.filter(|left| !left.is_zero()),
            transcriber: transcriber.filter(|left| !left.is_zero()),
        };
        self.show_expiry(left);
        left
    }

    /// What `/api/ps` shows: when each model goes if no request comes (none while it works).
    fn show_expiry(&self, left: Expiry) {
        let mut shown = self.shown.lock().expect("not poisoned");
        if let Some(resident) = &mut shown.text {
            resident.expires_at = expiry_at(left.text);
        }
        if let Some(resident) = &mut shown.embedder {
            resident.expires_at = expiry_at(left.embedder);
        }
        if let Some(resident) = &mut shown.transcriber {
            resident.expires_at = expiry_at(left.transcriber);
        }
    }

    fn unload(&mut self) {
        self.unload_when_idle = false;
        self.text_keep = KeepAlive::Server;
        if let Some(name) = self.loaded.take() {
            self.backend.unload();
            tracing::info!(model = %name, "model unloaded");
        }
        self.shown.lock().expect("not poisoned").text = None;
        self.note_prefix_cache();
    }

    /// One token for every active generation.
    fn step_all(&mut self) {
        let mut finished = Vec::new();
        for (index, session) in self.active.iter_mut().enumerate() {
            if session.events.is_closed() {
                // The client went away: stop at this token.
                session.generation.finish(FinishReason::Cancelled);
            }
            let model = self.loaded.as_deref().unwrap_or("");
            match catch_unwind(AssertUnwindSafe(|| session.step())) {
                Ok(Ok(true)) => {}
                Ok(Ok(false)) => finished.push(index),
                Ok(Err(error)) => {
                    let _ = session.events.send(Event::Failed(error));
                    finished.push(index);
                }
                Err(panic) => {
                    let _ = session
                        .events
                        .send(Event::Failed(engine_panic(model, &panic)));
                    finished.push(index);
                }
            }
        }
        for index in finished.into_iter().rev() {
            let session = self.active.remove(index);
            let ended = session.generation.finish_reason().is_some();
            let stop_sequence = session.generation.matched_stop();
            let (finish_reason, usage) = session.generation.end();
            if ended {
                let _ = session.events.send(Event::Done {
                    finish_reason,
                    usage,
                    stop_sequence,
                });
            }
            self.note_prefix_cache();
        }
    }

    fn shut_down(mut self) {
        for session in &mut self.active {
            session.generation.finish(FinishReason::Stop);
            while let Ok(Some(events)) = session.generation.next_events() {
                for event in events {
                    let _ = session.events.send(Event::Text(event));
                }
            }
        }
        for session in self.active.drain(..) {
            let (_, usage) = session.generation.end();
            let _ = session.events.send(Event::Done {
                finish_reason: FinishReason::Stop,
                usage,
                stop_sequence: None,
            });
        }
        for transcribing in self.transcriptions.drain(..) {
            let _ = transcribing.reply.send(Err(ServiceError::ShuttingDown));
        }
        let mut queued = Vec::new();
        let mut embeddings = std::mem::take(&mut self.embed_jobs);
        let mut transcriptions: Vec<TranscribeJob> = self.transcribe_waiting.drain(..).collect();
        for message in self.receiver.try_iter() {
            match message {
                Message::Job(job) => queued.push(job),
                Message::Embed(job) => embeddings.push(*job),
                Message::Transcribe(job) => transcriptions.push(*job),
                Message::Load { .. }
                | Message::Unload { .. }
                | Message::KeepAlive { .. }
                | Message::Shutdown => {}
            }
        }
        for job in self.waiting.drain(..).chain(queued) {
            self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
            let _ = job.events.send(Event::Failed(ServiceError::ShuttingDown));
        }
        for job in embeddings {
            self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
            let _ = job.reply.send(Err(ServiceError::ShuttingDown));
        }
        for job in transcriptions {
            self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
            let _ = job.reply.send(Err(ServiceError::ShuttingDown));
        }
        self.queue.active.store(0, Ordering::SeqCst);
        self.unload();
        self.unload_embedder();
        self.unload_transcriber();
    }
}

impl Session {
    /// Advances one token; `Ok(false)` once the generation is over.
    fn step(&mut self) -> Result<bool, ServiceError> {
        let Some(events) = self.generation.next_events()? else {
            return Ok(false);
        };
        // Before the text they belong to: a stream attaches them to its next piece of text.
        let logprobs = self.generation.take_logprobs()?;
        let logprobs = (!logprobs.is_empty()).then_some(Event::Logprobs(logprobs));
        for event in logprobs
            .into_iter()
            .chain(events.into_iter().map(Event::Text))
        {
            if self.events.send(event).is_err() {
                self.generation.finish(FinishReason::Cancelled);
            }
        }
        Ok(true)
    }
}

/// When a model held for `left` more goes; `None` for ever.
fn expiry_at(left: Option<Duration>) -> Option<SystemTime> {
    left.filter(|left| *left < FOREVER)
        .and_then(|left| SystemTime::now().checked_add(left))
}

/// A panic in the engine, as the failure of the one request that met it.
fn engine_panic(model: &str, panic: &Box<dyn std::any::Any + Send>) -> ServiceError {
    let what = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown cause".into());
    let message = format!(
        "the engine failed on model {model} ({what}); this request ended, the server goes on"
    );
    tracing::error!(error = %message, "request failed");
    ServiceError::Internal(message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(hits: u64, misses: u64, reused_tokens: u64, bytes: usize) -> Option<PrefixStats> {
        Some(PrefixStats {
            hits,
            misses,
            reused_tokens,
            bytes,
        })
    }

    #[test]
    fn prefix_counters_add_up_over_the_models_loaded_in_turn() {
        let mut counters = PrefixCounters::default();
        counters.note("a", stats(1, 2, 30, 100));
        counters.note("a", stats(2, 2, 50, 120));
        // Another model counts from zero; its numbers add to the totals.
        counters.note("b", stats(1, 0, 10, 40));
        assert_eq!(counters.totals, stats(3, 2, 60, 40).unwrap());
        counters.note("", None);
        assert_eq!(
            counters.totals,
            stats(3, 2, 60, 0).unwrap(),
            "unloaded: nothing held"
        );
        // The first model again, loaded anew: from zero again.
        counters.note("a", stats(1, 1, 5, 10));
        assert_eq!(counters.totals, stats(4, 3, 65, 10).unwrap());
        // And once more after an unload, with counts below the last ones.
        counters.note("", None);
        counters.note("a", stats(0, 1, 0, 0));
        assert_eq!(counters.totals, stats(4, 4, 65, 0).unwrap());
    }
}
