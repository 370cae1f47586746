//! Cheap integrity checks on weight files that read only their first bytes.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use safetensors::tensor::Metadata;

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
    Ok(SafetensorsSummary {
        tensor_count: metadata.tensors().len(),
        tensor_names: metadata.offset_keys(),
    })
}

/// Whether a file starts with the GGUF magic.
pub fn is_gguf(path: &Path) -> io::Result<bool> {
    let mut magic = [0u8; 4];
    File::open(path)?.read_exact(&mut magic)?;
    Ok(&magic == b"GGUF")
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
