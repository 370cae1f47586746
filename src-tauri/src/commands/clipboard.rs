//! The clipboard: the windows' Copy buttons (the base URLs for clients).

use tauri::State;

use crate::error::{CommandError, CommandResult};
use crate::state::AppState;

/// Puts `text` on the system clipboard.
#[tauri::command]
#[specta::specta]
pub fn copy_text(state: State<'_, AppState>, text: String) -> CommandResult<()> {
    state
        .copy_text(&text)
        .map_err(|e| CommandError::new("clipboard_unavailable", format!("cannot copy: {e}")))
}
