//! `push`: a model folder to a Hub repository, in one commit.
//!
//! The folder is read with `.hfignore` (gitignore syntax) plus defaults, checked offline
//! ([`check`]), compared with the remote branch by hash ([`plan`]: added, changed, unchanged,
//! remote-only), and only what differs travels. The commit itself goes through hf-hub 1.0's
//! `create_commit` (preupload, the LFS batch API, one NDJSON commit; the Hub picks Xet for LFS
//! content, which a local test Hub cannot serve, so there hf-hub sends LFS files inline in the
//! commit). New repositories are private unless asked otherwise.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::future::{select, Either};
use hf_hub::progress::{Progress, ProgressEvent, ProgressHandler, UploadEvent};
use hf_hub::repository::{CommitOperation, RepoTypeModel};
use hf_hub::{HFClient, HFError};
use serde::{Deserialize, Serialize};

use super::{CancellationToken, HubClient, HubError, RemoteFile, Result};
use crate::hashing::ContentHasher;
use crate::health::{self, CheckDepth, ProblemCode};
use crate::repo_id::RepoId;

/// Never pushed, besides what `.hfignore` lists.
pub const DEFAULT_IGNORES: &[&str] = &[
    ".git/",
    ".DS_Store",
    ".gitignore",
    ".hfignore",
    "__pycache__/",
    "*.pyc",
    ".venv/",
    "venv/",
    ".cache/",
    ".mlxk_workspace.json",
];

/// A file of the local folder, as it would be committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalFile {
    /// Path in the repository (`/`-separated).
    pub path: String,
    /// The file read (symlinks resolved).
    #[serde(skip)]
    pub source: PathBuf,
    pub size: u64,
    pub sha256: String,
    /// The git blob id of the content.
    pub git_oid: String,
}

/// Reads a folder's files (following symlinks, as an HF cache snapshot is made of them),
/// skipping [`DEFAULT_IGNORES`] and `.hfignore` patterns; sorted by path.
pub fn scan_folder(folder: &Path) -> Result<Vec<LocalFile>> {
    if !folder.is_dir() {
        return Err(HubError::InvalidInput(format!(
            "{} is not a folder",
            folder.display()
        )));
    }
    let mut overrides = ignore::overrides::OverrideBuilder::new(folder);
    for pattern in DEFAULT_IGNORES {
        overrides
            .add(&format!("!{pattern}"))
            .map_err(|e| HubError::InvalidInput(e.to_string()))?;
    }
    let overrides = overrides
        .build()
        .map_err(|e| HubError::InvalidInput(e.to_string()))?;
    let walker = ignore::WalkBuilder::new(folder)
        .standard_filters(false)
        .follow_links(true)
        .add_custom_ignore_filename(".hfignore")
        .overrides(overrides)
        .build();
    let mut files = Vec::new();
    for entry in walker {
        let entry =
            entry.map_err(|e| HubError::InvalidInput(format!("reading the folder: {e}")))?;
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let relative = entry
            .path()
            .strip_prefix(folder)
            .map_err(|_| HubError::InvalidInput("a file outside the folder".into()))?;
        let path = relative
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        files.push(hash_file(path, entry.path())?);
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn hash_file(path: String, source: &Path) -> Result<LocalFile> {
    let size = fs::metadata(source)
        .map_err(|e| HubError::io("reading", source, e))?
        .len();
    let digests = ContentHasher::both(size)
        .read_file(source, |_| {})
        .map_err(|e| HubError::io("reading", source, e))?;
    Ok(LocalFile {
        path,
        source: source
            .canonicalize()
            .unwrap_or_else(|_| source.to_path_buf()),
        size,
        sha256: digests.sha256.expect("asked for"),
        git_oid: digests.git_blob.expect("asked for"),
    })
}

/// How serious a problem of the folder is: errors block a push unless forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct Anomaly {
    pub severity: Severity,
    pub code: ProblemCode,
    pub message: String,
}

/// The offline check of a folder before it is pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct FolderCheck {
    pub files_count: usize,
    pub total_bytes: u64,
    pub anomalies: Vec<Anomaly>,
    pub healthy: bool,
}

