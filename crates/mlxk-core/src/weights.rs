//! Cheap integrity checks on weight files that read only their first bytes.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use safetensors::tensor::Metadata;

use crate::hashing;

/// The first line of a Git LFS pointer file (what a clone without LFS leaves behind).
const LFS_POINTER_PREFIX: &[u8] = b"version https://git-lfs.github.com/spec/v1";
/// LFS pointers are about 130 bytes; anything larger is real content.
const LFS_POINTER_MAX_LEN: u64 = 1024;
/// safetensors caps its JSON header at 100 MB; a larger length means a corrupt file.
const SAFETENSORS_MAX_HEADER: u64 = 100_000_000;

/// Whether the file is a Git LFS pointer instead of the content it stands for.
pub fn is_lfs_pointer(path: &Path, size: u64) -> bool {
    if size > LFS_POINTER_MAX_LEN {
        return false;
    }
    let mut head = [0u8; LFS_POINTER_PREFIX.len()];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head == LFS_POINTER_PREFIX)
}

/// What a safetensors header says about the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsSummary {
    pub tensor_count: usize,
    pub tensor_names: Vec<String>,
}

/// Parses the safetensors header and checks that the data it describes fills the file exactly:
/// this catches truncated downloads, which only reading the header would miss.
pub fn check_safetensors(path: &Path, file_len: u64) -> Result<SafetensorsSummary, String> {
    let mut file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| format!("file is {file_len} bytes, too short for a safetensors header"))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > SAFETENSORS_MAX_HEADER || 8 + header_len > file_len {
        return Err(format!(
            "header claims {header_len} bytes but the file is {file_len} bytes (truncated or not safetensors)"
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| format!("cannot read header: {e}"))?;
    let metadata: Metadata =
        serde_json::from_slice(&header).map_err(|e| format!("header does not parse: {e}"))?;
    let expected = 8 + header_len + metadata.data_len() as u64;
    if expected != file_len {
        let what = if file_len < expected {
            "truncated"
        } else {
            "has trailing bytes"
        };
        return Err(format!(
            "{what}: the header describes {expected} bytes but the file is {file_len} bytes"
        ));
    }
    let tensors = metadata.tensors();
    if tensors.is_empty() {
        return Err("the header describes no tensors".into());
    }
    // The first by name, so the message does not depend on the header's map order.
    if let Some(empty) = tensors
        .iter()
        .filter(|(_, info)| info.shape.contains(&0))
        .map(|(name, _)| name)
        .min()
    {
        return Err(format!(
            "tensor {empty} has a zero-size dimension (no model uses an empty weight)"
        ));
    }
    Ok(SafetensorsSummary {
        tensor_count: tensors.len(),
        tensor_names: metadata.offset_keys(),
    })
}

/// Whether a file starts with the GGUF magic.
pub fn is_gguf(path: &Path) -> io::Result<bool> {
    let mut magic = [0u8; 4];
    File::open(path)?.read_exact(&mut magic)?;
    Ok(&magic == b"GGUF")
}

/// Reads a GGUF file's header, metadata and tensor descriptors (never the tensor data) and
/// checks that it describes a usable model: at least one tensor, no dimension of size zero,
/// every tensor's data inside the file (the reader checks the ranges as it opens the file).
pub fn check_gguf(path: &Path) -> Result<(), String> {
    if !is_gguf(path).map_err(|e| format!("cannot read: {e}"))? {
        return Err("does not start with the GGUF magic".into());
    }
    let reader = gguf_rs_lib::reader::file_reader::open_gguf_file(path)
        .map_err(|e| format!("the GGUF header or tensor table is invalid: {e}"))?;
    let tensors = reader.tensor_infos();
    if tensors.is_empty() {
        return Err("the GGUF file describes no tensors".into());
    }
    if let Some(empty) = tensors.iter().find(|t| t.shape().dims().contains(&0)) {
        return Err(format!(
            "tensor {} has a zero-size dimension (no model uses an empty weight)",
            empty.name()
        ));
    }
    Ok(())
}

/// A cheap check that a file holds one JSON object: its first and last non-blank bytes are
/// `{` and `}`. Catches truncated downloads and error pages without parsing megabytes.
pub fn looks_like_json_object(path: &Path) -> Result<(), String> {
    let mut file = File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut head = vec![0u8; len.min(256) as usize];
    file.read_exact(&mut head).map_err(|e| e.to_string())?;
    file.seek(SeekFrom::Start(len.saturating_sub(256)))
        .map_err(|e| e.to_string())?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).map_err(|e| e.to_string())?;
    let first = head.iter().find(|b| !b.is_ascii_whitespace());
    let last = tail.iter().rev().find(|b| !b.is_ascii_whitespace());
    match (first, last) {
        (Some(b'{'), Some(b'}')) => Ok(()),
        (Some(b'{'), _) => Err("it ends before its closing '}' (truncated?)".into()),
        _ => Err("it does not start with '{'".into()),
    }
}

