//! Workspaces: model folders outside the cache (made by `clone` or `convert`, by this tool or
//! by mlx-knife), marked by `.mlxk_workspace.json` in mlx-knife's format: where the files came
//! from and a content hash (`workspace_hash`) that tells whether they changed since. Bare names
//! also resolve in `$MLXK_WORKSPACE_HOME`, where mlx-knife keeps its workspaces.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{CoreError, Result};
use crate::workspace_hash::{self, Excludes, IndexEntry, HASH_ALGORITHM};

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

/// A folder holding a model: it has a `config.json`.
pub fn is_workspace(folder: &Path) -> bool {
    folder.join("config.json").is_file()
}

/// `$MLXK_WORKSPACE_HOME`, when it names a folder.
pub fn workspace_home() -> Option<PathBuf> {
    let home = std::env::var_os("MLXK_WORKSPACE_HOME").filter(|v| !v.is_empty())?;
    let home = PathBuf::from(home);
    home.is_dir().then(|| home.canonicalize().unwrap_or(home))
}

/// Where a new workspace named `target` goes: a bare name (no path markers, no separator) is
/// a folder of `$MLXK_WORKSPACE_HOME` when that is set, as mlx-knife places it; a path stays.
pub fn place(target: &Path) -> PathBuf {
    let text = target.to_string_lossy();
    let bare = !looks_like_path(&text) && !text.contains(std::path::MAIN_SEPARATOR);
    match workspace_home() {
        Some(home) if bare => home.join(target),
        _ => target.to_path_buf(),
    }
}

/// The workspaces in a workspace home, sorted by folder name.
pub fn home_workspaces(home: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(home)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir() && is_workspace(p))
        .collect();
    found.sort();
    found
}

/// The workspace of that exact folder name in a workspace home.
pub fn named_in_home(home: &Path, name: &str) -> Option<PathBuf> {
    if name.trim().is_empty() || name.contains('/') || name.contains('@') || looks_like_path(name) {
        return None;
    }
    let exact = home.join(name);
    (exact.is_dir() && is_workspace(&exact)).then_some(exact)
}

/// The one workspace in a workspace home whose folder name contains `name`
/// (case-insensitive); none when several do.
pub fn matching_in_home(home: &Path, name: &str) -> Option<PathBuf> {
    if name.trim().is_empty() || name.contains('/') || name.contains('@') || looks_like_path(name) {
        return None;
    }
    let lower = name.to_lowercase();
    let mut matches = home_workspaces(home).into_iter().filter(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().to_lowercase().contains(&lower))
    });
    match (matches.next(), matches.next()) {
        (Some(only), None) => Some(only),
        _ => None,
    }
}

/// The workspaces a path pattern names, as mlx-knife's `list ./path` finds them: the folder
/// itself when it is one, else the workspaces inside it, else the folders beside it whose
/// names start with its last component.
pub fn matching_workspaces(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    if is_workspace(path) {
        return vec![path.canonicalize().unwrap_or_else(|_| path.to_path_buf())];
    }
    let (dir, prefix) = if path.is_dir() {
        (path.to_path_buf(), String::new())
    } else {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        (
            parent.map_or_else(|| PathBuf::from("."), Path::to_path_buf),
            path.file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default(),
        )
    };
    let mut found: Vec<PathBuf> = fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .filter(|p| p.is_dir() && is_workspace(p))
        .map(|p| p.canonicalize().unwrap_or(p))
        .collect();
    found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    found
}

