//! `pull`: a model from the Hub into the cache, in the layout huggingface_hub writes (blobs
//! named by ETag, relative snapshot symlinks, `refs/<revision>`), so Python tools and mlxk share
//! one cache.
//!
//! Each file downloads into `blobs/<name>.incomplete` and resumes from there with a `Range`
//! request; it is hashed as it arrives (SHA-256 for LFS files, the git blob id otherwise) and
//! only a verified file is renamed into place and linked from the snapshot. A mismatch deletes
//! the partial file. A pull killed midway leaves no snapshot link for unfinished files, so the
//! model reads as unhealthy until the next pull completes it. hf-hub 1.0's `snapshot_download`
//! would do neither the resume nor the verification, hence this module (reqwest, streaming).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::RANGE;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{check, HubClient, HubError, RemoteFile, Result};
use crate::cache::HubCache;
use crate::error::CoreError;
use crate::hashing::{ContentHasher, Digests};
use crate::repo_id::{ModelSpec, RepoId};
use crate::snapshot_writer::SnapshotWriter;

/// Files downloaded at once.
pub const PARALLEL_DOWNLOADS: usize = 4;

/// Formats MLX does not load: skipped when the repository has safetensors weights, unless
/// everything is asked for.
const OTHER_WEIGHT_FORMATS: &[&str] = &[
    ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".onnx", ".ot", ".tflite", ".gguf",
    ".mlmodel", ".npz", ".pb",
];

/// What to pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRequest {
    pub repo: RepoId,
    /// A branch, tag or commit; `main` by default.
    pub revision: Option<String>,
    /// Also fetch weights in formats MLX does not use.
    pub all_files: bool,
}

/// Why a typed name cannot be pulled.
#[derive(Debug, thiserror::Error)]
pub enum PullNameError {
    /// Not a valid model name at all (path tricks, bad characters, a bad revision).
    #[error(transparent)]
    Invalid(#[from] CoreError),
    #[error("'{0}' is not a Hub repository id: pull needs ORG/NAME")]
    NotARepoId(String),
}

/// Where a bare name is looked for on the Hub, as `run` and `show` find it in the cache.
pub const DEFAULT_ORG: &str = "mlx-community";

impl PullRequest {
    /// What `mlxk pull` and the app accept: `ORG/NAME[@REVISION]`, or a bare `NAME`, which
    /// means `mlx-community/NAME`.
    pub fn from_name(
        name: &str,
        all_files: bool,
    ) -> std::result::Result<PullRequest, PullNameError> {
        let spec = ModelSpec::parse(name)?;
        let full = if spec.pattern.contains('/') {
            spec.pattern.clone()
        } else {
            format!("{DEFAULT_ORG}/{}", spec.pattern)
        };
        let repo =
            RepoId::parse(&full).map_err(|_| PullNameError::NotARepoId(spec.pattern.clone()))?;
        Ok(PullRequest {
            repo,
            revision: spec.revision,
            all_files,
        })
    }
}

/// Progress of a pull, for progress bars and JSON lines. `path` names a file of the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PullEvent {
    /// The files to fetch are known; `download_bytes` is what still has to travel.
    Planned {
        commit: String,
        files: Vec<PlannedFile>,
        download_bytes: u64,
    },
    FileStarted {
        path: String,
        size: u64,
        resumed_from: u64,
    },
    Bytes {
        path: String,
        bytes: u64,
    },
    FileFinished {
        path: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedFile {
    pub path: String,
    pub size: u64,
    /// Already complete in the cache.
    pub cached: bool,
}

/// How a pull ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PullOutcome {
    pub repo: String,
    pub commit: String,
    pub snapshot: PathBuf,
    pub files: usize,
    pub downloaded_files: usize,
    pub downloaded_bytes: u64,
    pub skipped: Vec<String>,
}

/// A pull's progress so far, folded from its [`PullEvent`]s: what a window shows (one line per
/// file still to fetch, and a total).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PullProgress {
    pub commit: Option<String>,
    /// Every file of the snapshot, in the order planned.
    pub files: Vec<FileProgress>,
    /// Bytes that have to travel (files already cached and resumed parts excluded).
    pub download_bytes: u64,
    /// Of those, received so far.
    pub received_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileProgress {
    pub path: String,
    pub size: u64,
    /// Bytes of the file present (cached, resumed or received).
    pub done_bytes: u64,
    pub state: FileState,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Complete in the cache before this pull.
    Cached,
    Waiting,
    Downloading,
    /// Received, verified and linked.
    Done,
}

impl PullProgress {
    pub fn apply(&mut self, event: &PullEvent) {
        match event {
            PullEvent::Planned {
                commit,
                files,
                download_bytes,
            } => {
                self.commit = Some(commit.clone());
                self.download_bytes = *download_bytes;
                self.files = files
                    .iter()
                    .map(|f| FileProgress {
                        path: f.path.clone(),
                        size: f.size,
                        done_bytes: if f.cached { f.size } else { 0 },
                        state: if f.cached {
                            FileState::Cached
                        } else {
                            FileState::Waiting
                        },
                    })
                    .collect();
            }
            PullEvent::FileStarted {
                path, resumed_from, ..
            } => {
                if let Some(file) = self.file_mut(path) {
                    file.done_bytes = *resumed_from;
                    file.state = FileState::Downloading;
                }
            }
            PullEvent::Bytes { path, bytes } => {
                self.received_bytes += bytes;
                if let Some(file) = self.file_mut(path) {
                    file.done_bytes += bytes;
                }
            }
            PullEvent::FileFinished { path } => {
                if let Some(file) = self.file_mut(path) {
                    file.done_bytes = file.size;
                    file.state = FileState::Done;
                }
            }
        }
    }

