//! Workspaces: model folders outside the cache that mlxk made (`clone`), marked by
//! `.mlxk_workspace.json` with where the files came from and a hash of their content.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::Utc;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::hashing;

/// The marker file of a managed workspace.
pub const MARKER: &str = ".mlxk_workspace.json";

/// Whether what a person typed names a folder rather than a cached model.
pub fn looks_like_path(text: &str) -> bool {
    text == "."
        || text == ".."
        || text.starts_with('/')
        || text.starts_with("./")
        || text.starts_with("../")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedFile {
    pub path: String,
    pub size: u64,
    pub sha256: String,
}

/// The content of `.mlxk_workspace.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceMetadata {
    pub mlxk_version: String,
    pub created_at: String,
    pub managed: bool,
    pub operation: String,
    pub source_repo: String,
    pub source_revision: String,
    pub hash_algorithm: String,
    /// `sha256:` of the sorted `path\0sha256\n` lines of every file.
    pub content_hash: String,
    pub file_index: Vec<IndexedFile>,
}

/// How files reached the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyMode {
    /// Copy-on-write clones (no extra disk until a file changes).
    Reflink,
    Copy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloneOutcome {
    pub target: PathBuf,
    pub files: usize,
    pub bytes: u64,
    pub mode: CopyMode,
    pub metadata: WorkspaceMetadata,
}

/// Copies a snapshot's files into `target` (new, or an empty folder), as reflinks where the
/// file system can, else as copies. Never hard links: editing a workspace file in place would
/// then change the cache's blob too.
pub fn clone_snapshot(
    snapshot: &Path,
    target: &Path,
    source_repo: &str,
    commit: &str,
) -> Result<CloneOutcome> {
    prepare_target(target)?;
    let mut files = Vec::new();
    collect(snapshot, snapshot, &mut files)?;
    files.sort();
    let mut index = Vec::new();
    let mut mode = CopyMode::Reflink;
    let mut bytes = 0;
    for relative in &files {
        let source = snapshot.join(relative);
        let destination = target.join(relative);
        if let Some(parent) = destination.parent() {
            fs::create_dir_all(parent).map_err(|e| CoreError::io("creating", parent, e))?;
        }
        match reflink_copy::reflink_or_copy(&source, &destination)
            .map_err(|e| CoreError::io("copying", &source, e))?
        {
            None => {}
            Some(_) => mode = CopyMode::Copy,
        }
        let size = fs::metadata(&destination)
            .map_err(|e| CoreError::io("reading", &destination, e))?
            .len();
        bytes += size;
        index.push(IndexedFile {
            path: relative.to_string_lossy().replace('\\', "/"),
            size,
            sha256: sha256_file(&destination)?,
        });
    }
    let metadata = WorkspaceMetadata {
        mlxk_version: env!("CARGO_PKG_VERSION").to_string(),
        created_at: Utc::now().to_rfc3339(),
        managed: true,
        operation: "clone".into(),
        source_repo: source_repo.to_string(),
        source_revision: commit.to_string(),
        hash_algorithm: "sha256-file-index-v1".into(),
        content_hash: content_hash(&index),
        file_index: index,
    };
    write_marker(target, &metadata)?;
    Ok(CloneOutcome {
        target: target.to_path_buf(),
        files: files.len(),
        bytes,
        mode,
        metadata,
    })
}

/// The workspace marker of a folder, if it has a valid one.
pub fn read_marker(folder: &Path) -> Option<WorkspaceMetadata> {
    let text = fs::read(folder.join(MARKER)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn prepare_target(target: &Path) -> Result<()> {
    match fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(CoreError::UnsafeDeletion(format!(
                    "{} is not empty; clone into a new or empty folder",
                    target.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(target).map_err(|e| CoreError::io("creating", target, e))
        }
        Err(e) => Err(CoreError::io("reading", target, e)),
    }
}

/// Every file under `dir` (following the snapshot's symlinks to their blobs), relative to `root`.
fn collect(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(|e| CoreError::io("reading", dir, e))? {
        let entry = entry.map_err(|e| CoreError::io("reading", dir, e))?;
        let path = entry.path();
        let metadata = fs::metadata(&path).map_err(|e| CoreError::io("reading", &path, e))?;
        if metadata.is_dir() {
            collect(root, &path, out)?;
        } else if metadata.is_file() {
            out.push(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
    Ok(())
}

fn content_hash(index: &[IndexedFile]) -> String {
    let listing: String = index
        .iter()
        .map(|file| format!("{}\0{}\n", file.path, file.sha256))
        .collect();
    format!("sha256:{}", hashing::sha256_hex(listing.as_bytes()))
}

fn sha256_file(path: &Path) -> Result<String> {
    hashing::sha256_file(path).map_err(|e| CoreError::io("reading", path, e))
}

/// Written to a temp file and renamed, so a reader never sees half of it.
fn write_marker(target: &Path, metadata: &WorkspaceMetadata) -> Result<()> {
    let path = target.join(MARKER);
    let temp = target.join(format!("{MARKER}.tmp"));
    let text = serde_json::to_vec_pretty(metadata).expect("serialisable");
    fs::write(&temp, text).map_err(|e| CoreError::io("writing", &temp, e))?;
    fs::rename(&temp, &path).map_err(|e| CoreError::io("renaming", &temp, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_copies_the_files_and_records_their_origin() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs");
        let snapshot = dir.path().join("snapshots/abc");
        fs::create_dir_all(&blobs).unwrap();
        fs::create_dir_all(snapshot.join("sub")).unwrap();
        fs::write(blobs.join("1"), "{}").unwrap();
        fs::write(blobs.join("2"), "weights").unwrap();
        std::os::unix::fs::symlink("../../blobs/1", snapshot.join("config.json")).unwrap();
        std::os::unix::fs::symlink("../../../blobs/2", snapshot.join("sub/w.bin")).unwrap();
        let target = dir.path().join("work");
        let outcome = clone_snapshot(&snapshot, &target, "org/m", "abc").unwrap();
        assert_eq!(outcome.files, 2);
        assert_eq!(
            fs::read_to_string(target.join("sub/w.bin")).unwrap(),
            "weights"
        );
        assert!(!fs::symlink_metadata(target.join("config.json"))
            .unwrap()
            .is_symlink());
        let marker = read_marker(&target).unwrap();
        assert_eq!(marker.source_repo, "org/m");
        assert!(marker.content_hash.starts_with("sha256:"));
        // Changing the workspace never changes the cache.
        fs::write(target.join("sub/w.bin"), "edited").unwrap();
        assert_eq!(fs::read_to_string(blobs.join("2")).unwrap(), "weights");
        // The target must be new or empty.
        assert!(clone_snapshot(&snapshot, &target, "org/m", "abc").is_err());
    }

    #[test]
    fn paths_are_told_from_names() {
        for path in ["./m", "/abs/m", "../m", "."] {
            assert!(looks_like_path(path), "{path}");
        }
        for name in ["org/m", "m", "m@main"] {
            assert!(!looks_like_path(name), "{name}");
        }
    }
}
