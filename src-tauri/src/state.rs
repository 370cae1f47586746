//! What the app keeps while it runs, managed by Tauri and shared by commands and the tray.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use mlxk_core::hub::TokenSources;
use mlxk_core::secrets::{SecretError, SecretStore};

use crate::error::CommandResult;
use crate::server::ServerControl;
use crate::settings::ServerSettings;
use crate::transfers::Transfers;

/// Writes text to the system clipboard (the tray's address item). A function so that tests
/// can record what would be copied without a display.
pub type CopyText = Box<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

pub struct AppState {
    pub server: ServerControl,
    pub transfers: Transfers,
    settings: Mutex<ServerSettings>,
    /// The settings file; `None` keeps settings in memory only (tests).
    settings_path: Option<PathBuf>,
    /// A fixed keyring (tests use keyring-core's mock store); `None` opens the OS keyring.
    secrets: Option<SecretStore>,
    copy_text: Mutex<Option<CopyText>>,
    /// The settings (and API key) the running server was started with ("applies on restart",
    /// the chat pane's key).
    started_with: Arc<Mutex<Option<Started>>>,
}

/// What the running server was started with.
struct Started {
    settings: ServerSettings,
    api_key: Option<String>,
}

impl AppState {
    /// The app's state with its settings read from `settings_path`, using the OS keyring.
    pub fn new(settings_path: PathBuf) -> AppState {
        AppState {
            server: ServerControl::default(),
            transfers: Transfers::default(),
            settings: Mutex::new(ServerSettings::load(&settings_path)),
            settings_path: Some(settings_path),
            secrets: None,
            copy_text: Mutex::new(None),
            started_with: Arc::default(),
        }
    }

    /// In-memory settings and the given keyring: for tests.
    pub fn for_tests(settings: ServerSettings, secrets: SecretStore) -> AppState {
        AppState {
            server: ServerControl::default(),
            transfers: Transfers::default(),
            settings: Mutex::new(settings),
            settings_path: None,
            secrets: Some(secrets),
            copy_text: Mutex::new(None),
            started_with: Arc::default(),
        }
    }

    pub fn secret_store(&self) -> Result<SecretStore, SecretError> {
        match &self.secrets {
            Some(store) => Ok(store.clone()),
            None => SecretStore::platform(),
        }
    }

    /// Where a Hugging Face token may come from: this app's keyring first, then `HF_TOKEN`
    /// and the token file, as for `mlxk`.
    pub fn token_sources(&self) -> TokenSources {
        TokenSources::with_keyring(self.secret_store())
    }

    pub fn settings(&self) -> ServerSettings {
        self.settings.lock().expect("settings lock").clone()
    }

    pub fn set_settings(&self, settings: ServerSettings) -> CommandResult<()> {
        settings.validate()?;
        if let Some(path) = &self.settings_path {
            settings.save(path)?;
        }
        *self.settings.lock().expect("settings lock") = settings;
        Ok(())
    }

    pub fn set_copy_text(&self, copy: CopyText) {
        *self.copy_text.lock().expect("clipboard lock") = Some(copy);
    }

    pub fn copy_text(&self, text: &str) -> Result<(), String> {
        match self.copy_text.lock().expect("clipboard lock").as_ref() {
            Some(copy) => copy(text),
            None => Err("no clipboard".into()),
        }
    }

    pub fn remember_started_with(&self, settings: Option<ServerSettings>, api_key: Option<String>) {
        *self.started_with.lock().expect("settings lock") =
            settings.map(|settings| Started { settings, api_key });
    }

    /// The API key of the running server; `None` when it has none or is not running.
    pub fn started_key(&self) -> Option<String> {
        if !self.server.status().is_active() {
            return None;
        }
        self.started_with
            .lock()
            .expect("settings lock")
            .as_ref()
            .and_then(|s| s.api_key.clone())
    }

    /// Whether the running server was started with other settings than the current ones.
    pub fn restart_needed(&self) -> bool {
        self.server.status().is_active()
            && self
                .started_with
                .lock()
                .expect("settings lock")
                .as_ref()
                .is_some_and(|s| s.settings != self.settings())
    }
}
