//! The inference worker: one thread owns MLX, the models held and every active generation.
//! Each loop turn steps every text model with generations once: its generations decode
//! together in one forward pass, and a prompt that arrived is prefilled a chunk at a time
//! between those steps, so no stream waits for another to finish or for a long prompt.
//! Several models stay in memory (`--max-loaded-models`, within `--models-memory`): text
//! models, an embedding model and a speech-to-text model alike; a model that needs a place
//! lets the least recently used idle ones go, and a request whose model cannot be seated yet
//! (the models in the way are working) waits while requests for models held go on. Each
//! model has its own keep-alive. The embedding requests that arrived run together, in one
//! batch per model, between two tokens of the generations; each loop turn does a bounded slice
//! of one active transcription (in turn: one encoder layer, or at most 16 tokens of a window),
//! so streams keep flowing while a long recording is transcribed.

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
    /// Until it is unloaded or another model needs its place.
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
    resident: Arc<Mutex<Vec<Resident>>>,
    prefix: Arc<Mutex<PrefixStats>>,
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
        let resident = Arc::new(Mutex::new(Vec::new()));
        let shown = Arc::clone(&resident);
        let prefix = Arc::new(Mutex::new(PrefixStats::default()));
        let worker_prefix = Arc::clone(&prefix);
        let keep_alive = config.keep_alive;
        let max_active = config.max_active.max(1);
        let max_loaded = config.max_loaded_models.max(1);
        let models_memory = config.models_memory;
        // MLX state never leaves this thread: it is created here.
        let thread = std::thread::Builder::new()
            .name("mlxk-inference".into())
            .spawn(move || {
                WorkerLoop {
                    receiver,
                    queue: worker_queue,
                    shown,
                    keep_alive,
                    max_active,
                    max_loaded,
                    models_memory,
                    backend: backend(),
                    held: Vec::new(),
                    embed_jobs: Vec::new(),
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
        self.prefix.lock().map(|p| *p).unwrap_or_default()
    }

    /// The models in memory: text models first, then the embedding model, then the
    /// speech-to-text model, each kind in the order they were loaded.
    pub fn residents(&self) -> Vec<Resident> {
        self.resident.lock().map(|g| g.clone()).unwrap_or_default()
    }

    /// Loads `model` now (letting idle models go if it needs their place); waits for the
    /// worker's answer.
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

/// What a model held is for: each kind has its own requests and backend calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Text,
    Embedder,
    Transcriber,
}

impl Kind {
    fn of(model: &RunnableModel) -> Kind {
        match model.info.classification.model_type {
            ModelType::Audio => Kind::Transcriber,
            ModelType::Embedding => Kind::Embedder,
            _ => Kind::Text,
        }
    }
}

/// A model in memory, and what keeps it there.
struct Held {
    name: String,
    kind: Kind,
    /// How long it stays once idle, as its last request asked.
    keep: KeepAlive,
    /// When it last had work (a request, a step of an answer, a load).
    last_used: Instant,
    /// What it counts against the models' budget ([`Backend::memory_needed`]).
    memory: u64,
    /// What its load plan holds, as `/api/ps` shows it.
    memory_bytes: u64,
    loaded_at: SystemTime,
    /// An unload asked for while it worked: done once it is idle.
    unload_when_idle: bool,
}

/// What seating a model takes.
enum Seat {
    /// It is held already.
    Held,
    /// Loading it, once the idle models named are let go.
    Load { need: u64, evict: Vec<String> },
}

struct Session {
    generation: Box<dyn Generation>,
    /// The text model it runs on.
    model: String,
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
    shown: Arc<Mutex<Vec<Resident>>>,
    /// The server's keep-alive; zero keeps models for ever.
    keep_alive: Duration,
    max_active: usize,
    /// Models held at once, at most.
    max_loaded: usize,
    /// The memory the models held may take together.
    models_memory: u64,
    backend: Box<dyn Backend>,
    /// The models in memory, in the order they were loaded.
    held: Vec<Held>,
    /// Embedding requests read and not yet run: they run before the next step (or wait for
    /// their model's place).
    embed_jobs: Vec<EmbedJob>,
    /// Transcriptions waiting for a place (or for their model's).
    transcribe_waiting: VecDeque<TranscribeJob>,
    /// Transcriptions under way: one of them takes a step (a slice of a window) per loop turn, in
    /// turn.
    transcriptions: Vec<Transcribing>,
    /// The transcription whose turn is next.
    next_transcription: usize,
    /// The prefix caches' counters, for the metrics.
    prefix: Arc<Mutex<PrefixStats>>,
    active: Vec<Session>,
    waiting: VecDeque<Box<Job>>,
}

impl WorkerLoop {
    fn run(mut self) {
        loop {
            let next_expiry = self.let_expired_go();
            let message = if self.idle() {
                match self
                    .receiver
                    .recv_timeout(next_expiry.unwrap_or(Duration::from_secs(3600)))
                {
                    Ok(message) => Some(message),
                    // The next iteration lets the model that expired go.
                    Err(RecvTimeoutError::Timeout) => continue,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            } else {
                self.receiver.try_recv().ok()
            };
            if !self.take(
                message
                    .into_iter()
                    .chain(self.receiver.try_iter())
                    .collect(),
            ) {
                return self.shut_down();
            }
            self.run_embeddings();
            self.admit();
            // Seating a model takes seconds: requests that came meanwhile start in this step
            // too, so that clients that arrived together are prefilled together.
            if !self.take(self.receiver.try_iter().collect()) {
                return self.shut_down();
            }
            self.admit();
            self.admit_transcriptions();
            self.step_all();
            self.step_transcription();
            self.touch_models_in_use();
            self.queue.active.store(
                self.active.len() + self.transcriptions.len(),
                Ordering::SeqCst,
            );
        }
    }

    /// Takes the messages read: jobs wait for their place, control messages are answered.
    /// `false` when the server is to stop.
    fn take(&mut self, messages: Vec<Message>) -> bool {
        for message in messages {
            match message {
                Message::Job(job) => self.waiting.push_back(job),
                Message::Embed(job) => self.embed_jobs.push(*job),
                Message::Transcribe(job) => self.transcribe_waiting.push_back(*job),
                Message::Load { model, done } => {
                    self.queue.control.fetch_sub(1, Ordering::SeqCst);
                    let _ = done.send(self.preload(&model));
                }
                Message::Unload { model, done } => {
                    self.queue.control.fetch_sub(1, Ordering::SeqCst);
                    let _ = done.send(self.unload_asked(&model));
                }
                Message::KeepAlive { model, keep, done } => {
                    self.queue.control.fetch_sub(1, Ordering::SeqCst);
                    let held = match self.held.iter_mut().find(|h| h.name == model) {
                        Some(held) => {
                            // The new keep-alive holds from now on (and is shown).
                            held.keep = keep;
                            held.last_used = Instant::now();
                            true
                        }
                        None => false,
                    };
                    if held {
                        self.let_expired_go();
                    }
                    let _ = done.send(held);
                }
                Message::Shutdown => return false,
            }
        }
        !self.queue.stopping.load(Ordering::SeqCst)
    }

    /// Starts waiting jobs, in order, while there is room: a job whose model cannot be seated
    /// yet (the models in its way are answering) stays in line, and the jobs behind it for
    /// models held still start.
    fn admit(&mut self) {
        // Requests whose clients gave up (the queue timeout) free their places at once.
        let before = self.waiting.len();
        self.waiting.retain(|job| !job.events.is_closed());
        self.queue
            .waiting
            .fetch_sub(before - self.waiting.len(), Ordering::SeqCst);
        let mut index = 0;
        while self.active.len() < self.max_active && index < self.waiting.len() {
            let seat = match self.placement(&self.waiting[index].model) {
                Ok(None) => {
                    index += 1;
                    continue;
                }
                Ok(Some(seat)) => Ok(seat),
                Err(error) => Err(error),
            };
            let job = self.waiting.remove(index).expect("index in range");
            self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
            let seat = match seat {
                Ok(seat) => seat,
                Err(error) => {
                    let _ = job.events.send(Event::Failed(error));
                    continue;
                }
            };
            if job.events.send(Event::Admitted).is_err() {
                continue; // the client gave up waiting
            }
            // A model file can make the engine panic: that fails this request, never the worker.
            match catch_unwind(AssertUnwindSafe(|| self.start(&job, seat))) {
                Ok(Ok(session)) => self.active.push(session),
                Ok(Err(error)) => {
                    let _ = job.events.send(Event::Failed(error));
                }
                Err(panic) => {
                    let _ = job
                        .events
                        .send(Event::Failed(engine_panic(&job.model.name, &panic)));
                    self.unload(&job.model.name);
                }
            }
        }
    }

    fn start(&mut self, job: &Job, seat: Seat) -> Result<Session, ServiceError> {
        self.seat(&job.model, seat)?;
        if let Some(held) = self.held.iter_mut().find(|h| h.name == job.model.name) {
            held.keep = job.keep_alive;
        }
        let generation = self
            .backend
            .start(&job.model.name, &job.prompt, &job.options)?;
        self.note_prefix_cache();
        Ok(Session {
            generation,
            model: job.model.name.clone(),
            events: job.events.clone(),
        })
    }

    /// Reads the prefix caches' counters after they were used (a prompt looked up, an answer
    /// kept, a model let go).
    fn note_prefix_cache(&mut self) {
        let stats = self.backend.prefix_stats().unwrap_or_default();
        if let Ok(mut counters) = self.prefix.lock() {
            *counters = stats;
        }
    }

    /// Whether the model of that name has a generation or a transcription under way: such a
    /// model is never let go to make room.
    fn in_use(&self, name: &str) -> bool {
        self.active.iter().any(|s| s.model == name)
            || self.transcriptions.iter().any(|t| t.model == name)
    }

    /// In use, or asked for by a request not yet run: its keep-alive does not run down.
    fn wanted(&self, name: &str) -> bool {
        self.in_use(name)
            || self.waiting.iter().any(|j| j.model.name == name)
            || self.embed_jobs.iter().any(|j| j.model.name == name)
            || self.transcribe_waiting.iter().any(|j| j.model.name == name)
    }

    /// What seating `model` takes: `None` while no room can be made (the models in the way
    /// are in use); refused when it would not fit even alone, in the machine's memory or in
    /// the models' budget.
    fn placement(&self, model: &RunnableModel) -> Result<Option<Seat>, ServiceError> {
        if self.held.iter().any(|h| h.name == model.name) {
            return Ok(Some(Seat::Held));
        }
        let need = self.backend.memory_needed(model)?;
        if need > self.models_memory {
            return Err(ServiceError::InsufficientMemory(format!(
                "{} needs about {} MB but the models may take {} MB in all (serve --models-memory)",
                model.name,
                need / 1_000_000,
                self.models_memory / 1_000_000
            )));
        }
        Ok(self
            .room_for(Kind::of(model), need)
            .map(|evict| Seat::Load { need, evict }))
    }

    /// The idle models to let go, least recently used first, so that one more model of `kind`
    /// needing `need` bytes fits in the count and the budget; `None` when the models in the way
    /// are in use. One embedding and one speech-to-text model at a time: another of the same
    /// kind takes the place of the one held.
    fn room_for(&self, kind: Kind, need: u64) -> Option<Vec<String>> {
        let mut staying: Vec<&Held> = self.held.iter().collect();
        let mut evict = Vec::new();
        if kind != Kind::Text {
            if let Some(same) = staying.iter().position(|h| h.kind == kind) {
                if self.in_use(&staying[same].name) {
                    return None;
                }
                evict.push(staying.remove(same).name.clone());
            }
        }
        let mut idle: Vec<&Held> = staying
            .iter()
            .copied()
            .filter(|h| !self.in_use(&h.name))
            .collect();
        idle.sort_by_key(|h| h.last_used);
        let mut idle = idle.into_iter();
        let mut count = staying.len();
        let mut memory: u64 = staying.iter().map(|h| h.memory).sum();
        while count >= self.max_loaded || memory.saturating_add(need) > self.models_memory {
            let oldest = idle.next()?;
            count -= 1;
            memory -= oldest.memory;
            evict.push(oldest.name.clone());
        }
        Some(evict)
    }

    /// Holds `model` as `seat` says: touched when held, else loaded once the idle models in
    /// its way are let go.
    fn seat(&mut self, model: &RunnableModel, seat: Seat) -> Result<(), ServiceError> {
        let (need, evict) = match seat {
            Seat::Held => {
                if let Some(held) = self.held.iter_mut().find(|h| h.name == model.name) {
                    held.unload_when_idle = false;
                    held.last_used = Instant::now();
                }
                return Ok(());
            }
            Seat::Load { need, evict } => (need, evict),
        };
        for name in evict {
            tracing::info!(model = %name, "letting an idle model go to make room for {}", model.name);
            self.unload(&name);
        }
        let kind = Kind::of(model);
        let memory_bytes = match kind {
            Kind::Text => self.backend.load(model),
            Kind::Embedder => self.backend.load_embedder(model),
            Kind::Transcriber => self.backend.load_transcriber(model),
        }?;
        self.held.push(Held {
            name: model.name.clone(),
            kind,
            keep: KeepAlive::Server,
            last_used: Instant::now(),
            memory: need,
            memory_bytes,
            loaded_at: SystemTime::now(),
            unload_when_idle: false,
        });
        self.show_expiry();
        Ok(())
    }

    /// [`WorkerLoop::seat`], where a panic in the engine fails this load only.
    fn seat_guarded(&mut self, model: &RunnableModel, seat: Seat) -> Result<(), ServiceError> {
        match catch_unwind(AssertUnwindSafe(|| self.seat(model, seat))) {
            Ok(result) => result,
            Err(panic) => {
                self.unload(&model.name);
                Err(engine_panic(&model.name, &panic))
            }
        }
    }

    /// Lets go of the model of that name, if held.
    fn unload(&mut self, name: &str) {
        let Some(index) = self.held.iter().position(|h| h.name == name) else {
            return;
        };
        let held = self.held.remove(index);
        self.backend.unload(name);
        match held.kind {
            Kind::Text => tracing::info!(model = %name, "model unloaded"),
            Kind::Embedder => tracing::info!(model = %name, "embedding model unloaded"),
            Kind::Transcriber => tracing::info!(model = %name, "speech-to-text model unloaded"),
        }
        self.show_expiry();
        self.note_prefix_cache();
    }

    /// An unload asked for: now when the model is idle, else once its answers end.
    /// Transcriptions under way keep what they need of their model, so it goes at once.
    fn unload_asked(&mut self, name: &str) -> Unloaded {
        let in_use = self.in_use(name);
        let Some(held) = self.held.iter_mut().find(|h| h.name == name) else {
            return Unloaded::NotLoaded;
        };
        if in_use && held.kind != Kind::Transcriber {
            held.unload_when_idle = true;
            return Unloaded::WhenIdle;
        }
        self.unload(name);
        Unloaded::Now
    }

    /// Runs the embedding requests read since the last step: one batch per model and kind
    /// (queries, documents), so that requests of several clients share forward passes. A
    /// batch whose model cannot be seated yet waits for the next step.
    fn run_embeddings(&mut self) {
        let jobs = std::mem::take(&mut self.embed_jobs);
        let mut groups: Vec<Vec<EmbedJob>> = Vec::new();
        for job in jobs {
            if job.reply.is_closed() {
                self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            match groups
                .iter_mut()
                .find(|group| group[0].model.name == job.model.name && group[0].kind == job.kind)
            {
                Some(group) => group.push(job),
                None => groups.push(vec![job]),
            }
        }
        for group in groups {
            let model = group[0].model.clone();
            let held = match self.placement(&model) {
                Ok(None) => {
                    self.embed_jobs.extend(group);
                    continue;
                }
                Ok(Some(seat)) => self.seat_guarded(&model, seat),
                Err(error) => Err(error),
            };
            self.queue.waiting.fetch_sub(group.len(), Ordering::SeqCst);
            if let Err(error) = held {
                for job in group {
                    let _ = job.reply.send(Err(error.clone()));
                }
                continue;
            }
            if let Some(held) = self.held.iter_mut().find(|h| h.name == model.name) {
                held.keep = group.last().map_or(held.keep, |job| job.keep_alive);
                held.last_used = Instant::now();
            }
            // Shown now: the replies can reach their clients before the worker is idle again.
            self.show_expiry();
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

    /// The vectors of every input of `jobs` (one model, held, one kind), in order; a panic in
    /// the engine fails these requests only.
    fn embed_together(&mut self, jobs: &[EmbedJob]) -> Result<Vec<Embedded>, ServiceError> {
        let model = &jobs[0].model.name;
        let inputs: Vec<EmbeddingInput> = jobs
            .iter()
            .flat_map(|job| job.inputs.iter().cloned())
            .collect();
        let kind = jobs[0].kind;
        match catch_unwind(AssertUnwindSafe(|| {
            self.backend.embed(model, &inputs, kind)
        })) {
            Ok(result) => result,
            Err(panic) => {
                self.unload(model);
                Err(engine_panic(model, &panic))
            }
        }
    }

    /// Starts waiting transcriptions, in order, while there is room; one whose model cannot
    /// be seated yet (another speech model is transcribing) waits.
    fn admit_transcriptions(&mut self) {
        let mut index = 0;
        while self.transcriptions.len() < self.max_active && index < self.transcribe_waiting.len() {
            if self.transcribe_waiting[index].reply.is_closed() {
                // The client gave up waiting.
                self.transcribe_waiting.remove(index);
                self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
                continue;
            }
            let model = self.transcribe_waiting[index].model.clone();
            let seat = match self.placement(&model) {
                Ok(None) => {
                    index += 1;
                    continue;
                }
                Ok(Some(seat)) => Ok(seat),
                Err(error) => Err(error),
            };
            let job = self
                .transcribe_waiting
                .remove(index)
                .expect("index in range");
            self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
            let TranscribeJob {
                samples,
                options,
                keep_alive,
                reply,
                ..
            } = job;
            let started = seat.and_then(|seat| {
                match catch_unwind(AssertUnwindSafe(|| {
                    self.seat(&model, seat)?;
                    if let Some(held) = self.held.iter_mut().find(|h| h.name == model.name) {
                        held.keep = keep_alive;
                    }
                    self.backend
                        .start_transcription(&model.name, samples, options)
                })) {
                    Ok(started) => started,
                    Err(panic) => {
                        self.unload(&model.name);
                        Err(engine_panic(&model.name, &panic))
                    }
                }
            });
            match started {
                Ok(run) => self.transcriptions.push(Transcribing {
                    run,
                    model: model.name,
                    reply,
                }),
                Err(error) => {
                    let _ = reply.send(Err(error));
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
                self.unload(&over.model);
                Err(engine_panic(&over.model, &panic))
            }
        };
        if let Some(held) = self.held.iter_mut().find(|h| h.name == over.model) {
            held.last_used = Instant::now();
        }
        // Shown now: the reply can reach its client before the worker is idle again.
        self.show_expiry();
        let _ = over.reply.send(result);
    }

    /// A load asked for ahead of requests: refused (busy) while the models in its way are
    /// answering, and a panic in the engine fails the load only.
    fn preload(&mut self, model: &RunnableModel) -> Result<(), ServiceError> {
        match self.placement(model)? {
            Some(seat) => self.seat_guarded(model, seat),
            None => Err(ServiceError::Busy),
        }
    }

    fn idle(&self) -> bool {
        self.active.is_empty()
            && self.waiting.is_empty()
            && self.embed_jobs.is_empty()
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

    /// How long an idle model has left; `None` for ever.
    fn left(&self, held: &Held) -> Option<Duration> {
        self.hold_time(held.keep)
            .map(|time| time.saturating_sub(held.last_used.elapsed()))
    }

    /// Unloads the idle models whose keep-alive has run out (or whose unload waited for their
    /// answers to end), shows when the others go, and returns how long until the next one
    /// goes (`None`: none is due).
    fn let_expired_go(&mut self) -> Option<Duration> {
        let mut gone = Vec::new();
        let mut next: Option<Duration> = None;
        for held in self.held.iter().filter(|h| !self.wanted(&h.name)) {
            match self.left(held) {
                _ if held.unload_when_idle => gone.push(held.name.clone()),
                Some(left) if left.is_zero() => gone.push(held.name.clone()),
                Some(left) => next = Some(next.map_or(left, |next| next.min(left))),
                None => {}
            }
        }
        for name in gone {
            self.unload(&name);
        }
        self.show_expiry();
        next
    }

    /// What `/api/ps` shows: the models held (text models first), and when each goes if no
    /// request comes (none while it works).
    fn show_expiry(&self) {
        let mut residents: Vec<(Kind, Resident)> = self
            .held
            .iter()
            .map(|held| {
                let left = (!self.wanted(&held.name))
                    .then(|| self.left(held))
                    .flatten();
                let resident = Resident {
                    name: held.name.clone(),
                    memory_bytes: held.memory_bytes,
                    loaded_at: held.loaded_at,
                    expires_at: expiry_at(left),
                };
                (held.kind, resident)
            })
            .collect();
        residents.sort_by_key(|(kind, _)| *kind);
        *self.shown.lock().expect("not poisoned") = residents.into_iter().map(|(_, r)| r).collect();
    }

    /// The models at work stay: their keep-alive counts from their last work.
    fn touch_models_in_use(&mut self) {
        let now = Instant::now();
        let in_use: Vec<bool> = self.held.iter().map(|h| self.in_use(&h.name)).collect();
        for (held, in_use) in self.held.iter_mut().zip(in_use) {
            if in_use {
                held.last_used = now;
            }
        }
    }

    /// One step of every text model with generations (each of its generations gets its next
    /// token in one forward pass, a prompt that joined is prefilled a chunk further), then the
    /// new text of every generation. A model whose step fails takes its generations with it.
    fn step_all(&mut self) {
        for session in &mut self.active {
            if session.events.is_closed() {
                // The client went away: its row leaves at this step.
                session.generation.finish(FinishReason::Cancelled);
            }
        }
        let mut models: Vec<String> = Vec::new();
        for session in &self.active {
            if !models.contains(&session.model) {
                models.push(session.model.clone());
            }
        }
        for model in models {
            let error = match catch_unwind(AssertUnwindSafe(|| self.backend.step(&model))) {
                Ok(Ok(())) => continue,
                Ok(Err(error)) => error,
                Err(panic) => engine_panic(&model, &panic),
            };
            tracing::error!(model = %model, error = %error, "a batch step failed; its generations end and the model is let go");
            let (failed, going_on) = std::mem::take(&mut self.active)
                .into_iter()
                .partition(|session| session.model == model);
            self.active = going_on;
            for session in failed {
                let _ = session.events.send(Event::Failed(error.clone()));
            }
            self.unload(&model);
        }
        let mut finished = Vec::new();
        for (index, session) in self.active.iter_mut().enumerate() {
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
                        .send(Event::Failed(engine_panic(&session.model, &panic)));
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
        let names: Vec<String> = self.held.iter().map(|h| h.name.clone()).collect();
        for name in names {
            self.unload(&name);
        }
    }
}

impl Session {
    /// Sends what the generation read since the last call; `Ok(false)` once it is over.
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