/// Checks a folder as `mlxk health` checks a model (config, weights, index and shards, LFS
/// pointers, partial downloads, tokenizer), with no network.
pub fn check(folder: &Path, files: &[LocalFile]) -> FolderCheck {
    let report = health::check_folder(folder, CheckDepth::Quick);
    let anomalies: Vec<Anomaly> = report
        .problems
        .into_iter()
        .map(|p| Anomaly {
            // A model without a tokenizer still uploads fine; it just cannot chat yet.
            severity: match p.code {
                ProblemCode::TokenizerMissing | ProblemCode::TokenizerInvalid => Severity::Warning,
                _ => Severity::Error,
            },
            code: p.code,
            message: p.message,
        })
        .collect();
    FolderCheck {
        files_count: files.len(),
        total_bytes: files.iter().map(|f| f.size).sum(),
        healthy: !anomalies.iter().any(|a| a.severity == Severity::Error),
        anomalies,
    }
}

/// What a push would change on the remote branch.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct PushPlan {
    /// False when the repository does not exist yet.
    pub repo_exists: bool,
    pub branch_exists: bool,
    pub added: Vec<String>,
    /// Present on both sides with different content (compared by hash).
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Remote files the folder lacks: deleted only with `delete_remote_only`.
    pub remote_only: Vec<String>,
    pub deleted: Vec<String>,
}

impl PushPlan {
    /// The one rule of every shell: pushing would commit nothing, because the branch exists
    /// and no file would be added, changed or deleted (a missing repository or branch would
    /// be created: a change).
    pub fn no_changes(&self) -> bool {
        self.repo_exists
            && self.branch_exists
            && self.added.is_empty()
            && self.changed.is_empty()
            && self.deleted.is_empty()
    }
}

/// Compares the folder with the remote branch. Reads only; writes nothing anywhere.
pub async fn plan(
    client: &HubClient,
    repo: &RepoId,
    branch: &str,
    files: &[LocalFile],
    delete_remote_only: bool,
) -> Result<PushPlan> {
    let remote = match client.repo_info(repo, branch).await {
        Ok(info) => Some(client.list_files(repo, &info.sha).await?),
        Err(HubError::RepoNotFound { .. }) => {
            return Ok(PushPlan {
                added: files.iter().map(|f| f.path.clone()).collect(),
                ..PushPlan::default()
            })
        }
        Err(HubError::RevisionNotFound { .. }) => None,
        Err(other) => return Err(other),
    };
    Ok(compare(files, remote.as_deref(), delete_remote_only))
}

fn compare(files: &[LocalFile], remote: Option<&[RemoteFile]>, delete: bool) -> PushPlan {
    let mut plan = PushPlan {
        repo_exists: true,
        branch_exists: remote.is_some(),
        ..PushPlan::default()
    };
    let mut remote: BTreeMap<&str, &RemoteFile> = remote
        .unwrap_or_default()
        .iter()
        .map(|f| (f.path.as_str(), f))
        .collect();
    for file in files {
        match remote.remove(file.path.as_str()) {
            None => plan.added.push(file.path.clone()),
            Some(theirs) => {
                let same = theirs.size == file.size
                    && match &theirs.sha256 {
                        Some(sha256) => sha256.eq_ignore_ascii_case(&file.sha256),
                        None => theirs.git_oid.eq_ignore_ascii_case(&file.git_oid),
                    };
                let list = if same {
                    &mut plan.unchanged
                } else {
                    &mut plan.changed
                };
                list.push(file.path.clone());
            }
        }
    }
    // The Hub manages `.gitattributes` (it decides what is LFS): never delete it.
    plan.remote_only = remote
        .into_keys()
        .filter(|p| *p != ".gitattributes")
        .map(str::to_string)
        .collect();
    if delete {
        plan.deleted = plan.remote_only.clone();
    }
    plan
}

/// What to push where.
#[derive(Debug, Clone)]
pub struct PushRequest {
    pub repo: RepoId,
    pub branch: String,
    pub message: String,
    /// Create the repository if it does not exist.
    pub create: bool,
    /// Make a new repository public (never changes an existing one).
    pub public: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushOutcome {
    pub repo_id: String,
    pub branch: String,
    pub repo_url: String,
    pub commit_sha: Option<String>,
    pub commit_url: Option<String>,
    pub created_repo: bool,
    pub uploaded_files_count: usize,
    pub deleted_files_count: usize,
    pub no_changes: bool,
}

/// Progress of a push, for a progress bar.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PushEvent {
    Started {
        files: usize,
        bytes: u64,
    },
    /// Content bytes sent so far (the Hub's Xet path reports these; inline content does not).
    Uploaded {
        bytes: u64,
        total: u64,
    },
    /// All content is up; the commit itself is being made.
    Committing,
    Finished,
}

