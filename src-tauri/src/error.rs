//! The one error every command returns: the core's stable machine-readable kind plus the
//! message written for a person, so the UI shows exactly what `mlxk` would say.

use mlxk_core::hub::HubError;
use mlxk_core::secrets::SecretError;
use mlxk_core::{CoreError, Hint};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, specta::Type, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    /// `model_not_found`, `keyring_unavailable`, `unauthorized`… as in `mlxk --json`.
    pub kind: String,
    pub message: String,
}

impl CommandError {
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        CommandError {
            kind: kind.to_string(),
            message: message.into(),
        }
    }
}

impl From<CoreError> for CommandError {
    fn from(e: CoreError) -> Self {
        CommandError::new(e.kind().as_str(), with_hint(e.to_string(), e.hint()))
    }
}

/// The app's words for what a person can do: its settings and buttons, not the CLI's flags.
fn with_hint(message: String, hint: Option<Hint>) -> String {
    let advice = match hint {
        None => return message,
        Some(Hint::Login) => "Add a token that has access in Settings → Hugging Face token.",
        Some(Hint::AcceptConditions) => {
            "Accept its conditions on the model's Hub page, then add that account's token in Settings → Hugging Face token."
        }
        Some(Hint::Force) => "Wait for it to finish, then try again.",
        // The app's push creates missing repositories itself; no setting to point to.
        Some(Hint::CreateRepo) => return message,
    };
    format!("{message}. {advice}")
}

impl From<SecretError> for CommandError {
    fn from(e: SecretError) -> Self {
        CommandError::new(e.kind(), e.to_string())
    }
}

impl From<HubError> for CommandError {
    fn from(e: HubError) -> Self {
        CommandError::new(e.kind(), with_hint(e.to_string(), e.hint()))
    }
}

/// The server's refusals by the code its API gives them (`server_busy`, `shutting_down`…).
impl From<mlxk_server::ServiceError> for CommandError {
    fn from(e: mlxk_server::ServiceError) -> Self {
        let api = mlxk_server::ApiError::from(e);
        CommandError::new(api.code.unwrap_or(api.kind), api.message)
    }
}

pub type CommandResult<T> = Result<T, CommandError>;
