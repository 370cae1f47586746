//! The embedded server's lifecycle as the app sees it: one [`ServerControl`] holding the
//! [`mlxk_server::ServerHandle`] and the state the tray and the windows show. The server runs
//! in-process (MLX on the server's own worker thread); nothing here knows Tauri.

use std::net::SocketAddr;
use std::sync::Arc;

use mlxk_server::{Resident, ServerConfig, ServerHandle, ServiceError};
use serde::{Deserialize, Serialize};
use tokio::sync::{watch, Mutex, MutexGuard};

use crate::client_urls::{client_urls, every_interface, ClientUrl};

/// What the tray icon, its tooltip and the windows show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ServerStatus {
    Stopped,
    Starting {
        address: String,
    },
    Running {
        /// `host:port` actually bound.
        address: String,
        /// Listening on something other than loopback: other machines can connect.
        exposed: bool,
        /// What to paste into clients, one per API.
        urls: Vec<ClientUrl>,
        /// Listening on every interface: the URLs name loopback, and other devices put this
        /// machine's network address in its place.
        every_interface: bool,
        /// Clients must send the server's API key (never the key itself).
        key_required: bool,
    },
    Error {
        message: String,
    },
}

impl ServerStatus {
    /// A server bound to `bound`, started with or without an API key.
    pub fn running(bound: SocketAddr, key_required: bool) -> ServerStatus {
        ServerStatus::Running {
            address: bound.to_string(),
            exposed: !bound.ip().is_loopback(),
            urls: client_urls(bound),
            every_interface: every_interface(bound),
            key_required,
        }
    }

    /// One line for the tooltip and the menu.
    pub fn describe(&self) -> String {
        match self {
            ServerStatus::Stopped => "Server stopped".into(),
            ServerStatus::Starting { address } => format!("Server starting on {address}…"),
            ServerStatus::Running { address, .. } => format!("Server running on {address}"),
            ServerStatus::Error { message } => format!("Server error: {message}"),
        }
    }

    pub fn is_active(&self) -> bool {
        matches!(
            self,
            ServerStatus::Starting { .. } | ServerStatus::Running { .. }
        )
    }
}

/// How long an unload may wait for the worker's answer (it answers between two tokens, or
/// once a model has loaded).
const UNLOAD_ANSWER: std::time::Duration = std::time::Duration::from_secs(30);

/// Starts and stops the embedded server. Its state is a value that changes, so it lives in a
/// `watch` channel: the tray and the windows follow the latest state, and a reader that falls
/// behind skips to it rather than replaying stale ones.
#[derive(Clone)]
pub struct ServerControl {
    handle: Arc<Mutex<Option<ServerHandle>>>,
    status: Arc<watch::Sender<ServerStatus>>,
}

impl Default for ServerControl {
    fn default() -> Self {
        ServerControl {
            handle: Arc::default(),
            status: Arc::new(watch::Sender::new(ServerStatus::Stopped)),
        }
    }
}

impl ServerControl {
    pub fn status(&self) -> ServerStatus {
        self.status.borrow().clone()
    }

    /// Sees every new status from now on (the tray and the windows' event).
    pub fn subscribe(&self) -> watch::Receiver<ServerStatus> {
        self.status.subscribe()
    }

    /// Starts the server unless it is already starting or running; a failure to bind (port
    /// taken…) becomes [`ServerStatus::Error`]. Must run inside a Tokio runtime.
    pub async fn start(&self, config: ServerConfig) -> ServerStatus {
        let starting = ServerStatus::Starting {
            address: format!("{}:{}", config.host, config.port),
        };
        // Checked and set at once: two clicks never start two servers.
        let mut current = None;
        self.status.send_if_modified(|status| {
            if status.is_active() {
                current = Some(status.clone());
                return false;
            }
            *status = starting;
            true
        });
        if let Some(current) = current {
            return current;
        }
        let key_required = config.required_key().is_some();
        let status = match mlxk_server::start(config).await {
            Ok(handle) => {
                let status = ServerStatus::running(handle.addr(), key_required);
                *self.lock().await = Some(handle);
                status
            }
            Err(e) => ServerStatus::Error {
                message: e.to_string(),
            },
        };
        self.status.send_replace(status.clone());
        status
    }

