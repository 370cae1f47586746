//! Errors as the Hub sends them: the status, `X-Error-Code` (which `huggingface_hub` maps to
//! its exception types), `X-Error-Message`, and `{"error": message}` as the body.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::store::StoreError;

#[derive(Debug, Clone, thiserror::Error)]
#[error("{status}: {message}")]
pub struct HubError {
    pub status: StatusCode,
    pub code: Option<&'static str>,
    pub message: String,
    /// Extra headers, e.g. `X-Repo-Commit` with `EntryNotFound` (so that clients can cache
    /// the absence) or `Content-Range` with 416.
    pub headers: Vec<(&'static str, String)>,
    /// Extra body fields (e.g. `url` of a repo that already exists).
    pub url: Option<String>,
}

impl HubError {
    pub fn new(status: StatusCode, code: Option<&'static str>, message: impl Into<String>) -> Self {
        HubError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
            url: None,
        }
    }

    /// Anonymous callers get 401 (as the Hub does, not to reveal private repos), others 404.
    pub fn repo_not_found(anonymous: bool) -> Self {
        let status = if anonymous {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::NOT_FOUND
        };
        HubError::new(status, Some("RepoNotFound"), "Repository not found")
    }

    pub fn revision_not_found(revision: &str) -> Self {
        HubError::new(
            StatusCode::NOT_FOUND,
            Some("RevisionNotFound"),
            format!("Invalid rev id: {revision}"),
        )
    }

    pub fn entry_not_found(path: &str, commit: Option<&str>) -> Self {
        let mut error = HubError::new(
            StatusCode::NOT_FOUND,
            Some("EntryNotFound"),
            format!("Entry not found: {path}"),
        );
        if let Some(commit) = commit {
            error.headers.push(("x-repo-commit", commit.to_string()));
        }
        error
    }

    pub fn gated(repo: &str, anonymous: bool) -> Self {
        if anonymous {
            HubError::new(
                StatusCode::UNAUTHORIZED,
                Some("GatedRepo"),
                format!(
                    "Access to model {repo} is restricted. You must have access to it and be authenticated to access it. Please log in."
                ),
            )
        } else {
            HubError::new(
                StatusCode::FORBIDDEN,
                Some("GatedRepo"),
                format!(
                    "Access to model {repo} is restricted and you are not in the authorized list."
                ),
            )
        }
    }

    /// A token that matches no user.
    pub fn invalid_credentials() -> Self {
        HubError::new(
            StatusCode::UNAUTHORIZED,
            None,
            "Invalid credentials in Authorization header",
        )
    }

    pub fn login_required() -> Self {
        HubError::new(
            StatusCode::UNAUTHORIZED,
            None,
            "You must be authenticated to do this (Authorization: Bearer <token>)",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        HubError::new(StatusCode::FORBIDDEN, None, message)
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        HubError::new(StatusCode::BAD_REQUEST, None, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        HubError::new(StatusCode::INTERNAL_SERVER_ERROR, None, message)
    }
}

impl From<StoreError> for HubError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::RepoNotFound(_) => HubError::repo_not_found(false),
            StoreError::RevisionNotFound(rev) => HubError::revision_not_found(rev),
            StoreError::EntryNotFound(path) => HubError::new(
                StatusCode::NOT_FOUND,
                Some("EntryNotFound"),
                format!("A file with this name doesn't exist: {path}"),
            ),
            StoreError::RepoExists(_) => {
                HubError::new(StatusCode::CONFLICT, None, "You already created this model repo")
            }
            StoreError::InvalidRepoId(_) | StoreError::InvalidPath(_) => {
                HubError::bad_request(error.to_string())
            }
            StoreError::ParentMismatch { .. } => HubError::new(
                StatusCode::PRECONDITION_FAILED,
                None,
                format!("A commit has happened since. Please refresh and try again. ({error})"),
            ),
            StoreError::MissingLfsObject(_) => HubError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                format!("Your push was rejected because an LFS pointer pointed to a file that does not exist ({error})"),
            ),
            StoreError::Io(_) | StoreError::Corrupt { .. } => HubError::internal(error.to_string()),
        }
    }
}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.message });
        if let Some(url) = &self.url {
            body["url"] = json!(url);
        }
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if let Some(code) = self.code {
            headers.insert("x-error-code", HeaderValue::from_static(code));
        }
        if let Ok(message) = HeaderValue::from_str(&self.message) {
            headers.insert("x-error-message", message);
        }
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        response
    }
}
