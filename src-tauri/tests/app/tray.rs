//! The tray menu: its entries for each server state, and its handler on Tauri's mock runtime
//! (no display, no real tray).

use crate::common::{fixture_env, mock_app, wait_until};
use mlxk_app::server::ServerStatus;
use mlxk_app::state::AppState;
use mlxk_app::tray::{handle_menu_event, ids, menu_entries, MenuEntry};
use tauri::Manager;

/// Every item's id and text, submenus' items included.
fn item_texts(status: &ServerStatus) -> Vec<(String, String)> {
    fn walk(entries: Vec<MenuEntry>, out: &mut Vec<(String, String)>) {
        for entry in entries {
            match entry {
                MenuEntry::Item { id, text, .. } => out.push((id.to_string(), text)),
                MenuEntry::Submenu { id, text, entries } => {
                    out.push((id.to_string(), text));
                    walk(entries, out);
                }
                MenuEntry::Separator => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(menu_entries(status), &mut out);
    out
}

fn running(address: &str, key_required: bool) -> ServerStatus {
    ServerStatus::running(address.parse().unwrap(), key_required)
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
    assert!(text_of(&stopped, ids::COPY_URL).is_none());
    for id in [
        ids::OPEN_LIBRARY,
        ids::PUSH_FOLDER,
        ids::SETTINGS,
        ids::QUIT,
    ] {
        assert!(text_of(&stopped, id).is_some(), "{id}");
    }

    let local = running("127.0.0.1:8000", false);
    assert_eq!(text_of(&local, ids::TOGGLE_SERVER).unwrap(), "Stop Server");
    // Right under the status line (the E2E clicks Stop Server on the third line).
    let ids_in_order: Vec<String> = item_texts(&local).into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids_in_order[..6],
        [
            ids::STATUS,
            ids::COPY_URL,
            ids::COPY_OPENAI_URL,
            ids::COPY_ANTHROPIC_URL,
            ids::COPY_OLLAMA_URL,
            ids::TOGGLE_SERVER
        ]
    );
    assert_eq!(text_of(&local, ids::COPY_URL).unwrap(), "Copy Base URL");
    assert_eq!(
        text_of(&local, ids::COPY_OPENAI_URL).unwrap(),
        "OpenAI: http://127.0.0.1:8000/v1"
    );
    assert_eq!(
        text_of(&local, ids::COPY_ANTHROPIC_URL).unwrap(),
        "Anthropic: http://127.0.0.1:8000"
    );
    assert_eq!(
        text_of(&local, ids::COPY_OLLAMA_URL).unwrap(),
        "Ollama: http://127.0.0.1:8000"
    );
    assert!(text_of(&local, ids::EXPOSED_WARNING).is_none());
    assert!(text_of(&local, ids::KEY_REQUIRED).is_none());

    let exposed = running("0.0.0.0:8000", true);
    assert!(text_of(&exposed, ids::EXPOSED_WARNING)
        .unwrap()
        .contains("other machines"));
    assert_eq!(
        text_of(&exposed, ids::COPY_OPENAI_URL).unwrap(),
        "OpenAI: http://127.0.0.1:8000/v1",
        "every interface is reached through loopback here"
    );
    assert_eq!(
        text_of(&exposed, ids::KEY_REQUIRED).unwrap(),
        "Clients must send the server's API key"
    );

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
fn toggle_starts_and_stops_the_server_and_each_base_url_is_copied() {
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

    for id in [
        ids::COPY_OPENAI_URL,
        ids::COPY_ANTHROPIC_URL,
        ids::COPY_OLLAMA_URL,
    ] {
        handle_menu_event(app.handle(), id);
    }
    assert_eq!(
        *copied.lock().unwrap(),
        [
            format!("http://{address}/v1"),
            format!("http://{address}"),
            format!("http://{address}"),
        ]
    );

    handle_menu_event(app.handle(), ids::TOGGLE_SERVER);
    assert!(wait_until(|| status() == ServerStatus::Stopped));
    assert!(std::net::TcpStream::connect(&address).is_err());
    // Stopped: the items are gone, a stale click copies nothing.
    handle_menu_event(app.handle(), ids::COPY_OPENAI_URL);
    assert_eq!(copied.lock().unwrap().len(), 3);
}
