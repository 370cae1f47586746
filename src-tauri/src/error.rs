//! The one error every command returns: the core's stable machine-readable kind plus the
//! message written for a person, so the UI shows exactly what `mlxk` would say.

use mlxk_core::hub::HubError;
use mlxk_core::secrets::SecretError;
use mlxk_core::CoreError;
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
        CommandError::new(e.kind().as_str(), e.to_string())
    }
}

impl From<SecretError> for CommandError {
    fn from(e: SecretError) -> Self {
        CommandError::new(e.kind(), e.to_string())
    }
}

impl From<HubError> for CommandError {
    fn from(e: HubError) -> Self {
        CommandError::new(e.kind(), e.to_string())
    }
}

pub type CommandResult<T> = Result<T, CommandError>;
