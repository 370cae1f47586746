//! Putting a model folder into the cache in the layout `huggingface_hub` writes, so that every
//! tool reading the cache sees it as a normal download.
//!
//! Files become content-addressed blobs (named by their SHA-256, as the Hub names LFS files),
//! the snapshot is a folder of relative symlinks named by a commit id derived from the content,
//! and `refs/main` names it. Installing the same content twice changes nothing.

use std::path::{Path, PathBuf};

use crate::cache::HubCache;
use crate::error::{CoreError, Result};
use crate::hashing;
use crate::repo_id::RepoId;
use crate::snapshot::{self, DEFAULT_REF};
use crate::snapshot_writer::SnapshotWriter;

/// Installs the files of `folder` (recursively) as `repo_id` and returns the snapshot's commit.
pub fn install_folder(cache: &HubCache, repo_id: &RepoId, folder: &Path) -> Result<String> {
    let mut files: Vec<(String, PathBuf, String)> = snapshot::snapshot_files(folder)
        .into_iter()
        .filter(|f| !f.is_broken_link())
        .map(|f| {
            let sha =
                hashing::sha256_file(&f.path).map_err(|e| CoreError::io("reading", &f.path, e))?;
            Ok((f.name, f.path, sha))
        })
        .collect::<Result<_>>()?;
    files.sort();
    // A content-derived commit id: the same files always give the same snapshot.
    let listing: String = files
        .iter()
        .map(|(name, _, sha)| format!("{name}\0{sha}\n"))
        .collect();
    let commit = hashing::sha1_hex(listing.as_bytes());

    let writer = SnapshotWriter::new(cache, repo_id, &commit);
    writer.create()?;
    for (name, path, sha) in &files {
        writer.copy_blob(path, sha)?;
        writer.link(name, sha)?;
    }
    writer.write_ref(DEFAULT_REF)?;
    Ok(commit)
}

#[cfg(test)]
mod tests {
    use std::fs;

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
