//! Shared set-up: a fixture cache as `HF_HOME` (never your own cache), a mock keyring, and a
//! Tauri app on the mock runtime (no display needed).

#![allow(dead_code)] // each test file uses part of this

use std::sync::{Arc, Mutex, MutexGuard};

use mlxk_app::settings::ServerSettings;
use mlxk_app::state::AppState;
use mlxk_core::secrets::SecretStore;
use mlxk_fixtures::{write_standard, FixtureCache};
use tauri::test::{mock_builder, mock_context, noop_assets, MockRuntime};
use tauri::App;

/// The environment is process-wide: tests that set it take this lock.
static ENV: Mutex<()> = Mutex::new(());

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub cache: FixtureCache,
    pub models: Vec<String>,
    _env: MutexGuard<'static, ()>,
}

/// A fresh standard fixture cache as `HF_HOME`, with the deletion guard on and no token from
/// the environment or a token file.
pub fn fixture_env() -> Fixture {
    let env = ENV.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cache = FixtureCache::create(&dir.path().join("hf")).unwrap();
    let models = write_standard(&cache).unwrap();
    std::env::set_var("HF_HOME", &cache.home);
    std::env::set_var("HOME", dir.path());
    std::env::set_var("HF_TOKEN_PATH", dir.path().join("no-token"));
    std::env::set_var("MLXK_REQUIRE_TEST_SENTINEL", "1");
    for var in [
        "HF_HUB_CACHE",
        "XDG_CACHE_HOME",
        "HF_TOKEN",
        "HF_ENDPOINT",
        "MLXK_WORKSPACE_HOME",
    ] {
        std::env::remove_var(var);
    }
    Fixture {
        dir,
        cache,
        models,
        _env: env,
    }
}

/// An empty workspace home as `$MLXK_WORKSPACE_HOME` (marked as a test one, as deletion
/// requires while `MLXK_REQUIRE_TEST_SENTINEL` is set).
pub fn workspace_home(fx: &Fixture) -> std::path::PathBuf {
    let home = fx.dir.path().join("workspaces");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::write(home.join(mlxk_core::cache::TEST_SENTINEL_FILE), "").unwrap();
    std::env::set_var("MLXK_WORKSPACE_HOME", &home);
    home.canonicalize().unwrap()
}

/// The demo model (SmolLM2-135M-Instruct at 4 bits) that scripts/setup.sh converted from GGUF.
pub const DEMO_MODEL: &str = "mlxk-demo/SmolLM2-135M-Instruct-Q4_1-mlx";

/// Copies the demo model from setup.sh's demo cache (`target/demo-hf-home`) into the fixture
/// cache: a model the real engine loads.
pub fn with_demo_model(fx: &Fixture) {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"),
        std::path::PathBuf::from,
    );
    let folder = "models--mlxk-demo--SmolLM2-135M-Instruct-Q4_1-mlx";
    let source = target.join("demo-hf-home/hub").join(folder);
    assert!(
        source.is_dir(),
        "{} is missing: run ./scripts/setup.sh",
        source.display()
    );
    copy_tree(&source, &fx.cache.hub.join(folder));
}

/// Copies a cache repository folder, its snapshot links as links.
fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source).unwrap(), &target).unwrap();
        } else if kind.is_dir() {
            copy_tree(&source, &target);
        } else {
            std::fs::copy(&source, &target).unwrap();
        }
    }
}

/// Copied addresses, recorded instead of touching a real clipboard.
pub type Copied = Arc<Mutex<Vec<String>>>;

/// The app's state on Tauri's mock runtime: in-memory settings (loopback, a free port) and a
/// mock keyring.
pub fn mock_app() -> (App<MockRuntime>, Copied) {
    let store = SecretStore::with_store(keyring_core::mock::Store::new().unwrap());
    let settings = ServerSettings {
        port: 0,
        ..ServerSettings::default()
    };
    let app = mock_builder()
        .manage(AppState::for_tests(settings, store))
        .build(mock_context(noop_assets()))
        .unwrap();
    let copied: Copied = Arc::default();
    let log = Arc::clone(&copied);
    tauri::Manager::state::<AppState>(&app).set_copy_text(Box::new(move |text| {
        log.lock().unwrap().push(text.to_string());
        Ok(())
    }));
    mlxk_app::observe_server(app.handle());
    (app, copied)
}

/// Waits up to 10 s for `done`.
pub fn wait_until(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}
