use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("not a readable GGUF file: {0}")]
    Gguf(String),
    #[error("the GGUF file lacks the metadata key '{0}'")]
    MissingMetadata(String),
    #[error(
        "GGUF architecture '{}' is not supported (supported: {})",
        .0,
        crate::arch::Architecture::SUPPORTED
    )]
    UnsupportedArchitecture(String),
    #[error("unsupported GGUF tensors (supported types: {}): {}", crate::ggml::SUPPORTED_TYPES, .0.join(", "))]
    UnsupportedTensors(Vec<String>),
    #[error("{0}")]
    Options(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("the target {} already exists and is not empty", .0.display())]
    TargetNotEmpty(PathBuf),
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ConvertError {
    pub fn kind(&self) -> &'static str {
        match self {
            ConvertError::Gguf(_) => "invalid_gguf",
            ConvertError::MissingMetadata(_) => "invalid_gguf",
            ConvertError::UnsupportedArchitecture(_) => "unsupported_architecture",
            ConvertError::UnsupportedTensors(_) => "unsupported_tensor_type",
            ConvertError::Options(_) => "invalid_options",
            ConvertError::Tokenizer(_) => "tokenizer_error",
            ConvertError::TargetNotEmpty(_) => "target_not_empty",
            ConvertError::Io { .. } => "io_error",
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        ConvertError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
