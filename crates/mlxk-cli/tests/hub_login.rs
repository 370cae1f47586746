//! `mlxk login / whoami / logout` through the real binary against the local test Hub.
//!
//! The tests that use a keyring run only inside `scripts/with-keyring.sh` (a private D-Bus
//! session with a throwaway, unlocked gnome-keyring), never against your own keyring:
//!
//! ```sh
//! scripts/with-keyring.sh cargo test -p mlxk-cli --test hub_login
//! ```
//!
//! Elsewhere they skip and say so on stderr. The others run everywhere with the keyring made
//! unreachable (no D-Bus session address), which is also what they test. Throughout, the
//! token must never appear in output, in the files under `HOME` and `HF_HOME`, or in a
//! process's arguments or environment (unless the test put it there as `HF_TOKEN`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use mlxk_testhub::{HubConfig, TestHub};
use serde_json::Value;

const ALICE_TOKEN: &str = "hf_aliceLoginTokenAbcdefghijklmnopqr";
const BOB_TOKEN: &str = "hf_bobLoginTokenAbcdefghijklmnopqrstu";
const WRONG_TOKEN: &str = "hf_wrongLoginTokenAbcdefghijklmnopqr";
const SECRETS: [&str; 3] = [ALICE_TOKEN, BOB_TOKEN, WRONG_TOKEN];

/// A test Hub (alice and bob), a temp `HOME` with `HF_HOME` inside it, and everything the
/// `mlxk` runs printed, for the final check that no token leaked.
struct World {
    runtime: tokio::runtime::Runtime,
    hub: Option<TestHub>,
    dir: tempfile::TempDir,
    keyring: bool,
    seen: Vec<String>,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}\n{}", self.stdout, self.stderr))
    }
}

