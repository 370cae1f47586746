//! The menu-bar (tray) icon: its look and tooltip follow the server's state, and its menu is
//! rebuilt from [`menu_entries`] on every change. [`handle_menu_event`] is the one place menu
//! clicks are handled.

use tauri::image::Image;
use tauri::menu::{IsMenuItem, Menu, MenuItem, PredefinedMenuItem, Submenu};
use tauri::tray::TrayIconBuilder;
use tauri::{AppHandle, Manager, Runtime};

use crate::client_urls::{ClientApi, ClientUrl};
use crate::commands;
use crate::glyph::{self, Glyph};
use crate::server::ServerStatus;
use crate::state::AppState;
use crate::windows::{self, AppWindow};

pub const TRAY_ID: &str = "mlxk";

/// Menu item ids.
pub mod ids {
    pub const STATUS: &str = "status";
    pub const TOGGLE_SERVER: &str = "toggle-server";
    /// The "Copy Base URL" submenu, and its item for each API.
    pub const COPY_URL: &str = "copy-url";
    pub const COPY_OPENAI_URL: &str = "copy-url-openai";
    pub const COPY_ANTHROPIC_URL: &str = "copy-url-anthropic";
    pub const COPY_OLLAMA_URL: &str = "copy-url-ollama";
    pub const KEY_REQUIRED: &str = "key-required";
    pub const EXPOSED_WARNING: &str = "exposed-warning";
    pub const OPEN_LIBRARY: &str = "open-library";
    pub const PUSH_FOLDER: &str = "push-folder";
    pub const SETTINGS: &str = "settings";
    pub const QUIT: &str = "quit";
}

/// One line of the menu.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MenuEntry {
    Item {
        id: &'static str,
        text: String,
        enabled: bool,
    },
    Submenu {
        id: &'static str,
        text: String,
        entries: Vec<MenuEntry>,
    },
    Separator,
}

fn item(id: &'static str, text: impl Into<String>, enabled: bool) -> MenuEntry {
    MenuEntry::Item {
        id,
        text: text.into(),
        enabled,
    }
}

/// The menu for a server state.
pub fn menu_entries(status: &ServerStatus) -> Vec<MenuEntry> {
    let mut entries = vec![item(ids::STATUS, status.describe(), false)];
    match status {
        ServerStatus::Running {
            exposed,
            urls,
            key_required,
            ..
        } => {
            entries.push(copy_url_submenu(urls, *key_required));
            if *exposed {
                entries.push(item(
                    ids::EXPOSED_WARNING,
                    "⚠ Reachable from other machines (not loopback)",
                    false,
                ));
            }
            entries.push(item(ids::TOGGLE_SERVER, "Stop Server", true));
        }
        ServerStatus::Starting { .. } => {
            entries.push(item(ids::TOGGLE_SERVER, "Stop Server", true))
        }
        ServerStatus::Stopped | ServerStatus::Error { .. } => {
            entries.push(item(ids::TOGGLE_SERVER, "Start Server", true))
        }
    }
    entries.extend([
        MenuEntry::Separator,
        item(ids::OPEN_LIBRARY, "Open Library…", true),
        item(ids::PUSH_FOLDER, "Push a Folder…", true),
        item(ids::SETTINGS, "Settings…", true),
        MenuEntry::Separator,
        item(ids::QUIT, "Quit MLX Knife", true),
    ]);
    entries
}

/// The menu item id that copies `api`'s base URL.
fn copy_url_id(api: ClientApi) -> &'static str {
    match api {
        ClientApi::Openai => ids::COPY_OPENAI_URL,
        ClientApi::Anthropic => ids::COPY_ANTHROPIC_URL,
        ClientApi::Ollama => ids::COPY_OLLAMA_URL,
    }
}

/// "Copy Base URL ▸" with one item per API, each showing what it copies; a line saying that
/// clients need the API key when the server has one (never the key).
fn copy_url_submenu(urls: &[ClientUrl], key_required: bool) -> MenuEntry {
    let mut entries: Vec<MenuEntry> = urls
        .iter()
        .map(|u| item(copy_url_id(u.api), format!("{}: {}", u.name, u.url), true))
        .collect();
    if key_required {
        entries.push(MenuEntry::Separator);
        entries.push(item(
            ids::KEY_REQUIRED,
            "Clients must send the server's API key",
            false,
        ));
    }
    MenuEntry::Submenu {
        id: ids::COPY_URL,
        text: "Copy Base URL".into(),
        entries,
    }
}

