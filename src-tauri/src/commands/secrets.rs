//! The Hugging Face token and the server's API key, in the OS keyring. Values go in, never
//! out: the UI only ever gets a masked form.

use mlxk_core::hub::{find_token, HubClient, HubError};
use mlxk_core::secrets::{Secret, SecretKind};
use serde::{Deserialize, Serialize};
use tauri::State;

use super::blocking;
use crate::error::{CommandError, CommandResult};
use crate::state::AppState;
use crate::views::AccountView;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum SecretName {
    HubToken,
    ServerApiKey,
}

impl From<SecretName> for SecretKind {
    fn from(name: SecretName) -> SecretKind {
        match name {
            SecretName::HubToken => SecretKind::HubToken,
            SecretName::ServerApiKey => SecretKind::ServerApiKey,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
pub struct SecretStatus {
    pub name: SecretName,
    pub stored: bool,
    /// `hf_…(37 chars)`: never the value.
    pub masked: Option<String>,
    /// Why the keyring could not be read, when it could not.
    pub error: Option<String>,
}

/// Whether the secret is stored, masked. A keyring that cannot be reached is reported in
/// `error`, not as a failure, so the window can still show the rest.
#[tauri::command]
#[specta::specta]
pub async fn secret_status(
    state: State<'_, AppState>,
    name: SecretName,
) -> CommandResult<SecretStatus> {
    let store = state.secret_store();
    blocking(move || {
        let found = store.and_then(|s| s.get(name.into()));
        Ok(match found {
            Ok(secret) => SecretStatus {
                name,
                stored: secret.is_some(),
                masked: secret.map(|s| s.to_string()),
                error: None,
            },
            Err(e) => SecretStatus {
                name,
                stored: false,
                masked: None,
                error: Some(e.to_string()),
            },
        })
    })
    .await
}

/// Stores the secret (surrounding whitespace trimmed), replacing the old one.
#[tauri::command]
#[specta::specta]
pub async fn secret_set(
    state: State<'_, AppState>,
    name: SecretName,
    value: String,
) -> CommandResult<SecretStatus> {
    let store = state.secret_store()?;
    let secret = Secret::new(value.trim());
    blocking(move || Ok(store.set(name.into(), &secret)?)).await?;
    secret_status(state, name).await
}

#[tauri::command]
#[specta::specta]
pub async fn secret_remove(
    state: State<'_, AppState>,
    name: SecretName,
) -> CommandResult<SecretStatus> {
    let store = state.secret_store()?;
    blocking(move || Ok(store.delete(name.into())?)).await?;
    secret_status(state, name).await
}

/// Asks the Hub (`HF_ENDPOINT`, else huggingface.co) whose token is in use: the keyring's,
/// else `HF_TOKEN`, else the token file, as `mlxk whoami`.
#[tauri::command]
#[specta::specta]
pub async fn token_test(state: State<'_, AppState>) -> CommandResult<AccountView> {
    let sources = state.token_sources();
    let found = blocking(move || Ok(find_token(&sources).token))
        .await?
        .ok_or_else(|| {
            CommandError::new(
                "not_logged_in",
                "no Hugging Face token in the keyring, HF_TOKEN or the token file",
            )
        })?;
    let client = HubClient::from_env(Some(found.token.clone()))?;
    let user = client.whoami().await.map_err(|e| match e {
        HubError::Unauthorized { endpoint, .. } => CommandError::new(
            "unauthorized",
            format!(
                "the Hub at {endpoint} does not accept the token from {} (invalid, expired or revoked)",
                found.source.describe()
            ),
        ),
        other => other.into(),
    })?;
    Ok(AccountView {
        user,
        token_source: found.source,
        endpoint: client.endpoint().to_string(),
    })
}
