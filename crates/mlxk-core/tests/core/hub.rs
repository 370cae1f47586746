//! Pull and push against the project's local Hub (`mlxk-testhub`, kept honest by
//! huggingface_hub in tests/interop): the cache layout, revisions, private and gated repos,
//! resume after a cut connection, a corrupted download, dry-run plans and a second push that
//! sends only the changed file.

use std::fs;
use std::path::Path;
use std::sync::Mutex;

use mlxk_core::health::{check_snapshot, CheckDepth};
use mlxk_core::hub::pull::{pull, PullEvent, PullRequest};
use mlxk_core::hub::push::{self, PushRequest};
use mlxk_core::hub::CancellationToken;
use mlxk_core::hub::{HubClient, HubError};
use mlxk_core::metadata::SnapshotMetadata;
use mlxk_core::secrets::Secret;
use mlxk_core::snapshot::snapshot_files;
use mlxk_core::{HubCache, RepoId};
use mlxk_testhub::{Gate, HubConfig, Knobs, RepoSettings, TestHub};

const TOKEN: &str = "hf_alice_test_token";

/// A small model folder: config, tokenizer and a 3 MB safetensors file, plus a `.bin`.
fn model_folder(dir: &Path, seed: u8) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
    fs::write(dir.join("tokenizer.json"), r#"{"model": {}}"#).unwrap();
    fs::write(dir.join("tokenizer_config.json"), "{}").unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8 ^ seed).collect();
    let header = br#"{"w":{"dtype":"U8","shape":[3000000],"data_offsets":[0,3000000]}}"#;
    let mut weights = (header.len() as u64).to_le_bytes().to_vec();
    weights.extend_from_slice(header);
    weights.extend_from_slice(&data);
    fs::write(dir.join("model.safetensors"), weights).unwrap();
    fs::write(dir.join("pytorch_model.bin"), b"\0torch").unwrap();
}

struct Fixture {
    _dir: tempfile::TempDir,
    hub: TestHub,
    cache: HubCache,
    source: std::path::PathBuf,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start(
        HubConfig::new(dir.path().join("hub"))
            .token(TOKEN, "alice")
            .token("hf_bob_test_token", "bob"),
    )
    .await
    .unwrap();
    let source = dir.path().join("source");
    model_folder(&source, 0);
    hub.seed(&source, "org/tiny", RepoSettings::default(), Some("v1.0"))
        .unwrap();
    hub.seed(
        &source,
        "alice/private",
        RepoSettings {
            private: true,
            ..RepoSettings::default()
        },
        None,
    )
    .unwrap();
    hub.seed(
        &source,
        "org/gated",
        RepoSettings {
            gated: Some(Gate::Manual),
            granted: vec!["alice".into()],
            ..RepoSettings::default()
        },
        None,
    )
    .unwrap();
    let cache = HubCache::at(dir.path().join("hf_home/hub"));
    fs::create_dir_all(cache.root()).unwrap();
    Fixture {
        _dir: dir,
        hub,
        cache,
        source,
    }
}

fn client(hub: &TestHub, token: Option<&str>) -> HubClient {
    HubClient::new(&hub.url(), token.map(Secret::new)).unwrap()
}

fn request(repo: &str, revision: Option<&str>) -> PullRequest {
    PullRequest {
        repo: RepoId::parse(repo).unwrap(),
        revision: revision.map(str::to_string),
        all_files: false,
    }
}

async fn pull_quietly(
    client: &HubClient,
    cache: &HubCache,
    request: &PullRequest,
) -> Result<mlxk_core::hub::pull::PullOutcome, HubError> {
    pull(client, cache, request, &CancellationToken::new(), &|_| {}).await
}

fn healthy(snapshot: &Path) -> bool {
    let files = snapshot_files(snapshot);
    let metadata = SnapshotMetadata::read(snapshot, &files);
    check_snapshot(snapshot, &files, &metadata, &[], CheckDepth::Deep).is_healthy()
}