/// Checks a snapshot file's content against the name of the blob it links to: the cache names
/// LFS blobs by their SHA-256 and regular files by their Git blob SHA-1. Files whose blob name
/// is neither (or that are not links) have nothing to check against.
pub fn verify_blob_hash(path: &Path) -> Result<(), String> {
    let Ok(target) = fs::read_link(path) else {
        return Ok(());
    };
    let Some(name) = target.file_name().and_then(|n| n.to_str()) else {
        return Ok(());
    };
    if !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(());
    }
    let actual = match name.len() {
        64 => hashing::sha256_file(path),
        40 => hashing::git_blob_file(path),
        _ => return Ok(()),
    }
    .map_err(|e| e.to_string())?;
    if actual.eq_ignore_ascii_case(name) {
        Ok(())
    } else {
        Err(format!(
            "content hash {actual} does not match its blob name {name}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_safetensors(path: &Path, data_len: usize, keep: usize) {
        let header = format!(
            r#"{{"w":{{"dtype":"F32","shape":[{}],"data_offsets":[0,{}]}}}}"#,
            data_len / 4,
            data_len
        );
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(vec![0u8; data_len]);
        bytes.truncate(8 + header.len() + keep);
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn accepts_whole_file_and_rejects_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        write_safetensors(&path, 64, 64);
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(check_safetensors(&path, len).unwrap().tensor_names, ["w"]);

        write_safetensors(&path, 64, 40);
        let len = std::fs::metadata(&path).unwrap().len();
        let err = check_safetensors(&path, len).unwrap_err();
        assert!(err.starts_with("truncated"), "{err}");
    }

    #[test]
    fn rejects_garbage_and_inconsistent_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.safetensors");
        std::fs::write(&path, b"not a safetensors file at all").unwrap();
        assert!(check_safetensors(&path, 29).is_err());

        let header = r#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}"#;
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend([0u8; 16]);
        std::fs::write(&path, &bytes).unwrap();
        assert!(check_safetensors(&path, bytes.len() as u64).is_err());
    }

    fn write_header_only(path: &Path, header: &str, data_len: usize) -> u64 {
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(header.as_bytes());
        bytes.extend(vec![0u8; data_len]);
        std::fs::write(path, &bytes).unwrap();
        bytes.len() as u64
    }

    #[test]
    fn rejects_files_that_hold_no_usable_tensor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let len = write_header_only(&path, r#"{"__metadata__":{"format":"pt"}}"#, 0);
        let err = check_safetensors(&path, len).unwrap_err();
        assert!(err.contains("no tensors"), "{err}");
        let len = write_header_only(&path, "{}", 0);
        assert!(check_safetensors(&path, len).is_err());

        let header = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[0,4],"data_offsets":[8,8]}}"#;
        let len = write_header_only(&path, header, 8);
        let err = check_safetensors(&path, len).unwrap_err();
        assert!(err.contains("tensor b has a zero-size dimension"), "{err}");
    }

    #[test]
    fn json_shape_check_catches_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        std::fs::write(&path, "  {\"a\": [1, 2]}\n").unwrap();
        assert!(looks_like_json_object(&path).is_ok());
        std::fs::write(&path, "{\"a\": [1, 2").unwrap();
        assert!(looks_like_json_object(&path).is_err());
        std::fs::write(&path, "<html></html>").unwrap();
        assert!(looks_like_json_object(&path).is_err());
    }

    #[test]
    fn blob_hashes_are_checked_against_their_names() {
        let dir = tempfile::tempdir().unwrap();
        let content = b"hello world";
        let sha256 = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9";
        // git hash-object of the same content
        let git_sha1 = "95d09f2b10159347eece71399a7e2e907ea3df4f";
        for name in [sha256, git_sha1] {
            std::fs::write(dir.path().join(name), content).unwrap();
            let link = dir.path().join(format!("link-{}", name.len()));
            std::os::unix::fs::symlink(name, &link).unwrap();
            assert_eq!(verify_blob_hash(&link), Ok(()), "{name}");
            std::fs::write(dir.path().join(name), b"hello world!").unwrap();
            assert!(verify_blob_hash(&link).is_err(), "{name}");
        }
    }

    #[test]
    fn detects_lfs_pointers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let pointer = "version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n";
        std::fs::write(&path, pointer).unwrap();
        assert!(is_lfs_pointer(&path, pointer.len() as u64));
        std::fs::write(&path, "{}").unwrap();
        assert!(!is_lfs_pointer(&path, 2));
    }
}
