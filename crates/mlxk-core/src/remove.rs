//! Removing a model, or one snapshot of it, or a workspace of the workspace home, without ever
//! touching anything else.
//!
//! A removal is planned first (what will go, how many bytes are freed, which downloads hold
//! locks) so a shell can ask for confirmation, then executed. Every path is checked to lie
//! inside the model's own folder in the cache root (a workspace: to be a workspace folder
//! directly inside the workspace home) before it is deleted, and symlinks are removed as links,
//! never followed.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cache::{HubCache, REQUIRE_TEST_SENTINEL_ENV, TEST_SENTINEL_FILE};
use crate::error::{CoreError, Result};
use crate::library::ResolvedModel;
use crate::snapshot::{self, Selection, SnapshotEntry};
use crate::workspace;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RemovalScope {
    /// The whole model folder and its lock folder.
    WholeModel,
    /// One snapshot, the refs naming it, and the blobs no other snapshot uses.
    Snapshot { commit: String },
    /// A ref naming a commit whose snapshot is not there (an interrupted download of a tag):
    /// the ref file alone; no model file is touched.
    DanglingRef { reference: String, commit: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct RemovalPlan {
    pub model: String,
    pub scope: RemovalScope,
    /// Files and folders that will be deleted.
    pub targets: Vec<PathBuf>,
    pub freed_bytes: u64,
    /// Lock files of the model's downloads (`.locks/models--…`).
    pub lock_files: Vec<PathBuf>,
    /// Lock files currently held by another process: a download is running.
    pub held_locks: Vec<PathBuf>,
    #[serde(skip)]
    repo_dir: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct RemovalOutcome {
    pub model: String,
    pub scope: RemovalScope,
    pub freed_bytes: u64,
    pub removed: Vec<PathBuf>,
    pub lock_files_cleaned: usize,
}

/// Works out what removing `resolved` deletes. A revision the user named (`name@rev`) never
/// widens the scope: it removes that snapshot (the whole model only when that snapshot and its
/// refs are all the model holds), or a ref to a missing snapshot alone. Without a revision the
/// whole model goes.
pub fn plan_removal(cache: &HubCache, resolved: &ResolvedModel) -> Result<RemovalPlan> {
    let repo_id = &resolved.repo.repo_id;
    let repo_dir = resolved.repo.dir.clone();
    let locks_dir = cache.locks_dir(repo_id);
    let lock_files = find_lock_files(&locks_dir);
    let held_locks = lock_files
        .iter()
        .filter(|p| is_lock_held(p))
        .cloned()
        .collect();

    let (scope, targets, freed_bytes) = match (&resolved.selection, resolved.explicit_revision) {
        (Selection::Found(entry), true) if !holds_only(resolved, &entry.commit) => {
            snapshot_targets(&repo_dir, resolved, entry)
        }
        (Selection::RefWithoutSnapshot { reference, commit }, true) => (
            RemovalScope::DanglingRef {
                reference: reference.clone(),
                commit: commit.clone(),
            },
            vec![repo_dir.join("refs").join(reference)],
            0,
        ),
        (Selection::Empty, true) => {
            // A named revision always selects a snapshot or a ref; never fall back to everything.
            return Err(CoreError::UnsafeDeletion(format!(
                "{repo_id} has no snapshot for the named revision"
            )));
        }
        (Selection::Found(_), true) | (_, false) => {
            let mut targets = vec![repo_dir.clone()];
            if locks_dir.exists() {
                targets.push(locks_dir);
            }
            (RemovalScope::WholeModel, targets, dir_size(&repo_dir))
        }
    };
    Ok(RemovalPlan {
        model: repo_id.to_string(),
        scope,
        targets,
        freed_bytes,
        lock_files,
        held_locks,
        repo_dir,
    })
}

/// Whether `commit` is all the model holds: its only snapshot, and every ref names it.
fn holds_only(resolved: &ResolvedModel, commit: &str) -> bool {
    let snapshots = &resolved.snapshots;
    snapshots.snapshots.len() == 1 && snapshots.refs.values().all(|c| c == commit)
}

/// One snapshot folder, the refs naming it and the blobs no other snapshot links to.
fn snapshot_targets(
    repo_dir: &Path,
    resolved: &ResolvedModel,
    entry: &SnapshotEntry,
) -> (RemovalScope, Vec<PathBuf>, u64) {
    let blobs_dir = repo_dir.join("blobs");
    let others: BTreeSet<PathBuf> = resolved
        .snapshots
        .snapshots
        .iter()
        .filter(|s| s.commit != entry.commit)
        .flat_map(|s| blob_paths(&s.path, &blobs_dir))
        .collect();
    let own_blobs: Vec<PathBuf> = blob_paths(&entry.path, &blobs_dir)
        .into_iter()
        .filter(|b| !others.contains(b))
        .collect();
    let freed = own_blobs
        .iter()
        .filter_map(|b| fs::metadata(b).ok())
        .map(|m| m.len())
        .sum();
    let mut targets = vec![entry.path.clone()];
    targets.extend(entry.refs.iter().map(|r| repo_dir.join("refs").join(r)));
    targets.extend(own_blobs);
    (
        RemovalScope::Snapshot {
            commit: entry.commit.clone(),
        },
        targets,
        freed,
    )
}

/// Carries out a plan. Refuses while a download holds a lock, unless `force`.
pub fn execute(cache: &HubCache, plan: &RemovalPlan, force: bool) -> Result<RemovalOutcome> {
    if let Some(lock) = plan.held_locks.first().filter(|_| !force) {
        return Err(CoreError::LocksPresent {
            model: plan.model.clone(),
            lock: lock.clone(),
        });
    }
    let root = guard_cache_root(cache)?;
    let repo_dir = canonical(&plan.repo_dir)?;
    let locks_root = root.join(".locks");
    let is_link = fs::symlink_metadata(&plan.repo_dir)
        .map_err(|e| CoreError::io("checking", &plan.repo_dir, e))?
        .is_symlink();
    if repo_dir.parent() != Some(root.as_path()) || is_link {
        return Err(CoreError::UnsafeDeletion(format!(
            "{} is not a model folder directly inside the cache {}",
            plan.repo_dir.display(),
            root.display()
        )));
    }
    // Every target is checked before the first deletion: a refusal never comes midway.
    let mut checked = Vec::new();
    for target in &plan.targets {
        let Ok(meta) = fs::symlink_metadata(target) else {
            continue; // already gone
        };
        let resolved = canonical_parent(target)?;
        if !(resolved.starts_with(&repo_dir) || resolved.starts_with(&locks_root))
            || resolved == root
            || resolved == locks_root
        {
            return Err(CoreError::UnsafeDeletion(format!(
                "{} lies outside the model's folder in the cache",
                target.display()
            )));
        }
        checked.push((target, meta.is_dir()));
    }
    let mut removed = Vec::new();
    for (target, is_dir) in checked {
        let result = if is_dir {
            fs::remove_dir_all(target)
        } else {
            fs::remove_file(target)
        };
        result.map_err(|e| CoreError::io("deleting", target, e))?;
        removed.push(target.clone());
    }
    let lock_files_cleaned = match plan.scope {
        RemovalScope::WholeModel => plan.lock_files.len(),
        RemovalScope::Snapshot { .. } | RemovalScope::DanglingRef { .. } => 0,
    };
    Ok(RemovalOutcome {
        model: plan.model.clone(),
        scope: plan.scope.clone(),
        freed_bytes: plan.freed_bytes,
        removed,
        lock_files_cleaned,
    })
}

/// Deleting a workspace of the workspace home: its folder and everything in it, nothing else.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceRemovalPlan {
    /// The folder's name, as listings show the workspace.
    pub name: String,
    /// The workspace folder (its parent resolved), directly inside the workspace home.
    pub folder: PathBuf,
    /// Bytes of its files (copy-on-write clones may free less).
    pub freed_bytes: u64,
    #[serde(skip)]
    home: PathBuf,
}

/// Plans deleting the workspace `folder`, which must be a workspace (a folder with a
/// `config.json`, not a symlink) directly inside the workspace home `home`. Anything else is
/// refused: a shell deletes only the workspaces it lists, never a folder elsewhere.
pub fn plan_workspace_removal(home: &Path, folder: &Path) -> Result<WorkspaceRemovalPlan> {
    let folder = checked_workspace(home, folder)?;
    Ok(WorkspaceRemovalPlan {
        name: folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        freed_bytes: dir_size(&folder),
        folder,
        home: home.to_path_buf(),
    })
}

/// Carries out a workspace removal, after checking the folder again.
pub fn execute_workspace_removal(plan: &WorkspaceRemovalPlan) -> Result<()> {
    let folder = checked_workspace(&plan.home, &plan.folder)?;
    if folder != plan.folder {
        return Err(CoreError::UnsafeDeletion(format!(
            "{} now resolves to {}",
            plan.folder.display(),
            folder.display()
        )));
    }
    // `remove_dir_all` removes symlinks inside as links; it never follows them.
    fs::remove_dir_all(&folder).map_err(|e| CoreError::io("deleting", &folder, e))
}

/// `folder` as a workspace directly inside `home` (its parent resolved, its own name kept),
/// after the test guard; an error saying why it is not one.
fn checked_workspace(home: &Path, folder: &Path) -> Result<PathBuf> {
    if std::env::var_os(REQUIRE_TEST_SENTINEL_ENV).is_some_and(|v| !v.is_empty())
        && !home.join(TEST_SENTINEL_FILE).is_file()
    {
        return Err(CoreError::UnsafeDeletion(format!(
            "{REQUIRE_TEST_SENTINEL_ENV} is set but the workspace home {} has no {TEST_SENTINEL_FILE}",
            home.display()
        )));
    }
    let home = canonical(home)?;
    let outside = || {
        CoreError::UnsafeDeletion(format!(
            "{} is not a workspace folder directly inside the workspace home {}",
            folder.display(),
            home.display()
        ))
    };
    let meta = fs::symlink_metadata(folder).map_err(|e| CoreError::io("checking", folder, e))?;
    if meta.is_symlink() {
        return Err(CoreError::UnsafeDeletion(format!(
            "{} is a symbolic link, not a workspace folder",
            folder.display()
        )));
    }
    let resolved = canonical_parent(folder)?;
    if !meta.is_dir() || resolved.parent() != Some(home.as_path()) {
        return Err(outside());
    }
    if !workspace::is_workspace(&resolved) {
        return Err(CoreError::UnsafeDeletion(format!(
            "{} has no config.json: not a model workspace",
            resolved.display()
        )));
    }
    Ok(resolved)
}

/// The canonical cache root, after the test-cache guard.
fn guard_cache_root(cache: &HubCache) -> Result<PathBuf> {
    if std::env::var_os(REQUIRE_TEST_SENTINEL_ENV).is_some_and(|v| !v.is_empty())
        && !cache.has_test_sentinel()
    {
        return Err(CoreError::UnsafeDeletion(format!(
            "{REQUIRE_TEST_SENTINEL_ENV} is set but {} has no {TEST_SENTINEL_FILE}",
            cache.root().display()
        )));
    }
    canonical(cache.root())
}

fn canonical(path: &Path) -> Result<PathBuf> {
    fs::canonicalize(path).map_err(|e| CoreError::io("resolving", path, e))
}

/// The real location of `path` itself: its parent resolved, its own name kept (so a symlink
/// is judged by where it sits, not where it points).
fn canonical_parent(path: &Path) -> Result<PathBuf> {
    let parent = path
        .parent()
        .ok_or_else(|| CoreError::UnsafeDeletion(format!("{} has no parent", path.display())))?;
    let name = path
        .file_name()
        .ok_or_else(|| CoreError::UnsafeDeletion(format!("{} has no name", path.display())))?;
    Ok(canonical(parent)?.join(name))
}

/// The blobs a snapshot's symlinks point to, limited to the model's own `blobs/` folder.
fn blob_paths(snapshot_dir: &Path, blobs_dir: &Path) -> BTreeSet<PathBuf> {
    let Ok(blobs_real) = fs::canonicalize(blobs_dir) else {
        return BTreeSet::new();
    };
    snapshot::snapshot_files(snapshot_dir)
        .iter()
        .filter_map(|f| fs::canonicalize(&f.path).ok())
        .filter(|real| real.parent() == Some(blobs_real.as_path()))
        .filter_map(|real| real.file_name().map(|name| blobs_dir.join(name)))
        .collect()
}

fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        match entry.file_type() {
            Ok(t) if t.is_dir() => total += dir_size(&entry.path()),
            Ok(t) if t.is_file() => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => {}
        }
    }
    total
}

