//! Launch at login (a Login Item on macOS, an XDG autostart entry on Linux).

use tauri::{AppHandle, Runtime};
use tauri_plugin_autostart::ManagerExt;

use crate::error::{CommandError, CommandResult};

#[tauri::command]
#[specta::specta]
pub fn launch_at_login<R: Runtime>(app: AppHandle<R>) -> CommandResult<bool> {
    app.autolaunch().is_enabled().map_err(autostart_error)
}

/// Turns launching at login on or off; returns the new state as the system reports it.
#[tauri::command]
#[specta::specta]
pub fn set_launch_at_login<R: Runtime>(app: AppHandle<R>, enabled: bool) -> CommandResult<bool> {
    let launcher = app.autolaunch();
    if enabled {
        launcher.enable()
    } else {
        launcher.disable()
    }
    .map_err(autostart_error)?;
    launcher.is_enabled().map_err(autostart_error)
}

fn autostart_error(e: tauri_plugin_autostart::Error) -> CommandError {
    CommandError::new("autostart_error", format!("launch at login: {e}"))
}
