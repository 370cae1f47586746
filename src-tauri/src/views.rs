//! What the UI receives: plain, typed mirrors of the core's results (the core's own types are
//! `serde` but not `specta`, and carry more than a window needs). Conversions only; no logic.

use mlxk_core::health::ProblemCode;
use mlxk_core::hub::push::{FolderCheck, LocalFile, PushPlan, Severity};
use mlxk_core::hub::HubUser;
use mlxk_core::remove::{RemovalOutcome, RemovalPlan, RemovalScope};
use mlxk_core::usage::UsageLog;
use mlxk_core::ModelInfo;
use serde::{Deserialize, Serialize};

/// One row of the library.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
pub struct ModelSummary {
    pub name: String,
    pub commit: Option<String>,
    pub size_bytes: u64,
    /// `MLX`, `GGUF`, `PyTorch`, `Unknown`.
    pub framework: String,
    /// `chat`, `base`, `embedding`, `vision`, `audio`.
    pub model_type: String,
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
}

impl ModelSummary {
    /// The summaries of `models`, with when each was last used from `usage`.
    pub fn with_usage(models: &[ModelInfo], usage: &UsageLog) -> Vec<ModelSummary> {
        let used = usage.read();
        models
            .iter()
            .map(|m| ModelSummary {
                last_used: used.get(&m.name).map(|t| t.to_rfc3339()),
                ..ModelSummary::from(m)
            })
            .collect()
    }
}

impl From<&ModelInfo> for ModelSummary {
    fn from(m: &ModelInfo) -> Self {
        let c = &m.classification;
        ModelSummary {
            name: m.name.clone(),
            commit: m.commit.clone(),
            size_bytes: m.size_bytes,
            framework: c.framework.label().to_string(),
            model_type: c.model_type.label().to_string(),
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
        }
    }
}

/// The library window's content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
pub struct LibraryView {
    /// The cache folder read (`$HF_HUB_CACHE`, `$HF_HOME/hub`…).
    pub cache_root: String,
    pub models: Vec<ModelSummary>,
    /// Disk use of the listed snapshots together.
    pub total_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
pub struct HealthProblemView {
    pub code: ProblemCode,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
pub struct FileView {
    pub name: String,
    pub size_bytes: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
pub struct SnapshotView {
    pub commit: String,
    pub refs: Vec<String>,
}

/// The details pane: what `mlxk show` shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
pub struct ModelDetails {
    pub summary: ModelSummary,
    pub refs: Vec<String>,
    pub snapshots: Vec<SnapshotView>,
    pub path: Option<String>,
    pub architecture: Option<String>,
    pub context_length: Option<u64>,
    pub capabilities: Vec<String>,
    pub problems: Vec<HealthProblemView>,
    pub files: Vec<FileView>,
    /// `config.json`, pretty-printed.
    pub config_json: Option<String>,
}

impl ModelDetails {
    /// The details of `model`, with when it was last used from `usage` (as the list shows).
    pub fn with_usage(model: &ModelInfo, usage: &UsageLog) -> Self {
        let mut details = ModelDetails::from(model);
        details.summary.last_used = usage.read().get(&model.name).map(|t| t.to_rfc3339());
        details
    }
}

impl From<&ModelInfo> for ModelDetails {
    fn from(m: &ModelInfo) -> Self {
        let c = &m.classification;
        ModelDetails {
            summary: ModelSummary::from(m),
            refs: m.refs.clone(),
            snapshots: m
                .snapshots
                .iter()
                .map(|s| SnapshotView {
                    commit: s.commit.clone(),
                    refs: s.refs.clone(),
                })
                .collect(),
            path: m.path.as_ref().map(|p| p.display().to_string()),
            architecture: c.architecture.clone(),
            context_length: c.context_length,
            capabilities: c
                .capabilities
                .iter()
                .map(|c| c.label().to_string())
                .collect(),
            problems: m
                .health
                .problems
                .iter()
                .map(|p| HealthProblemView {
                    code: p.code,
                    message: p.message.clone(),
                })
                .collect(),
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
pub struct DeletePlanView {
    pub model: String,
    /// `None`: the whole model (all snapshots); else only this snapshot.
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
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

/// The account a token belongs to (the Settings window's "Test").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
pub struct AccountView {
    pub name: String,
    pub fullname: Option<String>,
    pub orgs: Vec<String>,
    pub token_role: Option<String>,
    /// Where the token tested came from: `keyring`, `environment` or `token_file`.
    pub token_source: String,
    pub endpoint: String,
}

impl AccountView {
    pub fn new(user: &HubUser, token_source: String, endpoint: String) -> Self {
        AccountView {
            name: user.name.clone(),
            fullname: user.fullname.clone(),
            orgs: user.orgs.iter().map(|o| o.name.clone()).collect(),
            token_role: user.token_role.clone(),
            token_source,
            endpoint,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
pub struct AnomalyView {
    /// `error` blocks a push; `warning` does not.
    pub severity: Severity,
    pub code: ProblemCode,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
pub struct PushFileView {
    pub path: String,
    pub size_bytes: u64,
}

/// The offline check of a folder dropped on (or chosen in) the push dialog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
pub struct FolderCheckView {
    pub folder: String,
    pub files: Vec<PushFileView>,
    pub total_bytes: u64,
    pub healthy: bool,
    pub anomalies: Vec<AnomalyView>,
}

impl FolderCheckView {
    pub fn new(folder: String, files: &[LocalFile], check: &FolderCheck) -> Self {
        FolderCheckView {
            folder,
            files: files
                .iter()
                .map(|f| PushFileView {
                    path: f.path.clone(),
                    size_bytes: f.size,
                })
                .collect(),
            total_bytes: check.total_bytes,
            healthy: check.healthy,
            anomalies: check
                .anomalies
                .iter()
                .map(|a| AnomalyView {
                    severity: a.severity,
                    code: a.code,
                    message: a.message.clone(),
                })
                .collect(),
        }
    }
}

/// What a push would change on the remote branch (the dry-run preview).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
pub struct PushPreview {
    pub repo_id: String,
    pub branch: String,
    pub repo_url: String,
    pub repo_exists: bool,
    pub branch_exists: bool,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Remote files the folder lacks; kept.
    pub remote_only: Vec<String>,
    pub deleted: Vec<String>,
    pub no_changes: bool,
}

impl PushPreview {
    pub fn new(repo_id: String, branch: String, repo_url: String, plan: &PushPlan) -> Self {
        PushPreview {
            repo_id,
            branch,
            repo_url,
            repo_exists: plan.repo_exists,
            branch_exists: plan.branch_exists,
            added: plan.added.clone(),
            changed: plan.changed.clone(),
            unchanged: plan.unchanged.clone(),
            remote_only: plan.remote_only.clone(),
            deleted: plan.deleted.clone(),
            no_changes: plan.no_changes(),
        }
    }
}
