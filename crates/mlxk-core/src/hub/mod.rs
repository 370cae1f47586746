//! The Hugging Face Hub over HTTP: repository info and file listings, downloads into the cache
//! ([`pull`]) and commits ([`push`]).
//!
//! The endpoint comes from `HF_ENDPOINT` (default `https://huggingface.co`), so the same code
//! talks to the Hub and to the project's local test Hub. The token is only ever sent as an
//! `Authorization` header; it never appears in an error or a log line.

pub mod pull;
pub mod push;

use std::time::Duration;

use reqwest::{RequestBuilder, Response, StatusCode};
use serde::{Deserialize, Serialize};

use crate::repo_id::RepoId;

/// The Hub's address when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// What went wrong talking to the Hub, with a message written for a person.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("{repo} was not found on {endpoint} (or it is private: `mlxk login` with a token that can read it)")]
    RepoNotFound { repo: String, endpoint: String },

    #[error("{repo} has no revision '{revision}'")]
    RevisionNotFound { repo: String, revision: String },

    #[error("{repo} has no file '{path}' at {revision}")]
    EntryNotFound {
        repo: String,
        revision: String,
        path: String,
    },

    #[error("{repo} is gated: accept its conditions on the Hub's model page, then `mlxk login` with that account")]
    Gated { repo: String },

    #[error("the Hub refused the request ({status}): {message}; `mlxk login` with a token that has access")]
    Unauthorized { status: u16, message: String },

    #[error("not enough disk space in {path}: {needed} bytes needed, {available} available")]
    InsufficientDisk {
        path: String,
        needed: u64,
        available: u64,
    },

    #[error("{path}: the download does not match the Hub's hash (expected {expected}, got {actual}); it was discarded")]
    HashMismatch {
        path: String,
        expected: String,
        actual: String,
    },

    #[error("{0}")]
    InvalidInput(String),

    #[error("cancelled")]
    Cancelled,

    #[error("cannot reach {endpoint}: {message}")]
    Network { endpoint: String, message: String },

    #[error("the Hub answered {status}: {message}")]
    Http { status: u16, message: String },

    #[error("{action} failed for {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl HubError {
    /// The stable, machine-readable kind (`error.type` in JSON).
    pub fn kind(&self) -> &'static str {
        match self {
            HubError::RepoNotFound { .. } => "repo_not_found",
            HubError::RevisionNotFound { .. } => "revision_not_found",
            HubError::EntryNotFound { .. } => "entry_not_found",
            HubError::Gated { .. } => "gated_repo",
            HubError::Unauthorized { .. } => "unauthorized",
            HubError::InsufficientDisk { .. } => "insufficient_disk_space",
            HubError::HashMismatch { .. } => "hash_mismatch",
            HubError::InvalidInput(_) => "invalid_input",
            HubError::Cancelled => "cancelled",
            HubError::Network { .. } => "network_error",
            HubError::Http { .. } => "hub_error",
            HubError::Io { .. } => "io_error",
        }
    }

    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        HubError::Io {
            action,
            path: path.display().to_string(),
            source,
        }
    }
}

pub type Result<T, E = HubError> = std::result::Result<T, E>;

/// A token for the Hub. Debug and Display never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct HubToken(String);

impl HubToken {
    pub fn new(token: impl Into<String>) -> Option<Self> {
        let token = token.into().trim().to_string();
        (!token.is_empty()).then_some(HubToken(token))
    }

    /// The token itself, for the one place that needs it: an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for HubToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HubToken(<{} characters, hidden>)", self.0.len())
    }
}

/// A client for one Hub endpoint, with or without a token.
#[derive(Debug, Clone)]
pub struct HubClient {
    endpoint: String,
    token: Option<HubToken>,
    http: reqwest::Client,
}

