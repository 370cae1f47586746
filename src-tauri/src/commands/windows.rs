//! Opening the app's windows from inside a window (links between them).

use tauri::{AppHandle, Runtime};

use crate::error::{CommandError, CommandResult};
use crate::windows::AppWindow;

#[tauri::command]
#[specta::specta]
pub fn open_window<R: Runtime>(app: AppHandle<R>, window: AppWindow) -> CommandResult<()> {
    crate::windows::show(&app, window).map_err(|e| CommandError::new("window_error", e.to_string()))
}
