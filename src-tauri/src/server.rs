//! The embedded server's lifecycle as the app sees it: one [`ServerControl`] holding the
//! [`mlxk_server::ServerHandle`] and the state the tray and the windows show. The server runs
//! in-process (MLX on the server's own worker thread); nothing here knows Tauri.

use std::sync::{Arc, Mutex};

use mlxk_server::{ServerConfig, ServerHandle};
use serde::{Deserialize, Serialize};

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
    },
    Error {
        message: String,
    },
}

impl ServerStatus {
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

type Observer = Box<dyn Fn(&ServerStatus) + Send + Sync>;

/// Starts and stops the embedded server, and tells an observer every change of state.
#[derive(Clone, Default)]
pub struct ServerControl {
    inner: Arc<Mutex<Inner>>,
    observer: Arc<Mutex<Option<Observer>>>,
}

#[derive(Default)]
struct Inner {
    status: Option<ServerStatus>,
    handle: Option<ServerHandle>,
}

impl ServerControl {
    pub fn status(&self) -> ServerStatus {
        self.lock().status.clone().unwrap_or(ServerStatus::Stopped)
    }

    /// Called with every new status (the tray and the windows' event).
    pub fn set_observer(&self, observer: impl Fn(&ServerStatus) + Send + Sync + 'static) {
        *self.observer.lock().expect("observer lock") = Some(Box::new(observer));
    }

    /// Starts the server unless it is already starting or running; a failure to bind (port
    /// taken…) becomes [`ServerStatus::Error`]. Must run inside a Tokio runtime.
    pub async fn start(&self, config: ServerConfig) -> ServerStatus {
        let requested = format!("{}:{}", config.host, config.port);
        {
            let mut inner = self.lock();
            let current = inner.status.clone().unwrap_or(ServerStatus::Stopped);
            if current.is_active() {
                return current;
            }
            inner.status = Some(ServerStatus::Starting { address: requested });
        }
        self.notify();
        let status = match mlxk_server::start(config).await {
            Ok(handle) => {
                let addr = handle.addr();
                let status = ServerStatus::Running {
                    address: addr.to_string(),
                    exposed: !addr.ip().is_loopback(),
                };
                let mut inner = self.lock();
                inner.handle = Some(handle);
                inner.status = Some(status.clone());
                status
            }
            Err(e) => {
                let status = ServerStatus::Error {
                    message: e.to_string(),
                };
                self.lock().status = Some(status.clone());
                status
            }
        };
        self.notify();
        status
    }

    /// Records a failure that happened before the server could start (bad settings).
    pub fn fail(&self, message: String) -> ServerStatus {
        let status = ServerStatus::Error { message };
        self.lock().status = Some(status.clone());
        self.notify();
        status
    }

    /// Stops gracefully (streams end, the port is released); a no-op when not running.
    pub async fn stop(&self) -> ServerStatus {
        let handle = self.lock().handle.take();
        if let Some(handle) = handle {
            if handle.stop().await == mlxk_server::Stopped::WorkerAbandoned {
                eprintln!(
                    "mlxk-app: the inference worker did not stop in time (a model's chat template or a computation is stuck); the port is free, the worker ends when the app quits"
                );
            }
        }
        self.lock().status = Some(ServerStatus::Stopped);
        self.notify();
        ServerStatus::Stopped
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("server state lock")
    }

    fn notify(&self) {
        let status = self.status();
        if let Some(observer) = self.observer.lock().expect("observer lock").as_ref() {
            observer(&status);
        }
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
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        control.set_observer(move |s| log.lock().unwrap().push(s.clone()));

        let ServerStatus::Running { address, exposed } = control.start(loopback_any_port()).await
        else {
            panic!("not running: {:?}", control.status());
        };
        assert!(!exposed);
        assert!(std::net::TcpStream::connect(&address).is_ok());
        // A second start while running changes nothing.
        assert!(matches!(
            control.start(loopback_any_port()).await,
            ServerStatus::Running { .. }
        ));
        assert_eq!(control.stop().await, ServerStatus::Stopped);
        assert!(std::net::TcpStream::connect(&address).is_err());

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
        assert_eq!(states, ["starting", "running", "stopped"]);
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
