//! A workspace's content hash, as mlx-knife computes it (its "v2", ADR-025), so that a
//! workspace made by either tool is clean or dirty in both.
//!
//! Each file gets a fingerprint: a safetensors file the SHA-256 of its JSON header (the tensor
//! data is not read), any other file the SHA-256 of its content up to 1 GiB and of
//! `name\0size` above; a symlink inside the workspace the SHA-256 of `SYMLINK\0` and its target,
//! one leaving the workspace is refused. Files matching the exclude patterns (frozen into the
//! marker when it is written) are skipped. The aggregate is the SHA-256 of the sorted
//! `path\0fingerprint` pairs, paths in NFC. A clean check compares sizes and modification times
//! first and hashes only files whose time moved; a file whose content is unchanged only has its
//! time updated in the marker.

use std::fs;
use std::path::{Component, Path, PathBuf};

use globset::{GlobBuilder, GlobMatcher};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use unicode_normalization::UnicodeNormalization;

use crate::hashing;

/// The `hash_algorithm` of this scheme.
pub const HASH_ALGORITHM: &str = "v2";

/// Non-safetensors files above this are fingerprinted by name and size.
const FULL_READ_CAP: u64 = 1 << 30;
/// A safetensors header longer than this is corrupt.
const SAFETENSORS_HEADER_MAX: u64 = 100 * 1024 * 1024;

/// What a new marker excludes: mlx-knife's list. A trailing `/` names a directory; anything
/// else is a shell pattern on a file's name.
pub const DEFAULT_EXCLUDE_PATTERNS: &[&str] = &[
    ".hf_cache/",
    ".mlxk_workspace.json",
    ".git/",
    ".github/",
    "__pycache__/",
    ".vscode/",
    ".idea/",
    ".ipynb_checkpoints/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".tox/",
    "node_modules/",
    ".venv/",
    "venv/",
    "*.lock",
    "*.tmp",
    "*.log",
    "*.bak",
    ".DS_Store",
    "._*",
    ".Spotlight-V100/",
    ".Trashes/",
    ".fseventsd/",
    ".TemporaryItems/",
    ".apdisk",
    "Icon\r",
    "Thumbs.db",
    "desktop.ini",
    "$RECYCLE.BIN/",
    "System Volume Information/",
    "*~",
    ".*.swp",
    ".*.swo",
];

/// One file of a workspace as the marker records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Relative, `/`-separated, NFC.
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    /// `sha256:<hex>`.
    pub sha: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashError {
    #[error("{0} has no config.json: not a model workspace")]
    NotAWorkspace(PathBuf),
    #[error("{0}: the safetensors header is corrupt")]
    CorruptSafetensors(String),
    #[error("{0} is a symlink that leaves the workspace")]
    SymlinkOutside(String),
    #[error("reading {0}: {1}")]
    Io(String, String),
}

/// The exclude patterns, compiled.
pub struct Excludes {
    directories: Vec<GlobMatcher>,
    files: Vec<GlobMatcher>,
}

impl Excludes {
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Self {
        let compile = |pattern: &str| {
            GlobBuilder::new(pattern)
                .literal_separator(true)
                .backslash_escape(false)
                .build()
                .ok()
                .map(|glob| glob.compile_matcher())
        };
        let (mut directories, mut files) = (Vec::new(), Vec::new());
        for pattern in patterns.iter().map(AsRef::as_ref) {
            match pattern.strip_suffix('/') {
                Some(dir) => directories.extend(compile(dir)),
                None => files.extend(compile(pattern)),
            }
        }
        Excludes { directories, files }
    }

    pub fn default_patterns() -> Self {
        Excludes::new(DEFAULT_EXCLUDE_PATTERNS)
    }

    fn skips_dir(&self, name: &str) -> bool {
        self.directories.iter().any(|m| m.is_match(name))
    }

