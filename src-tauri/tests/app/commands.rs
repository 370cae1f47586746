//! The command functions, called as the windows call them, against fixture caches, a mock
//! keyring and the project's local test Hub.

use crate::common::{
    fixture_env, mock_app, wait_until, with_demo_model, workspace_home, DEMO_MODEL,
};
use mlxk_app::commands::clipboard::copy_text;
use mlxk_app::commands::library::{
    check_health, delete_model, delete_plan, list_models, model_details,
};
use mlxk_app::commands::push::{push_check, push_preview};
use mlxk_app::commands::secrets::{
    secret_remove, secret_set, secret_status, token_test, SecretName,
};
use mlxk_app::commands::server::{
    chat_api_key, get_settings, resident_models, save_settings, server_restart, server_start,
    server_status, server_stop, unload_model,
};
use mlxk_app::downloads::Download;
use mlxk_app::server::ServerStatus;
use mlxk_app::settings::ServerSettings;
use mlxk_app::state::AppState;
use mlxk_app::views::{ContentState, ModelSource};
use tauri::async_runtime::block_on;
use tauri::Manager;

const LLAMA_4BIT: &str = "mlx-community/Llama-3.2-1B-Instruct-4bit";

#[test]
fn the_library_lists_the_fixture_models_with_badges_and_total_size() {
    let fx = fixture_env();
    let library = block_on(list_models()).unwrap();
    assert_eq!(
        std::path::Path::new(&library.cache_root),
        fx.cache.hub.as_path()
    );
    let names: Vec<&str> = library.models.iter().map(|m| m.name.as_str()).collect();
    for expected in &fx.models {
        assert!(
            names.contains(&expected.as_str()),
            "{expected} missing in {names:?}"
        );
    }
    assert_eq!(
        library.total_bytes,
        library.models.iter().map(|m| m.size_bytes).sum::<u64>()
    );
    let llama = library
        .models
        .iter()
        .find(|m| m.name == LLAMA_4BIT)
        .unwrap();
    assert!(llama.healthy, "{}", llama.health_reason);
    assert_eq!(llama.framework, mlxk_core::classify::Framework::Mlx);
    assert_eq!(llama.source, ModelSource::Cache);
    assert_eq!(llama.display_name, LLAMA_4BIT);
    assert_eq!(llama.quantization.as_deref(), Some("4-bit"));
    assert!(
        library.models.iter().any(|m| !m.healthy),
        "the standard fixtures include broken models"
    );
}

#[test]
fn details_and_health_recheck_name_the_model() {
    let _fx = fixture_env();
    let details = block_on(model_details("Llama-3.2-1B-Instruct-4bit".into())).unwrap();
    assert_eq!(details.summary.name, LLAMA_4BIT);
    assert!(details.files.iter().any(|f| f.name == "config.json"));
    assert!(details.config_json.unwrap().contains("llama"));
    let checked = block_on(check_health(Some(LLAMA_4BIT.into()), true)).unwrap();
    assert_eq!(checked.len(), 1);
    assert!(checked[0].healthy);
    let missing = block_on(model_details("no-such-model".into())).unwrap_err();
    assert_eq!(missing.kind, "model_not_found");
    // The pane says when it was last used, as the list row does.
    assert_eq!(details.summary.last_used, None);
    let usage = mlxk_core::usage::UsageLog::for_cache(&mlxk_core::HubCache::from_env());
    usage.record(LLAMA_4BIT).unwrap();
    let used = block_on(model_details(LLAMA_4BIT.into())).unwrap();
    let row = block_on(list_models())
        .unwrap()
        .models
        .into_iter()
        .find(|m| m.name == LLAMA_4BIT)
        .unwrap();
    assert!(used.summary.last_used.is_some());
    assert_eq!(used.summary.last_used, row.last_used);
}

#[test]
fn delete_removes_exactly_what_was_confirmed() {
    let fx = fixture_env();
    let plan = block_on(delete_plan(LLAMA_4BIT.into())).unwrap();
    assert_eq!(plan.model, LLAMA_4BIT);
    assert_eq!(plan.snapshot, None);
    let repo_dir = fx
        .cache
        .hub
        .join("models--mlx-community--Llama-3.2-1B-Instruct-4bit");
    assert!(plan.targets.contains(&repo_dir.display().to_string()));
    assert!(plan.freed_bytes > 0);

    // Confirming something else deletes nothing.
    let refused = block_on(delete_model(LLAMA_4BIT.into(), vec!["/elsewhere".into()])).unwrap_err();
    assert_eq!(refused.kind, "plan_changed");
    assert!(repo_dir.exists());

    let done = block_on(delete_model(LLAMA_4BIT.into(), plan.targets.clone())).unwrap();
    assert_eq!(done.freed_bytes, plan.freed_bytes);
    assert!(!repo_dir.exists());
    let names: Vec<String> = block_on(list_models())
        .unwrap()
        .models
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(!names.contains(&LLAMA_4BIT.to_string()));
}

