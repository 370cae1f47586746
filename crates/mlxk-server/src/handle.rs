//! Starting and stopping the server: what `mlxk serve` and the app's toggle call.

use std::net::SocketAddr;
use std::sync::Arc;

use mlxk_core::{HubCache, Library};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::backend::{Backend, BackendFactory, MlxBackend};
use crate::config::ServerConfig;
use crate::connections::{self, ConnectionLimits};
use crate::routes::{self, AppState, Shared};
use crate::service::{GenerationService, ServiceError};
use crate::worker::{Resident, Unloaded, Worker, WorkerStop};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running server. Dropping it without [`ServerHandle::stop`] leaves it running until the
/// runtime ends.
pub struct ServerHandle {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    state: Shared,
}

impl ServerHandle {
    /// The address actually bound (useful with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The models held in memory (a text model, an embedding model).
    pub fn loaded_models(&self) -> Vec<String> {
        self.state.service.worker().loaded_models()
    }

    /// What the server holds in memory, to ask while it runs (cheap to clone, and usable
    /// without holding on to this handle).
    pub fn models(&self) -> Models {
        Models(Arc::clone(&self.state))
    }

    /// The models in memory: names, memory, when loaded and when they go if idle.
    pub fn residents(&self) -> Vec<Resident> {
        self.models().residents()
    }

    /// Lets go of the model `name` (as the API names it) now, or once its running answers
    /// end.
    pub async fn unload(&self, name: &str) -> Result<Unloaded, ServiceError> {
        self.models().unload(name).await
    }

    /// Loads the model `name` names before any request asks for it (`mlxk serve --model`);
    /// returns its name as the API shows it.
    pub async fn preload(&self, name: &str) -> Result<String, ServiceError> {
        let model = self.state.service.resolve(name).await?;
        let shown = model.name.clone();
        self.state.service.worker().load(model).await?;
        Ok(shown)
    }

    /// Graceful stop: new connections are refused, active generations end with
    /// `finish_reason: stop`, streams close with `[DONE]`, and the port is released. Bounded by
    /// the configured shutdown timeout: a stuck worker and the requests waiting on it are left
    /// behind ([`Stopped::WorkerAbandoned`]), the port is released all the same.
    pub async fn stop(mut self) -> Stopped {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // The worker gets the timeout; open connections a little more to finish their streams.
        let limit = self.state.config.shutdown_timeout + CONNECTION_GRACE;
        if tokio::time::timeout(limit, &mut self.task).await.is_err() {
            self.task.abort();
            let _ = (&mut self.task).await;
        }
        // The graceful path above has stopped the worker (this returns how), or, if the serve
        // loop ended early, this stops it (bounded by the same timeout).
        let state = Arc::clone(&self.state);
        match tokio::task::spawn_blocking(move || state.service.worker().shutdown()).await {
            Ok(WorkerStop::Stopped) => Stopped::Cleanly,
            _ => Stopped::WorkerAbandoned,
        }
    }
}

/// The models side of a running server: what is in memory, and letting go of it.
#[derive(Clone)]
pub struct Models(Shared);

impl Models {
    pub fn residents(&self) -> Vec<Resident> {
        self.0.service.worker().residents()
    }

    pub async fn unload(&self, name: &str) -> Result<Unloaded, ServiceError> {
        self.0.service.worker().unload(name).await
    }
}

/// How long connections may take to close after the worker stopped.
const CONNECTION_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How [`ServerHandle::stop`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Stopped {
    Cleanly,
    /// The inference worker did not end within the shutdown timeout; it ends with the process.
    WorkerAbandoned,
}

/// Binds and starts serving models from the cache on the MLX engine.
pub async fn start(config: ServerConfig) -> Result<ServerHandle, StartError> {
    let (policy, cache) = (config.load_policy, cache_of(&config));
    let prompt_cache = config.prompt_cache_bytes;
    let backend: BackendFactory = Box::new(move || -> Box<dyn Backend> {
        Box::new(MlxBackend::new(policy, &cache, prompt_cache))
    });
    start_with_backend(config, backend).await
}

/// The cache the server reads: the configured one, else the environment's, read once.
fn cache_of(config: &ServerConfig) -> HubCache {
    config.cache.clone().unwrap_or_else(HubCache::from_env)
}

/// Binds and starts serving, generating on the backend `backend` makes (on the worker
/// thread): the MLX engine for [`start`], a deterministic stand-in in tests.
pub async fn start_with_backend(
    config: ServerConfig,
    backend: BackendFactory,
) -> Result<ServerHandle, StartError> {
    let addr = SocketAddr::new(config.host, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    let service = GenerationService::new(
        Library::new(cache_of(&config)).with_workspace_home(mlxk_core::workspace::workspace_home()),
        Worker::spawn(&config, backend),
        config.queue_timeout,
        config.audio_limits(),
    );
    let state: Shared = Arc::new(AppState { service, config });
    raise_open_file_limit();
    let limits = ConnectionLimits {
        max_connections: state.config.max_connections.max(1),
        header_timeout: state.config.read_timeout,
    };
    let app = routes::router(Arc::clone(&state));
    let (shutdown, signal) = oneshot::channel::<()>();
    let worker_state = Arc::clone(&state);
    let task = tokio::spawn(async move {
        let graceful = async move {
            let _ = signal.await;
            // End the generations first so that their streams can finish.
            let _ =
                tokio::task::spawn_blocking(move || worker_state.service.worker().shutdown()).await;
        };
        connections::serve(listener, app, limits, graceful).await;
    });
    tracing::info!(%addr, "listening");
    Ok(ServerHandle {
        addr,
        shutdown: Some(shutdown),
        task,
        state,
    })
}

/// Each connection is a file descriptor: the soft limit (often 1,024) would be the real
/// connection limit, so it is raised to the hard one.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit"),
    }
}