    fn file_mut(&mut self, path: &str) -> Option<&mut FileProgress> {
        self.files.iter_mut().find(|f| f.path == path)
    }
}

/// Pulls a model into `cache`, reporting progress to `on_event`.
pub async fn pull(
    client: &HubClient,
    cache: &HubCache,
    request: &PullRequest,
    cancel: &CancellationToken,
    on_event: &(dyn Fn(PullEvent) + Send + Sync),
) -> Result<PullOutcome> {
    let revision = request.revision.as_deref().unwrap_or("main");
    let info = client.repo_info(&request.repo, revision).await?;
    let commit = info.sha;
    if !is_commit_id(&commit) {
        return Err(HubError::InvalidResponse {
            endpoint: client.endpoint().to_string(),
            reason: format!("the Hub named commit '{commit}', which is not a commit id"),
        });
    }
    let listed = client.list_files(&request.repo, &commit).await?;
    let (files, skipped) = select_files(listed, request.all_files);
    for file in &files {
        check_repo_path(&file.path)?;
        check_blob_name(file.blob_name())?;
    }

    let repo_dir = cache.repo_dir(&request.repo);
    let layout = SnapshotWriter::new(cache, &request.repo, &commit);
    layout.create()?;
    let planned: Vec<PlannedFile> = files
        .iter()
        .map(|f| PlannedFile {
            path: f.path.clone(),
            size: f.size,
            cached: is_complete(&layout, f),
        })
        .collect();
    let download_bytes: u64 = files
        .iter()
        .zip(&planned)
        .filter(|(_, p)| !p.cached)
        .map(|(f, _)| f.size.saturating_sub(partial_len(&layout, f)))
        .sum();
    check_free_space(&repo_dir, download_bytes)?;
    on_event(PullEvent::Planned {
        commit: commit.clone(),
        files: planned.clone(),
        download_bytes,
    });

    let to_fetch: Vec<&RemoteFile> = files
        .iter()
        .zip(&planned)
        .filter(|(_, p)| !p.cached)
        .map(|(f, _)| f)
        .collect();
    let downloaded_files = to_fetch.len();
    let (layout, commit_id) = (&layout, commit.as_str());
    futures_util::stream::iter(to_fetch.into_iter().map(|file| {
        async move {
            let _lock = layout.lock(file.blob_name())?;
            // Another process may have finished it while we waited for the lock.
            if !layout.blob(file.blob_name()).is_file() {
                download(
                    client,
                    &request.repo,
                    commit_id,
                    file,
                    layout,
                    cancel,
                    on_event,
                )
                .await?;
            }
            // Linked as soon as it is complete: an interrupted pull keeps what it finished.
            layout.link(&file.path, file.blob_name())?;
            on_event(PullEvent::FileFinished {
                path: file.path.clone(),
            });
            Ok::<_, HubError>(())
        }
    }))
    .buffer_unordered(PARALLEL_DOWNLOADS)
    .try_collect::<Vec<()>>()
    .await?;

    // Files that were already complete (or whose blob another snapshot shares).
    for file in &files {
        layout.link(&file.path, file.blob_name())?;
    }
    if revision != commit {
        layout.write_ref(revision)?;
    }
    Ok(PullOutcome {
        repo: request.repo.as_str().to_string(),
        commit,
        snapshot: layout.snapshot(),
        files: files.len(),
        downloaded_files,
        downloaded_bytes: download_bytes,
        skipped,
    })
}

/// Everything, except weights in other formats when safetensors exist (unless `all_files`).
fn select_files(files: Vec<RemoteFile>, all_files: bool) -> (Vec<RemoteFile>, Vec<String>) {
    let has_safetensors = files.iter().any(|f| f.path.ends_with(".safetensors"));
    if all_files || !has_safetensors {
        return (files, Vec::new());
    }
    let (keep, skip): (Vec<_>, Vec<_>) = files.into_iter().partition(|f| {
        !OTHER_WEIGHT_FORMATS
            .iter()
            .any(|ext| f.path.to_ascii_lowercase().ends_with(ext))
    });
    (keep, skip.into_iter().map(|f| f.path).collect())
}

/// A repository path from the Hub must stay inside the snapshot folder.
fn check_repo_path(path: &str) -> Result<()> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\\')
        || path
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(HubError::InvalidInput(format!(
            "the Hub listed an unsafe file path '{path}'; nothing was written for it"
        )));
    }
    Ok(())
}