    fn skips_file(&self, name: &str) -> bool {
        self.files.iter().any(|m| m.is_match(name))
    }
}

/// What the walk finds at a path.
enum Found {
    File(PathBuf),
    /// A symlink inside the workspace, with its fingerprint.
    Link(String),
    /// A symlink leaving the workspace (or broken beyond it).
    LinkOutside,
}

/// Every non-excluded file and symlink under `root`, by NFC relative path; symlinks are not
/// followed.
fn walk(root: &Path, excludes: &Excludes) -> Result<Vec<(String, Found)>, HashError> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = fs::read_dir(&dir).map_err(|e| io_error(&dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_error(&dir, e))?;
            let path = entry.path();
            let name: String = entry.file_name().to_string_lossy().nfc().collect();
            let kind = entry.file_type().map_err(|e| io_error(&path, e))?;
            if kind.is_symlink() {
                found.push((relative(root, &path), link_fingerprint(root, &path)));
            } else if kind.is_dir() {
                if !excludes.skips_dir(&name) {
                    stack.push(path);
                }
            } else if kind.is_file() && !excludes.skips_file(&name) {
                found.push((relative(root, &path), Found::File(path)));
            }
        }
    }
    Ok(found)
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().nfc().collect::<String>())
        .collect::<Vec<_>>()
        .join("/")
}

/// Where a symlink points, resolved as far as the file system allows (a broken link resolves
/// its parent and keeps the rest as written).
fn link_fingerprint(root: &Path, link: &Path) -> Found {
    let target = match fs::canonicalize(link) {
        Ok(target) => target,
        Err(_) => match fs::read_link(link) {
            Ok(written) => {
                let parent = link.parent().unwrap_or(root);
                let base = fs::canonicalize(parent).unwrap_or_else(|_| parent.to_path_buf());
                normalize(&base.join(written))
            }
            Err(_) => return Found::LinkOutside,
        },
    };
    match target.strip_prefix(root) {
        Ok(inside) => {
            let rel: String = inside
                .components()
                .map(|c| c.as_os_str().to_string_lossy().to_string())
                .collect::<Vec<_>>()
                .join("/");
            let mut digest = Sha256::new();
            digest.update(b"SYMLINK\x00");
            digest.update(rel.as_bytes());
            Found::Link(format!("sha256:{}", hashing::hex(&digest.finalize())))
        }
        Err(_) => Found::LinkOutside,
    }
}

/// `a/b/../c` as `a/c`, without touching the disk.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// A file's fingerprint; `None` for a safetensors file with a corrupt header.
fn fingerprint(path: &Path, size: u64) -> Result<Option<String>, HashError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if name.ends_with(".safetensors") {
        return Ok(safetensors_header(path).map(|h| format!("sha256:{}", hashing::sha256_hex(&h))));
    }
    if size > FULL_READ_CAP {
        let text = format!("{name}\0{size}");
        return Ok(Some(format!(
            "sha256:{}",
            hashing::sha256_hex(text.as_bytes())
        )));
    }
    let sha = hashing::sha256_file(path).map_err(|e| io_error(path, e))?;
    Ok(Some(format!("sha256:{sha}")))
}

/// The JSON header of a safetensors file, without reading the tensors.
fn safetensors_header(path: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut file = fs::File::open(path).ok()?;
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).ok()?;
    let length = u64::from_le_bytes(prefix);
    if length == 0 || length > SAFETENSORS_HEADER_MAX {
        return None;
    }
    let mut header = vec![0u8; length as usize];
    file.read_exact(&mut header).ok()?;
    Some(header)
}

fn mtime_ns(metadata: &fs::Metadata) -> i64 {
    metadata
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64)
}

/// The aggregate hash of an index: SHA-256 over the sorted `path\0sha` pairs.
pub fn aggregate(index: &[IndexEntry]) -> String {
    let mut sorted: Vec<&IndexEntry> = index.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut digest = Sha256::new();
    for entry in sorted {
        digest.update(entry.path.as_bytes());
        digest.update(b"\x00");
        digest.update(entry.sha.as_bytes());
    }
    format!("sha256:{}", hashing::hex(&digest.finalize()))
}

