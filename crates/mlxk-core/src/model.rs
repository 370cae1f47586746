//! Everything known about one cached model: the type every shell shows.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::architectures;
use crate::cache::CachedRepo;
use crate::classify::{self, Classification};
use crate::health::{self, CheckDepth, HealthReport, ProblemCode};
use crate::metadata::SnapshotMetadata;
use crate::snapshot::{self, RepoSnapshots, Selection, SnapshotEntry, SnapshotFile};
use crate::workspace;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeStatus {
    pub compatible: bool,
    /// Why the engine cannot run the model; `None` when it can.
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelInfo {
    /// `org/name` as on the Hub.
    pub name: String,
    /// The commit of the snapshot described here (`None` when the model has no snapshot).
    pub commit: Option<String>,
    /// Refs (branches, tags) naming that commit.
    pub refs: Vec<String>,
    /// Every snapshot of the model in the cache.
    pub snapshots: Vec<SnapshotEntry>,
    /// The snapshot folder (what an engine loads).
    pub path: Option<PathBuf>,
    /// Bytes on disk of this snapshot, each blob counted once.
    pub size_bytes: u64,
    pub files: Vec<SnapshotFile>,
    /// Newest modification of the snapshot's files, in UTC.
    pub last_modified: DateTime<Utc>,
    #[serde(flatten)]
    pub classification: Classification,
    pub health: HealthReport,
    pub runtime: RuntimeStatus,
    /// The parsed `config.json`, when valid.
    #[serde(skip)]
    pub config: Option<Value>,
    /// Set for a model folder outside the cache (a workspace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceState>,
}

/// A workspace as listings show it: where it came from and whether it changed since.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkspaceState {
    /// It has a marker written by clone or convert (this tool's or mlx-knife's).
    pub managed: bool,
    /// The repository it was cloned from.
    pub origin: Option<String>,
    pub content_hash: Option<String>,
    pub hash_modified: Option<String>,
    /// `None`: unknown (no marker, an older hash, a corrupt index).
    pub clean: Option<bool>,
}

impl WorkspaceState {
    pub fn read(folder: &Path) -> Self {
        let marker = workspace::read_marker(folder);
        let clean = workspace::check_clean(folder);
        WorkspaceState {
            managed: marker.as_ref().is_some_and(|m| m.managed),
            origin: marker.as_ref().and_then(|m| m.source_repo.clone()),
            content_hash: clean.stored_hash,
            hash_modified: marker.and_then(|m| m.hash_modified),
            clean: clean.clean,
        }
    }
}

impl ModelInfo {
    pub fn is_healthy(&self) -> bool {
        self.health.is_healthy()
    }

    /// The reason to show next to a model: its health problem, else why it cannot run.
    pub fn reason(&self) -> Option<String> {
        if !self.is_healthy() {
            Some(self.health.reason())
        } else {
            self.runtime.reason.clone()
        }
    }
}

