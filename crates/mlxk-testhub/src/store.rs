//! The Hub's repos as plain files under one root folder:
//!
//! ```text
//! <root>/models/<namespace>/<name>/
//!     repo.json             visibility, gating, grants, creation time
//!     refs.json             branches and tags -> commit ids
//!     commits/<id>.json     one per commit: parents, message, date, and every file's metadata
//!     trees/<id>/<path>     the commit's files as plain files (hard links to the parent's where
//!                           unchanged, copies where the file system cannot link)
//!     lfs/<sha256>          LFS objects, uploaded through the LFS batch API or seeded
//! ```
//!
//! Commits are immutable once written; a branch moves by rewriting `refs.json` atomically, under
//! one write lock, so readers never see a half-made commit.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, SecondsFormat, TimeZone as _, Utc};
use serde::{Deserialize, Serialize};
use sha1::{Digest as _, Sha1};
use sha2::Sha256;

use crate::git;
use crate::upload_mode;

/// The date of seeded commits, so that seeding the same folder gives the same commit id.
pub const SEED_DATE: i64 = 1_736_935_200; // 2025-01-15T10:00:00Z

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("repository {0} not found")]
    RepoNotFound(String),
    #[error("repository {0} already exists")]
    RepoExists(String),
    #[error("invalid repo id {0:?}: expected namespace/name with letters, digits, '-', '_', '.'")]
    InvalidRepoId(String),
    #[error("revision {0} not found")]
    RevisionNotFound(String),
    #[error("{0} not found")]
    EntryNotFound(String),
    #[error("invalid path in repo {0:?}")]
    InvalidPath(String),
    #[error("parent commit {given} is not the head of the branch ({head})")]
    ParentMismatch { given: String, head: String },
    #[error("LFS object {0} was not uploaded (or has another size)")]
    MissingLfsObject(String),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("corrupt store file {path}: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// `namespace/name`, validated against the Hub's rules before any path is built from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoId {
    pub namespace: String,
    pub name: String,
}

