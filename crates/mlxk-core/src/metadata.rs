//! The small JSON files of a snapshot that several checks need, read once.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::snapshot::SnapshotFile;

#[derive(Debug, Clone, PartialEq)]
pub enum JsonFile {
    Absent,
    Invalid(String),
    Valid(Value),
}

impl JsonFile {
    pub fn value(&self) -> Option<&Value> {
        match self {
            JsonFile::Valid(value) => Some(value),
            _ => None,
        }
    }

    fn read(snapshot_dir: &Path, name: &str, files: &[SnapshotFile]) -> Self {
        if !files.iter().any(|f| f.name == name && !f.is_broken_link()) {
            return JsonFile::Absent;
        }
        match fs::read(snapshot_dir.join(name)) {
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(value) => JsonFile::Valid(value),
                Err(e) => JsonFile::Invalid(e.to_string()),
            },
            Err(e) => JsonFile::Invalid(e.to_string()),
        }
    }
}

/// `config.json` and `tokenizer_config.json` of a snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotMetadata {
    pub config: JsonFile,
    pub tokenizer_config: JsonFile,
}

impl SnapshotMetadata {
    pub fn read(snapshot_dir: &Path, files: &[SnapshotFile]) -> Self {
        SnapshotMetadata {
            config: JsonFile::read(snapshot_dir, "config.json", files),
            tokenizer_config: JsonFile::read(snapshot_dir, "tokenizer_config.json", files),
        }
    }

    pub fn absent() -> Self {
        SnapshotMetadata {
            config: JsonFile::Absent,
            tokenizer_config: JsonFile::Absent,
        }
    }

    /// Whether `name` is one of these files and parsed: it cannot then be a Git LFS pointer.
    pub fn parsed(&self, name: &str) -> bool {
        match name {
            "config.json" => self.config.value().is_some(),
            "tokenizer_config.json" => self.tokenizer_config.value().is_some(),
            _ => false,
        }
    }
}