/// Hashes the workspace at `root` from scratch: the aggregate and the sorted index.
pub fn compute(root: &Path, excludes: &Excludes) -> Result<(String, Vec<IndexEntry>), HashError> {
    let root = fs::canonicalize(root).map_err(|e| io_error(root, e))?;
    if !root.join("config.json").exists() {
        return Err(HashError::NotAWorkspace(root));
    }
    let mut index = Vec::new();
    for (path, found) in walk(&root, excludes)? {
        let entry = match found {
            Found::File(file) => {
                let metadata = fs::metadata(&file).map_err(|e| io_error(&file, e))?;
                let sha = fingerprint(&file, metadata.len())?
                    .ok_or_else(|| HashError::CorruptSafetensors(path.clone()))?;
                IndexEntry {
                    size: metadata.len(),
                    mtime_ns: mtime_ns(&metadata),
                    sha,
                    path,
                }
            }
            Found::Link(sha) => IndexEntry {
                path,
                size: 0,
                mtime_ns: 0,
                sha,
            },
            Found::LinkOutside => return Err(HashError::SymlinkOutside(path)),
        };
        index.push(entry);
    }
    index.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((aggregate(&index), index))
}

/// A marker's path is relative, `/`-separated and stays inside (checked before any file is
/// touched because of it).
pub fn valid_index_path(path: &str) -> bool {
    let leaves = path.is_empty()
        || path.contains(['\0', '\\'])
        || path.starts_with('/')
        || path.as_bytes().get(1) == Some(&b':')
        || path.split('/').any(|part| part == "..");
    !leaves
}

/// The result of comparing a workspace with its recorded index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatCheck {
    pub clean: bool,
    /// Entries whose modification time moved while the content stayed.
    pub healed: bool,
    /// The index with healed times.
    pub index: Vec<IndexEntry>,
}

/// Compares the workspace with `index` by size and time, hashing only files whose time moved.
pub fn stat_check(root: &Path, index: &[IndexEntry], excludes: &Excludes) -> StatCheck {
    let Ok(root) = fs::canonicalize(root) else {
        return StatCheck {
            clean: false,
            healed: false,
            index: index.to_vec(),
        };
    };
    let mut recorded: std::collections::BTreeMap<String, IndexEntry> =
        index.iter().map(|e| (e.path.clone(), e.clone())).collect();
    let mut seen = std::collections::BTreeSet::new();
    let (mut dirty, mut healed) = (false, false);
    let found = match walk(&root, excludes) {
        Ok(found) => found,
        Err(_) => {
            return StatCheck {
                clean: false,
                healed: false,
                index: index.to_vec(),
            }
        }
    };
    for (path, found) in found {
        seen.insert(path.clone());
        let Some(entry) = recorded.get_mut(&path) else {
            dirty = true;
            continue;
        };
        match found {
            Found::LinkOutside => dirty = true,
            Found::Link(sha) => dirty |= sha != entry.sha,
            Found::File(file) => {
                let Ok(metadata) = fs::metadata(&file) else {
                    dirty = true;
                    continue;
                };
                if metadata.len() != entry.size {
                    dirty = true;
                } else if mtime_ns(&metadata) != entry.mtime_ns {
                    match fingerprint(&file, metadata.len()) {
                        Ok(Some(sha)) if sha == entry.sha => {
                            entry.mtime_ns = mtime_ns(&metadata);
                            healed = true;
                        }
                        _ => dirty = true,
                    }
                }
            }
        }
    }
    if recorded.keys().any(|path| !seen.contains(path)) {
        dirty = true;
    }
    StatCheck {
        clean: !dirty,
        healed,
        index: recorded.into_values().collect(),
    }
}

