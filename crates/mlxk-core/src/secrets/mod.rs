//! Secrets MLX Knife keeps: the Hugging Face token and the server's API key, held in the OS
//! keyring (the macOS Keychain, the Secret Service on Linux) and nowhere else.
//!
//! A [`Secret`] never shows its value by accident: `Debug` and `Display` are redacted, it is not
//! a `serde` type, and its memory is wiped when it is dropped. [`Secret::expose`] is the one way
//! to read it, for the one place that must send it (an `Authorization` header, the keyring).

mod store;

use std::fmt;

use serde::Serialize;
use zeroize::Zeroize;

pub use store::{SecretStore, KEYRING_SERVICE};

/// A secret string (a token, an API key). Its value is only reachable through [`expose`].
///
/// [`expose`]: Secret::expose
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself. Never log it, print it or pass it in a process's arguments.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in characters (shown instead of the value).
    pub fn len(&self) -> usize {
        self.0.chars().count()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// `hf_…(37 chars)` for Hugging Face tokens (whose `hf_` prefix is public), `<redacted>(N chars)`
/// for anything else.
impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.starts_with("hf_") {
            write!(f, "hf_…({} chars)", self.len())
        } else {
            write!(f, "<redacted>({} chars)", self.len())
        }
    }
}

/// `text` with every word that looks like a Hugging Face token (`hf_` and at least 20 letters
/// or digits) shown as [`Secret`] shows it: for error messages that echo what a person typed
/// (`mlxk pull hf_…` by mistake).
pub fn redact_tokens(text: &str) -> String {
    const MIN_TOKEN_BODY: usize = 20;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("hf_") {
        let after = &rest[start + 3..];
        let body = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        let starts_word = rest[..start]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_');
        out.push_str(&rest[..start]);
        let word = &rest[start..start + 3 + body];
        if starts_word && body >= MIN_TOKEN_BODY {
            out.push_str(&Secret::new(word).to_string());
        } else {
            out.push_str(word);
        }
        rest = &after[body..];
    }
    out.push_str(rest);
    out
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({self})")
    }
}

/// Which secret: each kind is one keyring entry (service [`KEYRING_SERVICE`], user
/// [`SecretKind::keyring_user`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SecretKind {
    /// The Hugging Face access token (`mlxk login`).
    HubToken,
    /// The API key clients of `mlxk serve` must send.
    ServerApiKey,
}

impl SecretKind {
    /// The entry's user name in the keyring.
    pub fn keyring_user(self) -> &'static str {
        match self {
            SecretKind::HubToken => "huggingface",
            SecretKind::ServerApiKey => "server-api-key",
        }
    }

    /// What it is, for messages.
    pub fn describe(self) -> &'static str {
        match self {
            SecretKind::HubToken => "the Hugging Face token",
            SecretKind::ServerApiKey => "the server API key",
        }
    }
}

/// What can go wrong with the keyring. A missing entry is not an error (`Ok(None)`), and no
/// message ever contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// No keyring can be reached (no D-Bus session or Secret Service, a locked or refusing
    /// keychain, an unsupported platform).
    #[error("the OS keyring is not available: {0}")]
    Unavailable(String),
    /// The keyring was reached but the operation failed.
    #[error("the OS keyring failed: {0}")]
    Failed(String),
    /// The value cannot be stored as this secret (empty, or characters it cannot hold).
    #[error("invalid secret: {0}")]
    Invalid(String),
}

impl SecretError {
    /// A stable machine-readable name (`error.type` in JSON).
    pub fn kind(&self) -> &'static str {
        match self {
            SecretError::Unavailable(_) => "keyring_unavailable",
            SecretError::Failed(_) => "keyring_error",
            SecretError::Invalid(_) => "invalid_secret",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "hf_abcdefghijklmnopqrstuvwxyzABCDEFGH";

    #[test]
    fn debug_and_display_never_show_the_value() {
        let token = Secret::new(TOKEN);
        for shown in [
            format!("{token}"),
            format!("{token:?}"),
            format!("{token:#?}"),
            format!("{:?}", Some(token.clone())),
        ] {
            assert!(!shown.contains(&TOKEN[3..]), "{shown}");
        }
        assert_eq!(token.to_string(), "hf_…(37 chars)");
        assert_eq!(format!("{token:?}"), "Secret(hf_…(37 chars))");
        assert_eq!(
            redact_tokens(&format!(
                "unexpected argument '{TOKEN}' found; see hf_short and x_hf_{}",
                &TOKEN[3..]
            )),
            format!(
                "unexpected argument 'hf_…(37 chars)' found; see hf_short and x_hf_{}",
                &TOKEN[3..]
            )
        );
        assert_eq!(redact_tokens("no token"), "no token");
        assert_eq!(
            Secret::new("sk-local-key").to_string(),
            "<redacted>(12 chars)"
        );
        assert_eq!(token.expose(), TOKEN);
    }

    #[test]
    fn kinds_are_separate_keyring_entries() {
        assert_ne!(
            SecretKind::HubToken.keyring_user(),
            SecretKind::ServerApiKey.keyring_user()
        );
    }
}
