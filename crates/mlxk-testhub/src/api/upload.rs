//! Uploads as `huggingface_hub` makes them without Xet: `preupload` (LFS or regular per file),
//! the Git LFS batch API answering with the `basic` transfer, a PUT that stores and verifies
//! each object, an optional verify call, and the NDJSON (or JSON) `commit`.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use bytes::Bytes;
use futures_util::StreamExt as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::{repo_id, Shared};
use crate::error::HubError;
use crate::git;
use crate::request_log::LogNote;
use crate::store::{CommitHeader, Content, Operation, RepoId};
use crate::upload_mode;

const LFS_MEDIA_TYPE: &str = "application/vnd.git-lfs+json";

/// What one upload href accepts.
#[derive(Debug, Clone)]
pub struct Ticket {
    repo: RepoId,
    oid: String,
    size: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PreuploadRequest {
    files: Vec<PreuploadFile>,
    git_ignore: Option<String>,
}

#[derive(Deserialize)]
pub struct PreuploadFile {
    path: String,
    sample: String,
    size: u64,
}

pub async fn preupload(
    State(state): State<Shared>,
    Path((org, name, rev)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(request): Json<PreuploadRequest>,
) -> Result<Response, HubError> {
    hold_upload(&state).await;
    let identity = state.identify(&headers)?;
    let id = repo_id(&identity, &org, &name)?;
    state.check_write(&identity, &id)?;
    let commit = state.store.commit(&id, &state.store.resolve(&id, &rev)?)?;
    let gitattributes = state.store.read_text(&id, &commit, ".gitattributes");
    let gitignore = request
        .git_ignore
        .or_else(|| state.store.read_text(&id, &commit, ".gitignore"));
    let mut files = Vec::with_capacity(request.files.len());
    for file in request.files {
        let sample = base64::engine::general_purpose::STANDARD
            .decode(&file.sample)
            .map_err(|_| HubError::bad_request(format!("sample of {} is not base64", file.path)))?;
        let lfs = upload_mode::is_lfs(&file.path, file.size, &sample, gitattributes.as_deref());
        let ignored = gitignore
            .as_deref()
            .is_some_and(|rules| upload_mode::is_ignored(&file.path, rules));
        let mut answer = json!({
            "path": file.path,
            "uploadMode": if lfs { "lfs" } else { "regular" },
            "shouldIgnore": ignored,
        });
        if let Some(existing) = commit.files.get(&file.path) {
            answer["oid"] = json!(existing.upload_oid());
        }
        files.push(answer);
    }
    Ok(Json(json!({ "files": files, "commitOid": commit.id })).into_response())
}

#[derive(Deserialize)]
pub struct BatchRequest {
    operation: String,
    #[serde(default)]
    objects: Vec<BatchObject>,
}

#[derive(Deserialize)]
pub struct BatchObject {
    oid: String,
    size: u64,
}

/// `POST /{org}/{name}.git/info/lfs/objects/batch`: always the `basic` transfer (whatever the
/// client offers); objects already stored get no actions.
pub async fn lfs_batch(
    State(state): State<Shared>,
    Path((org, name_git)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HubError> {
    let identity = state.identify(&headers)?;
    let name = name_git
        .strip_suffix(".git")
        .ok_or_else(|| HubError::repo_not_found(false))?;
    let id = repo_id(&identity, &org, name)?;
    let request: BatchRequest = serde_json::from_slice(&body)
        .map_err(|e| HubError::bad_request(format!("invalid LFS batch request: {e}")))?;
    if request.operation != "upload" {
        return Err(HubError::bad_request(
            "mlxk-testhub's LFS batch API supports the upload operation only",
        ));
    }
    state.check_write(&identity, &id)?;
    let base = state.base_url(&headers);
    let mut objects = Vec::with_capacity(request.objects.len());
    for object in &request.objects {
        if !git::is_hex_of_len(&object.oid, 64) {
            objects.push(json!({
                "oid": object.oid, "size": object.size,
                "error": { "code": 422, "message": "oid must be a lowercase SHA-256" },
            }));
            continue;
        }
        if state
            .store
            .lfs_object(&id, &object.oid, Some(object.size))
            .is_some()
        {
            objects.push(json!({ "oid": object.oid, "size": object.size, "authenticated": true }));
            continue;
        }
        let ticket = new_ticket(&object.oid);
        state
            .tickets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                ticket.clone(),
                Ticket {
                    repo: id.clone(),
                    oid: object.oid.clone(),
                    size: object.size,
                },
            );
        objects.push(json!({
            "oid": object.oid,
            "size": object.size,
            "authenticated": true,
            "actions": {
                "upload": { "href": format!("{base}/_testhub/lfs-upload/{ticket}"), "header": {}, "expires_in": 3600 },
                "verify": { "href": format!("{base}/{id}.git/info/lfs/objects/verify"), "header": {}, "expires_in": 3600 },
            },
        }));
    }
    let detail = request
        .objects
        .iter()
        .map(|o| o.oid.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let mut response =
        Json(json!({ "transfer": "basic", "objects": objects, "hash_algo": "sha256" }))
            .into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(LFS_MEDIA_TYPE),
    );
    response.extensions_mut().insert(LogNote {
        request_bytes: None,
        detail: Some(format!("upload {detail}")),
    });
    Ok(response)
}

/// An unguessable-enough name for one upload (this is a loopback test double).
fn new_ticket(oid: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let digest = Sha256::digest(format!("{oid}:{n}:{nanos}:{}", std::process::id()));
    git::hex(&digest[..16])
}

/// `PUT /_testhub/lfs-upload/{ticket}`: the href of an upload action. Like a presigned URL it
/// needs no `Authorization`; the body must hash to the ticket's oid and have its size.
pub async fn lfs_put(
    State(state): State<Shared>,
    Path(ticket): Path<String>,
    body: Body,
) -> Result<Response, HubError> {
    let grant = state
        .tickets
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&ticket)
        .cloned()
        .ok_or_else(|| HubError::forbidden("unknown or used upload ticket"))?;
    hold_upload(&state).await;
    let scratch = state.store.scratch_path(&grant.repo)?;
    let received = receive(body, &scratch).await;
    let outcome = match received {
        Ok((count, digest)) if count == grant.size && digest == grant.oid => {
            state.store.put_lfs_object(&grant.repo, &grant.oid, &scratch)?;
            state
                .tickets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&ticket);
            Ok(count)
        }
        Ok((count, digest)) => Err((
            count,
            HubError::bad_request(format!(
                "upload does not match the LFS object: got {count} bytes with sha256 {digest}, expected {} bytes with sha256 {}",
                grant.size, grant.oid
            )),
        )),
        Err(e) => Err((0, HubError::internal(format!("upload failed: {e}")))),
    };
    let _ = tokio::fs::remove_file(&scratch).await;
    let (count, result) = match outcome {
        Ok(count) => (count, Ok(StatusCode::OK.into_response())),
        Err((count, error)) => (count, Err(error)),
    };
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response.extensions_mut().insert(LogNote {
        request_bytes: Some(count),
        detail: Some(format!("lfs {}", grant.oid)),
    });
    Ok(response)
}

/// The `upload_hold_ms` knob: a slow Hub, so that a test can cancel a push midway.
async fn hold_upload(state: &Shared) {
    let hold = state
        .knobs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .upload_hold_ms;
    if let Some(ms) = hold {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}

async fn receive(body: Body, target: &std::path::Path) -> std::io::Result<(u64, String)> {
    let mut file = tokio::fs::File::create(target).await?;
    let mut hasher = Sha256::new();
    let mut count = 0u64;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(std::io::Error::other)?;
        hasher.update(&chunk);
        count += chunk.len() as u64;
        file.write_all(&chunk).await?;
    }
    file.flush().await?;
    Ok((count, git::hex(&hasher.finalize())))
}

pub async fn lfs_verify(
    State(state): State<Shared>,
    Path((org, name_git)): Path<(String, String)>,
    headers: HeaderMap,
    Json(object): Json<BatchObject>,
) -> Result<Response, HubError> {
    let identity = state.identify(&headers)?;
    let name = name_git
        .strip_suffix(".git")
        .ok_or_else(|| HubError::repo_not_found(false))?;
    let id = repo_id(&identity, &org, name)?;
    state.check_write(&identity, &id)?;
    match state.store.lfs_object(&id, &object.oid, Some(object.size)) {
        Some(_) => Ok(Json(json!({})).into_response()),
        None => Err(HubError::new(
            StatusCode::NOT_FOUND,
            None,
            format!(
                "LFS object {} with size {} not found",
                object.oid, object.size
            ),
        )),
    }
}

#[derive(Deserialize, Default)]
pub struct CommitQuery {
    create_pr: Option<String>,
}

/// `POST /api/models/{org}/{name}/commit/{branch}`.
pub async fn commit(
    State(state): State<Shared>,
    Path((org, name, branch)): Path<(String, String, String)>,
    Query(query): Query<CommitQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HubError> {
    let identity = state.identify(&headers)?;
    let id = repo_id(&identity, &org, &name)?;
    state.check_write(&identity, &id)?;
    if query
        .create_pr
        .as_deref()
        .is_some_and(|v| v == "1" || v == "true")
    {
        return Err(HubError::bad_request(
            "mlxk-testhub does not support pull requests (create_pr)",
        ));
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let lines = if is_json {
        json_commit_lines(&body)?
    } else {
        ndjson_lines(&body)?
    };
    let (header, operations, summary) = parse_commit(lines)?;
    let store = state.store.clone();
    let repo = id.clone();
    let branch_name = branch.clone();
    let commit = tokio::task::spawn_blocking(move || {
        store.commit_to_branch(&repo, &branch_name, header, operations)
    })
    .await
    .map_err(|e| HubError::internal(e.to_string()))??;
    let base = state.base_url(&headers);
    let mut response = Json(json!({
        "success": true,
        "commitOid": commit.id,
        "commitUrl": format!("{base}/{id}/commit/{}", commit.id),
        "hookOutput": "",
    }))
    .into_response();
    response.extensions_mut().insert(LogNote {
        request_bytes: Some(body.len() as u64),
        detail: Some(summary),
    });
    Ok(response)
}

fn ndjson_lines(body: &[u8]) -> Result<Vec<Value>, HubError> {
    body.split(|&b| b == b'\n')
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| {
            serde_json::from_slice(line)
                .map_err(|e| HubError::bad_request(format!("invalid NDJSON line: {e}")))
        })
        .collect()
}

/// The JSON form of a commit (`{summary, files, lfsFiles, deletedFiles, ...}`) as NDJSON lines.
fn json_commit_lines(body: &[u8]) -> Result<Vec<Value>, HubError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| HubError::bad_request(format!("invalid commit body: {e}")))?;
    let mut header = json!({
        "summary": value.get("summary").cloned().unwrap_or(Value::Null),
        "description": value.get("description").cloned().unwrap_or(json!("")),
    });
    if let Some(parent) = value.get("parentCommit") {
        header["parentCommit"] = parent.clone();
    }
    let mut lines = vec![json!({ "key": "header", "value": header })];
    for (field, key) in [
        ("files", "file"),
        ("lfsFiles", "lfsFile"),
        ("deletedFiles", "deletedFile"),
        ("deletedFolders", "deletedFolder"),
    ] {
        for item in value
            .get(field)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            lines.push(json!({ "key": key, "value": item }));
        }
    }
    Ok(lines)
}