#[test]
fn workspaces_are_listed_by_folder_name_and_deleted_only_inside_the_home() {
    let fx = fixture_env();
    let home = workspace_home(&fx);
    let llama = block_on(model_details(LLAMA_4BIT.into())).unwrap();
    let snapshot = std::path::PathBuf::from(llama.path.unwrap());
    let commit = llama.summary.commit.unwrap();
    let clone = |name: &str| {
        mlxk_core::workspace::clone_snapshot(&snapshot, &home.join(name), LLAMA_4BIT, &commit)
            .unwrap()
            .target
    };
    let clean = clone("llama-ws");
    let edited = clone("llama-edited");
    std::fs::write(edited.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    // A model folder put in the home by hand (no marker), and a link to one outside it.
    let by_hand = home.join("by-hand");
    std::fs::create_dir(&by_hand).unwrap();
    std::fs::copy(clean.join("config.json"), by_hand.join("config.json")).unwrap();
    let outside = fx.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    std::fs::copy(clean.join("config.json"), outside.join("config.json")).unwrap();
    std::os::unix::fs::symlink(&outside, home.join("linked")).unwrap();

    let library = block_on(list_models()).unwrap();
    assert_eq!(
        library.workspace_home.as_deref(),
        Some(home.display().to_string().as_str())
    );
    let row = |folder: &std::path::Path| {
        library
            .models
            .iter()
            .find(|m| m.name == folder.display().to_string())
            .unwrap_or_else(|| panic!("{} not listed", folder.display()))
            .clone()
    };
    let ws = row(&clean);
    assert_eq!(ws.display_name, "llama-ws");
    let ModelSource::Workspace {
        path,
        content,
        managed,
        origin,
        content_hash,
    } = &ws.source
    else {
        panic!("{:?} is not a workspace", ws.source);
    };
    assert_eq!(path, &clean.display().to_string());
    assert_eq!(*content, ContentState::Clean);
    assert!(*managed);
    assert_eq!(origin.as_deref(), Some(LLAMA_4BIT));
    assert!(content_hash.as_deref().unwrap().starts_with("sha256:"));
    let content_of = |folder: &std::path::Path| match row(folder).source {
        ModelSource::Workspace { content, .. } => content,
        ModelSource::Cache => panic!("{} is listed as cached", folder.display()),
    };
    assert_eq!(content_of(&edited), ContentState::Modified);
    assert_eq!(content_of(&by_hand), ContentState::Unknown);
    assert_eq!(row(&outside).display_name, "outside");
    let cached = library
        .models
        .iter()
        .find(|m| m.name == LLAMA_4BIT)
        .unwrap();
    assert_eq!(cached.source, ModelSource::Cache);

    // The details of a row, by the name the row gives; the full path is there.
    let details = block_on(model_details(ws.name.clone())).unwrap();
    assert_eq!(details.summary.display_name, "llama-ws");
    assert_eq!(details.path, Some(clean.display().to_string()));

    // Deleting a workspace names its folder, and deletes that folder only.
    let plan = block_on(delete_plan(ws.name.clone())).unwrap();
    assert_eq!(plan.model, "llama-ws");
    assert_eq!(plan.targets, vec![clean.display().to_string()]);
    assert!(matches!(plan.source, ModelSource::Workspace { .. }));
    assert!(plan.freed_bytes > 0);
    let refused = block_on(delete_model(
        ws.name.clone(),
        vec![snapshot.display().to_string()],
    ))
    .unwrap_err();
    assert_eq!(refused.kind, "plan_changed");
    assert!(clean.is_dir());
    let done = block_on(delete_model(ws.name.clone(), plan.targets.clone())).unwrap();
    assert_eq!(done.removed, plan.targets);
    assert!(!clean.exists());
    assert!(
        snapshot.join("config.json").is_file(),
        "the cache is untouched"
    );
    assert!(edited.is_dir() && by_hand.is_dir());

    // A folder outside the home is never deleted, even listed through a link in it.
    for name in [
        row(&outside).name,
        home.join("linked").display().to_string(),
        snapshot.display().to_string(),
        home.display().to_string(),
    ] {
        let err = block_on(delete_plan(name.clone())).unwrap_err();
        assert_eq!(err.kind, "unsafe_deletion", "{name}: {}", err.message);
        let err = block_on(delete_model(name.clone(), vec![name.clone()])).unwrap_err();
        assert_eq!(err.kind, "unsafe_deletion", "{name}: {}", err.message);
    }
    assert!(outside.join("config.json").is_file());
    assert!(snapshot.join("config.json").is_file());

    // By its folder name too; a cached model of the same short name stays a cached model.
    let by_name = block_on(delete_plan("by-hand".into())).unwrap();
    assert_eq!(by_name.targets, vec![by_hand.display().to_string()]);
    let cached_plan = block_on(delete_plan(LLAMA_4BIT.into())).unwrap();
    assert_eq!(cached_plan.source, ModelSource::Cache);

    // Without a workspace home, a path is refused with the reason.
    std::env::remove_var("MLXK_WORKSPACE_HOME");
    let err = block_on(delete_plan(edited.display().to_string())).unwrap_err();
    assert_eq!(err.kind, "unsafe_deletion");
    assert!(
        err.message.contains("MLXK_WORKSPACE_HOME"),
        "{}",
        err.message
    );
    assert!(edited.is_dir());
}

#[test]
fn push_check_reports_a_model_folder_and_refuses_files() {
    let fx = fixture_env();
    let details = block_on(model_details(LLAMA_4BIT.into())).unwrap();
    let folder = details.path.unwrap();
    let check = block_on(push_check(folder.clone())).unwrap();
    assert!(check.check.healthy, "{:?}", check.check.anomalies);
    assert!(check.files.iter().any(|f| f.path == "config.json"));

    let file = format!("{folder}/config.json");
    let err = block_on(push_check(file)).unwrap_err();
    assert_eq!(err.kind, "not_a_folder");
    assert!(err.message.contains("is a file"), "{}", err.message);

    let empty = fx.dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let check = block_on(push_check(empty.display().to_string())).unwrap();
    assert!(!check.check.healthy);
    assert!(check
        .check
        .anomalies
        .iter()
        .any(|a| a.severity == mlxk_core::hub::push::Severity::Error));
}

#[test]
fn secrets_are_stored_masked_and_removed() {
    let (app, _) = mock_app();
    let status = block_on(secret_status(app.state(), SecretName::HubToken)).unwrap();
    assert!(!status.stored);
    let token = "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH";
    let status = block_on(secret_set(
        app.state(),
        SecretName::HubToken,
        format!(" {token}\n"),
    ))
    .unwrap();
    assert!(status.stored);
    assert_eq!(status.masked.as_deref(), Some("hf_…(37 chars)"));
    assert!(!format!("{status:?}").contains(&token[3..]));
    let invalid = block_on(secret_set(
        app.state(),
        SecretName::ServerApiKey,
        "a b".into(),
    ));
    assert_eq!(invalid.unwrap_err().kind, "invalid_secret");
    let status = block_on(secret_remove(app.state(), SecretName::HubToken)).unwrap();
    assert!(!status.stored);
}

#[test]
fn token_test_and_push_preview_against_the_test_hub() {
    let fx = fixture_env();
    let (app, _) = mock_app();
    let token = "hf_apptesttokenapptesttokenapptesttok";
    let hub = block_on(mlxk_testhub::TestHub::start(
        mlxk_testhub::HubConfig::new(fx.dir.path().join("testhub"))
            .token(token, "alice")
            .org_member("alice-org", "alice"),
    ))
    .unwrap();
    std::env::set_var("HF_ENDPOINT", hub.url());

    let err = block_on(token_test(app.state())).unwrap_err();
    assert_eq!(err.kind, "not_logged_in");
    block_on(secret_set(app.state(), SecretName::HubToken, token.into())).unwrap();
    let account = block_on(token_test(app.state())).unwrap();
    assert_eq!(account.user.name, "alice");
    assert_eq!(account.token_source, mlxk_core::hub::TokenSource::Keyring);
    assert!(account.user.orgs.iter().any(|o| o.name == "alice-org"));

    block_on(secret_set(
        app.state(),
        SecretName::HubToken,
        "hf_wrongwrongwrong".into(),
    ))
    .unwrap();
    assert_eq!(
        block_on(token_test(app.state())).unwrap_err().kind,
        "unauthorized"
    );

    // The preview asks the Hub with the keyring's token: a wrong one is refused.
    let folder = block_on(model_details(LLAMA_4BIT.into()))
        .unwrap()
        .path
        .unwrap();
    let refused = block_on(push_preview(
        app.state(),
        folder.clone(),
        "alice-org/new-model".into(),
        "".into(),
    ));
    assert_eq!(refused.unwrap_err().kind, "unauthorized");
    block_on(secret_set(app.state(), SecretName::HubToken, token.into())).unwrap();
    let preview = block_on(push_preview(
        app.state(),
        folder.clone(),
        "alice-org/new-model".into(),
        "".into(),
    ))
    .unwrap();
    assert!(!preview.plan.repo_exists);
    assert_eq!(preview.branch, "main");
    assert!(preview.plan.added.contains(&"config.json".to_string()));
    let no_org = block_on(push_preview(
        app.state(),
        folder,
        "just-a-name".into(),
        "main".into(),
    ));
    assert_eq!(no_org.unwrap_err().kind, "invalid_name");
    block_on(hub.stop());
}

#[test]
fn the_server_starts_and_stops_from_commands_and_settings_apply_on_restart() {
    let _fx = fixture_env();
    let (app, _) = mock_app();
    assert_eq!(server_status(app.state()), ServerStatus::Stopped);
    let ServerStatus::Running {
        address,
        exposed,
        urls,
        key_required,
        ..
    } = block_on(server_start(app.state())).unwrap()
    else {
        panic!("not running: {:?}", server_status(app.state()));
    };
    assert!(!exposed && !key_required);
    // The base URLs for clients name the port actually bound (the settings say 0).
    let urls: Vec<&str> = urls.iter().map(|u| u.url.as_str()).collect();
    let root = format!("http://{address}");
    assert_eq!(urls, [format!("{root}/v1"), root.clone(), root.clone()]);
    assert!(std::net::TcpStream::connect(&address).is_ok());
    assert!(!get_settings(app.state()).restart_needed);

    let changed = ServerSettings {
        keep_alive_secs: 0,
        ..app.state::<AppState>().settings()
    };
    let view = save_settings(app.state(), changed).unwrap();
    assert!(view.restart_needed);
    assert!(!view.exposed);

    assert_eq!(
        block_on(server_stop(app.state())).unwrap(),
        ServerStatus::Stopped
    );
    assert!(std::net::TcpStream::connect(&address).is_err());
    assert!(!get_settings(app.state()).restart_needed);
}

#[test]
fn an_exposed_host_without_a_key_is_an_error_state_and_settings_are_validated() {
    let (app, _) = mock_app();
    let exposed = ServerSettings {
        host: "0.0.0.0".into(),
        port: 0,
        ..ServerSettings::default()
    };
    let view = save_settings(app.state(), exposed).unwrap();
    assert!(view.exposed);
    let status = block_on(server_start(app.state())).unwrap();
    let ServerStatus::Error { message } = status else {
        panic!("expected a refusal, got {status:?}");
    };
    assert!(message.contains("API key"), "{message}");

    let bad = ServerSettings {
        host: "not-an-ip".into(),
        ..ServerSettings::default()
    };
    assert_eq!(
        save_settings(app.state(), bad).unwrap_err().kind,
        "invalid_settings"
    );
    assert_eq!(get_settings(app.state()).server.host, "0.0.0.0");
}

#[test]
fn a_download_still_running_is_told_from_one_cut_short() {
    let _fx = fixture_env();
    let cache = mlxk_core::HubCache::from_env();
    let repo = mlxk_core::RepoId::parse(LLAMA_4BIT).unwrap();
    let blobs = cache.root().join(repo.cache_dir_name()).join("blobs");
    std::fs::write(blobs.join("0a1b2c.incomplete"), b"half a file").unwrap();
    let row = || {
        block_on(list_models())
            .unwrap()
            .models
            .into_iter()
            .find(|m| m.name == LLAMA_4BIT)
            .unwrap()
    };
    let cut = row();
    assert!(!cut.healthy, "a partial blob is a health problem");
    assert_eq!(cut.download, Some(Download::Interrupted));

    // A program downloading holds the blob's lock (as huggingface_hub and mlxk pull do).
    let locks = cache.locks_dir(&repo);
    std::fs::create_dir_all(&locks).unwrap();
    let lock = std::fs::File::create(locks.join("0a1b2c.lock")).unwrap();
    lock.lock().unwrap();
    assert_eq!(row().download, Some(Download::Running));
    let details = block_on(model_details(LLAMA_4BIT.into())).unwrap();
    assert_eq!(details.summary.download, Some(Download::Running));
    drop(lock);
    assert_eq!(row().download, Some(Download::Interrupted));

    let library = block_on(list_models()).unwrap();
    assert!(library
        .models
        .iter()
        .filter(|m| m.healthy)
        .all(|m| m.download.is_none()));
}

#[test]
fn restart_applies_saved_settings_and_the_chat_gets_the_running_servers_key() {
    let _fx = fixture_env();
    let (app, copied) = mock_app();
    let key = "sk-chat-pane-key-0123456789";
    block_on(secret_set(
        app.state(),
        SecretName::ServerApiKey,
        key.into(),
    ))
    .unwrap();
    assert_eq!(chat_api_key(app.state()), None, "no server, no key");
    let started = block_on(server_start(app.state())).unwrap();
    assert!(matches!(
        started,
        ServerStatus::Running {
            key_required: true,
            ..
        }
    ));
    // The windows are told that clients need the key, never the key itself.
    assert!(!serde_json::to_string(&started).unwrap().contains(key));
    assert_eq!(chat_api_key(app.state()).as_deref(), Some(key));

    let changed = ServerSettings {
        keep_alive_secs: 0,
        ..app.state::<AppState>().settings()
    };
    assert!(save_settings(app.state(), changed).unwrap().restart_needed);
    let ServerStatus::Running { address, .. } = block_on(server_restart(app.state())).unwrap()
    else {
        panic!(
            "not running after a restart: {:?}",
            server_status(app.state())
        );
    };
    assert!(std::net::TcpStream::connect(&address).is_ok());
    assert!(!get_settings(app.state()).restart_needed);

    block_on(server_stop(app.state())).unwrap();
    assert_eq!(chat_api_key(app.state()), None);

    copy_text(app.state(), format!("http://{address}/v1")).unwrap();
    assert_eq!(*copied.lock().unwrap(), [format!("http://{address}/v1")]);
}

/// Asks the server at `address` for a one-token answer from `model`: loads it.
fn one_token_answer(address: &str, model: &str) -> String {
    use std::io::{Read, Write};
    let body = format!(
        r#"{{"model": "{model}", "max_tokens": 1, "messages": [{{"role": "user", "content": "Hi"}}]}}"#
    );
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn the_loaded_model_is_listed_with_its_memory_and_unloads_on_request() {
    let fx = fixture_env();
    with_demo_model(&fx);
    let (app, _) = mock_app();
    assert!(block_on(resident_models(app.state())).unwrap().is_empty());
    assert!(
        !block_on(unload_model(app.state(), DEMO_MODEL.into())).unwrap(),
        "nothing to unload without a server"
    );
    let ServerStatus::Running { address, .. } = block_on(server_start(app.state())).unwrap() else {
        panic!("not running: {:?}", server_status(app.state()));
    };
    assert!(block_on(resident_models(app.state())).unwrap().is_empty());

    let answer = one_token_answer(&address, DEMO_MODEL);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The worker sets the expiry once the answer is over (it may still be finishing).
    let resident = || block_on(resident_models(app.state())).unwrap();
    assert!(wait_until(|| resident()
        .first()
        .is_some_and(|r| r.expires_at.is_some())));
    let resident = resident();
    assert_eq!(resident.len(), 1, "{resident:?}");
    let loaded = &resident[0];
    assert_eq!(loaded.name, DEMO_MODEL);
    assert!(
        loaded.memory_bytes > 10_000_000,
        "a 135M model at 4 bits: {}",
        loaded.memory_bytes
    );
    let loaded_at = chrono::DateTime::parse_from_rfc3339(&loaded.loaded_at).unwrap();
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(loaded.expires_at.as_deref().unwrap()).unwrap();
    assert!(expires_at > loaded_at);
    // The Library row it belongs to: the one whose display name is the API's name.
    let rows = block_on(list_models()).unwrap().models;
    assert!(rows.iter().any(|m| m.display_name == loaded.name));

    assert!(!block_on(unload_model(app.state(), LLAMA_4BIT.into())).unwrap());
    assert_eq!(block_on(resident_models(app.state())).unwrap().len(), 1);
    assert!(block_on(unload_model(app.state(), DEMO_MODEL.into())).unwrap());
    assert!(block_on(resident_models(app.state())).unwrap().is_empty());

    // Loaded again, then the server stops: nothing is resident any more.
    assert!(one_token_answer(&address, DEMO_MODEL).starts_with("HTTP/1.1 200"));
    assert_eq!(block_on(resident_models(app.state())).unwrap().len(), 1);
    block_on(server_stop(app.state())).unwrap();
    assert!(block_on(resident_models(app.state())).unwrap().is_empty());
}
