//! What the UI receives. Core types the windows show as they are (`Framework`, `ModelType`,
//! `Capability`, `HealthProblem`, `Anomaly`, `FolderCheck`, `PushPlan`, `HubUser`…) derive
//! `specta::Type` behind the core's `specta` feature and appear here as they are; the views below
//! add what a window needs besides (display names, where a model lives, paths as text) or
//! leave out what it does not. Conversions only; no logic.

use mlxk_core::classify::{Capability, Framework, ModelType};
use mlxk_core::health::HealthProblem;
use mlxk_core::hub::push::{FolderCheck, LocalFile, PushPlan};
use mlxk_core::hub::token::TokenSource;
use mlxk_core::hub::HubUser;
use mlxk_core::model::WorkspaceState;
use mlxk_core::remove::{RemovalOutcome, RemovalPlan, RemovalScope, WorkspaceRemovalPlan};
use mlxk_core::snapshot::SnapshotEntry;
use mlxk_core::usage::UsageLog;
use mlxk_core::{Library, ModelInfo};
use serde::Serialize;

use crate::downloads::Download;

/// Where a model lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelSource {
    /// The Hugging Face cache.
    Cache,
    /// A workspace folder of `$MLXK_WORKSPACE_HOME` (made by `clone` or `convert`, by mlxk or
    /// mlx-knife, or put there by hand).
    Workspace {
        /// The folder, absolute.
        path: String,
        /// Whether its files are what its marker recorded.
        content: ContentState,
        /// It has a marker written by `clone` or `convert`.
        managed: bool,
        /// The repository it was cloned from.
        origin: Option<String>,
        /// The marker's content hash (`sha256:…`).
        content_hash: Option<String>,
    },
}

/// A workspace's files against its recorded content hash (the CLI list's `ws`, `ws*`, `ws?`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum ContentState {
    /// Unchanged since its hash was recorded.
    Clean,
    /// Changed since (`mlxk show --recalc-hash` re-pins it).
    Modified,
    /// Nothing to compare with: no marker, or an older hash.
    Unknown,
}

impl ModelSource {
    fn of(m: &ModelInfo) -> Self {
        match &m.workspace {
            None => ModelSource::Cache,
            Some(w) => ModelSource::workspace(m.path.as_deref(), w),
        }
    }

    fn workspace(path: Option<&std::path::Path>, w: &WorkspaceState) -> Self {
        ModelSource::Workspace {
            path: path.map(|p| p.display().to_string()).unwrap_or_default(),
            content: match w.clean {
                Some(true) => ContentState::Clean,
                Some(false) => ContentState::Modified,
                None => ContentState::Unknown,
            },
            managed: w.managed,
            origin: w.origin.clone(),
            content_hash: w.content_hash.clone(),
        }
    }
}

/// One row of the library.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct ModelSummary {
    /// What the commands take: `org/name`, or a workspace's absolute path.
    pub name: String,
    /// What the row shows: `org/name`, or a workspace's folder name.
    pub display_name: String,
    pub source: ModelSource,
    pub commit: Option<String>,
    pub size_bytes: u64,
    pub framework: Framework,
    pub model_type: ModelType,
    /// `4-bit`, `8-bit (gptq)`…; `None` when not quantized.
    pub quantization: Option<String>,
    pub healthy: bool,
    /// The first health problem, or "all integrity checks passed".
    pub health_reason: String,
    /// Whether `mlxk run` / the server can run it, and why not.
    pub runnable: bool,
    pub runtime_reason: Option<String>,
    /// Newest modification of the snapshot's files (RFC 3339, UTC).
    pub last_modified: String,
    /// When `mlxk run` or the server last loaded it (RFC 3339, UTC); `None`: not since
    /// mlxk records it.
    pub last_used: Option<String>,
    /// A download of it not finished yet (running, or cut short); `None` when there is none.
    pub download: Option<Download>,
}

impl ModelSummary {
    /// The summaries of `models` of `library`, each with when it was last used (its usage log)
    /// and the state of an unfinished download.
    pub fn rows(models: &[ModelInfo], library: &Library) -> Vec<ModelSummary> {
        let used = UsageLog::for_cache(library.cache()).read();
        models
            .iter()
            .map(|m| ModelSummary {
                last_used: used.get(&m.name).map(|t| t.to_rfc3339()),
                download: Download::of(library.cache(), m),
                ..ModelSummary::from(m)
            })
            .collect()
    }
}

