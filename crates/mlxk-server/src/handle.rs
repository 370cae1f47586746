//! Starting and stopping the server: what `mlxk serve` and the app's toggle call.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::HeaderValue;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::api::{self, AppState, Shared};
use crate::config::ServerConfig;
use crate::worker::Worker;

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
    /// `finish_reason: stop`, streams close with `[DONE]`, and the port is released.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = (&mut self.task).await;
    }
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
    let app = router(Arc::clone(&state));
    let (shutdown, signal) = oneshot::channel::<()>();
    let worker_state = Arc::clone(&state);
    let task = tokio::spawn(async move {
        let graceful = async move {
            let _ = signal.await;
            // End the generations first so that their streams can finish.
            let _ = tokio::task::spawn_blocking(move || worker_state.worker.shutdown()).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(graceful)
            .await
        {
            tracing::error!("server error: {e}");
        }
    });
    tracing::info!(%addr, "listening");
    Ok(ServerHandle {
        addr,
        shutdown: Some(shutdown),
        task,
        state,
    })
}

fn router(state: Shared) -> Router {
    let extra: Vec<HeaderValue> = state
        .config
        .cors_origins
        .iter()
        .filter_map(|o| o.parse().ok())
        .collect();
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            let text = origin.to_str().unwrap_or("");
            is_loopback_origin(text) || extra.iter().any(|o| o == origin)
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
        .layer(cors)
        .with_state(state)
}

fn is_loopback_origin(origin: &str) -> bool {
    let host = origin.split("://").nth(1).unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}
