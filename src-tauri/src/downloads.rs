//! Whether a model's missing files are still arriving. A download in progress holds a lock
//! file, `.locks/<repo>/<blob>.lock` (the exclusive `flock` huggingface_hub and `mlxk pull`
//! take while a file downloads); one that was cut short left its partial files and no lock.

use std::fs::{self, File, TryLockError};
use std::path::Path;

use mlxk_core::health::ProblemCode;
use mlxk_core::repo_id::RepoId;
use mlxk_core::{HubCache, ModelInfo};
use serde::Serialize;

/// A download of a model that is not complete yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum Download {
    /// Still running: a program holds the model's download lock.
    Running,
    /// Cut short: partial files, and no program downloading (a pull resumes it).
    Interrupted,
}

impl Download {
    /// The state of `model`'s download in `cache`; `None` for a complete model, a workspace,
    /// or one whose problems are not a download's.
    pub fn of(cache: &HubCache, model: &ModelInfo) -> Option<Download> {
        if model.workspace.is_some() || model.is_healthy() {
            return None;
        }
        let repo = RepoId::parse(&model.name).ok()?;
        if holds_a_lock(&cache.locks_dir(&repo)) {
            return Some(Download::Running);
        }
        let unfinished = model.health.problems.iter().any(|p| {
            matches!(
                p.code,
                ProblemCode::IncompleteDownload
                    | ProblemCode::NoSnapshot
                    | ProblemCode::SnapshotMissing
            )
        });
        unfinished.then_some(Download::Interrupted)
    }
}

/// Whether a program holds one of the lock files in `dir` (taking it for a moment tells).
fn holds_a_lock(dir: &Path) -> bool {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "lock"))
        .any(|p| {
            File::open(&p).is_ok_and(|f| matches!(f.try_lock(), Err(TryLockError::WouldBlock)))
        })
}