impl From<&ModelInfo> for ModelSummary {
    fn from(m: &ModelInfo) -> Self {
        let c = &m.classification;
        let display_name = match (&m.workspace, &m.path) {
            (Some(_), Some(path)) => path
                .file_name()
                .map_or_else(|| m.name.clone(), |n| n.to_string_lossy().into_owned()),
            _ => m.name.clone(),
        };
        ModelSummary {
            name: m.name.clone(),
            display_name,
            source: ModelSource::of(m),
            commit: m.commit.clone(),
            size_bytes: m.size_bytes,
            framework: c.framework,
            model_type: c.model_type,
            quantization: c.quantization.as_ref().map(|q| {
                let bits = q
                    .bits
                    .map_or("quantized".to_string(), |b| format!("{b}-bit"));
                match &q.method {
                    Some(method) => format!("{bits} ({method})"),
                    None => bits,
                }
            }),
            healthy: m.is_healthy(),
            health_reason: m.health.reason(),
            runnable: m.runtime.compatible,
            runtime_reason: m.runtime.reason.clone(),
            last_modified: m.last_modified.to_rfc3339(),
            last_used: None,
            download: None,
        }
    }
}

/// The library window's content.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct LibraryView {
    /// The cache folder read (`$HF_HUB_CACHE`, `$HF_HOME/hub`…).
    pub cache_root: String,
    /// `$MLXK_WORKSPACE_HOME`, whose workspaces are listed too; `None` when unset.
    pub workspace_home: Option<String>,
    pub models: Vec<ModelSummary>,
    /// Disk use of the listed snapshots and workspaces together.
    pub total_bytes: u64,
}

/// A model the running server holds in memory (the Library's "Loaded" badge, `mlxk ps`).
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct ResidentModel {
    /// As the API names it: a row's `display_name` (`org/name`, a workspace's folder name).
    pub name: String,
    pub memory_bytes: u64,
    /// RFC 3339, UTC.
    pub loaded_at: String,
    /// When the server lets it go if no request comes (RFC 3339, UTC); `None` while it
    /// answers, or when it is kept for ever.
    pub expires_at: Option<String>,
}