fn check_blob_name(name: &str) -> Result<()> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(HubError::InvalidInput(format!(
            "the Hub gave an unexpected file hash '{name}'"
        )));
    }
    Ok(())
}

fn is_commit_id(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check_free_space(dir: &Path, needed: u64) -> Result<()> {
    let available =
        fs4::available_space(dir).map_err(|e| HubError::io("measuring free space", dir, e))?;
    // A little room beyond the files themselves (refs, links, the filesystem's own blocks).
    let wanted = needed + needed / 100 + 1_000_000;
    if needed > 0 && wanted > available {
        return Err(HubError::InsufficientDisk {
            path: dir.display().to_string(),
            needed: wanted,
            available,
        });
    }
    Ok(())
}

/// Bytes of the file an earlier pull left in `blobs/<name>.incomplete`.
fn partial_len(layout: &SnapshotWriter, file: &RemoteFile) -> u64 {
    fs::metadata(layout.partial(file.blob_name())).map_or(0, |m| m.len())
}

/// The blob is there with the size the Hub lists (its hash was checked when it arrived).
fn is_complete(layout: &SnapshotWriter, file: &RemoteFile) -> bool {
    fs::metadata(layout.blob(file.blob_name())).is_ok_and(|m| m.len() == file.size)
}

/// Hashes a download the way the Hub names it: SHA-256 for LFS files, the Git blob id else.
fn hasher_for(file: &RemoteFile) -> ContentHasher {
    match file.sha256 {
        Some(_) => ContentHasher::sha256(),
        None => ContentHasher::git_blob(file.size),
    }
}

/// The one hash [`hasher_for`] computed.
fn the_digest(digests: Digests) -> String {
    digests
        .sha256
        .or(digests.git_blob)
        .expect("one hash was asked for")
}

/// Fetches one file into `blobs/<name>.incomplete` (resuming what is there), verifies it and
/// renames it into place.
async fn download(
    client: &HubClient,
    repo: &RepoId,
    commit: &str,
    file: &RemoteFile,
    layout: &SnapshotWriter,
    cancel: &CancellationToken,
    on_event: &(dyn Fn(PullEvent) + Send + Sync),
) -> Result<()> {
    let partial = layout.partial(file.blob_name());
    let (response, have) = request_rest(client, repo, commit, file, layout).await?;
    on_event(PullEvent::FileStarted {
        path: file.path.clone(),
        size: file.size,
        resumed_from: have,
    });
    let mut blob = PartialBlob::open(file, partial.clone(), have)?;
    blob.receive(client, response, cancel, on_event).await?;
    let PartialBlob {
        received,
        hasher,
        out,
        ..
    } = blob;
    drop(out);
    if received < file.size {
        // The connection ended early: keep the prefix for the next pull to resume.
        return Err(HubError::Network {
            endpoint: client.endpoint().to_string(),
            reason: format!(
                "{} ended after {received} of {} bytes (run pull again to resume)",
                file.path, file.size
            ),
        });
    }
    let actual = the_digest(hasher.finish());
    let expected = file.sha256.clone().unwrap_or_else(|| file.git_oid.clone());
    if !actual.eq_ignore_ascii_case(&expected) {
        let _ = fs::remove_file(&partial);
        return Err(HubError::HashMismatch {
            path: file.path.clone(),
            expected,
            actual,
        });
    }
    Ok(layout.complete_blob(file.blob_name())?)
}

/// Asks for what the partial file lacks (a Range request), or for the whole file when there
/// is nothing to resume or the Hub cannot resume it; returns the response and the bytes kept.
async fn request_rest(
    client: &HubClient,
    repo: &RepoId,
    commit: &str,
    file: &RemoteFile,
    layout: &SnapshotWriter,
) -> Result<(reqwest::Response, u64)> {
    let partial = layout.partial(file.blob_name());
    let mut have = partial_len(layout, file);
    if have > file.size {
        // Longer than the file can be: not a prefix of it.
        fs::remove_file(&partial).map_err(|e| HubError::io("removing", &partial, e))?;
        have = 0;
    }
    let url = client.resolve_url(repo, commit, &file.path);
    let mut request = client.get(&url);
    if have > 0 {
        request = request.header(RANGE, format!("bytes={have}-"));
    }
    let response = client.send(request).await?;
    let response = if response.status() == StatusCode::RANGE_NOT_SATISFIABLE {
        // The partial file is complete or stale: start over.
        have = 0;
        client.send(client.get(&url)).await?
    } else {
        response
    };
    let response = check(response, repo, commit, Some(&file.path), client.endpoint()).await?;
    if response.status() != StatusCode::PARTIAL_CONTENT {
        have = 0;
    }
    Ok((response, have))
}

/// A download in `blobs/<name>.incomplete`, hashed as it grows.
struct PartialBlob<'a> {
    file: &'a RemoteFile,
    path: PathBuf,
    out: File,
    /// Bytes the partial file holds.
    received: u64,
    hasher: ContentHasher,
}