impl HubClient {
    /// `endpoint` or `HF_ENDPOINT` or the Hub itself.
    pub fn new(endpoint: Option<&str>, token: Option<HubToken>) -> Result<Self> {
        let endpoint = endpoint
            .map(str::to_string)
            .or_else(|| std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
            .trim_end_matches('/')
            .to_string();
        let http = reqwest::Client::builder()
            .user_agent(concat!("mlx-knife-rs/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            // Between bytes, not for a whole download.
            .read_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| HubError::Network {
                endpoint: endpoint.clone(),
                message: e.to_string(),
            })?;
        Ok(HubClient {
            endpoint,
            token,
            http,
        })
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    pub(crate) fn get(&self, url: &str) -> RequestBuilder {
        self.authorize(self.http.get(url))
    }

    fn authorize(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    /// Sends a request; a transport failure names the endpoint, never the token.
    pub(crate) async fn send(&self, request: RequestBuilder) -> Result<Response> {
        request.send().await.map_err(|e| self.network(e))
    }

    pub(crate) fn network(&self, error: reqwest::Error) -> HubError {
        HubError::Network {
            endpoint: self.endpoint.clone(),
            // reqwest's message may carry the URL; ours hold no secrets (the token is a header).
            message: error.without_url().to_string(),
        }
    }

    /// The commit a revision names, and whether the repository is private or gated.
    pub async fn repo_info(&self, repo: &RepoId, revision: &str) -> Result<RepoInfo> {
        let url = format!(
            "{}/api/models/{}/revision/{}",
            self.endpoint,
            repo.as_str(),
            encode_revision(revision)
        );
        let response = self.send(self.get(&url)).await?;
        let response = check(response, repo, revision, None, &self.endpoint).await?;
        response.json().await.map_err(|e| self.network(e))
    }

    /// Every file of a commit, with sizes and hashes.
    pub async fn list_files(&self, repo: &RepoId, commit: &str) -> Result<Vec<RemoteFile>> {
        let url = format!(
            "{}/api/models/{}/tree/{commit}?recursive=true",
            self.endpoint,
            repo.as_str()
        );
        let response = self.send(self.get(&url)).await?;
        let response = check(response, repo, commit, None, &self.endpoint).await?;
        let entries: Vec<TreeEntry> = response.json().await.map_err(|e| self.network(e))?;
        Ok(entries
            .into_iter()
            .filter(|e| e.kind == "file")
            .map(|e| RemoteFile {
                sha256: e.lfs.map(|l| l.oid),
                path: e.path,
                size: e.size,
                git_oid: e.oid,
            })
            .collect())
    }

    pub(crate) fn resolve_url(&self, repo: &RepoId, commit: &str, path: &str) -> String {
        let path: Vec<String> = path.split('/').map(encode_segment).collect();
        format!(
            "{}/{}/resolve/{commit}/{}",
            self.endpoint,
            repo.as_str(),
            path.join("/")
        )
    }
}

/// What the Hub says about a repository at a revision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoInfo {
    pub id: String,
    /// The commit.
    pub sha: String,
    #[serde(default)]
    pub private: bool,
    #[serde(default)]
    pub gated: serde_json::Value,
}

/// One file of a commit on the Hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteFile {
    pub path: String,
    pub size: u64,
    /// The git blob id (SHA-1) of the file, or of its LFS pointer.
    pub git_oid: String,
    /// The content's SHA-256 for LFS files.
    pub sha256: Option<String>,
}

impl RemoteFile {
    /// The blob's name in the cache, as huggingface_hub names it: the ETag the Hub sends,
    /// which is the SHA-256 for LFS files and the git blob id otherwise.
    pub fn blob_name(&self) -> &str {
        self.sha256.as_deref().unwrap_or(&self.git_oid)
    }
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    oid: String,
    lfs: Option<TreeLfs>,
}

#[derive(Deserialize)]
struct TreeLfs {
    oid: String,
}

/// Turns an error response into a [`HubError`] from the Hub's `X-Error-Code` header (as
/// huggingface_hub does), else from the status.
pub(crate) async fn check(
    response: Response,
    repo: &RepoId,
    revision: &str,
    path: Option<&str>,
    endpoint: &str,
) -> Result<Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let code = header(&response, "x-error-code");
    let message = header(&response, "x-error-message")
        .or_else(|| status.canonical_reason().map(str::to_string))
        .unwrap_or_default();
    let repo = repo.as_str().to_string();
    Err(match code.as_deref() {
        Some("GatedRepo") => HubError::Gated { repo },
        Some("RepoNotFound") => HubError::RepoNotFound {
            repo,
            endpoint: endpoint.to_string(),
        },
        Some("RevisionNotFound") => HubError::RevisionNotFound {
            repo,
            revision: revision.to_string(),
        },
        Some("EntryNotFound") => HubError::EntryNotFound {
            repo,
            revision: revision.to_string(),
            path: path.unwrap_or_default().to_string(),
        },
        _ if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN => {
            HubError::Unauthorized {
                status: status.as_u16(),
                message,
            }
        }
        _ if status == StatusCode::NOT_FOUND => HubError::RepoNotFound {
            repo,
            endpoint: endpoint.to_string(),
        },
        _ => HubError::Http {
            status: status.as_u16(),
            message,
        },
    })
}

fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A revision as one URL path segment (`refs/pr/1` becomes `refs%2Fpr%2F1`, as the Hub expects).
fn encode_revision(revision: &str) -> String {
    encode_segment(revision)
}

fn encode_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_never_show_in_debug_output() {
        let token = HubToken::new("hf_secretsecret").unwrap();
        let shown = format!(
            "{token:?} {:?}",
            HubClient::new(Some("http://x"), Some(token.clone())).unwrap()
        );
        assert!(!shown.contains("secret"), "{shown}");
        assert_eq!(token.expose(), "hf_secretsecret");
        assert!(HubToken::new("  ").is_none());
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode_revision("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode_segment("a b+c.json"), "a%20b%2Bc.json");
    }
}
