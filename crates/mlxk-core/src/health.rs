//! Integrity of a model snapshot, with a precise reason for every problem.
//!
//! Every check reads metadata or the first bytes of a file only, so checking a whole cache is
//! fast. Each problem names the file it concerns; `reason()` is the first, most serious one.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::metadata::{JsonFile, SnapshotMetadata};
use crate::snapshot::SnapshotFile;
use crate::weights;

const WEIGHT_EXTENSIONS: &[&str] = &[".safetensors", ".gguf", ".bin", ".pth", ".pt", ".npz"];
const PARTIAL_SUFFIXES: &[&str] = &[".incomplete", ".part", ".partial", ".tmp", ".download"];
const INDEX_FILES: &[&str] = &[
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
];
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "tiktoken.model",
    "tekken.json",
];

/// How hard to look. `Quick` reads metadata and the first and last bytes of files (fast enough
/// to run on every `list`); `Deep` also parses every JSON file in full and checks each blob's
/// content against the hash it is named by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckDepth {
    #[default]
    Quick,
    Deep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
pub enum ProblemCode {
    NoSnapshot,
    SnapshotMissing,
    IncompleteDownload,
    BrokenSymlink,
    ConfigMissing,
    ConfigInvalid,
    NoWeights,
    IndexInvalid,
    MissingShard,
    EmptyFile,
    LfsPointer,
    SafetensorsInvalid,
    GgufInvalid,
    TokenizerMissing,
    TokenizerInvalid,
    ContentMismatch,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub struct HealthProblem {
    pub code: ProblemCode,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthReport {
    pub problems: Vec<HealthProblem>,
}

impl HealthReport {
    pub fn is_healthy(&self) -> bool {
        self.problems.is_empty()
    }

    /// One sentence: the first (most serious) problem, or that all checks passed.
    pub fn reason(&self) -> String {
        match self.problems.first() {
            None => "all integrity checks passed".to_string(),
            Some(first) if self.problems.len() == 1 => first.message.clone(),
            Some(first) => format!("{} (and {} more)", first.message, self.problems.len() - 1),
        }
    }

    pub fn single(code: ProblemCode, message: impl Into<String>) -> Self {
        HealthReport {
            problems: vec![HealthProblem {
                code,
                message: message.into(),
            }],
        }
    }
}

/// Checks a snapshot's files. `incomplete_blobs` are the model's `blobs/*.incomplete` files:
/// downloads that were interrupted or are still running.
pub fn check_snapshot(
    snapshot_dir: &Path,
    files: &[SnapshotFile],
    metadata: &SnapshotMetadata,
    incomplete_blobs: &[String],
    depth: CheckDepth,
) -> HealthReport {
    let mut check = SnapshotCheck {
        dir: snapshot_dir,
        files,
        metadata,
        present: files
            .iter()
            .filter(|f| !f.is_broken_link())
            .map(|f| f.name.as_str())
            .collect(),
        problems: Vec::new(),
    };
    check.downloads(incomplete_blobs);
    check.config_and_weights();
    check.shard_index();
    check.file_contents();
    check.tokenizer(depth);
    if depth == CheckDepth::Deep {
        check.content_hashes();
    }
    let mut problems = check.problems;
    problems.sort_by_key(|p| p.code);
    HealthReport { problems }
}

/// One snapshot being checked, step by step; each step adds the problems it finds.
struct SnapshotCheck<'a> {
    dir: &'a Path,
    files: &'a [SnapshotFile],
    metadata: &'a SnapshotMetadata,
    /// Names of the files that resolve to content.
    present: BTreeSet<&'a str>,
    problems: Vec<HealthProblem>,
}

impl SnapshotCheck<'_> {
    fn add(&mut self, code: ProblemCode, message: String) {
        self.problems.push(HealthProblem { code, message });
    }

    fn intact_files(&self) -> impl Iterator<Item = &SnapshotFile> {
        self.files.iter().filter(|f| !f.is_broken_link())
    }

    /// Interrupted or running downloads, and links to blobs that are gone.
    fn downloads(&mut self, incomplete_blobs: &[String]) {
        for blob in incomplete_blobs {
            self.add(
                ProblemCode::IncompleteDownload,
                format!("partial download in blobs/{blob} (interrupted or still running)"),
            );
        }
        for file in self.files {
            if file.is_broken_link() {
                self.add(
                    ProblemCode::BrokenSymlink,
                    format!("{} links to a blob that does not exist", file.name),
                );
            } else if PARTIAL_SUFFIXES.iter().any(|s| file.name.ends_with(s)) {
                self.add(
                    ProblemCode::IncompleteDownload,
                    format!("partial file {}", file.name),
                );
            }
        }
    }

    /// A config with settings (a GGUF file carries its own), and weights of some format.
    fn config_and_weights(&mut self) {
        let weights: Vec<&SnapshotFile> = self
            .intact_files()
            .filter(|f| is_weight_file(&f.name))
            .collect();
        let gguf_only = !weights.is_empty() && weights.iter().all(|f| f.name.ends_with(".gguf"));
        let no_weights = weights.is_empty();
        let metadata = self.metadata;
        match &metadata.config {
            JsonFile::Valid(Value::Object(map)) if !map.is_empty() => {}
            JsonFile::Valid(_) => self.add(
                ProblemCode::ConfigInvalid,
                "config.json is not a JSON object with settings".into(),
            ),
            JsonFile::Absent if gguf_only => {}
            JsonFile::Absent => {
                self.add(ProblemCode::ConfigMissing, "config.json is missing".into())
            }
            JsonFile::Invalid(e) => self.add(
                ProblemCode::ConfigInvalid,
                format!("config.json is not valid JSON: {e}"),
            ),
        }
        if no_weights {
            self.add(
                ProblemCode::NoWeights,
                "no model weights found (*.safetensors, *.gguf, *.bin)".into(),
            );
        }
    }

