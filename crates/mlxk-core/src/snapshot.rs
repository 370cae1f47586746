//! Refs and snapshots of one cached model, and the files of a snapshot.
//!
//! A snapshot is `snapshots/<commit>/`, whose files are usually relative symlinks into `blobs/`.
//! The snapshot of a model is the one `refs/main` names; only where no ref exists, the newest.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

/// The branch `huggingface_hub` downloads by default.
pub const DEFAULT_REF: &str = "main";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct SnapshotEntry {
    pub commit: String,
    #[serde(skip)]
    pub path: PathBuf,
    /// The refs (branches, tags) that name this commit.
    pub refs: Vec<String>,
    #[serde(skip)]
    pub dir_modified: Option<SystemTime>,
}

/// A model folder's refs and snapshots as found on disk.
#[derive(Debug, Clone, Default)]
pub struct RepoSnapshots {
    /// ref name (`main`, `v1.0`, `refs/pr/1` as `pr/1`) to commit.
    pub refs: BTreeMap<String, String>,
    pub snapshots: Vec<SnapshotEntry>,
}

/// Which snapshot a model resolves to, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Found(SnapshotEntry),
    /// A ref names a commit whose snapshot folder does not exist (an interrupted download).
    RefWithoutSnapshot {
        reference: String,
        commit: String,
    },
    /// The model folder has no snapshot at all.
    Empty,
}

impl RepoSnapshots {
    pub fn read(repo_dir: &Path) -> Self {
        let mut refs = BTreeMap::new();
        read_refs(&repo_dir.join("refs"), "", &mut refs);
        let mut snapshots: Vec<SnapshotEntry> = fs::read_dir(repo_dir.join("snapshots"))
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|entry| {
                let commit = entry.file_name().to_str()?.to_string();
                let names: Vec<String> = refs
                    .iter()
                    .filter(|(_, c)| **c == commit)
                    .map(|(name, _)| name.clone())
                    .collect();
                Some(SnapshotEntry {
                    dir_modified: entry.metadata().and_then(|m| m.modified()).ok(),
                    path: entry.path(),
                    refs: names,
                    commit,
                })
            })
            .collect();
        snapshots.sort_by(|a, b| a.commit.cmp(&b.commit));
        RepoSnapshots { refs, snapshots }
    }

    /// The default snapshot: the one `refs/main` names, else (no refs at all) the newest.
    pub fn select_default(&self) -> Selection {
        if let Some(commit) = self.refs.get(DEFAULT_REF) {
            return match self.by_commit(commit) {
                Some(snapshot) => Selection::Found(snapshot.clone()),
                None => Selection::RefWithoutSnapshot {
                    reference: DEFAULT_REF.to_string(),
                    commit: commit.clone(),
                },
            };
        }
        match self.snapshots.iter().max_by_key(|s| s.dir_modified) {
            Some(newest) => Selection::Found(newest.clone()),
            None => Selection::Empty,
        }
    }

    /// The snapshot a revision names: a ref, else a unique commit prefix.
    /// `Err(candidates)` lists the commits when a prefix is ambiguous; `Ok(None)` means no match.
    pub fn select_revision(&self, revision: &str) -> Result<Option<Selection>, Vec<String>> {
        let ref_name = revision.strip_prefix("refs/").unwrap_or(revision);
        if let Some(commit) = self.refs.get(ref_name) {
            return Ok(Some(match self.by_commit(commit) {
                Some(snapshot) => Selection::Found(snapshot.clone()),
                None => Selection::RefWithoutSnapshot {
                    reference: ref_name.to_string(),
                    commit: commit.clone(),
                },
            }));
        }
        let lower = revision.to_ascii_lowercase();
        let matches: Vec<&SnapshotEntry> = self
            .snapshots
            .iter()
            .filter(|s| s.commit.to_ascii_lowercase().starts_with(&lower))
            .collect();
        match matches.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(Selection::Found((*one).clone()))),
            many => Err(many.iter().map(|s| s.commit.clone()).collect()),
        }
    }

    pub fn has_revision(&self, revision: &str) -> bool {
        matches!(self.select_revision(revision), Ok(Some(_)) | Err(_))
    }

    /// Every name a revision can be given by: refs, then commits.
    pub fn available_revisions(&self) -> Vec<String> {
        let mut names: Vec<String> = self.refs.keys().cloned().collect();
        names.extend(self.snapshots.iter().map(|s| s.commit.clone()));
        names
    }

    fn by_commit(&self, commit: &str) -> Option<&SnapshotEntry> {
        self.snapshots.iter().find(|s| s.commit == commit)
    }
}

fn read_refs(dir: &Path, prefix: &str, refs: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let full = format!("{prefix}{name}");
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if file_type.is_dir() {
            read_refs(&entry.path(), &format!("{full}/"), refs);
        } else if let Ok(content) = fs::read_to_string(entry.path()) {
            let commit = content.trim();
            if !commit.is_empty() {
                refs.insert(full, commit.to_string());
            }
        }
    }
}

/// One file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotFile {
    /// Path relative to the snapshot, with `/` separators.
    pub name: String,
    #[serde(skip)]
    pub path: PathBuf,
    /// Size of the file or of the blob it links to; `None` for a link to a missing blob.
    pub size: Option<u64>,
    #[serde(skip)]
    pub modified: Option<SystemTime>,
    /// Identity of the underlying blob, so that each blob is counted once.
    #[serde(skip)]
    pub blob_id: Option<(u64, u64)>,
}

impl SnapshotFile {
    pub fn is_broken_link(&self) -> bool {
        self.size.is_none()
    }
}

/// All files of a snapshot (recursively), sorted by name.
pub fn snapshot_files(snapshot_dir: &Path) -> Vec<SnapshotFile> {
    let mut files = Vec::new();
    collect_files(snapshot_dir, snapshot_dir, &mut files);
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

fn collect_files(base: &Path, dir: &Path, files: &mut Vec<SnapshotFile>) {
    for entry in fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
    {
        let path = entry.path();
        let Ok(link_meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let target_meta = fs::metadata(&path).ok();
        if target_meta.as_ref().is_some_and(|m| m.is_dir()) {
            // Never descend through a symlinked directory: it could lead out of the cache.
            if link_meta.is_dir() {
                collect_files(base, &path, files);
            }
            continue;
        }
        let name = path
            .strip_prefix(base)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        files.push(SnapshotFile {
            name,
            size: target_meta.as_ref().map(|m| m.len()),
            modified: target_meta.as_ref().and_then(|m| m.modified().ok()),
            blob_id: target_meta.as_ref().map(blob_identity),
            path,
        });
    }
}

#[cfg(unix)]
fn blob_identity(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    (meta.dev(), meta.ino())
}

#[cfg(not(unix))]
fn blob_identity(meta: &fs::Metadata) -> (u64, u64) {
    (meta.len(), 0)
}

/// Total size of the files, counting each underlying blob once.
pub fn unique_size(files: &[SnapshotFile]) -> u64 {
    let mut seen = HashSet::new();
    files
        .iter()
        .filter(|f| f.blob_id.is_none_or(|id| seen.insert(id)))
        .filter_map(|f| f.size)
        .sum()
}

/// The newest modification time among the files (what `huggingface_hub` reports too).
pub fn newest_modification(files: &[SnapshotFile]) -> Option<SystemTime> {
    files.iter().filter_map(|f| f.modified).max()
}
