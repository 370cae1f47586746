//! Staging folders: where a long write into the cache (a conversion) happens before it is
//! installed. Each holds a lock while its process lives, so a later run tells a live one from
//! the leftover of a process that was killed, and removes only leftovers.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Staging folders sit directly in the cache root under this prefix.
pub const STAGING_PREFIX: &str = ".mlxk-staging-";
/// Earlier versions staged conversions as `.mlxk-convert-…` (and the converter's own
/// `..mlxk-convert-….converting-PID` beside it), without a lock.
const LEGACY_PREFIXES: &[&str] = &[".mlxk-convert-", "..mlxk-convert-"];
const LOCK_FILE: &str = ".mlxk-staging.lock";
/// A folder without a lock file may be one being created this instant: only older ones count.
const UNLOCKED_GRACE: Duration = Duration::from_secs(60);

/// A staging folder of this process; removed when dropped.
#[derive(Debug)]
pub struct StagingDir {
    path: PathBuf,
    _lock: File,
}

impl StagingDir {
    /// Creates `ROOT/.mlxk-staging-LABEL-PID`, locked for as long as it lives.
    pub fn create(root: &Path, label: &str) -> io::Result<StagingDir> {
        let path = root.join(format!("{STAGING_PREFIX}{label}-{}", std::process::id()));
        if path.exists() {
            // Left by an earlier process that had this pid: it is dead, or it would be us.
            fs::remove_dir_all(&path)?;
        }
        fs::create_dir_all(&path)?;
        let lock = File::create(path.join(LOCK_FILE))?;
        lock.lock()?;
        Ok(StagingDir { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StagingDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Staging folders in `root` whose process is gone (a conversion killed midway).
pub fn stale(root: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(STAGING_PREFIX) || LEGACY_PREFIXES.iter().any(|p| name.starts_with(p))
        })
        .map(|e| e.path())
        .filter(|dir| !is_live(dir))
        .collect();
    found.sort();
    found
}

/// Removes the stale staging folders in `root`; returns those removed.
pub fn remove_stale(root: &Path) -> Vec<PathBuf> {
    stale(root)
        .into_iter()
        .filter(|dir| fs::remove_dir_all(dir).is_ok())
        .collect()
}

fn is_live(dir: &Path) -> bool {
    match File::open(dir.join(LOCK_FILE)) {
        Ok(lock) => matches!(lock.try_lock(), Err(fs::TryLockError::WouldBlock)),
        Err(_) => fs::metadata(dir)
            .and_then(|m| m.modified())
            .is_ok_and(|at| at.elapsed().is_ok_and(|age| age < UNLOCKED_GRACE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_folders_of_dead_processes_are_stale() {
        let root = tempfile::tempdir().unwrap();
        let live = StagingDir::create(root.path(), "org--live").unwrap();
        // A killed process: its lock file is there, nobody holds it.
        let dead = root.path().join(format!("{STAGING_PREFIX}org--dead-1"));
        fs::create_dir(&dead).unwrap();
        File::create(dead.join(LOCK_FILE)).unwrap();
        // An old-style folder, a minute old; and one just made (maybe being set up now).
        let legacy = root.path().join(".mlxk-convert-models--org--m-42");
        fs::create_dir(&legacy).unwrap();
        let old = std::time::SystemTime::now() - Duration::from_secs(120);
        File::open(&legacy).unwrap().set_modified(old).unwrap();
        fs::create_dir(root.path().join(".mlxk-convert-models--org--new-43")).unwrap();
        fs::create_dir(root.path().join("models--org--m")).unwrap();

        assert_eq!(stale(root.path()), vec![legacy.clone(), dead.clone()]);
        assert_eq!(remove_stale(root.path()).len(), 2);
        assert!(!dead.exists() && !legacy.exists() && live.path().exists());
        let path = live.path().to_path_buf();
        drop(live);
        assert!(!path.exists());
    }
}
