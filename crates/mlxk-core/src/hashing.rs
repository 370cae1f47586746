//! Content hashes as the Hub names content: SHA-256 for LFS files, Git blob ids (SHA-1 of
//! `blob <size>\0` and the bytes) for the rest. Pull, push, `health --deep`, workspaces and
//! install all hash through here, streaming, so a 10 GB file never sits in memory.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Bytes read per step.
const BUFFER: usize = 1 << 20;

/// Hashes fed piece by piece (a download as it arrives, a file as it is read).
pub struct ContentHasher {
    sha256: Option<Sha256>,
    git_blob: Option<Sha1>,
}

/// What a [`ContentHasher`] computed, lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub sha256: Option<String>,
    pub git_blob: Option<String>,
}

impl ContentHasher {
    pub fn sha256() -> Self {
        ContentHasher {
            sha256: Some(Sha256::new()),
            git_blob: None,
        }
    }

    /// The Git blob id of `size` bytes to come.
    pub fn git_blob(size: u64) -> Self {
        let mut git = Sha1::new();
        git.update(format!("blob {size}\0").as_bytes());
        ContentHasher {
            sha256: None,
            git_blob: Some(git),
        }
    }

    /// Both at once, in one read (a push needs both names of every file).
    pub fn both(size: u64) -> Self {
        ContentHasher {
            sha256: Some(Sha256::new()),
            ..ContentHasher::git_blob(size)
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        if let Some(h) = &mut self.sha256 {
            h.update(bytes);
        }
        if let Some(h) = &mut self.git_blob {
            h.update(bytes);
        }
    }

    pub fn finish(self) -> Digests {
        Digests {
            sha256: self.sha256.map(|h| hex(&h.finalize())),
            git_blob: self.git_blob.map(|h| hex(&h.finalize())),
        }
    }

    /// Reads the file at `path` to its end, telling `progress` how many bytes each step read.
    pub fn read_file(mut self, path: &Path, mut progress: impl FnMut(u64)) -> io::Result<Digests> {
        let mut file = File::open(path)?;
        let mut buffer = vec![0u8; BUFFER];
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                return Ok(self.finish());
            }
            self.update(&buffer[..read]);
            progress(read as u64);
        }
    }
}

pub fn sha256_file(path: &Path) -> io::Result<String> {
    let digests = ContentHasher::sha256().read_file(path, |_| {})?;
    Ok(digests.sha256.expect("asked for"))
}

pub fn git_blob_file(path: &Path) -> io::Result<String> {
    let size = std::fs::metadata(path)?.len();
    let digests = ContentHasher::git_blob(size).read_file(path, |_| {})?;
    Ok(digests.git_blob.expect("asked for"))
}

/// SHA-256 of bytes in memory (an index of hashes, not a file).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-1 of bytes in memory: the 40-hex-digit shape of a commit id.
pub fn sha1_hex(bytes: &[u8]) -> String {
    hex(&Sha1::digest(bytes))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_match_sha256sum_and_git_hash_object() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "hello\n").unwrap();
        // `sha256sum f` and `git hash-object f`.
        assert_eq!(
            sha256_file(&path).unwrap(),
            "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03"
        );
        assert_eq!(
            git_blob_file(&path).unwrap(),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        let mut seen = 0;
        let both = ContentHasher::both(6)
            .read_file(&path, |n| seen += n)
            .unwrap();
        assert_eq!(seen, 6);
        assert_eq!(both.sha256.unwrap(), sha256_file(&path).unwrap());
        assert_eq!(both.git_blob.unwrap(), git_blob_file(&path).unwrap());
        let mut pieces = ContentHasher::sha256();
        pieces.update(b"hel");
        pieces.update(b"lo\n");
        assert_eq!(pieces.finish().sha256, Some(sha256_hex(b"hello\n")));
    }
}