impl From<&mlxk_server::Resident> for ResidentModel {
    fn from(r: &mlxk_server::Resident) -> Self {
        let rfc3339 =
            |t: std::time::SystemTime| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339();
        ResidentModel {
            name: r.name.clone(),
            memory_bytes: r.memory_bytes,
            loaded_at: rfc3339(r.loaded_at),
            expires_at: r.expires_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct FileView {
    pub name: String,
    pub size_bytes: Option<u64>,
}

/// The details pane: what `mlxk show` shows.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct ModelDetails {
    pub summary: ModelSummary,
    pub refs: Vec<String>,
    pub snapshots: Vec<SnapshotEntry>,
    /// The snapshot folder, or the workspace folder.
    pub path: Option<String>,
    pub architecture: Option<String>,
    pub context_length: Option<u64>,
    pub capabilities: Vec<Capability>,
    pub problems: Vec<HealthProblem>,
    pub files: Vec<FileView>,
    /// `config.json`, pretty-printed.
    pub config_json: Option<String>,
}

impl ModelDetails {
    /// The details of `model` of `library`, its summary as the list shows it.
    pub fn of(model: &ModelInfo, library: &Library) -> Self {
        let mut details = ModelDetails::from(model);
        if let Some(row) = ModelSummary::rows(std::slice::from_ref(model), library).pop() {
            details.summary = row;
        }
        details
    }
}

impl From<&ModelInfo> for ModelDetails {
    fn from(m: &ModelInfo) -> Self {
        let c = &m.classification;
        ModelDetails {
            summary: ModelSummary::from(m),
            refs: m.refs.clone(),
            snapshots: m.snapshots.clone(),
            path: m.path.as_ref().map(|p| p.display().to_string()),
            architecture: c.architecture.clone(),
            context_length: c.context_length,
            capabilities: c.capabilities.clone(),
            problems: m.health.problems.clone(),
            files: m
                .files
                .iter()
                .map(|f| FileView {
                    name: f.name.clone(),
                    size_bytes: f.size,
                })
                .collect(),
            config_json: m
                .config
                .as_ref()
                .and_then(|c| serde_json::to_string_pretty(c).ok()),
        }
    }
}

/// What a delete would remove: shown in the confirmation, then sent back to confirm it.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct DeletePlanView {
    /// `org/name`, or a workspace's folder name.
    pub model: String,
    /// The cache, or the workspace whose folder is deleted.
    pub source: ModelSource,
    /// `None`: the whole model (all snapshots, or the whole workspace); else only this snapshot.
    pub snapshot: Option<String>,
    /// Every file and folder that will be deleted.
    pub targets: Vec<String>,
    pub freed_bytes: u64,
    /// Lock files held by a running download: deleting is refused while there are any.
    pub held_locks: Vec<String>,
}

impl From<&RemovalPlan> for DeletePlanView {
    fn from(p: &RemovalPlan) -> Self {
        DeletePlanView {
            model: p.model.clone(),
            source: ModelSource::Cache,
            snapshot: match &p.scope {
                RemovalScope::WholeModel => None,
                RemovalScope::Snapshot { commit } | RemovalScope::DanglingRef { commit, .. } => {
                    Some(commit.clone())
                }
            },
            targets: p.targets.iter().map(|t| t.display().to_string()).collect(),
            freed_bytes: p.freed_bytes,
            held_locks: p
                .held_locks
                .iter()
                .map(|t| t.display().to_string())
                .collect(),
        }
    }
}

impl DeletePlanView {
    /// Deleting a workspace: its folder, the one target.
    pub fn workspace(p: &WorkspaceRemovalPlan, state: &WorkspaceState) -> Self {
        DeletePlanView {
            model: p.name.clone(),
            source: ModelSource::workspace(Some(&p.folder), state),
            snapshot: None,
            targets: vec![p.folder.display().to_string()],
            freed_bytes: p.freed_bytes,
            held_locks: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct DeleteOutcomeView {
    pub model: String,
    pub freed_bytes: u64,
    pub removed: Vec<String>,
}

impl From<&RemovalOutcome> for DeleteOutcomeView {
    fn from(o: &RemovalOutcome) -> Self {
        DeleteOutcomeView {
            model: o.model.clone(),
            freed_bytes: o.freed_bytes,
            removed: o.removed.iter().map(|t| t.display().to_string()).collect(),
        }
    }
}

impl From<&WorkspaceRemovalPlan> for DeleteOutcomeView {
    fn from(p: &WorkspaceRemovalPlan) -> Self {
        DeleteOutcomeView {
            model: p.name.clone(),
            freed_bytes: p.freed_bytes,
            removed: vec![p.folder.display().to_string()],
        }
    }
}

/// The account a token belongs to (the Settings window's "Test"): the Hub's answer, and where
/// the token came from.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct AccountView {
    #[serde(flatten)]
    pub user: HubUser,
    /// Where the token tested came from.
    pub token_source: TokenSource,
    pub endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct PushFileView {
    pub path: String,
    pub size_bytes: u64,
}

/// The offline check of a folder dropped on (or chosen in) the push dialog.
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct FolderCheckView {
    pub folder: String,
    pub files: Vec<PushFileView>,
    #[serde(flatten)]
    pub check: FolderCheck,
}

impl FolderCheckView {
    pub fn new(folder: String, files: &[LocalFile], check: FolderCheck) -> Self {
        FolderCheckView {
            folder,
            files: files
                .iter()
                .map(|f| PushFileView {
                    path: f.path.clone(),
                    size_bytes: f.size,
                })
                .collect(),
            check,
        }
    }
}

/// What a push would change on the remote branch (the dry-run preview).
#[derive(Debug, Clone, PartialEq, Serialize, specta::Type)]
pub struct PushPreview {
    pub repo_id: String,
    pub branch: String,
    pub repo_url: String,
    #[serde(flatten)]
    pub plan: PushPlan,
    /// Pushing would commit nothing (the core's one rule, `PushPlan::no_changes`).
    pub no_changes: bool,
}

impl PushPreview {
    pub fn new(repo_id: String, branch: String, repo_url: String, plan: PushPlan) -> Self {
        PushPreview {
            repo_id,
            branch,
            repo_url,
            no_changes: plan.no_changes(),
            plan,
        }
    }
}