/// The content of `.mlxk_workspace.json`, mlx-knife's fields; others are kept as they are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkspaceMetadata {
    pub mlxk_version: String,
    pub created_at: String,
    #[serde(default)]
    pub source_repo: Option<String>,
    #[serde(default)]
    pub source_revision: Option<String>,
    pub managed: bool,
    /// `clone` or `convert`.
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<Value>,
    #[serde(default)]
    pub hash_algorithm: Option<String>,
    /// `sha256:<hex>` (v2); a bare hex digest in older markers.
    #[serde(default)]
    pub content_hash: Option<String>,
    #[serde(default)]
    pub hash_modified: Option<String>,
    #[serde(default)]
    pub exclude_patterns: Option<Vec<String>>,
    /// Entries as written; checked one by one before use.
    #[serde(default)]
    pub file_index: Option<Vec<Value>>,
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl WorkspaceMetadata {
    /// A new marker for `operation`, hashed now.
    pub fn new(
        folder: &Path,
        operation: &str,
        source_repo: Option<&str>,
        revision: Option<&str>,
    ) -> Result<Self> {
        let mut metadata = WorkspaceMetadata {
            mlxk_version: env!("CARGO_PKG_VERSION").to_string(),
            created_at: now(),
            source_repo: source_repo.map(str::to_string),
            source_revision: revision.map(str::to_string),
            managed: true,
            operation: operation.to_string(),
            mode: None,
            quantization: None,
            hash_algorithm: None,
            content_hash: None,
            hash_modified: None,
            exclude_patterns: None,
            file_index: None,
            other: Map::new(),
        };
        metadata.rehash(folder)?;
        Ok(metadata)
    }

    /// Hashes the folder again under the marker's own exclude patterns (the defaults for a
    /// marker without them) and records the result.
    pub fn rehash(&mut self, folder: &Path) -> Result<String> {
        let patterns = self.exclude_patterns.clone().unwrap_or_else(|| {
            workspace_hash::DEFAULT_EXCLUDE_PATTERNS
                .iter()
                .map(|p| p.to_string())
                .collect()
        });
        let (hash, index) = workspace_hash::compute(folder, &Excludes::new(&patterns))
            .map_err(|e| CoreError::Workspace(e.to_string()))?;
        self.hash_algorithm = Some(HASH_ALGORITHM.into());
        self.content_hash = Some(hash.clone());
        self.hash_modified = Some(now());
        self.exclude_patterns = Some(patterns);
        self.file_index = Some(
            index
                .iter()
                .map(|e| serde_json::to_value(e).expect("serialisable"))
                .collect(),
        );
        Ok(hash)
    }

    /// The recorded index when it is v2 and every path in it is safe to follow.
    fn checked_index(&self) -> Option<Vec<IndexEntry>> {
        if self.hash_algorithm.as_deref() != Some(HASH_ALGORITHM) {
            return None;
        }
        let entries = self.file_index.as_ref()?;
        entries
            .iter()
            .map(|v| serde_json::from_value::<IndexEntry>(v.clone()).ok())
            .map(|e| e.filter(|e| workspace_hash::valid_index_path(&e.path)))
            .collect()
    }

    fn excludes(&self) -> Excludes {
        match &self.exclude_patterns {
            Some(patterns) => Excludes::new(patterns),
            None => Excludes::default_patterns(),
        }
    }
}

/// Whether a workspace's files are still what its marker recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cleanliness {
    /// `None`: unknown (no marker, an older hash, a corrupt index: `show --recalc-hash`).
    pub clean: Option<bool>,
    /// The aggregate hash of the files now, when known.
    pub current_hash: Option<String>,
    /// The marker's hash.
    pub stored_hash: Option<String>,
}