impl<'a> PartialBlob<'a> {
    /// Opens the partial file keeping its first `have` bytes (hashed again), or emptied.
    fn open(file: &'a RemoteFile, path: PathBuf, have: u64) -> Result<Self> {
        let mut hasher = hasher_for(file);
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| HubError::io("opening", &path, e))?;
        if have == 0 {
            out.set_len(0)
                .map_err(|e| HubError::io("truncating", &path, e))?;
        } else {
            hash_prefix(&path, have, &mut hasher)?;
        }
        Ok(PartialBlob {
            file,
            path,
            out,
            received: have,
            hasher,
        })
    }

    /// Appends the body as it arrives. More than the Hub listed is a mismatch (the partial
    /// file is discarded); a body that ends early leaves the prefix to resume.
    async fn receive(
        &mut self,
        client: &HubClient,
        response: reqwest::Response,
        cancel: &CancellationToken,
        on_event: &(dyn Fn(PullEvent) + Send + Sync),
    ) -> Result<()> {
        let file = self.file;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            if cancel.is_cancelled() {
                return Err(HubError::Cancelled);
            }
            let chunk = chunk.map_err(|e| client.network(&e))?;
            self.received += chunk.len() as u64;
            if self.received > file.size {
                let _ = fs::remove_file(&self.path);
                return Err(HubError::HashMismatch {
                    path: file.path.clone(),
                    expected: format!("{} bytes", file.size),
                    actual: format!("more than {} bytes", file.size),
                });
            }
            self.out
                .write_all(&chunk)
                .map_err(|e| HubError::io("writing", &self.path, e))?;
            self.hasher.update(&chunk);
            on_event(PullEvent::Bytes {
                path: file.path.clone(),
                bytes: chunk.len() as u64,
            });
        }
        self.out
            .sync_all()
            .map_err(|e| HubError::io("writing", &self.path, e))
    }
}