/// Turns hf-hub's upload events into [`PushEvent`]s, and notes when the commit began (from
/// then on a cancel cannot stop it cleanly).
struct Relay {
    on_event: Arc<dyn Fn(PushEvent) + Send + Sync>,
    committing: Arc<AtomicBool>,
}

impl ProgressHandler for Relay {
    fn on_progress(&self, event: &ProgressEvent) {
        let ProgressEvent::Upload(event) = event else {
            return;
        };
        if matches!(event, UploadEvent::Committing) {
            self.committing.store(true, Ordering::SeqCst);
        }
        (self.on_event)(match event {
            UploadEvent::Start {
                total_files,
                total_bytes,
            } => PushEvent::Started {
                files: *total_files,
                bytes: *total_bytes,
            },
            UploadEvent::Progress {
                bytes_completed,
                total_bytes,
                ..
            } => PushEvent::Uploaded {
                bytes: *bytes_completed,
                total: *total_bytes,
            },
            UploadEvent::Committing => PushEvent::Committing,
            UploadEvent::Complete => PushEvent::Finished,
        });
    }
}

/// Pushes what `plan` says differs, in one commit, reporting progress to `on_event`. Needs
/// a token. `cancel` stops it before the commit is made ([`HubError::Cancelled`]: nothing
/// changed on the Hub); once the commit has begun it lands.
pub async fn push(
    client: &HubClient,
    request: &PushRequest,
    files: &[LocalFile],
    plan: &PushPlan,
    cancel: &CancellationToken,
    on_event: Arc<dyn Fn(PushEvent) + Send + Sync>,
) -> Result<PushOutcome> {
    let Some(token) = client.token() else {
        return Err(HubError::Unauthorized {
            endpoint: client.endpoint().to_string(),
            status: 401,
            message: "pushing needs a Hugging Face token".into(),
        });
    };
    let repo_url = format!("{}/{}", client.endpoint(), request.repo.as_str());
    let mut outcome = PushOutcome {
        repo_id: request.repo.as_str().to_string(),
        branch: request.branch.clone(),
        repo_url,
        commit_sha: None,
        commit_url: None,
        created_repo: false,
        uploaded_files_count: 0,
        deleted_files_count: 0,
        no_changes: plan.no_changes(),
    };
    if outcome.no_changes {
        return Ok(outcome);
    }
    if cancel.is_cancelled() {
        return Err(HubError::Cancelled);
    }
    let hub = HFClient::builder()
        .endpoint(client.endpoint())
        .token(token.expose())
        .user_agent(concat!("mlx-knife-rs/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| hf_error(e, client.endpoint()))?;
    if !plan.repo_exists {
        if !request.create {
            return Err(HubError::NoRepoToPush {
                repo: request.repo.as_str().to_string(),
                endpoint: client.endpoint().to_string(),
            });
        }
        hub.create_repository()
            .repo_id(request.repo.as_str())
            .repo_type(RepoTypeModel)
            .private(!request.public)
            .exist_ok(true)
            .send()
            .await
            .map_err(|e| hf_error(e, client.endpoint()))?;
        outcome.created_repo = true;
    }
    let (owner, name) = request
        .repo
        .as_str()
        .split_once('/')
        .ok_or_else(|| HubError::InvalidInput("a repository id is ORG/NAME".into()))?;
    let repository = hub.model(owner, name);
    if !plan.branch_exists && request.branch != "main" {
        repository
            .create_branch()
            .branch(&request.branch)
            .send()
            .await
            .map_err(|e| hf_error(e, client.endpoint()))?;
    }
    let upload: Vec<&LocalFile> = files
        .iter()
        .filter(|f| plan.added.contains(&f.path) || plan.changed.contains(&f.path))
        .collect();
    let mut operations: Vec<CommitOperation> = upload
        .iter()
        .map(|f| CommitOperation::add_file(f.path.clone(), f.source.clone()))
        .collect();
    operations.extend(
        plan.deleted
            .iter()
            .map(|p| CommitOperation::delete(p.clone())),
    );
    let committing = Arc::new(AtomicBool::new(false));
    let relay = Relay {
        on_event,
        committing: Arc::clone(&committing),
    };
    let commit = repository
        .create_commit()
        .operations(operations)
        .commit_message(request.message.clone())
        .revision(request.branch.clone())
        .progress(Progress::new(relay))
        .send();
    let commit = match select(Box::pin(commit), Box::pin(cancel.cancelled())).await {
        Either::Left((result, _)) => result,
        // Too late to stop cleanly: let the commit land.
        Either::Right((_, commit)) if committing.load(Ordering::SeqCst) => commit.await,
        Either::Right(_) => return Err(HubError::Cancelled),
    }
    .map_err(|e| hf_error(e, client.endpoint()))?;
    outcome.commit_sha = commit.commit_oid;
    outcome.commit_url = commit.commit_url;
    outcome.uploaded_files_count = upload.len();
    outcome.deleted_files_count = plan.deleted.len();
    Ok(outcome)
}

fn hf_error(error: HFError, endpoint: &str) -> HubError {
    match error {
        HFError::AuthRequired { context } | HFError::Forbidden { context } => {
            HubError::Unauthorized {
                endpoint: endpoint.to_string(),
                status: context.status.as_u16(),
                message: context
                    .server_message
                    .unwrap_or_else(|| "the token has no write access".into()),
            }
        }
        HFError::RepoNotFound { repo_id, .. } => HubError::RepoNotFound {
            repo: repo_id,
            endpoint: endpoint.to_string(),
        },
        HFError::RevisionNotFound {
            repo_id, revision, ..
        } => HubError::RevisionNotFound {
            repo: repo_id,
            revision,
        },
        HFError::Http { context } => HubError::Http {
            endpoint: endpoint.to_string(),
            status: context.status.as_u16(),
            message: context.server_message.or(Some(context.body)),
        },
        other => HubError::InvalidResponse {
            endpoint: endpoint.to_string(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(path: &str, content: &[u8]) -> LocalFile {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, content).unwrap();
        hash_file(path.into(), &file).unwrap()
    }

    #[test]
    fn folders_are_read_with_default_and_hfignore_rules() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for (path, text) in [
            ("config.json", "{}"),
            ("sub/notes.md", "n"),
            (".git/HEAD", "ref"),
            ("__pycache__/x.pyc", "b"),
            ("scratch.tmp", "t"),
            (".hfignore", "# comment\n*.tmp\n"),
            (".mlxk_workspace.json", "{}"),
        ] {
            let file = root.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        let names: Vec<String> = scan_folder(root)
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(names, vec!["config.json", "sub/notes.md"]);
    }

    #[test]
    fn plans_compare_by_hash_and_delete_only_when_asked() {
        let same = local("same.json", b"{}");
        let changed = local("model.safetensors", b"new weights");
        let added = local("added.txt", b"hi");
        let remote = vec![
            RemoteFile {
                path: "same.json".into(),
                size: same.size,
                git_oid: same.git_oid.clone(),
                sha256: None,
            },
            RemoteFile {
                path: "model.safetensors".into(),
                size: changed.size,
                git_oid: "0".repeat(40),
                sha256: Some("f".repeat(64)),
            },
            RemoteFile {
                path: "old.bin".into(),
                size: 1,
                git_oid: "1".repeat(40),
                sha256: None,
            },
            RemoteFile {
                path: ".gitattributes".into(),
                size: 1,
                git_oid: "2".repeat(40),
                sha256: None,
            },
        ];
        let files = vec![same, changed, added];
        let plan = compare(&files, Some(&remote), false);
        assert_eq!(plan.unchanged, vec!["same.json"]);
        assert_eq!(plan.changed, vec!["model.safetensors"]);
        assert_eq!(plan.added, vec!["added.txt"]);
        assert_eq!(plan.remote_only, vec!["old.bin"]);
        assert!(plan.deleted.is_empty());
        assert_eq!(
            compare(&files, Some(&remote), true).deleted,
            vec!["old.bin"]
        );
        let unchanged_only = compare(&files[..1], Some(&remote[..1]), false);
        assert!(unchanged_only.no_changes());
    }
}