impl World {
    /// `keyring`: keep the D-Bus session (only inside with-keyring.sh), or make it unreachable.
    fn new(keyring: bool) -> World {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = tempfile::Builder::new()
            .prefix("mlxk-login-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("home/hf_home")).unwrap();
        std::fs::create_dir_all(dir.path().join("run")).unwrap();
        let config = HubConfig::new(dir.path().join("hub"))
            .token(ALICE_TOKEN, "alice")
            .token(BOB_TOKEN, "bob")
            .org_member("mlx-knife-org", "alice");
        let hub = runtime.block_on(TestHub::start(config)).unwrap();
        World {
            runtime,
            hub: Some(hub),
            dir,
            keyring,
            seen: Vec::new(),
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    fn hf_home(&self) -> PathBuf {
        self.home().join("hf_home")
    }

    fn hub_url(&self) -> String {
        self.hub.as_ref().unwrap().url()
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mlxk"));
        command
            .args(args)
            .env("HOME", self.home())
            .env("HF_HOME", self.hf_home())
            .env("HF_ENDPOINT", self.hub_url())
            .env_remove("HF_TOKEN")
            .env_remove("HF_TOKEN_PATH")
            .env_remove("HF_HUB_CACHE")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("DYLD_LIBRARY_PATH")
            .env("MLXK_REQUIRE_TEST_SENTINEL", "1");
        if !self.keyring {
            command
                .env_remove("DBUS_SESSION_BUS_ADDRESS")
                .env("XDG_RUNTIME_DIR", self.dir.path().join("run"));
        }
        command
    }

    fn run(&mut self, args: &[&str]) -> Run {
        self.run_cmd(self.command(args), None)
    }

    fn login(&mut self, token: &str, extra: &[&str]) -> Run {
        let mut args = vec!["login"];
        args.extend_from_slice(extra);
        self.run_cmd(self.command(&args), Some(&format!("{token}\n")))
    }

    /// Runs `command`, writing `stdin` to it, and records what it printed and (on Linux) its
    /// command line and environment, read while it runs.
    fn run_cmd(&mut self, mut command: Command, stdin: Option<&str>) -> Run {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("mlxk starts");
        if cfg!(target_os = "linux") {
            for part in ["cmdline", "environ"] {
                let bytes =
                    std::fs::read(format!("/proc/{}/{part}", child.id())).unwrap_or_default();
                self.seen.push(String::from_utf8_lossy(&bytes).into_owned());
            }
        }
        let mut pipe = child.stdin.take().unwrap();
        if let Some(input) = stdin {
            // mlxk may have exited without reading (e.g. no keyring): a closed pipe is fine.
            let _ = pipe.write_all(input.as_bytes());
        }
        drop(pipe);
        let output = child.wait_with_output().unwrap();
        let run = Run {
            code: output.status.code().expect("mlxk exited normally"),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        };
        self.seen.push(run.stdout.clone());
        self.seen.push(run.stderr.clone());
        run
    }

    /// No token in anything recorded, nor in any file under HOME (which holds HF_HOME) except
    /// `allowed` files the test wrote itself.
    fn assert_no_token_leaked(&self, allowed: &[PathBuf], in_env: &[&str]) {
        for text in &self.seen {
            let mut text = text.clone();
            for secret in in_env {
                text = text.replace(&format!("HF_TOKEN={secret}"), "HF_TOKEN=<set by the test>");
            }
            for secret in SECRETS {
                assert!(!text.contains(secret), "a token leaked into:\n{text}");
            }
        }
        for file in files_under(&self.home()) {
            if allowed.contains(&file) {
                continue;
            }
            let bytes = std::fs::read(&file).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            for secret in SECRETS {
                assert!(
                    !text.contains(secret),
                    "a token leaked into {}",
                    file.display()
                );
            }
        }
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if let Some(hub) = self.hub.take() {
            self.runtime.block_on(hub.stop());
        }
    }
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// Inside with-keyring.sh: a private Secret Service must work. Elsewhere: skip, loudly (written
/// straight to stderr so that the test harness does not swallow it).
fn keyring_session(test: &str) -> bool {
    if std::env::var("MLXK_IN_KEYRING_SESSION").as_deref() == Ok("1") {
        assert!(
            std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some(),
            "with-keyring.sh set no D-Bus session address"
        );
        return true;
    }
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: needs a private Secret Service; run: scripts/with-keyring.sh cargo test -p mlxk-cli --test hub_login"
    );
    false
}

/// The keyring tests share one keyring entry: one at a time.
fn keyring_lock() -> MutexGuard<'static, ()> {
    static KEYRING: Mutex<()> = Mutex::new(());
    KEYRING.lock().unwrap_or_else(|e| e.into_inner())
}

/// The token the private keyring holds for mlx-knife (as the zbus store writes it: attributes
/// `service` and `username`), or None.
fn keyring_lookup() -> Option<String> {
    let output = Command::new("secret-tool")
        .args(["lookup", "service", "mlx-knife", "username", "huggingface"])
        .output()
        .expect("secret-tool runs (apt-get install libsecret-tools)");
    let value = String::from_utf8(output.stdout).unwrap();
    (output.status.success() && !value.is_empty()).then_some(value)
}

#[test]
fn login_whoami_logout_through_the_real_keyring() {
    if !keyring_session("login_whoami_logout_through_the_real_keyring") {
        return;
    }
    let _one_at_a_time = keyring_lock();
    let mut world = World::new(true);
    let _ = world.run(&["logout"]);
    assert_eq!(keyring_lookup(), None);

    // A token the Hub refuses is not stored.
    let refused = world.login(WRONG_TOKEN, &["--token-stdin"]);
    assert_eq!(refused.code, 1, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("does not accept this token")
            && refused.stderr.contains("nothing was stored"),
        "{}",
        refused.stderr
    );
    assert_eq!(keyring_lookup(), None);

    // A good one is checked, then stored in the keyring, and only there.
    let login = world.login(ALICE_TOKEN, &["--token-stdin"]);
    assert_eq!(login.code, 0, "{}", login.stderr);
    assert_eq!(
        login.stdout.trim(),
        "Logged in as alice (token stored in the keyring)"
    );
    assert_eq!(keyring_lookup().as_deref(), Some(ALICE_TOKEN));

    let whoami = world.run(&["whoami"]);
    assert_eq!(whoami.code, 0, "{}", whoami.stderr);
    assert_eq!(
        whoami.stdout.trim(),
        format!(
            "Logged in as alice (token from the keyring)\norgs: mlx-knife-org\nHub: {}",
            world.hub_url()
        )
    );

    // The keyring comes before HF_TOKEN.
    let mut with_env = world.command(&["whoami", "--json"]);
    with_env.env("HF_TOKEN", BOB_TOKEN);
    let envelope = world.run_cmd(with_env, None).json();
    assert_eq!(envelope["status"], "success");
    assert_eq!(envelope["command"], "whoami");
    assert_eq!(envelope["data"]["token_source"], "keyring");
    assert_eq!(envelope["data"]["user"]["name"], "alice");
    assert_eq!(envelope["data"]["user"]["orgs"][0]["name"], "mlx-knife-org");

    // Logging in again (stdin not a terminal, no flag) replaces the token; --json has no token.
    let again = world.login(BOB_TOKEN, &["--json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let envelope = again.json();
    assert_eq!(envelope["command"], "login");
    assert_eq!(envelope["data"]["user"]["name"], "bob");
    assert_eq!(envelope["data"]["stored_in"], "keyring");
    assert_eq!(keyring_lookup().as_deref(), Some(BOB_TOKEN));

    let logout = world.run(&["logout"]);
    assert_eq!(logout.code, 0, "{}", logout.stderr);
    assert_eq!(
        logout.stdout.trim(),
        "Logged out: the Hugging Face token was removed from the keyring"
    );
    assert_eq!(keyring_lookup(), None);
    let twice = world.run(&["logout", "--json"]).json();
    assert_eq!(twice["data"]["removed"], false);

    let gone = world.run(&["whoami"]);
    assert_eq!(gone.code, 1);
    assert!(gone.stderr.contains("not logged in"), "{}", gone.stderr);
    assert!(gone.stderr.contains("mlxk login"), "{}", gone.stderr);

    world.assert_no_token_leaked(&[], &[BOB_TOKEN]);
}

#[test]
fn logout_names_the_sources_that_still_provide_a_token() {
    if !keyring_session("logout_names_the_sources_that_still_provide_a_token") {
        return;
    }
    let _one_at_a_time = keyring_lock();
    let mut world = World::new(true);
    let token_file = world.hf_home().join("token");
    std::fs::write(&token_file, format!("{BOB_TOKEN}\n")).unwrap();
    let mut logout = world.command(&["logout"]);
    logout.env("HF_TOKEN", BOB_TOKEN);
    let run = world.run_cmd(logout, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("HF_TOKEN is still set"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("{} still holds a token", token_file.display())),
        "{}",
        run.stdout
    );
    world.assert_no_token_leaked(&[token_file], &[BOB_TOKEN]);
}

#[test]
fn without_a_keyring_whoami_uses_hf_token_then_the_token_file() {
    let mut world = World::new(false);

    let mut env = world.command(&["whoami"]);
    env.env("HF_TOKEN", BOB_TOKEN);
    let run = world.run_cmd(env, None);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("Logged in as bob (token from HF_TOKEN)"),
        "{}",
        run.stdout
    );

    let token_file = world.hf_home().join("token");
    std::fs::write(&token_file, format!("{ALICE_TOKEN}\n")).unwrap();
    let envelope = world.run(&["whoami", "--json"]).json();
    assert_eq!(envelope["data"]["token_source"], "token_file");
    assert_eq!(envelope["data"]["user"]["name"], "alice");

    std::fs::write(&token_file, WRONG_TOKEN).unwrap();
    let refused = world.run(&["whoami", "--json"]);
    assert_eq!(refused.code, 1);
    let envelope = refused.json();
    assert_eq!(envelope["error"]["type"], "unauthorized");
    assert!(envelope["error"]["message"]
        .as_str()
        .unwrap()
        .contains("the token file"));

    std::fs::remove_file(&token_file).unwrap();
    let none = world.run(&["whoami", "--json"]);
    assert_eq!(none.code, 1);
    let envelope = none.json();
    assert_eq!(envelope["status"], "error");
    assert_eq!(envelope["error"]["type"], "not_logged_in");
    assert_eq!(envelope["error"]["skipped"][0]["source"], "keyring");

    world.assert_no_token_leaked(&[token_file], &[BOB_TOKEN]);
}

#[test]
fn without_a_keyring_login_refuses_before_reading_a_token() {
    let mut world = World::new(false);
    let run = world.login(ALICE_TOKEN, &["--token-stdin", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let envelope = run.json();
    assert_eq!(envelope["command"], "login");
    assert_eq!(envelope["error"]["type"], "keyring_unavailable");
    assert!(world.hub.as_ref().unwrap().requests().is_empty());

    let logout = world.run(&["logout"]);
    assert_eq!(logout.code, 1);
    assert!(
        logout.stderr.contains("keyring is not available"),
        "{}",
        logout.stderr
    );
    world.assert_no_token_leaked(&[], &[]);
}

#[test]
fn serve_uses_the_api_key_stored_in_the_real_keyring() {
    if !keyring_session("serve_uses_the_api_key_stored_in_the_real_keyring") {
        return;
    }
    let _one_at_a_time = keyring_lock();
    let mut world = World::new(true);
    const KEY: &str = "mlxk-server-key-0123456789abcdef";
    let stored = world.run_cmd(
        world.command(&["serve", "--store-api-key", "--json"]),
        Some(&format!("{KEY}\n")),
    );
    assert_eq!(stored.code, 0, "{}", stored.stderr);
    assert_eq!(stored.json()["data"]["api_key"], "stored");

    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let server = world
        .command(&["serve", "--port", &port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = |key: Option<&str>| -> Option<u16> {
        let mut request =
            "GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".to_string();
        if let Some(key) = key {
            request.push_str(&format!("Authorization: Bearer {key}\r\n"));
        }
        request.push_str("\r\n");
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        stream.write_all(request.as_bytes()).ok()?;
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut stream, &mut answer).ok()?;
        answer.split_whitespace().nth(1)?.parse().ok()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while status(None).is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let without = status(None);
    let with = status(Some(KEY));
    let _ = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status();
    let output = server.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(without, Some(401), "{stderr}");
    assert_eq!(with, Some(200), "{stderr}");
    assert!(stderr.contains("from the keyring"), "{stderr}");
    assert!(!stderr.contains(KEY), "the key is never logged");

    let forgot = world.run(&["serve", "--forget-api-key", "--json"]);
    assert_eq!(forgot.json()["data"]["api_key"], "removed");
    let none = world.run(&["serve", "--forget-api-key", "--json"]);
    assert_eq!(none.json()["data"]["api_key"], "none");
}
