//! The commands the windows call, typed end to end: tauri-specta writes `ui/src/bindings.ts`
//! from these signatures (see the `bindings_are_current` test). Each is a few lines that call
//! `mlxk-core` or `mlxk-server`; slow work (file system, keyring, network) runs off the main
//! thread.

pub mod clipboard;
pub mod library;
pub mod push;
pub mod secrets;
pub mod server;
pub mod settings;
pub mod transfers;
pub mod windows;

use serde::{Deserialize, Serialize};
use tauri_specta::{collect_commands, collect_events, Builder};

use crate::error::{CommandError, CommandResult};
use crate::server::ServerStatus;
use crate::transfers::TransferView;

/// Sent to every window whenever the server's state changes.
#[derive(Debug, Clone, Serialize, Deserialize, specta::Type, tauri_specta::Event)]
pub struct ServerStatusChanged(pub ServerStatus);

/// Sent to every window when a pull or push starts, progresses or ends.
#[derive(Debug, Clone, Serialize, Deserialize, specta::Type, tauri_specta::Event)]
pub struct TransferChanged(pub TransferView);

/// Every command and event, for the invoke handler and for the bindings.
pub fn specta_builder() -> Builder<tauri::Wry> {
    Builder::<tauri::Wry>::new()
        .commands(collect_commands![
            library::list_models,
            library::model_details,
            library::check_health,
            library::delete_plan,
            library::delete_model,
            server::server_status,
            server::server_start,
            server::server_stop,
            server::server_restart,
            server::chat_api_key,
            server::resident_models,
            server::unload_model,
            clipboard::copy_text,
            server::get_settings,
            server::save_settings,
            secrets::secret_status,
            secrets::secret_set,
            secrets::secret_remove,
            secrets::token_test,
            push::push_check,
            push::push_preview,
            push::pick_folder::<tauri::Wry>,
            transfers::pull_start,
            transfers::push_start,
            transfers::transfer_cancel,
            transfers::transfers_list,
            transfers::open_link,
            settings::launch_at_login::<tauri::Wry>,
            settings::set_launch_at_login::<tauri::Wry>,
            windows::open_window::<tauri::Wry>,
        ])
        .events(collect_events![ServerStatusChanged, TransferChanged])
        .dangerously_cast_bigints_to_number()
        .disable_serde_phases()
}

/// Runs blocking work (file system, keyring) on Tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> CommandResult<T> + Send + 'static,
) -> CommandResult<T> {
    tauri::async_runtime::spawn_blocking(work)
        .await
        .map_err(|e| CommandError::new("internal_error", e.to_string()))?
}