#[tokio::test]
async fn pulls_write_the_standard_cache_layout_and_honour_revisions() {
    let f = fixture().await;
    let anonymous = client(&f.hub, None);
    let events = Mutex::new(Vec::new());
    let outcome = pull(
        &anonymous,
        &f.cache,
        &request("org/tiny", None),
        &CancellationToken::new(),
        &|e| events.lock().unwrap().push(e),
    )
    .await
    .unwrap();
    assert_eq!(outcome.skipped, vec!["pytorch_model.bin"]);
    assert_eq!(outcome.files, 4);
    let repo_dir = f.cache.root().join("models--org--tiny");
    assert_eq!(
        fs::read_to_string(repo_dir.join("refs/main")).unwrap(),
        outcome.commit
    );
    let link = outcome.snapshot.join("model.safetensors");
    let target = fs::read_link(&link).unwrap();
    assert!(target.starts_with("../../blobs/"), "{target:?}");
    assert_eq!(
        fs::read(&link).unwrap(),
        fs::read(f.source.join("model.safetensors")).unwrap()
    );
    assert!(healthy(&outcome.snapshot));
    let events = events.into_inner().unwrap();
    assert!(
        matches!(&events[0], PullEvent::Planned { download_bytes, .. } if *download_bytes > 3_000_000)
    );
    let bytes: u64 = events
        .iter()
        .filter_map(|e| match e {
            PullEvent::Bytes { bytes, .. } => Some(*bytes),
            _ => None,
        })
        .sum();
    assert_eq!(bytes, outcome.downloaded_bytes);

    // Again: nothing travels. By tag and by commit: the same snapshot, refs/v1.0 written.
    let again = pull_quietly(&anonymous, &f.cache, &request("org/tiny", None))
        .await
        .unwrap();
    assert_eq!((again.downloaded_files, again.downloaded_bytes), (0, 0));
    let tagged = pull_quietly(&anonymous, &f.cache, &request("org/tiny", Some("v1.0")))
        .await
        .unwrap();
    assert_eq!(tagged.commit, outcome.commit);
    assert!(repo_dir.join("refs/v1.0").is_file());
    let by_commit = pull_quietly(
        &anonymous,
        &f.cache,
        &request("org/tiny", Some(&outcome.commit)),
    )
    .await
    .unwrap();
    assert_eq!(by_commit.snapshot, outcome.snapshot);
    f.hub.stop().await;
}

#[tokio::test]
async fn private_gated_and_missing_repos_give_clear_errors() {
    let f = fixture().await;
    let anonymous = client(&f.hub, None);
    let cases = [
        ("alice/private", None),
        ("org/gated", None),
        ("org/missing", None),
        ("org/tiny", Some("no-such-branch")),
    ];
    for (repo, revision) in cases {
        let error = pull_quietly(&anonymous, &f.cache, &request(repo, revision))
            .await
            .unwrap_err();
        let expected = match repo {
            "org/gated" => "gated_repo",
            _ if revision.is_some() => "revision_not_found",
            _ => "repo_not_found",
        };
        assert_eq!(error.kind(), expected, "{repo}: {error}");
        assert!(error.to_string().contains(repo), "{error}");
    }
    let bob = client(&f.hub, Some("hf_bob_test_token"));
    let error = pull_quietly(&bob, &f.cache, &request("org/gated", None))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "gated_repo");
    assert!(!error.to_string().contains("hf_bob"), "no token in errors");
    let alice = client(&f.hub, Some(TOKEN));
    for repo in ["alice/private", "org/gated"] {
        let outcome = pull_quietly(&alice, &f.cache, &request(repo, None))
            .await
            .unwrap();
        assert!(healthy(&outcome.snapshot), "{repo}");
    }
    f.hub.stop().await;
}

