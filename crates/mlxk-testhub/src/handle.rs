//! Starting and stopping the hub, seeding it, and reading what it saw.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::api::{self, AppState, Shared};
use crate::config::{HubConfig, Knobs};
use crate::request_log::{RequestLog, RequestRecord};
use crate::store::{Commit, RepoId, RepoSettings, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use {root} as the hub's root: {source}")]
    Root {
        root: std::path::PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running hub. Dropping it without [`TestHub::stop`] leaves it serving until the runtime
/// ends.
pub struct TestHub {
    addr: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    state: Shared,
}

impl TestHub {
    /// Binds and serves `config.root` (repos already there are served as they are).
    pub async fn start(config: HubConfig) -> Result<TestHub, StartError> {
        let store = Store::open(&config.root).map_err(|source| StartError::Root {
            root: config.root.clone(),
            source,
        })?;
        let addr = SocketAddr::new(config.host, config.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?;
        let state: Shared = Arc::new(AppState {
            store: Arc::new(store),
            users: config.users,
            log: RequestLog::default(),
            knobs: Mutex::new(config.knobs),
            tickets: Mutex::new(HashMap::new()),
            addr,
        });
        let app = api::router(Arc::clone(&state));
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = signal.await;
                })
                .await;
        });
        Ok(TestHub {
            addr,
            shutdown: Some(shutdown),
            task,
            state,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`: what `HF_ENDPOINT` should be.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn store(&self) -> &Store {
        &self.state.store
    }

    /// Seeds `folder` as a new commit on `main` of `repo` (`org/name`), created if missing,
    /// then applies `settings` (public, private or gated). `tag` also tags the commit.
    pub fn seed(
        &self,
        folder: &Path,
        repo: &str,
        settings: RepoSettings,
        tag: Option<&str>,
    ) -> Result<Commit, StoreError> {
        seed(self.store(), folder, repo, settings, tag)
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.state.log.snapshot()
    }

    pub fn clear_requests(&self) {
        self.state.log.clear();
    }

    pub fn set_knobs(&self, knobs: Knobs) {
        *self.state.knobs.lock().unwrap_or_else(|e| e.into_inner()) = knobs;
    }

    /// Graceful stop: the port is released when this returns (open downloads end first).
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// [`TestHub::seed`] on a store that is not (yet) served.
pub fn seed(
    store: &Store,
    folder: &Path,
    repo: &str,
    settings: RepoSettings,
    tag: Option<&str>,
) -> Result<Commit, StoreError> {
    let id = RepoId::parse(repo)?;
    let commit = store.seed_folder(folder, &id, tag)?;
    store.set_settings(&id, settings)?;
    Ok(commit)
}