    /// Every shard a weight index names is there.
    fn shard_index(&mut self) {
        let Some(index_name) = INDEX_FILES
            .iter()
            .find(|name| self.present.contains(**name))
        else {
            return;
        };
        let index = match read_json(self.dir, index_name, &self.present) {
            Ok(Some(index)) => index,
            Ok(None) => return,
            Err(e) => {
                return self.add(
                    ProblemCode::IndexInvalid,
                    format!("{index_name} is not valid JSON: {e}"),
                )
            }
        };
        let Some(map) = index.get("weight_map").and_then(Value::as_object) else {
            return self.add(
                ProblemCode::IndexInvalid,
                format!("{index_name} has no weight_map"),
            );
        };
        let shards: BTreeSet<&str> = map.values().filter_map(Value::as_str).collect();
        let missing: Vec<&str> = shards
            .iter()
            .copied()
            .filter(|shard| !self.present.contains(shard))
            .collect();
        if !missing.is_empty() {
            self.add(
                ProblemCode::MissingShard,
                format!(
                    "{} of {} weight shards missing: {}",
                    missing.len(),
                    shards.len(),
                    missing.join(", ")
                ),
            );
        }
    }

    /// Empty files, LFS pointers, and weight headers that do not parse.
    fn file_contents(&mut self) {
        let mut found = Vec::new();
        let metadata = self.metadata;
        for file in self.intact_files() {
            let size = file.size.unwrap_or(0);
            let checked = is_weight_file(&file.name) || file.name.ends_with(".json");
            if size == 0 {
                if checked {
                    found.push((ProblemCode::EmptyFile, format!("{} is empty", file.name)));
                }
                continue;
            }
            if !metadata.parsed(&file.name) && weights::is_lfs_pointer(&file.path, size) {
                found.push((
                    ProblemCode::LfsPointer,
                    format!("{} is a Git LFS pointer, not the real file", file.name),
                ));
                continue;
            }
            if file.name.ends_with(".safetensors") {
                if let Err(why) = weights::check_safetensors(&file.path, size) {
                    found.push((
                        ProblemCode::SafetensorsInvalid,
                        format!("{}: {why}", file.name),
                    ));
                }
            } else if file.name.ends_with(".gguf") {
                if let Err(why) = weights::check_gguf(&file.path) {
                    found.push((ProblemCode::GgufInvalid, format!("{}: {why}", file.name)));
                }
            }
        }
        for (code, message) in found {
            self.add(code, message);
        }
    }

    /// A tokenizer config comes with a tokenizer, and `tokenizer.json` is JSON (read whole
    /// only in a deep check).
    fn tokenizer(&mut self, depth: CheckDepth) {
        let metadata = self.metadata;
        if self.present.contains("tokenizer_config.json") {
            if let JsonFile::Invalid(e) = &metadata.tokenizer_config {
                let message = format!("tokenizer_config.json is not valid JSON: {e}");
                self.add(ProblemCode::TokenizerInvalid, message);
            }
            if !TOKENIZER_FILES
                .iter()
                .any(|name| self.present.contains(name))
            {
                self.add(
                    ProblemCode::TokenizerMissing,
                    "tokenizer_config.json exists but no tokenizer file (tokenizer.json, tokenizer.model...)".into(),
                );
            }
        }
        if self.present.contains("tokenizer.json") {
            let path = self.dir.join("tokenizer.json");
            let checked = match depth {
                CheckDepth::Quick => weights::looks_like_json_object(&path),
                CheckDepth::Deep => validate_json(&path),
            };
            if let Err(e) = checked {
                self.add(
                    ProblemCode::TokenizerInvalid,
                    format!("tokenizer.json is not valid JSON: {e}"),
                );
            }
        }
    }

    /// Each file's content against the name of its blob (the deep check).
    fn content_hashes(&mut self) {
        let mismatches: Vec<String> = self
            .intact_files()
            .filter_map(|file| {
                weights::verify_blob_hash(&file.path)
                    .err()
                    .map(|why| format!("{}: {why}", file.name))
            })
            .collect();
        for message in mismatches {
            self.add(ProblemCode::ContentMismatch, message);
        }
    }
}

/// Checks a model folder outside the cache (a conversion result, a workspace).
pub fn check_folder(folder: &Path, depth: CheckDepth) -> HealthReport {
    let files = crate::snapshot::snapshot_files(folder);
    let metadata = SnapshotMetadata::read(folder, &files);
    check_snapshot(folder, &files, &metadata, &[], depth)
}

pub fn is_weight_file(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    WEIGHT_EXTENSIONS.iter().any(|ext| base.ends_with(ext))
        && base != "training_args.bin"
        && !base.starts_with("optimizer")
}

/// Reads a small JSON file of the snapshot; `Ok(None)` when it is not there.
pub(crate) fn read_json(
    snapshot_dir: &Path,
    name: &str,
    present: &BTreeSet<&str>,
) -> Result<Option<Value>, String> {
    if !present.contains(name) {
        return Ok(None);
    }
    let text = fs::read(snapshot_dir.join(name)).map_err(|e| e.to_string())?;
    serde_json::from_slice(&text)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Checks that a (possibly large) file is well-formed JSON without building it in memory.
fn validate_json(path: &Path) -> Result<(), String> {
    let file = fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = std::io::BufReader::with_capacity(1 << 16, file);
    serde_json::from_reader::<_, serde::de::IgnoredAny>(reader)
        .map(|_| ())
        .map_err(|e| e.to_string())
}
