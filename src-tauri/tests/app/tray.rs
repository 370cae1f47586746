//! The tray menu: its entries for each server state, and its handler on Tauri's mock runtime
//! (no display, no real tray).

use crate::common::{fixture_env, mock_app, wait_until};
use mlxk_app::server::ServerStatus;
use mlxk_app::state::AppState;
use mlxk_app::tray::{handle_menu_event, ids, menu_entries, MenuEntry};
use tauri::Manager;

fn item_texts(status: &ServerStatus) -> Vec<(String, String)> {
    menu_entries(status)
        .into_iter()
        .filter_map(|e| match e {
            MenuEntry::Item { id, text, .. } => Some((id.to_string(), text)),
            MenuEntry::Separator => None,
        })
        .collect()
}

fn text_of(status: &ServerStatus, id: &str) -> Option<String> {
    item_texts(status)
        .into_iter()
        .find(|(i, _)| i == id)
        .map(|(_, t)| t)
}

#[test]
fn the_menu_follows_the_server_state() {
    let stopped = ServerStatus::Stopped;
    assert_eq!(
        text_of(&stopped, ids::TOGGLE_SERVER).unwrap(),
        "Start Server"
    );
    assert_eq!(text_of(&stopped, ids::STATUS).unwrap(), "Server stopped");
    assert!(text_of(&stopped, ids::COPY_ADDRESS).is_none());
    for id in [
        ids::OPEN_LIBRARY,
        ids::PUSH_FOLDER,
        ids::SETTINGS,
        ids::QUIT,
    ] {
        assert!(text_of(&stopped, id).is_some(), "{id}");
    }

    let running = ServerStatus::Running {
        address: "127.0.0.1:8000".into(),
        exposed: false,
    };
    assert_eq!(
        text_of(&running, ids::TOGGLE_SERVER).unwrap(),
        "Stop Server"
    );
    assert!(text_of(&running, ids::COPY_ADDRESS)
        .unwrap()
        .contains("http://127.0.0.1:8000"));
    assert!(text_of(&running, ids::EXPOSED_WARNING).is_none());

    let exposed = ServerStatus::Running {
        address: "0.0.0.0:8000".into(),
        exposed: true,
    };
    assert!(text_of(&exposed, ids::EXPOSED_WARNING)
        .unwrap()
        .contains("other machines"));

    let error = ServerStatus::Error {
        message: "cannot listen on 127.0.0.1:8000: address in use".into(),
    };
    assert!(text_of(&error, ids::STATUS)
        .unwrap()
        .contains("address in use"));
    assert_eq!(text_of(&error, ids::TOGGLE_SERVER).unwrap(), "Start Server");
}

#[test]
fn menu_items_open_windows() {
    let (app, _) = mock_app();
    for (id, label) in [
        (ids::OPEN_LIBRARY, "library"),
        (ids::PUSH_FOLDER, "push"),
        (ids::SETTINGS, "settings"),
    ] {
        assert!(app.get_webview_window(label).is_none());
        handle_menu_event(app.handle(), id);
        assert!(
            app.get_webview_window(label).is_some(),
            "{id} opened no window"
        );
        // A second click shows the same window again.
        let open = app.webview_windows().len();
        handle_menu_event(app.handle(), id);
        assert_eq!(app.webview_windows().len(), open);
    }
    assert_eq!(app.webview_windows().len(), 3);
    handle_menu_event(app.handle(), "unknown-id");
}

#[test]
fn toggle_starts_and_stops_the_server_and_the_address_is_copied() {
    let _fx = fixture_env();
    let (app, copied) = mock_app();
    let status = || app.state::<AppState>().server.status();

    handle_menu_event(app.handle(), ids::TOGGLE_SERVER);
    assert!(
        wait_until(|| matches!(status(), ServerStatus::Running { .. })),
        "{:?}",
        status()
    );
    let ServerStatus::Running { address, .. } = status() else {
        unreachable!()
    };
    assert!(std::net::TcpStream::connect(&address).is_ok());

    handle_menu_event(app.handle(), ids::COPY_ADDRESS);
    assert_eq!(*copied.lock().unwrap(), [format!("http://{address}")]);

    handle_menu_event(app.handle(), ids::TOGGLE_SERVER);
    assert!(wait_until(|| status() == ServerStatus::Stopped));
    assert!(std::net::TcpStream::connect(&address).is_err());
}
