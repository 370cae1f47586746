//! Repo metadata (model info, tree, paths-info), accounts (whoami), repo creation, refs.

use std::collections::BTreeSet;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{repo_id, Identity, Shared};
use crate::error::HubError;
use crate::git;
use crate::store::{Commit, FileEntry, Gate, RepoId, RepoSettings};

#[derive(Deserialize, Default)]
pub struct InfoQuery {
    blobs: Option<String>,
}

pub async fn model_info(
    State(state): State<Shared>,
    Path((org, name)): Path<(String, String)>,
    Query(query): Query<InfoQuery>,
    headers: HeaderMap,
) -> Result<Response, HubError> {
    info(&state, &org, &name, "main", query, &headers)
}

pub async fn model_info_at(
    State(state): State<Shared>,
    Path((org, name, rev)): Path<(String, String, String)>,
    Query(query): Query<InfoQuery>,
    headers: HeaderMap,
) -> Result<Response, HubError> {
    info(&state, &org, &name, &rev, query, &headers)
}

fn info(
    state: &Shared,
    org: &str,
    name: &str,
    rev: &str,
    query: InfoQuery,
    headers: &HeaderMap,
) -> Result<Response, HubError> {
    let identity = state.identify(headers)?;
    let id = repo_id(&identity, org, name)?;
    let record = state.check_read(&identity, &id)?;
    let commit = state.store.commit(&id, &state.store.resolve(&id, rev)?)?;
    let blobs = query.blobs.as_deref().is_some_and(is_true);
    let siblings: Vec<Value> = commit
        .files
        .iter()
        .map(|(path, entry)| {
            if !blobs {
                return json!({ "rfilename": path });
            }
            let mut sibling = json!({ "rfilename": path, "size": entry.size, "blobId": entry.blob_id });
            if let Some(lfs) = &entry.lfs {
                sibling["lfs"] =
                    json!({ "sha256": lfs.sha256, "size": lfs.size, "pointerSize": lfs.pointer_size });
            }
            sibling
        })
        .collect();
    let gated = match record.settings.gated {
        None => json!(false),
        Some(Gate::Auto) => json!("auto"),
        Some(Gate::Manual) => json!("manual"),
    };
    let used_storage: u64 = commit.files.values().map(|f| f.size).sum();
    let repo = id.to_string();
    Ok(Json(json!({
        "_id": &git::blob_sha1(repo.as_bytes())[..24],
        "id": repo,
        "modelId": repo,
        "author": id.namespace,
        "sha": commit.id,
        "lastModified": commit.date,
        "createdAt": record.created_at,
        "private": record.settings.private,
        "gated": gated,
        "disabled": false,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
        "spaces": [],
        "usedStorage": used_storage,
    }))
    .into_response())
}

#[derive(Deserialize, Default)]
pub struct TreeQuery {
    recursive: Option<String>,
}

pub async fn tree_root(
    State(state): State<Shared>,
    Path((org, name, rev)): Path<(String, String, String)>,
    Query(query): Query<TreeQuery>,
    headers: HeaderMap,
) -> Result<Response, HubError> {
    tree(&state, &org, &name, &rev, "", query, &headers)
}

pub async fn tree_at(
    State(state): State<Shared>,
    Path((org, name, rev, path)): Path<(String, String, String, String)>,
    Query(query): Query<TreeQuery>,
    headers: HeaderMap,
) -> Result<Response, HubError> {
    tree(&state, &org, &name, &rev, &path, query, &headers)
}

fn tree(
    state: &Shared,
    org: &str,
    name: &str,
    rev: &str,
    folder: &str,
    query: TreeQuery,
    headers: &HeaderMap,
) -> Result<Response, HubError> {
    let identity = state.identify(headers)?;
    let id = repo_id(&identity, org, name)?;
    state.check_read(&identity, &id)?;
    let commit = state.store.commit(&id, &state.store.resolve(&id, rev)?)?;
    let folder = folder.trim_matches('/');
    let recursive = query.recursive.as_deref().is_some_and(is_true);
    let prefix = if folder.is_empty() {
        String::new()
    } else {
        format!("{folder}/")
    };
    let folders = folders_of(&commit);
    if !folder.is_empty() && !folders.contains(folder) {
        return Err(HubError::entry_not_found(folder, Some(&commit.id)));
    }
    let within = |path: &str| {
        path.strip_prefix(&prefix)
            .is_some_and(|rest| recursive || !rest.contains('/'))
    };
    let mut entries: Vec<Value> = folders
        .iter()
        .filter(|f| within(f))
        .map(|f| folder_json(&commit, f))
        .collect();
    entries.extend(
        commit
            .files
            .iter()
            .filter(|(path, _)| within(path))
            .map(|(path, entry)| file_json(path, entry)),
    );
    Ok(Json(entries).into_response())
}

