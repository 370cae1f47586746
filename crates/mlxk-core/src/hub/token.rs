//! Which Hugging Face token to use: the OS keyring (`mlxk login`), then `HF_TOKEN`, then the
//! token file `huggingface_hub` writes (`$HF_TOKEN_PATH`, else `$HF_HOME/token`).
//!
//! A source that cannot be read (no keyring in this session, an unreadable file) does not stop
//! the search: it is skipped and noted in [`TokenLookup::skipped`], so a caller can say why
//! nothing was found.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cache::{hf_home, path_var};
use crate::secrets::{Secret, SecretError, SecretKind, SecretStore};

/// Where a token came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    Keyring,
    /// The `HF_TOKEN` environment variable.
    Environment,
    /// `huggingface_hub`'s token file.
    TokenFile,
}

impl TokenSource {
    /// For messages: "the keyring", "HF_TOKEN", "the token file".
    pub fn describe(self) -> &'static str {
        match self {
            TokenSource::Keyring => "the keyring",
            TokenSource::Environment => "HF_TOKEN",
            TokenSource::TokenFile => "the token file",
        }
    }
}

/// A token and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubToken {
    pub token: Secret,
    pub source: TokenSource,
}

/// The result of a search: the token found, and the sources that could not be read.
#[derive(Debug)]
pub struct TokenLookup {
    pub token: Option<HubToken>,
    /// Sources skipped because they failed (not because they were empty), with why.
    pub skipped: Vec<(TokenSource, String)>,
}

/// The places a token is looked for, in order.
#[derive(Debug, Clone)]
pub struct TokenSources {
    /// The keyring, or why it cannot be reached.
    pub keyring: Result<SecretStore, SecretError>,
    /// The value of `HF_TOKEN`.
    pub env_token: Option<Secret>,
    /// `$HF_TOKEN_PATH`, else `$HF_HOME/token`.
    pub token_file: PathBuf,
}

impl TokenSources {
    /// The OS keyring and this process's environment.
    pub fn from_env() -> TokenSources {
        TokenSources::with_keyring(SecretStore::platform())
    }

    /// `keyring` (the app's store, a test's mock) and this process's environment.
    pub fn with_keyring(keyring: Result<SecretStore, SecretError>) -> TokenSources {
        TokenSources {
            keyring,
            env_token: std::env::var("HF_TOKEN")
                .ok()
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .map(Secret::new),
            token_file: token_file_path(),
        }
    }
}

/// `huggingface_hub`'s token file: `$HF_TOKEN_PATH`, else `$HF_HOME/token`.
pub fn token_file_path() -> PathBuf {
    path_var("HF_TOKEN_PATH").unwrap_or_else(|| hf_home().join("token"))
}

/// The first token found: keyring, then `HF_TOKEN`, then the token file.
pub fn find_token(sources: &TokenSources) -> TokenLookup {
    let mut skipped = Vec::new();
    let from_keyring = match &sources.keyring {
        Ok(store) => store.get(SecretKind::HubToken).unwrap_or_else(|e| {
            skipped.push((TokenSource::Keyring, e.to_string()));
            None
        }),
        Err(e) => {
            skipped.push((TokenSource::Keyring, e.to_string()));
            None
        }
    };
    let found = from_keyring
        .map(|token| (token, TokenSource::Keyring))
        .or_else(|| {
            let token = sources.env_token.clone()?;
            Some((token, TokenSource::Environment))
        })
        .or_else(|| match read_token_file(&sources.token_file) {
            Ok(token) => Some((token?, TokenSource::TokenFile)),
            Err(e) => {
                let why = format!("cannot read {}: {e}", sources.token_file.display());
                skipped.push((TokenSource::TokenFile, why));
                None
            }
        });
    TokenLookup {
        token: found.map(|(token, source)| HubToken { token, source }),
        skipped,
    }
}