/// The icon for a state: its glyph (see [`crate::glyph`]).
pub fn icon_for(status: &ServerStatus) -> Image<'static> {
    Image::new_owned(Glyph::of(status).rgba(), glyph::SIZE, glyph::SIZE)
}

/// Creates the tray icon (once, at startup).
pub fn create<R: Runtime>(app: &AppHandle<R>) -> tauri::Result<()> {
    let status = app.state::<AppState>().server.status();
    let builder = TrayIconBuilder::with_id(TRAY_ID).icon(icon_for(&status));
    // A template image: the menu bar tints it for its light or dark appearance.
    #[cfg(target_os = "macos")]
    let builder = builder.icon_as_template(true);
    builder
        .tooltip(format!("MLX Knife: {}", status.describe()))
        .menu(&build_menu(app, &status)?)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| handle_menu_event(app, event.id().as_ref()))
        .build(app)?;
    Ok(())
}

/// Brings the icon, tooltip and menu up to date (no-op without a tray, e.g. in tests).
pub fn refresh<R: Runtime>(app: &AppHandle<R>, status: &ServerStatus) -> tauri::Result<()> {
    let Some(tray) = app.tray_by_id(TRAY_ID) else {
        return Ok(());
    };
    tray.set_icon(Some(icon_for(status)))?;
    #[cfg(target_os = "macos")]
    tray.set_icon_as_template(true)?;
    tray.set_tooltip(Some(format!("MLX Knife: {}", status.describe())))?;
    tray.set_menu(Some(build_menu(app, status)?))
}

fn build_menu<R: Runtime>(app: &AppHandle<R>, status: &ServerStatus) -> tauri::Result<Menu<R>> {
    let menu = Menu::new(app)?;
    for entry in menu_entries(status) {
        menu.append(build_entry(app, entry)?.as_ref())?;
    }
    Ok(menu)
}

fn build_entry<R: Runtime>(
    app: &AppHandle<R>,
    entry: MenuEntry,
) -> tauri::Result<Box<dyn IsMenuItem<R>>> {
    Ok(match entry {
        MenuEntry::Item { id, text, enabled } => {
            Box::new(MenuItem::with_id(app, id, text, enabled, None::<&str>)?)
        }
        MenuEntry::Submenu { id, text, entries } => {
            let submenu = Submenu::with_id(app, id, text, true)?;
            for entry in entries {
                submenu.append(build_entry(app, entry)?.as_ref())?;
            }
            Box::new(submenu)
        }
        MenuEntry::Separator => Box::new(PredefinedMenuItem::separator(app)?),
    })
}

/// What a click on a menu item does. Starting and stopping run in the background; the tray
/// follows the server's state (`ServerControl::subscribe`).
pub fn handle_menu_event<R: Runtime>(app: &AppHandle<R>, id: &str) {
    let state = app.state::<AppState>();
    match id {
        ids::TOGGLE_SERVER => {
            let app = app.clone();
            let running = state.server.status().is_active();
            tauri::async_runtime::spawn(async move {
                let state = app.state::<AppState>();
                if running {
                    state.server.stop().await;
                } else {
                    commands::server::start_server(&state).await;
                }
            });
        }
        ids::COPY_OPENAI_URL | ids::COPY_ANTHROPIC_URL | ids::COPY_OLLAMA_URL => {
            let ServerStatus::Running { urls, .. } = state.server.status() else {
                return;
            };
            if let Some(chosen) = urls.iter().find(|u| copy_url_id(u.api) == id) {
                if let Err(e) = state.copy_text(&chosen.url) {
                    eprintln!("mlxk-app: cannot copy the {} base URL: {e}", chosen.name);
                }
            }
        }
        ids::OPEN_LIBRARY | ids::EXPOSED_WARNING => open(app, AppWindow::Library),
        ids::PUSH_FOLDER => open(app, AppWindow::Push),
        ids::SETTINGS => open(app, AppWindow::Settings),
        ids::QUIT => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                app.state::<AppState>().server.stop().await;
                app.exit(0);
            });
        }
        _ => {}
    }
}

fn open<R: Runtime>(app: &AppHandle<R>, which: AppWindow) {
    if let Err(e) = windows::show(app, which) {
        eprintln!("mlxk-app: cannot open the {} window: {e}", which.label());
    }
}
