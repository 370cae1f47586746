//! Putting a model folder into the cache in the layout `huggingface_hub` writes, so that every
//! tool reading the cache sees it as a normal download.
//!
//! Files become content-addressed blobs (named by their SHA-256, as the Hub names LFS files),
//! the snapshot is a folder of relative symlinks named by a commit id derived from the content,
//! and `refs/main` names it. Installing the same content twice changes nothing.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha1::Sha1;
use sha2::{Digest, Sha256};

use crate::cache::HubCache;
use crate::error::{CoreError, Result};
use crate::repo_id::RepoId;
use crate::snapshot::{self, DEFAULT_REF};

/// Installs the files of `folder` (recursively) as `repo_id` and returns the snapshot's commit.
pub fn install_folder(cache: &HubCache, repo_id: &RepoId, folder: &Path) -> Result<String> {
    let mut files: Vec<(String, PathBuf, String)> = snapshot::snapshot_files(folder)
        .into_iter()
        .filter(|f| !f.is_broken_link())
        .map(|f| {
            let sha = sha256_file(&f.path).map_err(|e| CoreError::io("reading", &f.path, e))?;
            Ok((f.name, f.path, sha))
        })
        .collect::<Result<_>>()?;
    files.sort();
    // A content-derived commit id: the same files always give the same snapshot.
    let mut commit = Sha1::new();
    for (name, _, sha) in &files {
        commit.update(format!("{name}\0{sha}\n").as_bytes());
    }
    let commit = hex(&commit.finalize());

    let repo_dir = cache.repo_dir(repo_id);
    let blobs = repo_dir.join("blobs");
    let snapshot_dir = repo_dir.join("snapshots").join(&commit);
    create_dir(&blobs)?;
    create_dir(&snapshot_dir)?;
    for (name, path, sha) in &files {
        let blob = blobs.join(sha);
        if !blob.is_file() {
            // Copy under a temporary name first: a blob that exists is always complete.
            let partial = blobs.join(format!("{sha}.incomplete"));
            fs::copy(path, &partial).map_err(|e| CoreError::io("copying", path, e))?;
            fs::rename(&partial, &blob).map_err(|e| CoreError::io("renaming", &partial, e))?;
        }
        let link = snapshot_dir.join(name);
        if let Some(parent) = link.parent() {
            create_dir(parent)?;
        }
        let depth = name.matches('/').count() + 2;
        let target = format!("{}blobs/{sha}", "../".repeat(depth));
        if fs::symlink_metadata(&link).is_ok() {
            fs::remove_file(&link).map_err(|e| CoreError::io("replacing", &link, e))?;
        }
        symlink(&target, &link).map_err(|e| CoreError::io("linking", &link, e))?;
    }
    let refs = repo_dir.join("refs");
    create_dir(&refs)?;
    let main = refs.join(DEFAULT_REF);
    fs::write(&main, &commit).map_err(|e| CoreError::io("writing", &main, e))?;
    Ok(commit)
}

fn create_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(|e| CoreError::io("creating", path, e))
}

/// A relative symlink, as huggingface_hub makes snapshot links (shared with `hub::pull`).
#[cfg(unix)]
pub(crate) fn symlink(target: &str, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
pub(crate) fn symlink(target: &str, link: &Path) -> io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

pub(crate) fn sha256_file(path: &Path) -> io::Result<String> {
    let mut file = File::open(path)?;
    let mut digest = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(hex(&digest.finalize()));
        }
        digest.update(&buffer[..read]);
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::CheckDepth;
    use crate::Library;

    #[test]
    fn installed_folder_is_a_healthy_cached_model_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("model");
        fs::create_dir_all(folder.join("sub")).unwrap();
        fs::write(folder.join("config.json"), r#"{"model_type": "llama"}"#).unwrap();
        let header = r#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let mut weights = (header.len() as u64).to_le_bytes().to_vec();
        weights.extend(header.as_bytes());
        weights.extend([0u8; 8]);
        fs::write(folder.join("model.safetensors"), weights).unwrap();
        fs::write(folder.join("sub/notes.txt"), "hello").unwrap();

        let cache = HubCache::at(dir.path().join("hub"));
        let repo = RepoId::parse("mlxk-demo/tiny").unwrap();
        let commit = install_folder(&cache, &repo, &folder).unwrap();
        assert_eq!(install_folder(&cache, &repo, &folder).unwrap(), commit);

        let library = Library::new(cache.clone()).with_depth(CheckDepth::Deep);
        let model = library.find("mlxk-demo/tiny").unwrap();
        assert!(model.is_healthy(), "{:?}", model.health);
        assert_eq!(model.commit.as_deref(), Some(commit.as_str()));
        assert_eq!(model.files.len(), 3);
        assert_eq!(
            fs::read_dir(cache.repo_dir(&repo).join("blobs"))
                .unwrap()
                .count(),
            3
        );
    }
}
