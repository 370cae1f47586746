//! Pull and push from the app against the local test Hub: progress views, the end state, Cancel.

use std::sync::{Arc, Mutex};

use crate::common::{fixture_env, mock_app, wait_until, Fixture};
use mlxk_app::commands::library::{list_models, model_details};
use mlxk_app::commands::secrets::{secret_set, SecretName};
use mlxk_app::commands::transfers::{pull_start, push_start, transfer_cancel, transfers_list};
use mlxk_app::state::AppState;
use mlxk_app::transfers::{TransferState, TransferView};
use mlxk_core::hub::pull::FileState;
use mlxk_testhub::{HubConfig, Knobs, RepoSettings, TestHub};
use tauri::async_runtime::block_on;
use tauri::test::MockRuntime;
use tauri::{App, Manager};

const LLAMA_4BIT: &str = "mlx-community/Llama-3.2-1B-Instruct-4bit";
const TOKEN: &str = "hf_transfertesttokentransfertesttoken";

struct Setup {
    fx: Fixture,
    app: App<MockRuntime>,
    hub: TestHub,
    /// Every view the transfers reported, in order.
    seen: Arc<Mutex<Vec<TransferView>>>,
}

/// A fixture cache, the app, and a Hub where alice (TOKEN) may write to alice-org, seeded
/// with public copies of the fixture's Llama model.
fn setup(seeds: &[&str]) -> Setup {
    let fx = fixture_env();
    let (app, _) = mock_app();
    let hub = block_on(TestHub::start(
        HubConfig::new(fx.dir.path().join("testhub"))
            .token(TOKEN, "alice")
            .org_member("alice-org", "alice"),
    ))
    .unwrap();
    std::env::set_var("HF_ENDPOINT", hub.url());
    let folder = block_on(model_details(LLAMA_4BIT.into()))
        .unwrap()
        .path
        .unwrap();
    for repo in seeds {
        hub.seed(folder.as_ref(), repo, RepoSettings::default(), None)
            .unwrap();
    }
    let seen: Arc<Mutex<Vec<TransferView>>> = Arc::default();
    let log = Arc::clone(&seen);
    app.state::<AppState>()
        .transfers
        .set_observer(move |view| log.lock().unwrap().push(view.clone()));
    Setup { fx, app, hub, seen }
}

fn ended(app: &App<MockRuntime>, id: u32) -> TransferView {
    let state = app.state::<AppState>();
    assert!(
        wait_until(|| state
            .transfers
            .get(id)
            .is_some_and(|v| v.state != TransferState::Running)),
        "transfer {id} still running: {:?}",
        state.transfers.get(id)
    );
    state.transfers.get(id).unwrap()
}

#[test]
fn a_pull_reports_each_file_and_adds_the_model_to_the_library() {
    let s = setup(&["alice-org/copy"]);
    let bad = block_on(pull_start(s.app.state(), "../etc".into())).unwrap_err();
    assert_eq!(bad.kind, "invalid_name");

    let id = block_on(pull_start(s.app.state(), "alice-org/copy".into())).unwrap();
    let done = ended(&s.app, id);
    let TransferState::Done { message, link } = &done.state else {
        panic!("the pull ended as {:?}", done.state);
    };
    assert!(message.starts_with("alice-org/copy at "), "{message}");
    assert!(link.is_none());
    assert!(!done.files.is_empty());
    assert!(done
        .files
        .iter()
        .all(|f| f.state == FileState::Done && f.done_bytes == f.size));
    assert_eq!(done.done_bytes, done.total_bytes);

    let seen = s.seen.lock().unwrap().clone();
    assert_eq!(seen.first().unwrap().phase, "Listing files…");
    assert!(
        seen.iter()
            .any(|v| v.files.iter().any(|f| f.state == FileState::Downloading)),
        "no view showed a file downloading: {seen:?}"
    );
    let library = block_on(list_models()).unwrap();
    assert!(library
        .models
        .iter()
        .any(|m| m.name == "alice-org/copy" && m.healthy));
    assert_eq!(
        transfers_list(s.app.state()),
        vec![done.clone()],
        "one transfer in this session"
    );
    assert!(
        !transfer_cancel(s.app.state(), id),
        "an ended pull cannot be cancelled"
    );
    block_on(s.hub.stop());
    drop(s.fx);
}