fn find_lock_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_dir() => found.extend(find_lock_files(&path)),
            Ok(t) if t.is_file() && path.extension().is_some_and(|e| e == "lock") => {
                found.push(path)
            }
            _ => {}
        }
    }
    found.sort();
    found
}

/// Whether another process holds the lock (`huggingface_hub` takes an exclusive `flock` on it
/// while downloading). Taking it ourselves for a moment tells.
fn is_lock_held(path: &Path) -> bool {
    match File::open(path) {
        Ok(file) => matches!(file.try_lock(), Err(fs::TryLockError::WouldBlock)),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A workspace home (marked as a test one) holding `ws`, and a model folder outside it.
    fn home_with_workspace() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("home");
        let ws = home.join("ws");
        let outside = dir.path().join("outside");
        for folder in [&ws, &outside] {
            fs::create_dir_all(folder).unwrap();
            fs::write(folder.join("config.json"), "{}").unwrap();
        }
        fs::write(home.join(TEST_SENTINEL_FILE), "").unwrap();
        (dir, home, ws, outside)
    }

    #[test]
    fn a_workspace_removal_deletes_that_folder_only() {
        let (_dir, home, ws, outside) = home_with_workspace();
        fs::write(ws.join("model.safetensors"), "12345").unwrap();
        // A link inside the workspace to a folder elsewhere: removed as a link, never followed.
        std::os::unix::fs::symlink(&outside, ws.join("elsewhere")).unwrap();
        let plan = plan_workspace_removal(&home, &ws).unwrap();
        assert_eq!(plan.name, "ws");
        assert_eq!(plan.folder, home.canonicalize().unwrap().join("ws"));
        assert_eq!(plan.freed_bytes, 7);
        execute_workspace_removal(&plan).unwrap();
        assert!(!ws.exists());
        assert!(outside.join("config.json").is_file());
        assert!(home.join(TEST_SENTINEL_FILE).is_file());
    }

    #[test]
    fn only_workspace_folders_directly_in_the_home_are_removed() {
        let (_dir, home, ws, outside) = home_with_workspace();
        let link = home.join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        let plain = home.join("plain");
        fs::create_dir(&plain).unwrap();
        let nested = ws.join("nested");
        fs::create_dir(&nested).unwrap();
        fs::write(nested.join("config.json"), "{}").unwrap();
        let dotted = home.join("ws/..");
        for folder in [&outside, &link, &plain, &nested, &home, &dotted] {
            let err = plan_workspace_removal(&home, folder).unwrap_err();
            assert!(
                matches!(err, CoreError::UnsafeDeletion(_)),
                "{}: {err}",
                folder.display()
            );
        }
        // A plan made when it was a workspace is not carried out on what replaced it.
        let plan = plan_workspace_removal(&home, &ws).unwrap();
        fs::rename(&ws, home.join("moved")).unwrap();
        std::os::unix::fs::symlink(&outside, &ws).unwrap();
        assert!(execute_workspace_removal(&plan).is_err());
        assert!(outside.join("config.json").is_file());
        assert!(home.join("moved/config.json").is_file());
    }
}
