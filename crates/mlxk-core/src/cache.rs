//! Where the Hugging Face hub cache lives and which models it holds.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{CoreError, Result};
use crate::repo_id::RepoId;

/// A file that marks a cache as a test cache. When `MLXK_REQUIRE_TEST_SENTINEL` is set (the
/// test suite sets it), deletion refuses to touch a cache that lacks it.
pub const TEST_SENTINEL_FILE: &str = ".mlxk-test-sentinel";
pub const REQUIRE_TEST_SENTINEL_ENV: &str = "MLXK_REQUIRE_TEST_SENTINEL";

/// The hub cache: a directory of `models--{org}--{name}` folders, as `huggingface_hub` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubCache {
    root: PathBuf,
}

/// One model folder in the cache (it may be empty, partial or broken).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedRepo {
    pub repo_id: RepoId,
    pub dir: PathBuf,
}

impl HubCache {
    /// The cache `huggingface_hub` would use: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
    /// `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
    pub fn from_env() -> Self {
        let root = path_var("HF_HUB_CACHE").unwrap_or_else(|| hf_home().join("hub"));
        HubCache { root }
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        HubCache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder this model has (or would have) in the cache.
    pub fn repo_dir(&self, repo_id: &RepoId) -> PathBuf {
        self.root.join(repo_id.cache_dir_name())
    }

    /// The lock folder `huggingface_hub` keeps for this model while it downloads.
    pub fn locks_dir(&self, repo_id: &RepoId) -> PathBuf {
        self.root.join(".locks").join(repo_id.cache_dir_name())
    }

    /// Every model folder in the cache, sorted by name. A missing cache is an empty one.
    pub fn repos(&self) -> Result<Vec<CachedRepo>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CoreError::io("reading the cache", &self.root, e)),
        };
        let mut repos: Vec<CachedRepo> = entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|entry| {
                let repo_id = RepoId::from_cache_dir_name(entry.file_name().to_str()?)?;
                Some(CachedRepo {
                    repo_id,
                    dir: entry.path(),
                })
            })
            .collect();
        repos.sort_by(|a, b| a.repo_id.cmp(&b.repo_id));
        Ok(repos)
    }

    /// Whether the sentinel file of a test cache sits in the cache root or its parent (`HF_HOME`).
    pub fn has_test_sentinel(&self) -> bool {
        let beside = self.root.parent().map(|p| p.join(TEST_SENTINEL_FILE));
        self.root.join(TEST_SENTINEL_FILE).is_file() || beside.is_some_and(|p| p.is_file())
    }
}

/// `huggingface_hub`'s home folder (it holds `hub/` and the `token` file): `$HF_HOME`, else
/// `$XDG_CACHE_HOME/huggingface`, else `~/.cache/huggingface`.
pub fn hf_home() -> PathBuf {
    path_var("HF_HOME")
        .or_else(|| path_var("XDG_CACHE_HOME").map(|c| c.join("huggingface")))
        .unwrap_or_else(|| home_dir().join(".cache").join("huggingface"))
}

/// A path from the environment (unset and empty are the same; a leading `~` is expanded).
pub(crate) fn path_var(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(expand_home)
}

fn expand_home(value: std::ffi::OsString) -> PathBuf {
    let path = PathBuf::from(value);
    match path.strip_prefix("~") {
        Ok(rest) => home_dir().join(rest),
        Err(_) => path,
    }
}

fn home_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_only_model_folders() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "models--org--a",
            "models--b",
            "datasets--org--c",
            ".locks",
            "models--x--y--z",
        ] {
            fs::create_dir(dir.path().join(name)).unwrap();
        }
        fs::write(dir.path().join("models--file--not-dir"), "").unwrap();
        let names: Vec<String> = HubCache::at(dir.path())
            .repos()
            .unwrap()
            .into_iter()
            .map(|r| r.repo_id.to_string())
            .collect();
        assert_eq!(names, ["b", "org/a"]);
    }

    #[test]
    fn missing_cache_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert!(HubCache::at(dir.path().join("nope"))
            .repos()
            .unwrap()
            .is_empty());
    }
}