/// Feeds the first `len` bytes already on disk to the hasher (a resumed download).
fn hash_prefix(path: &Path, len: u64, hasher: &mut ContentHasher) -> Result<()> {
    let mut file = File::open(path).map_err(|e| HubError::io("reading", path, e))?;
    let mut left = len;
    let mut buffer = vec![0u8; 1 << 20];
    while left > 0 {
        let want = buffer.len().min(left as usize);
        let n = file
            .read(&mut buffer[..want])
            .map_err(|e| HubError::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pull_name_is_org_slash_name_or_a_bare_name_with_an_optional_revision() {
        let request = PullRequest::from_name("org/model@v1", false).unwrap();
        assert_eq!(
            (request.repo.as_str(), request.revision.as_deref()),
            ("org/model", Some("v1"))
        );
        let bare = PullRequest::from_name("SmolLM2-135M-Instruct@main", false).unwrap();
        assert_eq!(
            (bare.repo.as_str(), bare.revision.as_deref()),
            ("mlx-community/SmolLM2-135M-Instruct", Some("main"))
        );
        assert!(matches!(
            PullRequest::from_name("org/a--b", false),
            Err(PullNameError::NotARepoId(_))
        ));
        assert!(matches!(
            PullRequest::from_name("../etc", false),
            Err(PullNameError::Invalid(_))
        ));
    }

    #[test]
    fn progress_folds_events_per_file_and_in_total() {
        let mut progress = PullProgress::default();
        progress.apply(&PullEvent::Planned {
            commit: "c".repeat(40),
            files: vec![
                PlannedFile {
                    path: "config.json".into(),
                    size: 10,
                    cached: true,
                },
                PlannedFile {
                    path: "model.safetensors".into(),
                    size: 100,
                    cached: false,
                },
            ],
            download_bytes: 60,
        });
        progress.apply(&PullEvent::FileStarted {
            path: "model.safetensors".into(),
            size: 100,
            resumed_from: 40,
        });
        progress.apply(&PullEvent::Bytes {
            path: "model.safetensors".into(),
            bytes: 25,
        });
        let states: Vec<_> = progress
            .files
            .iter()
            .map(|f| (f.state, f.done_bytes))
            .collect();
        assert_eq!(
            states,
            [(FileState::Cached, 10), (FileState::Downloading, 65)]
        );
        assert_eq!((progress.received_bytes, progress.download_bytes), (25, 60));
        progress.apply(&PullEvent::FileFinished {
            path: "model.safetensors".into(),
        });
        assert_eq!(progress.files[1].state, FileState::Done);
        assert_eq!(progress.files[1].done_bytes, 100);
    }

    use super::*;

    fn file(path: &str) -> RemoteFile {
        RemoteFile {
            path: path.into(),
            size: 1,
            git_oid: "ab".into(),
            sha256: None,
        }
    }

    #[test]
    fn other_weight_formats_are_skipped_only_next_to_safetensors() {
        let files = vec![
            file("config.json"),
            file("model.safetensors"),
            file("pytorch_model.bin"),
        ];
        let (keep, skipped) = select_files(files.clone(), false);
        assert_eq!(keep.len(), 2);
        assert_eq!(skipped, vec!["pytorch_model.bin"]);
        assert_eq!(select_files(files, true).0.len(), 3);
        let (keep, _) = select_files(vec![file("config.json"), file("model.bin")], false);
        assert_eq!(keep.len(), 2, "no safetensors: keep what there is");
    }

    #[test]
    fn unsafe_paths_from_the_hub_are_refused() {
        for bad in ["../x", "a/../../x", "/etc/passwd", "a//b", "", "a\\b"] {
            assert!(check_repo_path(bad).is_err(), "{bad}");
        }
        assert!(check_repo_path("sub/dir/model.safetensors").is_ok());
        assert!(check_blob_name("../../x").is_err());
    }

    #[test]
    fn a_download_larger_than_the_free_space_is_refused_before_it_starts() {
        let dir = tempfile::tempdir().unwrap();
        let error = check_free_space(dir.path(), u64::MAX / 4).unwrap_err();
        assert_eq!(error.kind(), "insufficient_disk_space");
        assert!(
            error.to_string().contains("not enough disk space"),
            "{error}"
        );
        check_free_space(dir.path(), 1_000).unwrap();
    }

    #[test]
    fn git_blob_ids_are_computed_as_git_does() {
        // `printf hello | git hash-object --stdin`
        let mut f = file("x");
        f.size = 5;
        let mut h = hasher_for(&f);
        h.update(b"hello");
        assert_eq!(
            the_digest(h.finish()),
            "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"
        );
    }
}
