use std::path::PathBuf;

/// Everything that can go wrong loading a model or generating from it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid config.json: {0}")]
    Config(String),
    #[error("architecture '{0}' is not supported by the engine")]
    UnsupportedArchitecture(String),
    #[error("the weights lack tensors the model needs: {}", .0.join(", "))]
    MissingWeights(Vec<String>),
    #[error("weights: {0}")]
    Weights(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error("the prompt has {prompt} tokens but the model's context holds {context}")]
    ContextLengthExceeded { prompt: usize, context: usize },
    /// A grammar that cannot be enforced, or a token it refuses.
    #[error("grammar: {0}")]
    Grammar(String),
    /// Speech-to-text options or input a model cannot honour (an unknown language,
    /// translation on an English-only model).
    #[error("{0}")]
    Speech(String),
    #[error("MLX: {0}")]
    Mlx(String),
}

impl From<mlx_rs::error::Exception> for EngineError {
    fn from(e: mlx_rs::error::Exception) -> Self {
        EngineError::Mlx(e.to_string())
    }
}

impl EngineError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        EngineError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
