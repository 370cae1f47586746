//! A fixture cache in a temp `HF_HOME` and the real `mlxk` binary run against it.
//!
//! Every run clears the environment variables that could point `mlxk` at a real cache (and
//! sets `HOME` to the temp folder), and turns on the test-sentinel guard for deletions.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use mlxk_fixtures::{write_standard, FixtureCache};
use serde_json::Value;

pub struct TestCache {
    _dir: tempfile::TempDir,
    pub home: PathBuf,
    pub hub: PathBuf,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

impl TestCache {
    pub fn standard() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("mlxk-test-")
            .tempdir()
            .unwrap();
        let home = dir.path().join("hf_home");
        let cache = FixtureCache::create(&home).unwrap();
        write_standard(&cache).unwrap();
        TestCache {
            hub: cache.hub,
            home,
            _dir: dir,
        }
    }

    pub fn repo_dir(&self, repo_id: &str) -> PathBuf {
        self.hub
            .join(format!("models--{}", repo_id.replace('/', "--")))
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mlxk"));
        command.args(args).stdin(Stdio::null());
        self.isolate(&mut command);
        command
    }

    /// Points a command at this cache and nowhere else.
    pub fn isolate(&self, command: &mut Command) {
        command
            .env("HF_HOME", &self.home)
            .env("HOME", self.home.parent().unwrap())
            .env_remove("HF_HUB_CACHE")
            .env_remove("XDG_CACHE_HOME")
            .env_remove("HF_TOKEN")
            .env_remove("MLXK_WORKSPACE_HOME")
            .env_remove("XDG_STATE_HOME")
            // libmlx must be found through the binary's rpath alone.
            .env_remove("LD_LIBRARY_PATH")
            .env_remove("DYLD_LIBRARY_PATH")
            .env("MLXK_REQUIRE_TEST_SENTINEL", "1");
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let output = self.command(args).output().expect("mlxk runs");
        Run {
            code: output.status.code().expect("mlxk exited normally"),
            stdout: String::from_utf8(output.stdout).unwrap(),
            stderr: String::from_utf8(output.stderr).unwrap(),
        }
    }
}

/// Asserts that a JSON envelope is valid against mlx-knife's JSON API 0.2.4 schema.
pub fn assert_schema_valid(envelope: &Value) {
    let schema_path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/contract/mlxk-json-api-0.2.4.schema.json");
    let schema: Value = serde_json::from_slice(&std::fs::read(schema_path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(envelope)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "schema violations: {errors:#?}\nin {envelope:#}"
    );
}

/// Every file (and symlink) below `dir`, for before/after comparisons.
pub fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                stack.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}