#[test]
fn cancel_stops_a_pull_midway_and_keeps_it_resumable() {
    let s = setup(&["alice-org/slow"]);
    // ~37 KB of weights at 8 KB/s: several seconds, time enough to cancel.
    s.hub.set_knobs(Knobs {
        throttle_bytes_per_sec: Some(8_000),
        ..Knobs::default()
    });
    let id = block_on(pull_start(s.app.state(), "alice-org/slow".into())).unwrap();
    let again = block_on(pull_start(s.app.state(), "alice-org/slow".into())).unwrap();
    assert_eq!(
        again, id,
        "a second pull of the same repo joins the running one"
    );
    let state = s.app.state::<AppState>();
    assert!(wait_until(|| state
        .transfers
        .get(id)
        .is_some_and(|v| v.done_bytes > 0)));
    assert!(transfer_cancel(s.app.state(), id));
    let cancelled = ended(&s.app, id);
    assert_eq!(cancelled.state, TransferState::Cancelled);
    assert!(cancelled.done_bytes < cancelled.total_bytes);

    // Resumed at full speed, it completes.
    s.hub.set_knobs(Knobs::default());
    let resumed = block_on(pull_start(s.app.state(), "alice-org/slow".into())).unwrap();
    assert_ne!(resumed, id);
    assert!(matches!(
        ended(&s.app, resumed).state,
        TransferState::Done { .. }
    ));
    block_on(s.hub.stop());
}

#[test]
fn a_push_needs_a_token_then_ends_with_the_link() {
    let s = setup(&[]);
    let folder = block_on(model_details(LLAMA_4BIT.into()))
        .unwrap()
        .path
        .unwrap();
    let push = |repo: &str| {
        block_on(push_start(
            s.app.state(),
            folder.clone(),
            repo.into(),
            "".into(),
            "first upload".into(),
            false,
        ))
    };
    assert_eq!(push("alice-org/pushed").unwrap_err().kind, "unauthorized");
    block_on(secret_set(
        s.app.state(),
        SecretName::HubToken,
        TOKEN.into(),
    ))
    .unwrap();
    assert_eq!(push("no-org").unwrap_err().kind, "invalid_name");
    let not_a_model = s.fx.dir.path().join("not-a-model");
    std::fs::create_dir_all(&not_a_model).unwrap();
    std::fs::write(not_a_model.join("notes.txt"), "hello").unwrap();
    let refused = block_on(push_start(
        s.app.state(),
        not_a_model.display().to_string(),
        "alice-org/notes".into(),
        "".into(),
        "".into(),
        false,
    ))
    .unwrap_err();
    assert_eq!(refused.kind, "folder_unhealthy");
    assert!(
        refused.message.contains("mlxk push --force"),
        "{}",
        refused.message
    );

    let id = push("alice-org/pushed").unwrap();
    let done = ended(&s.app, id);
    let TransferState::Done { message, link } = &done.state else {
        panic!("the push ended as {:?}", done.state);
    };
    assert!(message.contains("a new private repository"), "{message}");
    let link = link.as_deref().unwrap();
    assert!(
        link.starts_with(&format!("{}/alice-org/pushed", s.hub.url())),
        "{link}"
    );
    let phases: Vec<String> = s
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|v| v.phase.clone())
        .collect();
    assert!(phases.iter().any(|p| p == "Committing…"), "{phases:?}");

    // The same folder again: nothing to send.
    let again = ended(&s.app, push("alice-org/pushed").unwrap());
    let TransferState::Done { message, .. } = again.state else {
        panic!("{:?}", again.state);
    };
    assert!(message.starts_with("No changes"), "{message}");
    block_on(s.hub.stop());
}

#[test]
fn cancel_stops_a_push_before_its_commit() {
    let s = setup(&[]);
    block_on(secret_set(
        s.app.state(),
        SecretName::HubToken,
        TOKEN.into(),
    ))
    .unwrap();
    let folder = block_on(model_details(LLAMA_4BIT.into()))
        .unwrap()
        .path
        .unwrap();
    // A slow Hub: it holds the upload requests for 3 s, time to cancel midway.
    s.hub.set_knobs(Knobs {
        upload_hold_ms: Some(3_000),
        ..Knobs::default()
    });
    let id = block_on(push_start(
        s.app.state(),
        folder,
        "alice-org/cancelled".into(),
        "".into(),
        "".into(),
        false,
    ))
    .unwrap();
    // Midway: the repository exists, the upload is being held.
    assert!(wait_until(|| s
        .hub
        .requests()
        .iter()
        .any(|r| r.path == "/api/repos/create")));
    let uploading = s.app.state::<AppState>().transfers.get(id).unwrap();
    assert_eq!(
        uploading.state,
        TransferState::Running,
        "{:#?}",
        s.hub
            .requests()
            .iter()
            .map(|r| format!("{} {} {} {:?}", r.method, r.path, r.status, r.detail))
            .collect::<Vec<_>>()
    );
    assert_eq!(uploading.phase, "Uploading…");
    assert!(transfer_cancel(s.app.state(), id));
    assert_eq!(ended(&s.app, id).state, TransferState::Cancelled);

    // Nothing was committed: the repository (created before the upload) has no weights on main.
    let repo = mlxk_testhub::RepoId::parse("alice-org/cancelled").unwrap();
    let store = s.hub.store();
    if store.exists(&repo) {
        let head = store.resolve(&repo, "main").unwrap();
        let files = store.commit(&repo, &head).unwrap().files;
        assert!(!files.contains_key("model.safetensors"), "{files:?}");
    }
    block_on(s.hub.stop());
}
