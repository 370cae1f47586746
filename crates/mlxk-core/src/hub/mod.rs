//! The Hugging Face Hub as a client sees it: which endpoint, which token, and the calls we make:
//! whoami, repository info and file listings, downloads into the cache ([`pull`]) and commits
//! ([`push`]).
//!
//! [`HubClient`] carries the endpoint (`HF_ENDPOINT`, else `https://huggingface.co`), so the same
//! code talks to the Hub and to the project's local test Hub, an optional token and one HTTP
//! client with timeouts and our user agent. The token is only ever put into the
//! `Authorization` header (marked sensitive); no [`HubError`] message contains it.

pub mod pull;
pub mod push;
pub mod token;
mod whoami;

use std::error::Error as _;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::{RequestBuilder, Response, StatusCode};
use serde::{Deserialize, Serialize};

pub use tokio_util::sync::CancellationToken;

use crate::hint::Hint;
use crate::repo_id::RepoId;
use crate::secrets::Secret;

pub use token::{find_token, HubToken, TokenLookup, TokenSource, TokenSources};
pub use whoami::{HubOrg, HubUser};

/// The public Hub.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Sent with every request.
pub const USER_AGENT: &str = concat!("mlx-knife/", env!("CARGO_PKG_VERSION"));

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest a quiet connection may stay silent (also during long downloads).
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole of a small API call (whoami, metadata).
const API_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `HF_ENDPOINT` (without a trailing `/`), else [`DEFAULT_ENDPOINT`].
/// `HF_HUB_OFFLINE` set, as huggingface_hub reads it: nothing may be downloaded.
pub fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

pub fn endpoint_from_env() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.trim().trim_end_matches('/').to_string())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string())
}

/// The account `token` belongs to on the Hub at `endpoint`.
pub async fn whoami(endpoint: &str, token: &Secret) -> Result<HubUser, HubError> {
    HubClient::new(endpoint, Some(token.clone()))?
        .whoami()
        .await
}

