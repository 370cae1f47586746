//! The app's windows. None is open while the app sits in the menu bar; each is created on
//! first use and then shown and focused again.

use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Manager, Runtime, WebviewUrl, WebviewWindowBuilder};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum AppWindow {
    Library,
    Settings,
    Push,
}

impl AppWindow {
    pub fn label(self) -> &'static str {
        match self {
            AppWindow::Library => "library",
            AppWindow::Settings => "settings",
            AppWindow::Push => "push",
        }
    }

    fn page(self) -> &'static str {
        match self {
            AppWindow::Library => "library.html",
            AppWindow::Settings => "settings.html",
            AppWindow::Push => "push.html",
        }
    }

    fn title(self) -> &'static str {
        match self {
            AppWindow::Library => "MLX Knife: Library",
            AppWindow::Settings => "MLX Knife: Settings",
            AppWindow::Push => "MLX Knife: Push a Folder",
        }
    }

    fn size(self) -> (f64, f64) {
        match self {
            AppWindow::Library => (1100.0, 700.0),
            AppWindow::Settings => (560.0, 620.0),
            AppWindow::Push => (680.0, 640.0),
        }
    }
}

/// Shows the window, creating it if needed, and brings it to the front.
pub fn show<R: Runtime>(app: &AppHandle<R>, which: AppWindow) -> tauri::Result<()> {
    if let Some(window) = app.get_webview_window(which.label()) {
        window.show()?;
        window.unminimize()?;
        return window.set_focus();
    }
    let (width, height) = which.size();
    WebviewWindowBuilder::new(app, which.label(), WebviewUrl::App(which.page().into()))
        .title(which.title())
        .inner_size(width, height)
        .min_inner_size(420.0, 360.0)
        .build()?;
    Ok(())
}