/// The file's first line, trimmed, as `huggingface_hub` reads it; a missing or blank file is
/// no token.
fn read_token_file(path: &Path) -> std::io::Result<Option<Secret>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => Secret::new(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let line = text.expose().lines().next().unwrap_or("").trim();
    Ok((!line.is_empty()).then(|| Secret::new(line)))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Setup {
        _dir: tempfile::TempDir,
        sources: TokenSources,
        store: SecretStore,
        store_mock: std::sync::Arc<keyring_core::mock::Store>,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let store_mock = keyring_core::mock::Store::new().unwrap();
        let store = SecretStore::with_store(store_mock.clone());
        let sources = TokenSources {
            keyring: Ok(store.clone()),
            env_token: None,
            token_file: dir.path().join("token"),
        };
        Setup {
            _dir: dir,
            sources,
            store,
            store_mock,
        }
    }

    fn found(sources: &TokenSources) -> Option<(String, TokenSource)> {
        find_token(sources)
            .token
            .map(|t| (t.token.expose().to_string(), t.source))
    }

    #[test]
    fn keyring_then_environment_then_token_file() {
        let mut s = setup();
        assert_eq!(found(&s.sources), None);

        std::fs::write(&s.sources.token_file, "hf_from_file\n").unwrap();
        assert_eq!(
            found(&s.sources),
            Some(("hf_from_file".into(), TokenSource::TokenFile))
        );

        s.sources.env_token = Some(Secret::new("hf_from_env"));
        assert_eq!(
            found(&s.sources),
            Some(("hf_from_env".into(), TokenSource::Environment))
        );

        s.store
            .set(SecretKind::HubToken, &Secret::new("hf_from_keyring"))
            .unwrap();
        let lookup = find_token(&s.sources);
        assert!(lookup.skipped.is_empty());
        assert_eq!(
            found(&s.sources),
            Some(("hf_from_keyring".into(), TokenSource::Keyring))
        );
    }

    #[test]
    fn an_unavailable_keyring_falls_through_and_is_noted() {
        let mut s = setup();
        s.sources.keyring = Err(SecretError::Unavailable("no D-Bus session".into()));
        s.sources.env_token = Some(Secret::new("hf_from_env"));
        let lookup = find_token(&s.sources);
        assert_eq!(lookup.token.unwrap().source, TokenSource::Environment);
        assert_eq!(lookup.skipped.len(), 1);
        assert_eq!(lookup.skipped[0].0, TokenSource::Keyring);
        assert!(lookup.skipped[0].1.contains("no D-Bus session"));
    }

    #[test]
    fn a_failing_keyring_read_falls_through() {
        let s = setup();
        std::fs::write(&s.sources.token_file, "hf_from_file").unwrap();
        let entry = keyring_core::api::CredentialStoreApi::build(
            s.store_mock.as_ref(),
            crate::secrets::KEYRING_SERVICE,
            SecretKind::HubToken.keyring_user(),
            None,
        )
        .unwrap();
        entry
            .as_any()
            .downcast_ref::<keyring_core::mock::Cred>()
            .unwrap()
            .set_error(keyring_core::Error::PlatformFailure("D-Bus timeout".into()));
        let lookup = find_token(&s.sources);
        assert_eq!(lookup.token.unwrap().source, TokenSource::TokenFile);
        assert_eq!(lookup.skipped[0].0, TokenSource::Keyring);
        assert!(lookup.skipped[0].1.contains("D-Bus timeout"));
    }

    #[test]
    fn blank_token_files_are_no_token() {
        let s = setup();
        std::fs::write(&s.sources.token_file, "  \n").unwrap();
        let lookup = find_token(&s.sources);
        assert!(lookup.token.is_none());
        assert!(lookup.skipped.is_empty());
    }

    #[test]
    fn an_unreadable_token_file_is_noted_not_fatal() {
        let mut s = setup();
        std::fs::create_dir(&s.sources.token_file).unwrap();
        let lookup = find_token(&s.sources);
        assert!(lookup.token.is_none());
        assert_eq!(lookup.skipped[0].0, TokenSource::TokenFile);
        s.sources.env_token = Some(Secret::new("hf_env"));
        assert!(find_token(&s.sources).token.is_some());
    }
}