fn parse_commit(lines: Vec<Value>) -> Result<(CommitHeader, Vec<Operation>, String), HubError> {
    let mut lines = lines.into_iter();
    let first = lines.next().unwrap_or(Value::Null);
    if first.get("key").and_then(Value::as_str) != Some("header") {
        return Err(HubError::bad_request(
            "the first line of a commit must be its header",
        ));
    }
    let head = &first["value"];
    let text = |v: &Value, field: &str| v.get(field).and_then(Value::as_str).map(str::to_string);
    let title = text(head, "summary")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| HubError::bad_request("the commit summary is empty"))?;
    let header = CommitHeader {
        title,
        message: text(head, "description").unwrap_or_default(),
        parent: text(head, "parentCommit"),
        date: None,
    };
    let mut operations = Vec::new();
    let mut summary = Vec::new();
    for line in lines {
        let key = line.get("key").and_then(Value::as_str).unwrap_or_default();
        let value = &line["value"];
        let path =
            text(value, "path").ok_or_else(|| HubError::bad_request("operation without a path"))?;
        summary.push(format!("{key}:{path}"));
        let operation = match key {
            "file" => {
                let content = text(value, "content").unwrap_or_default();
                let bytes = match value.get("encoding").and_then(Value::as_str) {
                    Some("base64") => base64::engine::general_purpose::STANDARD
                        .decode(content.as_bytes())
                        .map_err(|_| {
                            HubError::bad_request(format!("content of {path} is not base64"))
                        })?,
                    _ => content.into_bytes(),
                };
                Operation::Add {
                    path,
                    content: Content::Bytes(bytes),
                    lfs: false,
                }
            }
            "lfsFile" => {
                if value
                    .get("algo")
                    .and_then(Value::as_str)
                    .is_some_and(|a| a != "sha256")
                {
                    return Err(HubError::bad_request("LFS files must use algo sha256"));
                }
                Operation::AddLfs {
                    path,
                    oid: text(value, "oid")
                        .ok_or_else(|| HubError::bad_request("lfsFile without oid"))?,
                    size: value.get("size").and_then(Value::as_u64),
                }
            }
            "deletedFile" => Operation::Delete { path },
            "deletedFolder" => Operation::DeleteFolder { path },
            other => {
                return Err(HubError::bad_request(format!(
                    "unknown commit operation {other:?}"
                )))
            }
        };
        operations.push(operation);
    }
    Ok((header, operations, summary.join(" ")))
}