/// Checks a workspace against its marker; a file whose time moved but whose content did not
/// has its time updated in the marker (as mlx-knife does).
pub fn check_clean(folder: &Path) -> Cleanliness {
    let Some(mut metadata) = read_marker(folder) else {
        return Cleanliness {
            clean: None,
            current_hash: None,
            stored_hash: None,
        };
    };
    let stored_hash = metadata.content_hash.clone();
    let Some(index) = metadata.checked_index() else {
        return Cleanliness {
            clean: None,
            current_hash: None,
            stored_hash,
        };
    };
    let excludes = metadata.excludes();
    let check = workspace_hash::stat_check(folder, &index, &excludes);
    if check.clean {
        if check.healed {
            metadata.file_index = Some(
                check
                    .index
                    .iter()
                    .map(|e| serde_json::to_value(e).expect("serialisable"))
                    .collect(),
            );
            // Best effort: a read-only workspace is still clean.
            let _ = write_marker(folder, &metadata);
        }
        return Cleanliness {
            clean: Some(true),
            current_hash: stored_hash.clone(),
            stored_hash,
        };
    }
    let current_hash = workspace_hash::compute(folder, &excludes)
        .ok()
        .map(|(h, _)| h);
    Cleanliness {
        clean: Some(false),
        current_hash,
        stored_hash,
    }
}

/// Re-pins a managed workspace's hash to its files now (`show --recalc-hash`).
pub fn recalc_hash(folder: &Path) -> Result<String> {
    let mut metadata = read_marker(folder).filter(|m| m.managed).ok_or_else(|| {
        CoreError::Workspace(format!(
            "{} is not a managed workspace (no {MARKER}): only workspaces made by clone or convert have a hash to re-pin",
            folder.display()
        ))
    })?;
    let hash = metadata.rehash(folder)?;
    write_marker(folder, &metadata)?;
    Ok(hash)
}

/// RFC 3339 with a `Z`, as mlx-knife writes times.
fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// How files reached the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CopyMode {
    /// Copy-on-write clones (no extra disk until a file changes).
    Reflink,
    Copy,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
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
    let mut mode = CopyMode::Reflink;
    let mut bytes = 0;
    for relative in &files {
        let source = snapshot.join(relative);
        let destination = target.join(relative);
        if let Some(parent) = destination.parent() {
            fs::create_dir_all(parent).map_err(|e| CoreError::io("creating", parent, e))?;
        }
        if reflink_copy::reflink_or_copy(&source, &destination)
            .map_err(|e| CoreError::io("copying", &source, e))?
            .is_some()
        {
            mode = CopyMode::Copy;
        }
        bytes += fs::metadata(&destination)
            .map_err(|e| CoreError::io("reading", &destination, e))?
            .len();
    }
    let metadata = WorkspaceMetadata::new(target, "clone", Some(source_repo), Some(commit))?;
    write_marker(target, &metadata)?;
    Ok(CloneOutcome {
        target: target.to_path_buf(),
        files: files.len(),
        bytes,
        mode,
        metadata,
    })
}

/// The workspace marker of a folder, if it has a readable one.
pub fn read_marker(folder: &Path) -> Option<WorkspaceMetadata> {
    let text = fs::read(folder.join(MARKER)).ok()?;
    serde_json::from_slice(&text).ok()
}

fn prepare_target(target: &Path) -> Result<()> {
    match fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(CoreError::FolderNotEmpty(target.to_path_buf()));
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

/// Written to a temp file and renamed, so a reader never sees half of it.
pub fn write_marker(target: &Path, metadata: &WorkspaceMetadata) -> Result<()> {
    let path = target.join(MARKER);
    let temp = target.join(format!("{MARKER}.tmp"));
    let mut text = serde_json::to_vec_pretty(metadata).expect("serialisable");
    text.push(b'\n');
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
        assert_eq!(marker.source_repo.as_deref(), Some("org/m"));
        assert_eq!(marker.hash_algorithm.as_deref(), Some("v2"));
        assert!(marker.content_hash.unwrap().starts_with("sha256:"));
        assert_eq!(check_clean(&target).clean, Some(true));
        // Changing the workspace never changes the cache, and makes it dirty.
        fs::write(target.join("sub/w.bin"), "edited").unwrap();
        assert_eq!(fs::read_to_string(blobs.join("2")).unwrap(), "weights");
        assert_eq!(check_clean(&target).clean, Some(false));
        recalc_hash(&target).unwrap();
        assert_eq!(check_clean(&target).clean, Some(true));
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
