//! The hub over real HTTP: ranges, errors with the Hub's headers, auth, and an upload made by
//! hand through preupload, the LFS batch API and a commit.

use std::path::Path;

use base64::Engine as _;
use mlxk_testhub::{git, Gate, HubConfig, RepoSettings, TestHub};
use reqwest::header::{AUTHORIZATION, RANGE};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};

const ALICE: &str = "hf_alice_secret";
const BOB: &str = "hf_bob_secret";

struct Fixture {
    hub: TestHub,
    http: Client,
    weights: Vec<u8>,
    _dir: tempfile::TempDir,
}

fn write(root: &Path, files: &[(&str, &[u8])]) {
    for (path, bytes) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let weights: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let public = dir.path().join("public");
    write(
        &public,
        &[
            ("config.json", b"0123456789"),
            ("model.safetensors", &weights),
        ],
    );
    let config = HubConfig::new(dir.path().join("root"))
        .token(ALICE, "alice")
        .token(BOB, "bob");
    let hub = TestHub::start(config).await.unwrap();
    hub.seed(&public, "org/public", RepoSettings::default(), Some("v1"))
        .unwrap();
    let private = RepoSettings {
        private: true,
        ..RepoSettings::default()
    };
    hub.seed(&public, "alice/private", private, None).unwrap();
    let gated = RepoSettings {
        private: false,
        gated: Some(Gate::Manual),
        granted: vec!["bob".into()],
    };
    hub.seed(&public, "org/gated", gated, None).unwrap();
    Fixture {
        hub,
        http: Client::new(),
        weights,
        _dir: dir,
    }
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.hub.url())
    }

    async fn get(&self, path: &str, token: Option<&str>, range: Option<&str>) -> Response {
        let mut request = self.http.get(self.url(path));
        if let Some(token) = token {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        if let Some(range) = range {
            request = request.header(RANGE, range);
        }
        request.send().await.unwrap()
    }
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

#[tokio::test]
async fn files_ranges_and_head() {
    let f = fixture().await;
    let full = f
        .get("/org/public/resolve/main/config.json", None, None)
        .await;
    assert_eq!(full.status(), StatusCode::OK);
    assert_eq!(
        header(&full, "etag"),
        Some(format!("\"{}\"", git::blob_sha1(b"0123456789")).as_str())
    );
    assert_eq!(header(&full, "accept-ranges"), Some("bytes"));
    assert!(header(&full, "x-repo-commit").is_some_and(|c| c.len() == 40));
    assert_eq!(full.bytes().await.unwrap().as_ref(), b"0123456789");

    let part = f
        .get(
            "/org/public/resolve/v1/config.json",
            None,
            Some("bytes=2-4"),
        )
        .await;
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header(&part, "content-range"), Some("bytes 2-4/10"));
    assert_eq!(part.bytes().await.unwrap().as_ref(), b"234");

    let tail = f
        .get(
            "/org/public/resolve/main/config.json",
            None,
            Some("bytes=7-"),
        )
        .await;
    assert_eq!(header(&tail, "content-length"), Some("3"));
    assert_eq!(tail.bytes().await.unwrap().as_ref(), b"789");

    let bad = f
        .get(
            "/org/public/resolve/main/config.json",
            None,
            Some("bytes=10-"),
        )
        .await;
    assert_eq!(bad.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&bad, "content-range"), Some("bytes */10"));

    let head = f
        .http
        .head(f.url("/org/public/resolve/main/model.safetensors"))
        .send()
        .await
        .unwrap();
    let sha = git::sha256_hex(&f.weights);
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(header(&head, "content-length"), Some("100000"));
    assert_eq!(header(&head, "etag"), Some(format!("\"{sha}\"").as_str()));
    assert_eq!(
        header(&head, "x-linked-etag"),
        Some(format!("\"{sha}\"").as_str())
    );
    assert_eq!(header(&head, "x-linked-size"), Some("100000"));
    let body = f
        .get("/org/public/resolve/main/model.safetensors", None, None)
        .await;
    assert_eq!(body.bytes().await.unwrap().as_ref(), f.weights.as_slice());
    f.hub.stop().await;
}

