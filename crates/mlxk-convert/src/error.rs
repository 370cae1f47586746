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
    #[error(
        "model_type '{}' is not supported for safetensors conversion (supported: {})",
        .0,
        crate::mlx_lm_quant::SUPPORTED_MODEL_TYPES
    )]
    UnsupportedModelType(String),
    #[error("{0}")]
    Options(String),
    #[error("not a convertible CTranslate2 Whisper model: {0}")]
    Ct2(String),
    #[error("{} is not a Hugging Face model folder: {why}", path.display())]
    NotAModelFolder { path: PathBuf, why: String },
    #[error("not readable safetensors: {0}")]
    Safetensors(String),
    #[error("the tensor {tensor} is {dtype}; only float32, float16 and bfloat16 convert")]
    UnsupportedDtype { tensor: String, dtype: String },
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
            ConvertError::UnsupportedModelType(_) => "unsupported_architecture",
            ConvertError::Options(_) => "invalid_options",
            ConvertError::Ct2(_) => "invalid_ct2",
            ConvertError::NotAModelFolder { .. } => "not_a_model_folder",
            ConvertError::Safetensors(_) => "invalid_safetensors",
            ConvertError::UnsupportedDtype { .. } => "unsupported_dtype",
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