    /// Records a failure that happened before the server could start (bad settings).
    pub fn fail(&self, message: String) -> ServerStatus {
        let status = ServerStatus::Error { message };
        self.status.send_replace(status.clone());
        status
    }

    /// Stops gracefully (streams end, the port is released); a no-op when not running.
    pub async fn stop(&self) -> ServerStatus {
        let handle = self.lock().await.take();
        if let Some(handle) = handle {
            if handle.stop().await == mlxk_server::Stopped::WorkerAbandoned {
                eprintln!(
                    "mlxk-app: the inference worker did not stop in time (a model's chat template or a computation is stuck); the port is free, the worker ends when the app quits"
                );
            }
        }
        self.status.send_replace(ServerStatus::Stopped);
        ServerStatus::Stopped
    }

    /// The models the running server holds in memory (a text model, an embedding model);
    /// none when it is not running.
    pub async fn resident(&self) -> Vec<Resident> {
        self.lock()
            .await
            .as_ref()
            .map(ServerHandle::residents)
            .unwrap_or_default()
    }

    /// Lets go of the model `name` (as the API names it) now, or once its running answers
    /// end; whether it was loaded. `false` when the server is not running.
    pub async fn unload(&self, name: &str) -> Result<bool, ServiceError> {
        // Asked without holding the handle: a worker busy loading (or stuck) must never keep
        // Stop or Quit waiting.
        let Some(models) = self.lock().await.as_ref().map(ServerHandle::models) else {
            return Ok(false);
        };
        match tokio::time::timeout(UNLOAD_ANSWER, models.unload(name)).await {
            Ok(unloaded) => Ok(unloaded?.was_loaded()),
            Err(_) => Err(ServiceError::Internal(format!(
                "the server did not answer within {} s (it may be loading a model); try again",
                UNLOAD_ANSWER.as_secs()
            ))),
        }
    }

    /// The handle's lock is Tokio's: a start and a stop each hold it across their awaits.
    async fn lock(&self) -> MutexGuard<'_, Option<ServerHandle>> {
        self.handle.lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loopback_any_port() -> ServerConfig {
        ServerConfig {
            port: 0,
            ..ServerConfig::default()
        }
    }

    #[tokio::test]
    async fn start_then_stop_releases_the_port_and_reports_each_state() {
        let control = ServerControl::default();
        let mut updates = control.subscribe();
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let reader = tokio::spawn(async move {
            while updates.changed().await.is_ok() {
                let status = updates.borrow_and_update().clone();
                let stopped = status == ServerStatus::Stopped;
                log.lock().unwrap().push(status);
                if stopped {
                    break;
                }
            }
        });

        let ServerStatus::Running {
            address,
            exposed,
            urls,
            key_required,
            ..
        } = control.start(loopback_any_port()).await
        else {
            panic!("not running: {:?}", control.status());
        };
        assert!(!exposed && !key_required);
        assert_eq!(urls[0].url, format!("http://{address}/v1"));
        assert!(std::net::TcpStream::connect(&address).is_ok());
        // A second start while running changes nothing.
        assert!(matches!(
            control.start(loopback_any_port()).await,
            ServerStatus::Running { .. }
        ));
        assert_eq!(control.stop().await, ServerStatus::Stopped);
        assert!(std::net::TcpStream::connect(&address).is_err());
        reader.await.unwrap();

        let states: Vec<&str> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| match s {
                ServerStatus::Stopped => "stopped",
                ServerStatus::Starting { .. } => "starting",
                ServerStatus::Running { .. } => "running",
                ServerStatus::Error { .. } => "error",
            })
            .collect();
        // "starting" may be skipped when the server is up before the reader runs: a watch
        // holds the latest state, never a stale one.
        assert!(
            states == ["starting", "running", "stopped"] || states == ["running", "stopped"],
            "{states:?}"
        );
    }

    #[tokio::test]
    async fn a_taken_port_is_an_error_state_naming_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let control = ServerControl::default();
        let status = control
            .start(ServerConfig {
                port,
                ..ServerConfig::default()
            })
            .await;
        let ServerStatus::Error { message } = status else {
            panic!("expected an error, got {status:?}");
        };
        assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
        assert!(!control.status().is_active());
    }
}