fn io_error(path: &Path, e: std::io::Error) -> HashError {
    HashError::Io(path.display().to_string(), e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn safetensors(header: &str) -> Vec<u8> {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend([0u8; 8]);
        bytes
    }

    fn workspace() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
        let header = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        fs::write(root.join("model.safetensors"), safetensors(header)).unwrap();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub/notes.txt"), "hello\n").unwrap();
        fs::create_dir(root.join(".git")).unwrap();
        fs::write(root.join(".git/HEAD"), "ref").unwrap();
        fs::write(root.join("debug.log"), "noise").unwrap();
        dir
    }

    #[test]
    fn files_are_fingerprinted_by_class_and_excludes_are_skipped() {
        let dir = workspace();
        let (aggregate_hash, index) = compute(dir.path(), &Excludes::default_patterns()).unwrap();
        let paths: Vec<&str> = index.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["config.json", "model.safetensors", "sub/notes.txt"]);
        let header = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        assert_eq!(
            index[1].sha,
            format!("sha256:{}", hashing::sha256_hex(header.as_bytes()))
        );
        // `sha256sum` of "hello\n".
        assert_eq!(
            index[2].sha,
            "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert_eq!(aggregate_hash, aggregate(&index));
        assert!(aggregate_hash.starts_with("sha256:") && aggregate_hash.len() == 71);
    }

    #[test]
    fn a_time_only_change_heals_and_a_content_change_is_dirty() {
        let dir = workspace();
        let excludes = Excludes::default_patterns();
        let (_, index) = compute(dir.path(), &excludes).unwrap();
        assert!(stat_check(dir.path(), &index, &excludes).clean);
        let notes = dir.path().join("sub/notes.txt");
        let later = filetime::FileTime::from_unix_time(2_000_000_000, 0);
        filetime::set_file_mtime(&notes, later).unwrap();
        let healed = stat_check(dir.path(), &index, &excludes);
        assert!(healed.clean && healed.healed);
        fs::write(&notes, "HELLO\n").unwrap();
        assert!(!stat_check(dir.path(), &healed.index, &excludes).clean);
        fs::write(&notes, "hello\n").unwrap();
        fs::write(dir.path().join("new.json"), "{}").unwrap();
        assert!(
            !stat_check(dir.path(), &healed.index, &excludes).clean,
            "an added file"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_inside_are_fingerprinted_and_outside_refused() {
        let dir = workspace();
        std::os::unix::fs::symlink("sub/notes.txt", dir.path().join("alias.txt")).unwrap();
        let (_, index) = compute(dir.path(), &Excludes::default_patterns()).unwrap();
        let alias = index.iter().find(|e| e.path == "alias.txt").unwrap();
        let expected = {
            let mut d = Sha256::new();
            d.update(b"SYMLINK\x00sub/notes.txt");
            format!("sha256:{}", hashing::hex(&d.finalize()))
        };
        assert_eq!((alias.size, alias.sha.as_str()), (0, expected.as_str()));
        std::os::unix::fs::symlink("/etc/hostname", dir.path().join("escape")).unwrap();
        assert!(matches!(
            compute(dir.path(), &Excludes::default_patterns()),
            Err(HashError::SymlinkOutside(_))
        ));
    }

    #[test]
    fn index_paths_that_leave_the_workspace_are_invalid() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a\\b",
            "C:x",
            "a\0b",
        ] {
            assert!(!valid_index_path(bad), "{bad:?}");
        }
        assert!(valid_index_path("sub/notes.txt"));
    }

    #[test]
    fn a_corrupt_safetensors_header_stops_the_hash() {
        let dir = workspace();
        fs::write(dir.path().join("bad.safetensors"), [0u8; 4]).unwrap();
        assert!(matches!(
            compute(dir.path(), &Excludes::default_patterns()),
            Err(HashError::CorruptSafetensors(_))
        ));
    }
}