impl RepoId {
    pub fn new(namespace: &str, name: &str) -> Result<Self> {
        let valid = |part: &str| {
            !part.is_empty()
                && part.len() <= 96
                && !part.starts_with(['.', '-'])
                && !part.ends_with('.')
                && !part.contains("..")
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if valid(namespace) && valid(name) {
            Ok(RepoId {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })
        } else {
            Err(StoreError::InvalidRepoId(format!("{namespace}/{name}")))
        }
    }

    pub fn parse(text: &str) -> Result<Self> {
        let (namespace, name) = text
            .split_once('/')
            .ok_or_else(|| StoreError::InvalidRepoId(text.to_string()))?;
        RepoId::new(namespace, name)
    }
}

impl std::fmt::Display for RepoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How a gated repo grants access: the Hub's `"auto"` or `"manual"` (here both mean: only the
/// users in [`RepoSettings::granted`] and the repo's writers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gate {
    Auto,
    Manual,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoSettings {
    pub private: bool,
    pub gated: Option<Gate>,
    /// Users granted access to a gated repo.
    pub granted: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoRecord {
    #[serde(flatten)]
    pub settings: RepoSettings,
    pub created_at: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Refs {
    pub branches: BTreeMap<String, String>,
    pub tags: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LfsInfo {
    pub sha256: String,
    pub size: u64,
    pub pointer_size: u64,
}

/// A file as a commit records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub size: u64,
    /// Git blob SHA-1 of the content (regular files) or of the LFS pointer (LFS files).
    pub blob_id: String,
    pub lfs: Option<LfsInfo>,
}

impl FileEntry {
    /// What `preupload` reports as `oid` and `huggingface_hub` compares with its local file:
    /// the SHA-256 for LFS files, the git blob SHA-1 otherwise.
    pub fn upload_oid(&self) -> &str {
        self.lfs.as_ref().map_or(&self.blob_id, |l| &l.sha256)
    }

    /// The HTTP `ETag` of the file: as for [`FileEntry::upload_oid`].
    pub fn etag(&self) -> &str {
        self.upload_oid()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Commit {
    pub id: String,
    pub parents: Vec<String>,
    pub title: String,
    pub message: String,
    pub date: String,
    pub files: BTreeMap<String, FileEntry>,
}

/// New content for a path.
pub enum Content {
    Bytes(Vec<u8>),
    File(PathBuf),
}

pub enum Operation {
    /// A file whose content travels with the commit; `lfs` stores it as an LFS object.
    Add {
        path: String,
        content: Content,
        lfs: bool,
    },
    /// A file whose content was uploaded before through the LFS batch API.
    AddLfs {
        path: String,
        oid: String,
        size: Option<u64>,
    },
    Delete {
        path: String,
    },
    DeleteFolder {
        path: String,
    },
}

pub struct CommitHeader {
    pub title: String,
    pub message: String,
    /// When set, the commit is refused unless the branch's head is this commit.
    pub parent: Option<String>,
    pub date: Option<DateTime<Utc>>,
}

pub struct Store {
    root: PathBuf,
    write_lock: Mutex<()>,
    counter: AtomicU64,
}

impl Store {
    pub fn open(root: &Path) -> Result<Store> {
        fs::create_dir_all(root.join("models"))?;
        Ok(Store {
            root: root.to_path_buf(),
            write_lock: Mutex::new(()),
            counter: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn repo_dir(&self, id: &RepoId) -> PathBuf {
        self.root.join("models").join(&id.namespace).join(&id.name)
    }

    pub fn exists(&self, id: &RepoId) -> bool {
        self.repo_dir(id).join("repo.json").is_file()
    }

    pub fn record(&self, id: &RepoId) -> Result<RepoRecord> {
        if !self.exists(id) {
            return Err(StoreError::RepoNotFound(id.to_string()));
        }
        read_json(&self.repo_dir(id).join("repo.json"))
    }

    pub fn set_settings(&self, id: &RepoId, settings: RepoSettings) -> Result<()> {
        let _guard = self.lock();
        let mut record = self.record(id)?;
        record.settings = settings;
        write_json_atomic(&self.repo_dir(id).join("repo.json"), &record)
    }

    pub fn refs(&self, id: &RepoId) -> Result<Refs> {
        if !self.exists(id) {
            return Err(StoreError::RepoNotFound(id.to_string()));
        }
        read_json(&self.repo_dir(id).join("refs.json"))
    }

    /// Creates an empty repo (no commit, no branch). [`Store::create_repo_like_hub`] adds the
    /// Hub's initial commit.
    pub fn create_repo(&self, id: &RepoId, settings: RepoSettings) -> Result<()> {
        let _guard = self.lock();
        if self.exists(id) {
            return Err(StoreError::RepoExists(id.to_string()));
        }
        let dir = self.repo_dir(id);
        for sub in ["commits", "trees", "lfs", "tmp"] {
            fs::create_dir_all(dir.join(sub))?;
        }
        write_json_atomic(&dir.join("refs.json"), &Refs::default())?;
        let record = RepoRecord {
            settings,
            created_at: format_date(&Utc::now()),
        };
        write_json_atomic(&dir.join("repo.json"), &record)
    }

    /// What `POST /api/repos/create` does: a repo whose `main` holds one commit with the
    /// default `.gitattributes`.
    pub fn create_repo_like_hub(&self, id: &RepoId, settings: RepoSettings) -> Result<Commit> {
        self.create_repo(id, settings)?;
        let header = CommitHeader {
            title: "initial commit".into(),
            message: String::new(),
            parent: None,
            date: None,
        };
        let gitattributes = Operation::Add {
            path: ".gitattributes".into(),
            content: Content::Bytes(upload_mode::default_gitattributes().into_bytes()),
            lfs: false,
        };
        self.commit_to_branch(id, "main", header, vec![gitattributes])
    }

    /// A branch, a tag or a full commit id of this repo, to a commit id.
    pub fn resolve(&self, id: &RepoId, revision: &str) -> Result<String> {
        let refs = self.refs(id)?;
        if let Some(commit) = refs.branches.get(revision).or(refs.tags.get(revision)) {
            return Ok(commit.clone());
        }
        if git::is_hex_of_len(revision, 40) && self.commit_path(id, revision).is_file() {
            return Ok(revision.to_string());
        }
        Err(StoreError::RevisionNotFound(revision.to_string()))
    }

    fn commit_path(&self, id: &RepoId, commit: &str) -> PathBuf {
        self.repo_dir(id)
            .join("commits")
            .join(format!("{commit}.json"))
    }

    pub fn commit(&self, id: &RepoId, commit: &str) -> Result<Commit> {
        let path = self.commit_path(id, commit);
        if !git::is_hex_of_len(commit, 40) || !path.is_file() {
            return Err(StoreError::RevisionNotFound(commit.to_string()));
        }
        read_json(&path)
    }

    /// Where a file of a commit lies on disk (the path must be one of the commit's files).
    pub fn file_path(&self, id: &RepoId, commit: &str, path: &str) -> PathBuf {
        self.repo_dir(id).join("trees").join(commit).join(path)
    }

    /// A small text file of a commit (e.g. `.gitattributes`), if present.
    pub fn read_text(&self, id: &RepoId, commit: &Commit, path: &str) -> Option<String> {
        commit.files.get(path)?;
        fs::read_to_string(self.file_path(id, &commit.id, path)).ok()
    }

    /// The stored LFS object with this SH-256 and size, if any.
    pub fn lfs_object(&self, id: &RepoId, oid: &str, size: Option<u64>) -> Option<PathBuf> {
        if !git::is_hex_of_len(oid, 64) {
            return None;
        }
        let path = self.repo_dir(id).join("lfs").join(oid);
        let len = fs::metadata(&path).ok()?.len();
        (size.is_none_or(|s| s == len)).then_some(path)
    }

    /// A fresh path in the repo's scratch folder, for an upload in progress.
    pub fn scratch_path(&self, id: &RepoId) -> Result<PathBuf> {
        let dir = self.repo_dir(id).join("tmp");
        fs::create_dir_all(&dir)?;
        Ok(dir.join(self.unique_name()))
    }

    /// Moves a verified upload into the LFS store.
    pub fn put_lfs_object(&self, id: &RepoId, oid: &str, uploaded: &Path) -> Result<()> {
        if !git::is_hex_of_len(oid, 64) {
            return Err(StoreError::MissingLfsObject(oid.to_string()));
        }
        fs::rename(uploaded, self.repo_dir(id).join("lfs").join(oid))?;
        Ok(())
    }

    pub fn set_tag(&self, id: &RepoId, tag: &str, revision: &str) -> Result<()> {
        let _guard = self.lock();
        let commit = self.resolve(id, revision)?;
        let mut refs = self.refs(id)?;
        refs.tags.insert(tag.to_string(), commit);
        write_json_atomic(&self.repo_dir(id).join("refs.json"), &refs)
    }

    pub fn create_branch(&self, id: &RepoId, branch: &str, revision: &str) -> Result<()> {
        let _guard = self.lock();
        let commit = self.resolve(id, revision)?;
        let mut refs = self.refs(id)?;
        if refs.branches.contains_key(branch) {
            return Err(StoreError::RepoExists(format!("{id}@{branch}")));
        }
        refs.branches.insert(branch.to_string(), commit);
        write_json_atomic(&self.repo_dir(id).join("refs.json"), &refs)
    }

    /// Adds a commit on `branch` (which must exist unless the repo has no branch yet) and moves
    /// the branch to it.
    pub fn commit_to_branch(
        &self,
        id: &RepoId,
        branch: &str,
        header: CommitHeader,
        operations: Vec<Operation>,
    ) -> Result<Commit> {
        let _guard = self.lock();
        let dir = self.repo_dir(id);
        let mut refs = self.refs(id)?;
        let head = refs.branches.get(branch).cloned();
        if head.is_none() && !refs.branches.is_empty() {
            return Err(StoreError::RevisionNotFound(branch.to_string()));
        }
        if let Some(given) = &header.parent {
            if Some(given) != head.as_ref() {
                return Err(StoreError::ParentMismatch {
                    given: given.clone(),
                    head: head.unwrap_or_default(),
                });
            }
        }
        let parent = head.as_deref().map(|h| self.commit(id, h)).transpose()?;
        let scratch = dir.join("tmp").join(self.unique_name());
        fs::create_dir_all(&scratch)?;
        let result = self.build_commit(id, &scratch, parent.as_ref(), header, operations);
        let outcome = result.and_then(|(commit, tree)| {
            let target = dir.join("trees").join(&commit.id);
            if !target.exists() {
                fs::rename(&tree, &target)?;
            }
            write_json_atomic(&self.commit_path(id, &commit.id), &commit)?;
            refs.branches.insert(branch.to_string(), commit.id.clone());
            write_json_atomic(&dir.join("refs.json"), &refs)?;
            Ok(commit)
        });
        let _ = fs::remove_dir_all(&scratch);
        outcome
    }

    fn build_commit(
        &self,
        id: &RepoId,
        scratch: &Path,
        parent: Option<&Commit>,
        header: CommitHeader,
        operations: Vec<Operation>,
    ) -> Result<(Commit, PathBuf)> {
        let mut files = parent.map(|p| p.files.clone()).unwrap_or_default();
        // Where the content of each added path lies now.
        let mut added: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (n, operation) in operations.into_iter().enumerate() {
            match operation {
                Operation::Add { path, content, lfs } => {
                    let path = check_path(&path)?;
                    let staged = scratch.join(format!("staged-{n}"));
                    match content {
                        Content::Bytes(bytes) => fs::write(&staged, bytes)?,
                        Content::File(source) => link_or_copy(&source, &staged)?,
                    }
                    let entry = describe_file(&staged, lfs)?;
                    if let Some(info) = &entry.lfs {
                        let object = self.repo_dir(id).join("lfs").join(&info.sha256);
                        if !object.exists() {
                            link_or_copy(&staged, &object)?;
                        }
                    }
                    files.insert(path.clone(), entry);
                    added.insert(path, staged);
                }
                Operation::AddLfs { path, oid, size } => {
                    let path = check_path(&path)?;
                    let object = self
                        .lfs_object(id, &oid, size)
                        .ok_or_else(|| StoreError::MissingLfsObject(oid.clone()))?;
                    let size = fs::metadata(&object)?.len();
                    files.insert(path.clone(), lfs_entry(&oid, size));
                    added.insert(path, object);
                }
                Operation::Delete { path } => {
                    if files.remove(&path).is_none() {
                        return Err(StoreError::EntryNotFound(path));
                    }
                    added.remove(&path);
                }
                Operation::DeleteFolder { path } => {
                    let prefix = format!("{}/", path.trim_end_matches('/'));
                    let doomed: Vec<String> = files
                        .keys()
                        .filter(|p| p.starts_with(&prefix))
                        .cloned()
                        .collect();
                    if doomed.is_empty() {
                        return Err(StoreError::EntryNotFound(path));
                    }
                    for p in doomed {
                        files.remove(&p);
                        added.remove(&p);
                    }
                }
            }
        }
        let tree = scratch.join("tree");
        fs::create_dir_all(&tree)?;
        for path in files.keys() {
            let source = match added.get(path) {
                Some(staged) => staged.clone(),
                None => {
                    let parent = parent.expect("unchanged files come from a parent");
                    self.file_path(id, &parent.id, path)
                }
            };
            let target = tree.join(path);
            if let Some(folder) = target.parent() {
                fs::create_dir_all(folder)?;
            }
            link_or_copy(&source, &target)?;
        }
        let date = header.date.unwrap_or_else(Utc::now);
        let parents: Vec<String> = parent.map(|p| p.id.clone()).into_iter().collect();
        let commit_id = commit_id(&parents, &header, &date, &files);
        let commit = Commit {
            id: commit_id,
            parents,
            title: header.title,
            message: header.message,
            date: format_date(&date),
            files,
        };
        Ok((commit, tree))
    }

    /// Seeds `folder` as one commit on `main` (creating the repo, empty and public, if needed):
    /// every file, byte for byte, LFS or regular by [`upload_mode::is_lfs`], `.git/` skipped.
    pub fn seed_folder(&self, folder: &Path, id: &RepoId, tag: Option<&str>) -> Result<Commit> {
        if !self.exists(id) {
            self.create_repo(id, RepoSettings::default())?;
        }
        let gitattributes = fs::read_to_string(folder.join(".gitattributes")).ok();
        let mut operations = Vec::new();
        for (path, file) in walk_files(folder)? {
            let size = fs::metadata(&file)?.len();
            let mut sample = Vec::with_capacity(512);
            fs::File::open(&file)?.take(512).read_to_end(&mut sample)?;
            let lfs = upload_mode::is_lfs(&path, size, &sample, gitattributes.as_deref());
            operations.push(Operation::Add {
                path,
                content: Content::File(file),
                lfs,
            });
        }
        let header = CommitHeader {
            title: format!("Seed from {}", folder.display()),
            message: String::new(),
            parent: None,
            date: Utc.timestamp_opt(SEED_DATE, 0).single(),
        };
        let commit = self.commit_to_branch(id, "main", header, operations)?;
        if let Some(tag) = tag {
            self.set_tag(id, tag, &commit.id)?;
        }
        Ok(commit)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn unique_name(&self) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or_default();
        format!("{}-{nanos}-{n}", std::process::id())
    }
}

pub fn format_date(date: &DateTime<Utc>) -> String {
    date.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn lfs_entry(sha256: &str, size: u64) -> FileEntry {
    let pointer = git::lfs_pointer(sha256, size);
    FileEntry {
        size,
        blob_id: git::blob_sha1(pointer.as_bytes()),
        lfs: Some(LfsInfo {
            sha256: sha256.to_string(),
            size,
            pointer_size: pointer.len() as u64,
        }),
    }
}

/// Hashes a file in one pass: SHA-256 for LFS, git blob SHA-1 otherwise.
fn describe_file(path: &Path, lfs: bool) -> Result<FileEntry> {
    let size = fs::metadata(path)?.len();
    let mut file = fs::File::open(path)?;
    let mut buffer = vec![0u8; 1 << 16];
    if lfs {
        let mut hasher = Sha256::new();
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        Ok(lfs_entry(&git::hex(&hasher.finalize()), size))
    } else {
        let mut hasher = Sha1::new();
        hasher.update(format!("blob {size}\0").as_bytes());
        loop {
            let n = file.read(&mut buffer)?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
        }
        Ok(FileEntry {
            size,
            blob_id: git::hex(&hasher.finalize()),
            lfs: None,
        })
    }
}

fn commit_id(
    parents: &[String],
    header: &CommitHeader,
    date: &DateTime<Utc>,
    files: &BTreeMap<String, FileEntry>,
) -> String {
    let mut hasher = Sha1::new();
    for parent in parents {
        hasher.update(format!("parent {parent}\n"));
    }
    hasher.update(format!("date {}\n", format_date(date)));
    hasher.update(format!("{}\n\n{}\n", header.title, header.message));
    for (path, entry) in files {
        hasher.update(format!("{path}\0{}\n", entry.blob_id));
    }
    git::hex(&hasher.finalize())
}

/// A repo path: relative, `/`-separated, no empty, `.` or `..` segment, not inside `.git/`.
pub fn check_path(path: &str) -> Result<String> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path.contains('\0')
        || path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        || path == ".git"
        || path.starts_with(".git/");
    if bad {
        Err(StoreError::InvalidPath(path.to_string()))
    } else {
        Ok(path.to_string())
    }
}

fn walk_files(folder: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut found = Vec::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if entry.file_name() != ".git" {
                    pending.push(path);
                }
            } else if path.is_file() {
                let relative = path
                    .strip_prefix(folder)
                    .expect("walked inside the folder")
                    .to_string_lossy()
                    .replace('\\', "/");
                found.push((relative, path));
            }
        }
    }
    found.sort();
    Ok(found)
}

fn link_or_copy(source: &Path, target: &Path) -> io::Result<()> {
    // A hard link to a symlink is the symlink itself, dangling when relative (a Hugging Face
    // cache snapshot's files are `../../blobs/...` links): link the file it points to.
    let source = fs::canonicalize(source)?;
    if fs::hard_link(&source, target).is_err() {
        fs::copy(&source, target)?;
    }
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let bytes = fs::read(path)?;
    serde_json::from_slice(&bytes).map_err(|source| StoreError::Corrupt {
        path: path.to_path_buf(),
        source,
    })
}

fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).expect("store records serialize");
    fs::write(&tmp, bytes)?;
    fs::rename(&tmp, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoId {
        RepoId::parse("org/model").unwrap()
    }

    #[cfg(unix)]
    #[test]
    fn seeds_from_a_cache_snapshot_of_relative_symlinks() {
        let cache = tempfile::tempdir().unwrap();
        let blobs = cache.path().join("blobs");
        let snapshot = cache.path().join("snapshots").join("abc");
        fs::create_dir_all(&blobs).unwrap();
        fs::create_dir_all(&snapshot).unwrap();
        fs::write(blobs.join("b1"), "{\"model_type\": \"llama\"}").unwrap();
        std::os::unix::fs::symlink("../../blobs/b1", snapshot.join("config.json")).unwrap();

        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let commit = store.seed_folder(&snapshot, &repo(), None).unwrap();
        let served = store.file_path(&repo(), &commit.id, "config.json");
        assert_eq!(
            fs::read_to_string(served).unwrap(),
            "{\"model_type\": \"llama\"}"
        );
    }

    #[test]
    fn commits_chain_and_share_unchanged_files() {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path()).unwrap();
        let first = store
            .create_repo_like_hub(&repo(), RepoSettings::default())
            .unwrap();
        let add = |path: &str, bytes: &[u8], lfs| Operation::Add {
            path: path.into(),
            content: Content::Bytes(bytes.to_vec()),
            lfs,
        };
        let header = |parent: Option<&str>| CommitHeader {
            title: "t".into(),
            message: String::new(),
            parent: parent.map(str::to_string),
            date: None,
        };
        let second = store
            .commit_to_branch(
                &repo(),
                "main",
                header(Some(&first.id)),
                vec![
                    add("a.txt", b"hello\n", false),
                    add("w.bin", b"\0\x01", true),
                ],
            )
            .unwrap();
        assert_eq!(second.parents, vec![first.id.clone()]);
        assert_eq!(
            second.files["a.txt"].blob_id,
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        let lfs = second.files["w.bin"].lfs.as_ref().unwrap();
        assert_eq!(lfs.sha256, git::sha256_hex(b"\0\x01"));
        assert!(store.lfs_object(&repo(), &lfs.sha256, Some(2)).is_some());
        assert_eq!(store.resolve(&repo(), "main").unwrap(), second.id);
        let stale = store.commit_to_branch(&repo(), "main", header(Some(&first.id)), vec![]);
        assert!(matches!(stale, Err(StoreError::ParentMismatch { .. })));
        let third = store
            .commit_to_branch(
                &repo(),
                "main",
                header(None),
                vec![Operation::Delete {
                    path: "a.txt".into(),
                }],
            )
            .unwrap();
        assert!(!third.files.contains_key("a.txt"));
        let kept = store.file_path(&repo(), &third.id, "w.bin");
        assert_eq!(fs::read(kept).unwrap(), b"\0\x01");
        assert_eq!(
            fs::read(store.file_path(&repo(), &second.id, "a.txt")).unwrap(),
            b"hello\n"
        );
    }

    #[test]
    fn rejects_bad_ids_and_paths() {
        assert!(RepoId::parse("a/../b").is_err());
        assert!(RepoId::parse("noslash").is_err());
        assert!(RepoId::parse("../x").is_err());
        assert!(check_path("../x").is_err());
        assert!(check_path("a//b").is_err());
        assert!(check_path(".git/config").is_err());
        assert!(check_path("sub/dir/file.txt").is_ok());
    }
}
