//! The MLX Knife menu-bar app: a Tauri 2 shell over `mlxk-core` and `mlxk-server`.
//!
//! The shell holds no business logic. [`commands`] are thin typed wrappers the windows call
//! (their TypeScript bindings are generated into `ui/src/bindings.ts`), [`tray`] is the
//! menu-bar icon ([`glyph`] draws it) and its menu, [`server`] keeps the embedded server's
//! handle and state ([`client_urls`] the base URLs it gives clients), and [`windows`] opens the
//! Library, Settings and Push windows.

pub mod client_urls;
pub mod commands;
pub mod downloads;
pub mod error;
pub mod glyph;
pub mod notifications;
pub mod server;
pub mod settings;
pub mod state;
pub mod transfers;
pub mod tray;
pub mod views;
pub mod windows;

use tauri::{Emitter, Manager, Runtime};
use tauri_plugin_clipboard_manager::ClipboardExt;
use tauri_specta::Event;

use crate::commands::{ServerStatusChanged, TransferChanged};
use crate::state::AppState;
use crate::windows::AppWindow;

/// Connects the server's state to the tray, every window and notifications: each new state,
/// as it comes, for the whole life of the app.
pub fn observe_server<R: Runtime>(app: &tauri::AppHandle<R>) {
    let handle = app.clone();
    let mut updates = app.state::<AppState>().server.subscribe();
    tauri::async_runtime::spawn(async move {
        while updates.changed().await.is_ok() {
            let status = updates.borrow_and_update().clone();
            if let Err(e) = tray::refresh(&handle, &status) {
                eprintln!("mlxk-app: cannot update the tray: {e}");
            }
            // Emitted by name so that it also works on runtimes the bindings' builder is not
            // mounted on (Tauri's mock runtime in tests).
            let _ = handle.emit(
                ServerStatusChanged::NAME,
                ServerStatusChanged(status.clone()),
            );
            if let Some(note) = notifications::for_server(&status) {
                notifications::show(&handle, note);
            }
        }
    });
}

/// Connects pulls and pushes to every window, and their ends to notifications.
pub fn observe_transfers<R: Runtime>(app: &tauri::AppHandle<R>) {
    let handle = app.clone();
    app.state::<AppState>().transfers.set_observer(move |view| {
        let _ = handle.emit(TransferChanged::NAME, TransferChanged(view.clone()));
        if let Some(note) = notifications::for_transfer(view) {
            notifications::show(&handle, note);
        }
    });
}

pub fn run() {
    let specta = commands::specta_builder();
    tauri::Builder::default()
        .plugin(tauri_plugin_clipboard_manager::init())
        .plugin(tauri_plugin_dialog::init())
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ))
        .invoke_handler(specta.invoke_handler())
        .setup(move |app| {
            specta.mount_events(app);
            // Menu-bar only on macOS: no Dock icon (with LSUIElement in Info.plist).
            #[cfg(target_os = "macos")]
            app.set_activation_policy(tauri::ActivationPolicy::Accessory);
            let settings_path = app.path().app_config_dir()?.join("settings.json");
            app.manage(AppState::new(settings_path));
            let clipboard = app.handle().clone();
            app.state::<AppState>().set_copy_text(Box::new(move |text| {
                clipboard
                    .clipboard()
                    .write_text(text)
                    .map_err(|e| e.to_string())
            }));
            observe_server(app.handle());
            observe_transfers(app.handle());
            tray::create(app.handle())?;
            // Off macOS a tray needs a StatusNotifier host, which many desktops lack: show the
            // library at start so the app is never invisible.
            if cfg!(not(target_os = "macos")) {
                windows::show(app.handle(), AppWindow::Library)?;
            }
            Ok(())
        })
        .build(tauri::generate_context!())
        .expect("building the MLX Knife app")
        .run(|app, event| {
            match event {
                // A menu-bar app keeps running with no window open; Quit ends it.
                tauri::RunEvent::ExitRequested {
                    api, code: None, ..
                } if cfg!(target_os = "macos") => api.prevent_exit(),
                tauri::RunEvent::Exit => {
                    let state = app.state::<AppState>();
                    tauri::async_runtime::block_on(state.server.stop());
                }
                _ => {}
            }
        });
}
