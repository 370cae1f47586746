//! Starting and stopping the server: what `mlxk serve` and the app's toggle call.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::api::{self, AppState, Shared};
use crate::config::ServerConfig;
use crate::connections::{self, ConnectionLimits};
use crate::guard::{self, RequestGuard};
use crate::worker::{Worker, WorkerStop};

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

    /// The model held in memory, if any.
    pub fn loaded_model(&self) -> Option<String> {
        self.state.worker.loaded_model()
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
        match tokio::task::spawn_blocking(move || state.worker.shutdown()).await {
            Ok(WorkerStop::Stopped) => Stopped::Cleanly,
            _ => Stopped::WorkerAbandoned,
        }
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

/// Binds and starts serving.
pub async fn start(config: ServerConfig) -> Result<ServerHandle, StartError> {
    let addr = SocketAddr::new(config.host, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    let state: Shared = Arc::new(AppState {
        worker: Worker::spawn(&config),
        config,
    });
    raise_open_file_limit();
    let limits = ConnectionLimits {
        max_connections: state.config.max_connections.max(1),
        header_timeout: state.config.read_timeout,
    };
    let app = router(Arc::clone(&state));
    let (shutdown, signal) = oneshot::channel::<()>();
    let worker_state = Arc::clone(&state);
    let task = tokio::spawn(async move {
        let graceful = async move {
            let _ = signal.await;
            // End the generations first so that their streams can finish.
            let _ = tokio::task::spawn_blocking(move || worker_state.worker.shutdown()).await;
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

fn router(state: Shared) -> Router {
    let guard = Arc::new(RequestGuard::new(
        &state.config.allowed_hosts,
        &state.config.cors_origins,
        state.config.max_body_bytes,
    ));
    let cors_guard = Arc::clone(&guard);
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            cors_guard.origin_allowed(origin.to_str().unwrap_or(""))
        }))
        .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
        .allow_headers([
            axum::http::header::AUTHORIZATION,
            axum::http::header::CONTENT_TYPE,
        ]);
    let v1 = Router::new()
        .route("/models", get(api::list_models))
        .route("/models/{*id}", get(api::get_model))
        .route("/chat/completions", post(api::chat_completions))
        .route("/completions", post(api::completions))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            api::require_key,
        ));
    Router::new()
        .route("/health", get(api::health))
        .nest("/v1", v1)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        // A body that stops arriving ends the request (408), never holds it.
        .layer(RequestBodyTimeoutLayer::new(state.config.read_timeout))
        .layer(middleware::from_fn_with_state(guard, guard::guard))
        .layer(cors)
        .with_state(state)
}