/// `POST .../paths-info/{rev}`: form-encoded (`paths=a&paths=b&expand=false`, as
/// `huggingface_hub` sends it) or JSON `{"paths": [...]}`; missing paths are left out.
pub async fn paths_info(
    State(state): State<Shared>,
    Path((org, name, rev)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HubError> {
    let identity = state.identify(&headers)?;
    let id = repo_id(&identity, &org, &name)?;
    state.check_read(&identity, &id)?;
    let commit = state.store.commit(&id, &state.store.resolve(&id, &rev)?)?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let paths: Vec<String> = if is_json {
        #[derive(Deserialize)]
        struct Body {
            paths: Vec<String>,
        }
        serde_json::from_slice::<Body>(&body)
            .map_err(|e| HubError::bad_request(format!("invalid paths-info body: {e}")))?
            .paths
    } else {
        form_urlencoded::parse(&body)
            .filter(|(key, _)| key == "paths")
            .map(|(_, value)| value.into_owned())
            .collect()
    };
    let folders = folders_of(&commit);
    let entries: Vec<Value> = paths
        .iter()
        .map(|p| p.trim_matches('/'))
        .filter_map(|path| {
            if let Some(entry) = commit.files.get(path) {
                Some(file_json(path, entry))
            } else {
                folders.contains(path).then(|| folder_json(&commit, path))
            }
        })
        .collect();
    Ok(Json(entries).into_response())
}

fn folders_of(commit: &Commit) -> BTreeSet<String> {
    let mut folders = BTreeSet::new();
    for path in commit.files.keys() {
        for (i, _) in path.match_indices('/') {
            folders.insert(path[..i].to_string());
        }
    }
    folders
}

fn file_json(path: &str, entry: &FileEntry) -> Value {
    let mut value =
        json!({ "type": "file", "oid": entry.blob_id, "size": entry.size, "path": path });
    if let Some(lfs) = &entry.lfs {
        value["lfs"] =
            json!({ "oid": lfs.sha256, "size": lfs.size, "pointerSize": lfs.pointer_size });
    }
    value
}

/// A folder's `oid` stands in for its git tree id: a hash of what it holds.
fn folder_json(commit: &Commit, folder: &str) -> Value {
    let prefix = format!("{folder}/");
    let listing: String = commit
        .files
        .iter()
        .filter(|(p, _)| p.starts_with(&prefix))
        .map(|(p, e)| format!("{p}\0{}\n", e.blob_id))
        .collect();
    json!({ "type": "directory", "oid": git::blob_sha1(listing.as_bytes()), "size": 0, "path": folder })
}

pub async fn whoami(State(state): State<Shared>, headers: HeaderMap) -> Result<Response, HubError> {
    let Identity::User(user) = state.identify(&headers)? else {
        return Err(HubError::login_required());
    };
    let orgs: Vec<Value> = state
        .users
        .orgs_of(&user)
        .map(|org| {
            json!({
                "type": "org", "id": &git::blob_sha1(org.as_bytes())[..24], "name": org,
                "fullname": org, "email": null, "canPay": false, "periodEnd": null,
                "avatarUrl": "", "roleInOrg": "write",
            })
        })
        .collect();
    Ok(Json(json!({
        "type": "user",
        "id": &git::blob_sha1(user.as_bytes())[..24],
        "name": user,
        "fullname": user,
        "email": format!("{user}@testhub.invalid"),
        "emailVerified": true,
        "canPay": false,
        "isPro": false,
        "periodEnd": null,
        "avatarUrl": "",
        "orgs": orgs,
        "auth": {
            "type": "access_token",
            "accessToken": { "displayName": "mlxk-testhub", "role": "write", "createdAt": "2025-01-15T10:00:00.000Z" },
        },
    }))
    .into_response())
}

#[derive(Deserialize)]
pub struct CreateRepo {
    name: String,
    organization: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    private: Option<bool>,
    visibility: Option<String>,
}

/// `POST /api/repos/create`: a new repo with the Hub's initial commit; 409 (with the repo's
/// `url`, which `exist_ok=True` reads) when it exists.
pub async fn create_repo(
    State(state): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<CreateRepo>,
) -> Result<Response, HubError> {
    let Identity::User(user) = state.identify(&headers)? else {
        return Err(HubError::login_required());
    };
    if body.kind.as_deref().is_some_and(|k| k != "model") {
        return Err(HubError::bad_request(
            "mlxk-testhub only serves model repos",
        ));
    }
    let (namespace, name) = match (body.organization.as_deref(), body.name.split_once('/')) {
        (_, Some((ns, name))) => (ns.to_string(), name.to_string()),
        (Some(org), None) => (org.to_string(), body.name.clone()),
        (None, None) => (user.clone(), body.name.clone()),
    };
    let id = RepoId::new(&namespace, &name)?;
    if !state.users.can_write(&user, &id) {
        return Err(HubError::forbidden(format!(
            "You don't have the rights to create a model under the namespace \"{namespace}\""
        )));
    }
    let private = match body.visibility.as_deref() {
        Some("private") => true,
        Some("public") => false,
        Some(other) => return Err(HubError::bad_request(format!("unknown visibility {other}"))),
        None => body.private.unwrap_or(false),
    };
    let url = format!("{}/{id}", state.base_url(&headers));
    let settings = RepoSettings {
        private,
        ..RepoSettings::default()
    };
    let store = state.store.clone();
    let created = {
        let id = id.clone();
        tokio::task::spawn_blocking(move || store.create_repo_like_hub(&id, settings))
            .await
            .map_err(|e| HubError::internal(e.to_string()))?
    };
    match created {
        Ok(_) => Ok(
            Json(json!({ "url": url, "name": id.to_string(), "id": id.to_string() }))
                .into_response(),
        ),
        Err(error) => {
            let mut error = HubError::from(error);
            error.url = Some(url);
            Err(error)
        }
    }
}

pub async fn validate_yaml() -> Response {
    Json(json!({ "errors": [], "warnings": [] })).into_response()
}

#[derive(Deserialize)]
pub struct CreateTag {
    tag: String,
}

pub async fn create_tag(
    State(state): State<Shared>,
    Path((org, name, rev)): Path<(String, String, String)>,
    headers: HeaderMap,
    Json(body): Json<CreateTag>,
) -> Result<Response, HubError> {
    let identity = state.identify(&headers)?;
    let id = repo_id(&identity, &org, &name)?;
    state.check_write(&identity, &id)?;
    if state.store.resolve(&id, &body.tag).is_ok() {
        return Err(HubError::new(
            axum::http::StatusCode::CONFLICT,
            None,
            format!("Tag {} already exists", body.tag),
        ));
    }
    state.store.set_tag(&id, &body.tag, &rev)?;
    Ok(Json(json!({})).into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CreateBranch {
    starting_point: Option<String>,
}

pub async fn create_branch(
    State(state): State<Shared>,
    Path((org, name, branch)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HubError> {
    let identity = state.identify(&headers)?;
    let id = repo_id(&identity, &org, &name)?;
    state.check_write(&identity, &id)?;
    let request: CreateBranch = if body.is_empty() {
        CreateBranch::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| HubError::bad_request(e.to_string()))?
    };
    let start = request.starting_point.unwrap_or_else(|| "main".into());
    state
        .store
        .create_branch(&id, &branch, &start)
        .map_err(|e| match e {
            crate::store::StoreError::RepoExists(_) => HubError::new(
                axum::http::StatusCode::CONFLICT,
                None,
                format!("Reference already exists: refs/heads/{branch}"),
            ),
            other => other.into(),
        })?;
    Ok(Json(json!({})).into_response())
}

fn is_true(value: &str) -> bool {
    matches!(value, "1" | "true" | "True")
}
