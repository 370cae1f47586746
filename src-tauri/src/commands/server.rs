//! The embedded server and its settings.

use mlxk_core::secrets::SecretKind;
use serde::{Deserialize, Serialize};
use tauri::State;

use crate::error::CommandResult;
use crate::server::ServerStatus;
use crate::settings::ServerSettings;
use crate::state::AppState;
use crate::views::ResidentModel;

#[tauri::command]
#[specta::specta]
pub fn server_status(state: State<'_, AppState>) -> ServerStatus {
    state.server.status()
}

/// Starts the server with the saved settings (and the API key from the keyring).
#[tauri::command]
#[specta::specta]
pub async fn server_start(state: State<'_, AppState>) -> CommandResult<ServerStatus> {
    Ok(start_server(&state).await)
}

#[tauri::command]
#[specta::specta]
pub async fn server_stop(state: State<'_, AppState>) -> CommandResult<ServerStatus> {
    Ok(state.server.stop().await)
}

/// Stops the server and starts it again with the saved settings (Settings' Restart Server,
/// offered when they differ from the running server's).
#[tauri::command]
#[specta::specta]
pub async fn server_restart(state: State<'_, AppState>) -> CommandResult<ServerStatus> {
    state.server.stop().await;
    Ok(start_server(&state).await)
}

/// The API key the running server was started with, for the app's own client (the chat
/// pane); `None` when it runs without one or is not running. Never shown.
#[tauri::command]
#[specta::specta]
pub fn chat_api_key(state: State<'_, AppState>) -> Option<String> {
    state.started_key()
}

/// The models the running server holds in memory (one at most today); none when stopped.
#[tauri::command]
#[specta::specta]
pub async fn resident_models(state: State<'_, AppState>) -> CommandResult<Vec<ResidentModel>> {
    let resident = state.server.resident().await;
    Ok(resident.iter().map(ResidentModel::from).collect())
}

/// Lets go of the model `name` (a resident model's name) now, or once its running answers
/// end; whether it was loaded.
#[tauri::command]
#[specta::specta]
pub async fn unload_model(state: State<'_, AppState>, name: String) -> CommandResult<bool> {
    Ok(state.server.unload(&name).await?)
}

/// Starts the server as the settings say; shared by the command and the tray.
pub async fn start_server(state: &AppState) -> ServerStatus {
    // Already up: what it was started with stays what the windows compare against.
    let current = state.server.status();
    if current.is_active() {
        return current;
    }
    let settings = state.settings();
    // The key is only needed (and the keyring only asked) when it is configured or required.
    let api_key = state
        .secret_store()
        .ok()
        .and_then(|store| store.get(SecretKind::ServerApiKey).ok().flatten())
        .map(|key| key.expose().to_string());
    match settings.server_config(api_key.clone()) {
        Ok(config) => {
            state.remember_started_with(Some(settings), api_key);
            state.server.start(config).await
        }
        Err(e) => state.server.fail(e.message),
    }
}

/// The settings and what they mean right now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
pub struct SettingsView {
    pub server: ServerSettings,
    /// The host is not loopback: other machines will be able to reach the models.
    pub exposed: bool,
    /// The server runs with other settings; they apply when it is restarted.
    pub restart_needed: bool,
}

#[tauri::command]
#[specta::specta]
pub fn get_settings(state: State<'_, AppState>) -> SettingsView {
    settings_view(&state)
}

/// Validates and stores the settings. A running server keeps its settings until restarted.
#[tauri::command]
#[specta::specta]
pub fn save_settings(
    state: State<'_, AppState>,
    server: ServerSettings,
) -> CommandResult<SettingsView> {
    state.set_settings(server)?;
    Ok(settings_view(&state))
}

fn settings_view(state: &AppState) -> SettingsView {
    let server = state.settings();
    SettingsView {
        exposed: server.is_exposed(),
        restart_needed: state.restart_needed(),
        server,
    }
}
