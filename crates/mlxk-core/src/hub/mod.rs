//! The Hugging Face Hub as a client sees it: which endpoint, which token, and the calls we make.
//!
//! [`HubClient`] carries the endpoint (`HF_ENDPOINT`, else `https://huggingface.co`), an
//! optional token and one HTTP client with timeouts and our user agent. The token is only ever
//! put into the `Authorization` header (marked sensitive); no [`HubError`] message contains it.
//! Plain `reqwest` is enough for what is here (whoami); `hf-hub` 1.0 would bring xet and
//! rustc 1.95 with it, and can come with downloads if it earns its place.

pub mod token;
mod whoami;

use std::error::Error as _;
use std::time::Duration;

use reqwest::header::{HeaderValue, AUTHORIZATION};

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

    #[error("the Hub at {endpoint} rejected the token (401): it is invalid, expired or revoked")]
    Unauthorized { endpoint: String },

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
}

impl HubError {
    /// A stable machine-readable name (`error.type` in JSON).
    pub fn kind(&self) -> &'static str {
        match self {
            HubError::InvalidEndpoint { .. } => "invalid_endpoint",
            HubError::InvalidToken { .. } => "invalid_token",
            HubError::Unauthorized { .. } => "unauthorized",
            HubError::Network { .. } => "network_error",
            HubError::Http { .. } => "hub_error",
            HubError::InvalidResponse { .. } => "hub_error",
        }
    }
}

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
    async fn get_api(&self, path: &str) -> Result<reqwest::Response, HubError> {
        let mut request = self
            .http
            .get(format!("{}{path}", self.endpoint))
            .timeout(API_CALL_TIMEOUT);
        if let Some(token) = &self.token {
            request = request.header(AUTHORIZATION, bearer(token)?);
        }
        let response = request.send().await.map_err(|e| self.network(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        if status == reqwest::StatusCode::UNAUTHORIZED {
            return Err(HubError::Unauthorized {
                endpoint: self.endpoint.clone(),
            });
        }
        let message = response
            .headers()
            .get("x-error-message")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Err(HubError::Http {
            endpoint: self.endpoint.clone(),
            status: status.as_u16(),
            message,
        })
    }

    fn network(&self, error: &reqwest::Error) -> HubError {
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
    fn the_client_debug_output_hides_the_token() {
        let client = HubClient::new(DEFAULT_ENDPOINT, Some(Secret::new("hf_verysecret"))).unwrap();
        assert!(!format!("{client:?}").contains("verysecret"));
    }
}