/// What can go wrong talking to the Hub. Messages name the endpoint, never the token.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error("HF_ENDPOINT '{endpoint}' is not an http(s) URL")]
    InvalidEndpoint { endpoint: String },

    #[error("the token cannot be sent: {why}")]
    InvalidToken { why: &'static str },

    #[error("the Hub at {endpoint} refused the request ({status}): {message}")]
    Unauthorized {
        endpoint: String,
        status: u16,
        message: String,
    },

    #[error("{repo} was not found on {endpoint} (or it is private)")]
    RepoNotFound { repo: String, endpoint: String },

    /// A push to a repository that does not exist, without asking to create it.
    #[error("{repo} does not exist on {endpoint}")]
    NoRepoToPush { repo: String, endpoint: String },

    #[error("{repo} has no revision '{revision}'")]
    RevisionNotFound { repo: String, revision: String },

    #[error("{repo} has no file '{path}' at {revision}")]
    EntryNotFound {
        repo: String,
        revision: String,
        path: String,
    },

    #[error("{repo} is gated: its conditions must be accepted on the Hub's model page")]
    Gated { repo: String },

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

    #[error("cannot reach the Hub at {endpoint}: {reason}")]
    Network { endpoint: String, reason: String },

    #[error("the Hub at {endpoint} answered {status}{}", message.as_ref().map(|m| format!(": {m}")).unwrap_or_default())]
    Http {
        endpoint: String,
        status: u16,
        message: Option<String>,
    },

    #[error("unexpected answer from the Hub at {endpoint}: {reason}")]
    InvalidResponse { endpoint: String, reason: String },

    #[error("{action} failed for {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl HubError {
    /// A stable machine-readable name (`error.type` in JSON).
    pub fn kind(&self) -> &'static str {
        match self {
            HubError::InvalidEndpoint { .. } => "invalid_endpoint",
            HubError::InvalidToken { .. } => "invalid_token",
            HubError::Unauthorized { .. } => "unauthorized",
            HubError::RepoNotFound { .. } | HubError::NoRepoToPush { .. } => "repo_not_found",
            HubError::RevisionNotFound { .. } => "revision_not_found",
            HubError::EntryNotFound { .. } => "entry_not_found",
            HubError::Gated { .. } => "gated_repo",
            HubError::InsufficientDisk { .. } => "insufficient_disk_space",
            HubError::HashMismatch { .. } => "hash_mismatch",
            HubError::InvalidInput(_) => "invalid_input",
            HubError::Cancelled => "cancelled",
            HubError::Network { .. } => "network_error",
            HubError::Http { .. } | HubError::InvalidResponse { .. } => "hub_error",
            HubError::Io { .. } => "io_error",
        }
    }

    /// What the person can do about it, for the shell to word.
    pub fn hint(&self) -> Option<Hint> {
        match self {
            HubError::Unauthorized { .. } | HubError::RepoNotFound { .. } => Some(Hint::Login),
            HubError::Gated { .. } => Some(Hint::AcceptConditions),
            HubError::NoRepoToPush { .. } => Some(Hint::CreateRepo),
            _ => None,
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

impl From<crate::snapshot_writer::LayoutError> for HubError {
    fn from(e: crate::snapshot_writer::LayoutError) -> Self {
        HubError::io(e.action, &e.path, e.source)
    }
}

pub type Result<T, E = HubError> = std::result::Result<T, E>;

/// A connection to one Hub endpoint, with or without a token.
#[derive(Debug, Clone)]
pub struct HubClient {
    endpoint: String,
    token: Option<Secret>,
    http: reqwest::Client,
}

impl HubClient {
    /// A client for `endpoint` (`https://huggingface.co`, or a mirror or test hub).
    pub fn new(endpoint: &str, token: Option<Secret>) -> Result<HubClient, HubError> {
        let endpoint = endpoint.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&endpoint).map_err(|_| HubError::InvalidEndpoint {
            endpoint: endpoint.clone(),
        })?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(HubError::InvalidEndpoint { endpoint });
        }
        if let Some(token) = &token {
            bearer(token)?;
        }
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| HubError::Network {
                endpoint: endpoint.clone(),
                reason: format!("cannot set up HTTP: {}", chain(&e)),
            })?;
        Ok(HubClient {
            endpoint,
            token,
            http,
        })
    }

    /// A client for `HF_ENDPOINT` (else the public Hub).
    pub fn from_env(token: Option<Secret>) -> Result<HubClient, HubError> {
        HubClient::new(&endpoint_from_env(), token)
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `GET {endpoint}{path}` with our token, as one short API call.
    async fn get_api(&self, path: &str) -> Result<Response> {
        let request = self
            .get(&format!("{}{path}", self.endpoint))
            .timeout(API_CALL_TIMEOUT);
        let response = self.send(request).await?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == StatusCode::UNAUTHORIZED {
            return Err(HubError::Unauthorized {
                endpoint: self.endpoint.clone(),
                status: status.as_u16(),
                message: "the token is invalid, expired or revoked".into(),
            });
        }
        let message = header(&response, "x-error-message");
        Err(HubError::Http {
            endpoint: self.endpoint.clone(),
            status: status.as_u16(),
            message,
        })
    }

    /// A GET with our token (downloads set no overall timeout: the read timeout guards them).
    pub(crate) fn get(&self, url: &str) -> RequestBuilder {
        let request = self.http.get(url);
        match self.token.as_ref().and_then(|t| bearer(t).ok()) {
            Some(value) => request.header(AUTHORIZATION, value),
            None => request,
        }
    }

    /// Sends a request; a transport failure names the endpoint, never the token.
    pub(crate) async fn send(&self, request: RequestBuilder) -> Result<Response> {
        request.send().await.map_err(|e| self.network(&e))
    }

    /// The token, for hf-hub's client (pushes).
    pub(crate) fn token(&self) -> Option<&Secret> {
        self.token.as_ref()
    }

    /// The commit a revision names, and whether the repository is private or gated.
    pub async fn repo_info(&self, repo: &RepoId, revision: &str) -> Result<RepoInfo> {
        let url = format!(
            "{}/api/models/{}/revision/{}",
            self.endpoint,
            repo.as_str(),
            encode_segment(revision)
        );
        let response = self.send(self.get(&url).timeout(API_CALL_TIMEOUT)).await?;
        let response = check(response, repo, revision, None, &self.endpoint).await?;
        response.json().await.map_err(|e| self.network(&e))
    }

    /// Every file of a commit, with sizes and hashes.
    pub async fn list_files(&self, repo: &RepoId, commit: &str) -> Result<Vec<RemoteFile>> {
        let url = format!(
            "{}/api/models/{}/tree/{commit}?recursive=true",
            self.endpoint,
            repo.as_str()
        );
        let response = self.send(self.get(&url).timeout(API_CALL_TIMEOUT)).await?;
        let response = check(response, repo, commit, None, &self.endpoint).await?;
        let entries: Vec<TreeEntry> = response.json().await.map_err(|e| self.network(&e))?;
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

    pub(crate) fn network(&self, error: &reqwest::Error) -> HubError {
        let reason = if error.is_timeout() {
            "timed out".to_string()
        } else {
            chain(error)
        };
        HubError::Network {
            endpoint: self.endpoint.clone(),
            reason,
        }
    }

    fn invalid_response(&self, reason: impl Into<String>) -> HubError {
        HubError::InvalidResponse {
            endpoint: self.endpoint.clone(),
            reason: reason.into(),
        }
    }
}

/// `Bearer <token>`, marked sensitive so that it is never shown in debug output.
fn bearer(token: &Secret) -> Result<HeaderValue, HubError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", token.expose())).map_err(|_| {
        HubError::InvalidToken {
            why: "it contains characters an HTTP header cannot carry",
        }
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// An error and its causes on one line, without the URL (a URL may carry credentials).
fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(&format!(" for url ({url})"), "");
    }
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
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
                endpoint: endpoint.to_string(),
                status: status.as_u16(),
                message,
            }
        }
        _ if status == StatusCode::NOT_FOUND => HubError::RepoNotFound {
            repo,
            endpoint: endpoint.to_string(),
        },
        _ => HubError::Http {
            endpoint: endpoint.to_string(),
            status: status.as_u16(),
            message: Some(message),
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

/// One URL path segment, percent-encoded (`refs/pr/1` becomes `refs%2Fpr%2F1`, as the Hub
/// expects of revisions).
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
    fn endpoints_must_be_http_urls() {
        for bad in ["", "huggingface.co", "ftp://hub", "http://"] {
            assert!(
                matches!(
                    HubClient::new(bad, None),
                    Err(HubError::InvalidEndpoint { .. })
                ),
                "{bad:?}"
            );
        }
        let client = HubClient::new("http://127.0.0.1:9/", None).unwrap();
        assert_eq!(client.endpoint(), "http://127.0.0.1:9");
    }

    #[test]
    fn a_token_a_header_cannot_carry_is_refused_without_echoing_it() {
        let err = HubClient::new(DEFAULT_ENDPOINT, Some(Secret::new("hf_bad\nvalue"))).unwrap_err();
        assert_eq!(err.kind(), "invalid_token");
        assert!(!err.to_string().contains("hf_bad"));
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(encode_segment("refs/pr/1"), "refs%2Fpr%2F1");
        assert_eq!(encode_segment("a b+c.json"), "a%20b%2Bc.json");
    }

    #[test]
    fn the_client_debug_output_hides_the_token() {
        let client = HubClient::new(DEFAULT_ENDPOINT, Some(Secret::new("hf_verysecret"))).unwrap();
        assert!(!format!("{client:?}").contains("verysecret"));
    }
}