#[tokio::test]
async fn a_cut_download_resumes_and_a_corrupted_one_is_discarded() {
    let f = fixture().await;
    let anonymous = client(&f.hub, None);
    // Every response is cut after 1 MB: the small files arrive, the 3 MB weights do not.
    f.hub.set_knobs(Knobs {
        fail_after_bytes: Some(1_000_000),
        ..Knobs::default()
    });
    let cut = pull_quietly(&anonymous, &f.cache, &request("org/tiny", None)).await;
    assert!(cut.is_err(), "the connection was cut");
    let repo_dir = f.cache.root().join("models--org--tiny");
    let partials: Vec<_> = fs::read_dir(repo_dir.join("blobs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".incomplete"))
        .collect();
    assert_eq!(partials.len(), 1, "the cut file is kept for resuming");
    f.hub.set_knobs(Knobs::default());
    f.hub.clear_requests();
    let resumed = pull_quietly(&anonymous, &f.cache, &request("org/tiny", None))
        .await
        .unwrap();
    assert!(healthy(&resumed.snapshot));
    let ranges: Vec<_> = f
        .hub
        .requests()
        .into_iter()
        .filter_map(|r| r.range)
        .collect();
    assert!(
        ranges
            .iter()
            .any(|r| r.starts_with("bytes=") && r != "bytes=0-"),
        "resumed with a Range request: {ranges:?}"
    );

    // The Hub's copy rots (same size, one byte flipped): the download no longer matches the
    // SHA-256 the Hub lists, and nothing is left looking complete.
    let original = fs::read(f.source.join("model.safetensors")).unwrap();
    let mut rotten = 0;
    for path in files_under(&f._dir.path().join("hub")) {
        if fs::metadata(&path).unwrap().len() == original.len() as u64
            && fs::read(&path).unwrap() == original
        {
            let mut bytes = original.clone();
            bytes[2_000_000] ^= 0xff;
            fs::write(&path, bytes).unwrap();
            rotten += 1;
        }
    }
    assert!(rotten > 0, "found the Hub's stored copy");
    let fresh = HubCache::at(f._dir.path().join("fresh/hub"));
    fs::create_dir_all(fresh.root()).unwrap();
    let error = pull_quietly(&anonymous, &fresh, &request("org/tiny", None))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "hash_mismatch", "{error}");
    let blobs = fresh.root().join("models--org--tiny/blobs");
    let names: Vec<String> = fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // The weights are the only LFS file (a 64-hex SHA-256 name; others have 40-hex git ids):
    // neither a blob nor a partial of it may remain. Other files may be left partial, to resume.
    assert!(
        names
            .iter()
            .all(|n| n.split('.').next().unwrap().len() != 64),
        "the bad download was discarded: {names:?}"
    );
    let snapshot = fs::read_dir(fresh.root().join("models--org--tiny/snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(!snapshot.join("model.safetensors").exists());
    assert!(!healthy(&snapshot));
    f.hub.stop().await;
}

fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[tokio::test]
async fn pushes_create_private_repos_plan_by_hash_and_send_only_changes() {
    let f = fixture().await;
    let alice = client(&f.hub, Some(TOKEN));
    let repo = RepoId::parse("alice/pushed").unwrap();
    let folder = f._dir.path().join("to-push");
    model_folder(&folder, 7);
    fs::write(folder.join(".hfignore"), "*.bin\n").unwrap();
    let files = push::scan_folder(&folder).unwrap();
    assert!(files.iter().all(|file| file.path != "pytorch_model.bin"));
    let check = push::check(&folder, &files);
    assert!(check.healthy, "{:?}", check.anomalies);

    let plan = push::plan(&alice, &repo, "main", &files, false)
        .await
        .unwrap();
    assert!(!plan.repo_exists);
    assert_eq!(plan.added.len(), files.len());
    let request = PushRequest {
        repo: repo.clone(),
        branch: "main".into(),
        message: "first".into(),
        create: true,
        public: false,
    };
    let events = std::sync::Arc::new(Mutex::new(Vec::new()));
    let recorder = events.clone();
    let first = push::push(
        &alice,
        &request,
        &files,
        &plan,
        &CancellationToken::new(),
        std::sync::Arc::new(move |e| recorder.lock().unwrap().push(e)),
    )
    .await
    .unwrap();
    let events = events.lock().unwrap().clone();
    assert!(
        matches!(
            events.first(),
            Some(push::PushEvent::Started { files: 4, .. })
        ),
        "{events:?}"
    );
    assert!(events.contains(&push::PushEvent::Committing), "{events:?}");
    assert!(first.created_repo && first.commit_sha.is_some());
    // Private by default: anonymous readers cannot see it.
    let error = pull_quietly(&client(&f.hub, None), &f.cache, &request_for(&repo))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "repo_not_found");

    // Unchanged: no commit. One file changed: only it travels.
    let again = push::plan(&alice, &repo, "main", &files, false)
        .await
        .unwrap();
    assert!(again.no_changes(), "{again:?}");
    assert!(
        push::push(
            &alice,
            &request,
            &files,
            &again,
            &CancellationToken::new(),
            quiet()
        )
        .await
        .unwrap()
        .no_changes
    );
    fs::write(folder.join("tokenizer_config.json"), r#"{"changed": true}"#).unwrap();
    let files = push::scan_folder(&folder).unwrap();
    let plan = push::plan(&alice, &repo, "main", &files, false)
        .await
        .unwrap();
    assert_eq!(plan.changed, vec!["tokenizer_config.json"]);
    assert_eq!(plan.unchanged.len(), files.len() - 1);
    f.hub.clear_requests();
    let second = push::push(
        &alice,
        &request,
        &files,
        &plan,
        &CancellationToken::new(),
        quiet(),
    )
    .await
    .unwrap();
    assert_eq!(second.uploaded_files_count, 1);
    let sent: u64 = f
        .hub
        .requests()
        .iter()
        .filter(|r| r.method != "GET")
        .filter_map(|r| r.request_bytes)
        .sum();
    assert!(
        sent < 100_000,
        "only the changed file travelled ({sent} bytes)"
    );

    let pulled = pull_quietly(&alice, &f.cache, &request_for(&repo))
        .await
        .unwrap();
    assert_eq!(
        fs::read(pulled.snapshot.join("tokenizer_config.json")).unwrap(),
        br#"{"changed": true}"#
    );
    assert_eq!(
        fs::read(pulled.snapshot.join("model.safetensors")).unwrap(),
        fs::read(folder.join("model.safetensors")).unwrap()
    );
    f.hub.stop().await;
}

fn quiet() -> std::sync::Arc<dyn Fn(push::PushEvent) + Send + Sync> {
    std::sync::Arc::new(|_| {})
}

fn request_for(repo: &RepoId) -> PullRequest {
    PullRequest {
        repo: repo.clone(),
        revision: None,
        all_files: false,
    }
}
