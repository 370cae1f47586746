//! Writing one commit of a repository into the cache in the layout `huggingface_hub` writes:
//! content in `blobs/<name>` (a blob that exists is complete: it arrives as
//! `<name>.incomplete` and is renamed), `snapshots/<commit>/<path>` as relative symlinks to
//! the blobs, `refs/<revision>` naming the commit, and the lock files huggingface_hub takes.
//! `pull`, `install` (conversions into the cache) and every later writer share it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use crate::cache::HubCache;
use crate::repo_id::RepoId;

/// A write to the cache that failed, with what was done where.
#[derive(Debug, thiserror::Error)]
#[error("{action} failed for {}: {source}", path.display())]
pub struct LayoutError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

type Result<T, E = LayoutError> = std::result::Result<T, E>;

fn failed<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LayoutError + 'a {
    move |source| LayoutError {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Where one commit's files go in a repository's cache folder.
pub struct SnapshotWriter {
    repo_dir: PathBuf,
    commit: String,
    locks: PathBuf,
}

impl SnapshotWriter {
    pub fn new(cache: &HubCache, repo: &RepoId, commit: &str) -> Self {
        SnapshotWriter {
            repo_dir: cache.repo_dir(repo),
            commit: commit.to_string(),
            locks: cache.locks_dir(repo),
        }
    }

    /// Creates `blobs/`, the snapshot folder and the lock folder.
    pub fn create(&self) -> Result<()> {
        for dir in [&self.repo_dir.join("blobs"), &self.snapshot(), &self.locks] {
            fs::create_dir_all(dir).map_err(failed("creating", dir))?;
        }
        Ok(())
    }

    pub fn snapshot(&self) -> PathBuf {
        self.repo_dir.join("snapshots").join(&self.commit)
    }

    pub fn blob(&self, blob_name: &str) -> PathBuf {
        self.repo_dir.join("blobs").join(blob_name)
    }

    /// Where a blob is written until it is complete.
    pub fn partial(&self, blob_name: &str) -> PathBuf {
        self.repo_dir
            .join("blobs")
            .join(format!("{blob_name}.incomplete"))
    }

    /// Copies `source` in as the blob `blob_name`, unless that blob is there already.
    pub fn copy_blob(&self, source: &Path, blob_name: &str) -> Result<()> {
        let blob = self.blob(blob_name);
        if blob.is_file() {
            return Ok(());
        }
        let partial = self.partial(blob_name);
        fs::copy(source, &partial).map_err(failed("copying", source))?;
        self.complete_blob(blob_name)
    }

    /// Renames a finished `<name>.incomplete` into place.
    pub fn complete_blob(&self, blob_name: &str) -> Result<()> {
        let partial = self.partial(blob_name);
        fs::rename(&partial, self.blob(blob_name)).map_err(failed("renaming", &partial))
    }

    /// The same lock file huggingface_hub takes (`.locks/<repo>/<blob>.lock`, flock), held
    /// while the returned file is open.
    pub fn lock(&self, blob_name: &str) -> Result<File> {
        let path = self.locks.join(format!("{blob_name}.lock"));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(failed("opening", &path))?;
        fs4::fs_std::FileExt::lock_exclusive(&lock).map_err(failed("locking", &path))?;
        Ok(lock)
    }

    /// `snapshots/<commit>/<path>` -> `../../blobs/<name>` (one more `..` per folder level).
    pub fn link(&self, path: &str, blob_name: &str) -> Result<()> {
        let link = self.snapshot().join(path);
        if let Some(parent) = link.parent() {
            fs::create_dir_all(parent).map_err(failed("creating", parent))?;
        }
        let depth = path.matches('/').count() + 2;
        let target = format!("{}blobs/{blob_name}", "../".repeat(depth));
        if fs::read_link(&link).is_ok_and(|t| t == Path::new(&target)) {
            return Ok(());
        }
        if fs::symlink_metadata(&link).is_ok() {
            fs::remove_file(&link).map_err(failed("replacing", &link))?;
        }
        symlink(&target, &link).map_err(failed("linking", &link))
    }

    /// `refs/<revision>` names this commit.
    pub fn write_ref(&self, revision: &str) -> Result<()> {
        let path = self.repo_dir.join("refs").join(revision);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(failed("creating", parent))?;
        }
        fs::write(&path, &self.commit).map_err(failed("writing", &path))
    }
}

/// A relative symlink, as huggingface_hub makes snapshot links.
#[cfg(unix)]
fn symlink(target: &str, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink(target: &str, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}
