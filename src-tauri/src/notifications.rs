//! Desktop notifications for what happens while no window may be open: the server failing, a
//! pull or push ending. [`for_server`] and [`for_transfer`] decide; [`show`] sends.

use tauri::{AppHandle, Manager, Runtime};

use crate::server::ServerStatus;
use crate::transfers::{TransferKind, TransferState, TransferView};

/// A notification's title and body.
pub type Note = (String, String);

pub fn for_server(status: &ServerStatus) -> Option<Note> {
    match status {
        ServerStatus::Error { message } => {
            Some(("MLX Knife: the server stopped".into(), message.clone()))
        }
        _ => None,
    }
}

pub fn for_transfer(view: &TransferView) -> Option<Note> {
    let what = match view.kind {
        TransferKind::Pull => "Pull",
        TransferKind::Push => "Push",
    };
    match &view.state {
        TransferState::Done { message, link } => Some((
            format!("{what} finished: {}", view.target),
            match link {
                Some(link) => format!("{message}\n{link}"),
                None => message.clone(),
            },
        )),
        TransferState::Failed { error } => Some((
            format!("{what} failed: {}", view.target),
            error.message.clone(),
        )),
        // The person asked for it: no need to tell them.
        TransferState::Running | TransferState::Cancelled => None,
    }
}

/// Sends a notification; a desktop without a notification service only logs it.
pub fn show<R: Runtime>(app: &AppHandle<R>, (title, body): Note) {
    // Not registered on Tauri's mock runtime (tests).
    let Some(notifier) = app.try_state::<tauri_plugin_notification::Notification<R>>() else {
        return;
    };
    if let Err(e) = notifier.builder().title(&title).body(&body).show() {
        eprintln!("mlxk-app: notification not shown ({e}): {title}: {body}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::CommandError;

    fn transfer(kind: TransferKind, state: TransferState) -> TransferView {
        TransferView {
            id: 1,
            kind,
            target: "org/model".into(),
            phase: String::new(),
            files: Vec::new(),
            total_bytes: 0,
            done_bytes: 0,
            state,
        }
    }

    #[test]
    fn errors_and_ended_transfers_notify_and_nothing_else_does() {
        let (title, body) = for_server(&ServerStatus::Error {
            message: "address in use".into(),
        })
        .unwrap();
        assert!(title.contains("server") && body == "address in use");
        assert!(for_server(&ServerStatus::Stopped).is_none());

        let done = TransferState::Done {
            message: "Pushed 3 file(s)".into(),
            link: Some("http://hub/org/model".into()),
        };
        let (title, body) = for_transfer(&transfer(TransferKind::Push, done)).unwrap();
        assert_eq!(title, "Push finished: org/model");
        assert!(body.ends_with("http://hub/org/model"));
        let failed = TransferState::Failed {
            error: CommandError::new("unauthorized", "bad token"),
        };
        let (title, body) = for_transfer(&transfer(TransferKind::Pull, failed)).unwrap();
        assert_eq!(
            (title.as_str(), body.as_str()),
            ("Pull failed: org/model", "bad token")
        );
        for quiet in [TransferState::Running, TransferState::Cancelled] {
            assert!(for_transfer(&transfer(TransferKind::Pull, quiet)).is_none());
        }
    }
}
