//! One error type for every shell: each variant has a stable machine-readable [`ErrorKind`]
//! (used as `error.type` in JSON) and a message written for a person.

use std::path::PathBuf;

use serde::Serialize;

use crate::hint::Hint;

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("invalid model name '{name}': {why}")]
    InvalidName { name: String, why: String },

    #[error("no model matches '{0}' in the cache")]
    ModelNotFound(String),

    #[error("{0} is not a model folder: no such directory")]
    FolderNotFound(String),

    #[error("'{pattern}' matches {} models: {}; use the full name", matches.len(), matches.join(", "))]
    AmbiguousMatch {
        pattern: String,
        matches: Vec<String>,
    },

    #[error("{model} has no snapshot or ref '{revision}' (available: {})", available.join(", "))]
    RevisionNotFound {
        model: String,
        revision: String,
        available: Vec<String>,
    },

    #[error("{model} cannot run: {why}")]
    NotRunnable { model: String, why: String },

    #[error("a download of {model} is running (lock held: {})", lock.display())]
    LocksPresent { model: String, lock: PathBuf },

    #[error("refusing to delete: {0}")]
    UnsafeDeletion(String),

    #[error("{} is not empty: clone into a new or empty folder", .0.display())]
    FolderNotEmpty(PathBuf),

    #[error("{0}")]
    Workspace(String),

    #[error("{action} failed for {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The stable, machine-readable kind of a [`CoreError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    InvalidName,
    ModelNotFound,
    AmbiguousMatch,
    HashNotFound,
    ModelNotRunnable,
    LocksPresent,
    UnsafeDeletion,
    FolderNotEmpty,
    WorkspaceError,
    IoError,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidName => "invalid_name",
            ErrorKind::ModelNotFound => "model_not_found",
            ErrorKind::AmbiguousMatch => "ambiguous_match",
            ErrorKind::HashNotFound => "hash_not_found",
            ErrorKind::ModelNotRunnable => "model_not_runnable",
            ErrorKind::LocksPresent => "locks_present",
            ErrorKind::UnsafeDeletion => "unsafe_deletion",
            ErrorKind::FolderNotEmpty => "folder_not_empty",
            ErrorKind::WorkspaceError => "workspace_error",
            ErrorKind::IoError => "io_error",
        }
    }
}

impl CoreError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CoreError::InvalidName { .. } => ErrorKind::InvalidName,
            CoreError::ModelNotFound(_) | CoreError::FolderNotFound(_) => ErrorKind::ModelNotFound,
            CoreError::AmbiguousMatch { .. } => ErrorKind::AmbiguousMatch,
            CoreError::RevisionNotFound { .. } => ErrorKind::HashNotFound,
            CoreError::NotRunnable { .. } => ErrorKind::ModelNotRunnable,
            CoreError::LocksPresent { .. } => ErrorKind::LocksPresent,
            CoreError::UnsafeDeletion(_) => ErrorKind::UnsafeDeletion,
            CoreError::FolderNotEmpty(_) => ErrorKind::FolderNotEmpty,
            CoreError::Workspace(_) => ErrorKind::WorkspaceError,
            CoreError::Io { .. } => ErrorKind::IoError,
        }
    }

    /// What the person can do about it, for the shell to word.
    pub fn hint(&self) -> Option<Hint> {
        match self {
            CoreError::LocksPresent { .. } => Some(Hint::Force),
            _ => None,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        CoreError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

impl From<crate::snapshot_writer::LayoutError> for CoreError {
    fn from(e: crate::snapshot_writer::LayoutError) -> Self {
        CoreError::io(e.action, e.path, e.source)
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