#[tokio::test]
async fn errors_carry_the_hubs_codes() {
    let f = fixture().await;
    let cases: &[(&str, Option<&str>, StatusCode, Option<&str>)] = &[
        (
            "/org/absent/resolve/main/x",
            None,
            StatusCode::UNAUTHORIZED,
            Some("RepoNotFound"),
        ),
        (
            "/org/absent/resolve/main/x",
            Some(ALICE),
            StatusCode::NOT_FOUND,
            Some("RepoNotFound"),
        ),
        (
            "/alice/private/resolve/main/config.json",
            None,
            StatusCode::UNAUTHORIZED,
            Some("RepoNotFound"),
        ),
        (
            "/alice/private/resolve/main/config.json",
            Some(BOB),
            StatusCode::NOT_FOUND,
            Some("RepoNotFound"),
        ),
        (
            "/alice/private/resolve/main/config.json",
            Some(ALICE),
            StatusCode::OK,
            None,
        ),
        (
            "/org/public/resolve/nope/config.json",
            None,
            StatusCode::NOT_FOUND,
            Some("RevisionNotFound"),
        ),
        (
            "/org/public/resolve/main/nope.json",
            None,
            StatusCode::NOT_FOUND,
            Some("EntryNotFound"),
        ),
        (
            "/org/gated/resolve/main/config.json",
            None,
            StatusCode::UNAUTHORIZED,
            Some("GatedRepo"),
        ),
        (
            "/org/gated/resolve/main/config.json",
            Some(ALICE),
            StatusCode::FORBIDDEN,
            Some("GatedRepo"),
        ),
        (
            "/org/gated/resolve/main/config.json",
            Some(BOB),
            StatusCode::OK,
            None,
        ),
        ("/api/models/org/gated", None, StatusCode::OK, None),
        (
            "/api/models/alice/private",
            None,
            StatusCode::UNAUTHORIZED,
            Some("RepoNotFound"),
        ),
        (
            "/api/models/org/public/revision/nope",
            None,
            StatusCode::NOT_FOUND,
            Some("RevisionNotFound"),
        ),
        (
            "/org/public/resolve/main/config.json",
            Some("hf_wrong"),
            StatusCode::UNAUTHORIZED,
            None,
        ),
    ];
    for (path, token, status, code) in cases {
        let response = f.get(path, *token, None).await;
        assert_eq!(response.status(), *status, "{path} {token:?}");
        assert_eq!(header(&response, "x-error-code"), *code, "{path} {token:?}");
    }
    let missing = f
        .get("/org/public/resolve/main/nope.json", None, None)
        .await;
    assert!(header(&missing, "x-repo-commit").is_some());
    let wrong = f.get("/api/whoami-v2", Some("hf_wrong"), None).await;
    assert_eq!(
        header(&wrong, "x-error-message"),
        Some("Invalid credentials in Authorization header")
    );
    let log = serde_json::to_string(&f.hub.requests()).unwrap();
    assert!(!log.contains(ALICE) && !log.contains(BOB) && !log.contains("hf_wrong"));
    assert!(f.hub.requests().iter().any(|r| r.authorization));
    f.hub.stop().await;
}