/// Builds the [`ModelInfo`] of `repo` at the snapshot `selection` names.
pub fn inspect(
    repo: &CachedRepo,
    snapshots: &RepoSnapshots,
    selection: &Selection,
    depth: CheckDepth,
) -> ModelInfo {
    let name = repo.repo_id.to_string();
    let incomplete = incomplete_blobs(repo);
    let (commit, entry, files, metadata, health) = match selection {
        Selection::Found(entry) => {
            let files = snapshot::snapshot_files(&entry.path);
            let metadata = SnapshotMetadata::read(&entry.path, &files);
            let health = health::check_snapshot(&entry.path, &files, &metadata, &incomplete, depth);
            (
                Some(entry.commit.clone()),
                Some(entry.clone()),
                files,
                metadata,
                health,
            )
        }
        Selection::RefWithoutSnapshot { reference, commit } => {
            let why = format!(
                "refs/{reference} names commit {commit}, which has no snapshot (download interrupted?)"
            );
            (
                Some(commit.clone()),
                None,
                Vec::new(),
                SnapshotMetadata::absent(),
                HealthReport::single(ProblemCode::SnapshotMissing, why),
            )
        }
        Selection::Empty => {
            let why = "the model folder has no snapshot (download interrupted?)";
            (
                None,
                None,
                Vec::new(),
                SnapshotMetadata::absent(),
                HealthReport::single(ProblemCode::NoSnapshot, why),
            )
        }
    };
    let config = metadata.config.value().filter(|c| c.is_object()).cloned();
    let snapshot_dir = entry
        .as_ref()
        .map(|e| e.path.clone())
        .unwrap_or_else(|| repo.dir.clone());
    let classification = classify::classify(
        &name,
        config.as_ref(),
        metadata.tokenizer_config.value(),
        &snapshot_dir,
        &files,
    );
    let runtime = runtime_status(
        health.is_healthy(),
        &classification,
        config.as_ref(),
        &files,
    );
    let modified = snapshot::newest_modification(&files)
        .or_else(|| fs::metadata(&repo.dir).and_then(|m| m.modified()).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH);

    ModelInfo {
        name,
        refs: entry.as_ref().map(|e| e.refs.clone()).unwrap_or_default(),
        snapshots: snapshots.snapshots.clone(),
        path: entry.map(|e| e.path),
        size_bytes: snapshot::unique_size(&files),
        last_modified: DateTime::<Utc>::from(modified),
        commit,
        files,
        classification,
        health,
        runtime,
        config,
        workspace: None,
    }
}

/// Builds the [`ModelInfo`] of a model folder outside the cache (a workspace): its name is the
/// folder's absolute path.
pub fn inspect_folder(folder: &Path, depth: CheckDepth) -> ModelInfo {
    let folder = folder
        .canonicalize()
        .unwrap_or_else(|_| folder.to_path_buf());
    let name = folder.display().to_string();
    let files = snapshot::snapshot_files(&folder);
    let metadata = SnapshotMetadata::read(&folder, &files);
    let health = health::check_snapshot(&folder, &files, &metadata, &[], depth);
    let config = metadata.config.value().filter(|c| c.is_object()).cloned();
    let classification = classify::classify(
        &name,
        config.as_ref(),
        metadata.tokenizer_config.value(),
        &folder,
        &files,
    );
    let runtime = runtime_status(
        health.is_healthy(),
        &classification,
        config.as_ref(),
        &files,
    );
    let modified = snapshot::newest_modification(&files).unwrap_or(SystemTime::UNIX_EPOCH);
    let workspace = WorkspaceState::read(&folder);
    ModelInfo {
        name,
        commit: None,
        refs: Vec::new(),
        snapshots: Vec::new(),
        path: Some(folder),
        size_bytes: snapshot::unique_size(&files),
        last_modified: DateTime::<Utc>::from(modified),
        files,
        classification,
        health,
        runtime,
        config,
        workspace: Some(workspace),
    }
}

fn runtime_status(
    healthy: bool,
    classification: &Classification,
    config: Option<&Value>,
    files: &[SnapshotFile],
) -> RuntimeStatus {
    match architectures::runtime_compatibility(
        healthy,
        classification.framework,
        classification.model_type,
        classification.architecture.as_deref(),
        config.is_some_and(architectures::asks_for_custom_code),
        files.iter().any(|f| f.name.ends_with(".safetensors")),
    ) {
        Ok(()) => RuntimeStatus {
            compatible: true,
            reason: None,
        },
        Err(reason) => RuntimeStatus {
            compatible: false,
            reason: Some(reason),
        },
    }
}

/// `blobs/*.incomplete`: files `huggingface_hub` is downloading or was interrupted downloading.
fn incomplete_blobs(repo: &CachedRepo) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(repo.dir.join("blobs"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|name| name.ends_with(".incomplete"))
        .collect();
    names.sort();
    names
}