#[tokio::test]
async fn whoami_and_model_info() {
    let f = fixture().await;
    assert_eq!(
        f.get("/api/whoami-v2", None, None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let me: Value = f
        .get("/api/whoami-v2", Some(ALICE), None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["type"].as_str(), me["name"].as_str()),
        (Some("user"), Some("alice"))
    );
    assert_eq!(me["auth"]["type"], "access_token");

    let info: Value = f
        .get("/api/models/org/public?blobs=true", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["id"], "org/public");
    assert_eq!(info["private"], false);
    assert_eq!(info["gated"], false);
    let lfs = info["siblings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["rfilename"] == "model.safetensors")
        .unwrap();
    assert_eq!(lfs["lfs"]["sha256"], git::sha256_hex(&f.weights));
    let gated: Value = f
        .get("/api/models/org/gated", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(gated["gated"], "manual");
    let by_commit: Value = f
        .get(
            &format!(
                "/api/models/org/public/revision/{}",
                info["sha"].as_str().unwrap()
            ),
            None,
            None,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(by_commit["sha"], info["sha"]);
    f.hub.stop().await;
}

#[tokio::test]
async fn upload_by_hand_preupload_lfs_batch_and_commit() {
    let f = fixture().await;
    let auth = format!("Bearer {ALICE}");
    let created = f
        .http
        .post(f.url("/api/repos/create"))
        .header(AUTHORIZATION, &auth)
        .json(&json!({ "name": "fresh", "organization": null, "private": false }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::OK);
    let again = f
        .http
        .post(f.url("/api/repos/create"))
        .header(AUTHORIZATION, &auth)
        .json(&json!({ "name": "fresh" }))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::CONFLICT);

    let blob = vec![0u8; 4096];
    let oid = git::sha256_hex(&blob);
    let sample = base64::engine::general_purpose::STANDARD.encode(&blob[..512]);
    let modes: Value = f
        .http
        .post(f.url("/api/models/alice/fresh/preupload/main"))
        .header(AUTHORIZATION, &auth)
        .json(&json!({ "files": [
            { "path": "w.bin", "sample": sample, "size": 4096 },
            { "path": "notes.txt", "sample": "aGk=", "size": 2 },
            { "path": ".gitattributes", "sample": "", "size": 0 },
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let files = modes["files"].as_array().unwrap();
    assert_eq!(files[0]["uploadMode"], "lfs");
    assert_eq!(files[1]["uploadMode"], "regular");
    assert!(files[1].get("oid").is_none());
    assert!(files[2]["oid"].is_string());

    let batch_body = json!({ "operation": "upload", "transfers": ["basic", "multipart", "xet"],
        "objects": [{ "oid": oid, "size": 4096 }], "hash_algo": "sha256" });
    let batch = |body: Value| {
        f.http
            .post(f.url("/alice/fresh.git/info/lfs/objects/batch"))
            .header(AUTHORIZATION, &auth)
            .header("accept", "application/vnd.git-lfs+json")
            .json(&body)
            .send()
    };
    let answer: Value = batch(batch_body.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["transfer"], "basic");
    let href = answer["objects"][0]["actions"]["upload"]["href"]
        .as_str()
        .unwrap()
        .to_string();
    let wrong = f
        .http
        .put(&href)
        .body(vec![1u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    let put = f.http.put(&href).body(blob.clone()).send().await.unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    let verify = answer["objects"][0]["actions"]["verify"]["href"]
        .as_str()
        .unwrap();
    let verified = f
        .http
        .post(verify)
        .header(AUTHORIZATION, &auth)
        .json(&json!({ "oid": oid, "size": 4096 }))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), StatusCode::OK);
    let present: Value = batch(batch_body).await.unwrap().json().await.unwrap();
    assert!(present["objects"][0].get("actions").is_none());

    let ndjson = [
        json!({ "key": "header", "value": { "summary": "add", "description": "" } }),
        json!({ "key": "file", "value": { "path": "notes.txt", "content": "aGk=", "encoding": "base64" } }),
        json!({ "key": "lfsFile", "value": { "path": "w.bin", "algo": "sha256", "oid": oid, "size": 4096 } }),
    ]
    .iter()
    .map(|l| format!("{l}\n"))
    .collect::<String>();
    let anonymous = f
        .http
        .post(f.url("/api/models/alice/fresh/commit/main"))
        .body(ndjson.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let committed: Value = f
        .http
        .post(f.url("/api/models/alice/fresh/commit/main"))
        .header(AUTHORIZATION, &auth)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let commit = committed["commitOid"].as_str().unwrap();
    assert!(committed["commitUrl"].as_str().unwrap().ends_with(commit));
    let got = f
        .get(&format!("/alice/fresh/resolve/{commit}/w.bin"), None, None)
        .await;
    assert_eq!(header(&got, "etag"), Some(format!("\"{oid}\"").as_str()));
    assert_eq!(got.bytes().await.unwrap().as_ref(), blob.as_slice());
    let notes = f
        .get("/alice/fresh/resolve/main/notes.txt", None, None)
        .await;
    assert_eq!(notes.bytes().await.unwrap().as_ref(), b"hi");
    let tree: Value = f
        .get("/api/models/alice/fresh/tree/main", None, None)
        .await
        .json()
        .await
        .unwrap();
    let paths: Vec<&str> = tree
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, [".gitattributes", "notes.txt", "w.bin"]);
    f.hub.stop().await;
}
