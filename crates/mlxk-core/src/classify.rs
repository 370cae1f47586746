//! What a model is: framework, type, capabilities, architecture, context length, quantization.
//!
//! Detection follows mlx-knife 2.0.8 (so both tools agree on the same cache), reading only small
//! metadata files: `config.json`, the README front matter and the tokenizer config.

use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::snapshot::SnapshotFile;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
pub enum Framework {
    #[serde(rename = "MLX")]
    Mlx,
    #[serde(rename = "GGUF")]
    Gguf,
    PyTorch,
    Unknown,
}

impl Framework {
    pub fn label(self) -> &'static str {
        match self {
            Framework::Mlx => "MLX",
            Framework::Gguf => "GGUF",
            Framework::PyTorch => "PyTorch",
            Framework::Unknown => "Unknown",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "lowercase")]
pub enum ModelType {
    Chat,
    Base,
    Embedding,
    Vision,
    Audio,
}

impl ModelType {
    pub fn label(self) -> &'static str {
        match self {
            ModelType::Chat => "chat",
            ModelType::Base => "base",
            ModelType::Embedding => "embedding",
            ModelType::Vision => "vision",
            ModelType::Audio => "audio",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "specta", derive(specta::Type))]
#[serde(rename_all = "kebab-case")]
pub enum Capability {
    TextGeneration,
    Chat,
    Vision,
    Audio,
    Embeddings,
    /// Speech in any language to English text (Whisper's translate task; multilingual Whisper).
    AudioTranslateEn,
}

impl Capability {
    pub fn label(self) -> &'static str {
        match self {
            Capability::TextGeneration => "text-generation",
            Capability::Chat => "chat",
            Capability::Vision => "vision",
            Capability::Audio => "audio",
            Capability::Embeddings => "embeddings",
            Capability::AudioTranslateEn => "audio-translate-en",
        }
    }
}

/// Weight quantization as declared in `config.json` (`quantization` for MLX,
/// `quantization_config` for Hugging Face formats).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quantization {
    pub bits: Option<u32>,
    pub group_size: Option<u32>,
    /// `affine`, `mxfp4`... where the config says.
    pub mode: Option<String>,
    /// The method of a Hugging Face `quantization_config` (`gptq`, `awq`...).
    pub method: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    pub framework: Framework,
    pub model_type: ModelType,
    pub capabilities: Vec<Capability>,
    /// `model_type` in `config.json` (e.g. `llama`, `qwen3`).
    pub architecture: Option<String>,
    pub context_length: Option<u64>,
    pub quantization: Option<Quantization>,
}

const VISION_TYPES: &[&str] = &[
    "llava",
    "llava_next",
    "pixtral",
    "qwen2_vl",
    "qwen2_5_vl",
    "phi3_v",
    "mllama",
    "paligemma",
    "idefics",
    "idefics2",
    "idefics3",
    "smolvlm",
    "mistral3",
];
const ENCODER_EMBEDDING_TYPES: &[&str] = &["bert", "xlm-roberta", "modernbert", "nomic_bert"];
const AUDIO_TYPE_MARKERS: &[&str] = &["whisper", "vibevoice", "voxtral"];
/// English-only Whisper vocabularies have 51864 entries; multilingual ones 51865 or more.
const WHISPER_MULTILINGUAL_VOCAB: u64 = 51865;
const CONTEXT_KEYS: &[&str] = &[
    "max_position_embeddings",
    "n_positions",
    "context_length",
    "max_sequence_length",
    "seq_len",
];
/// Chat templates and README front matter live in small files; never read more than this.
const MAX_METADATA_READ: u64 = 16 * 1024 * 1024;

pub fn classify(
    repo_name: &str,
    config: Option<&Value>,
    tokenizer_config: Option<&Value>,
    snapshot_dir: &Path,
    files: &[SnapshotFile],
) -> Classification {
    let has_file = |name: &str| files.iter().any(|f| f.name == name);
    let has_ext = |ext: &str| files.iter().any(|f| f.name.ends_with(ext));
    let architecture = config
        .and_then(|c| c.get("model_type"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let arch = architecture.as_deref().unwrap_or("").to_ascii_lowercase();
    let lower_name = repo_name.to_ascii_lowercase();

    let framework = if lower_name.starts_with("mlx-community/")
        || config.is_some_and(|c| c.get("quantization").is_some())
        || has_file("README.md") && readme_declares_mlx(&snapshot_dir.join("README.md"))
    {
        Framework::Mlx
    } else if has_ext(".gguf") {
        Framework::Gguf
    } else if has_ext(".safetensors")
        || files.iter().any(|f| {
            let base = f.name.rsplit('/').next().unwrap_or(&f.name);
            base.starts_with("pytorch_model") && base.ends_with(".bin")
        })
    {
        Framework::PyTorch
    } else {
        Framework::Unknown
    };

    let vision = config.is_some_and(|c| is_non_empty_object(c.get("vision_config")))
        || VISION_TYPES.contains(&arch.as_str())
        || has_file("preprocessor_config.json")
            && !AUDIO_TYPE_MARKERS.iter().any(|m| arch.contains(m))
        || has_file("processor_config.json");
    let chat = has_chat_template(tokenizer_config, files)
        || lower_name.contains("instruct")
        || lower_name.contains("chat");

    let model_type = if AUDIO_TYPE_MARKERS.iter().any(|m| arch.contains(m)) {
        ModelType::Audio
    } else if ENCODER_EMBEDDING_TYPES.contains(&arch.as_str())
        || lower_name.contains("embed")
        || has_file("config_sentence_transformers.json")
    {
        ModelType::Embedding
    } else if vision {
        ModelType::Vision
    } else if chat {
        ModelType::Chat
    } else {
        ModelType::Base
    };

    let capabilities = match model_type {
        ModelType::Embedding => vec![Capability::Embeddings],
        ModelType::Audio if translates_to_english(&lower_name, &arch, config) => {
            vec![Capability::Audio, Capability::AudioTranslateEn]
        }
        ModelType::Audio => vec![Capability::Audio],
        _ => {
            let mut caps = vec![Capability::TextGeneration];
            if chat {
                caps.push(Capability::Chat);
            }
            if vision {
                caps.push(Capability::Vision);
            }
            if config.is_some_and(|c| truthy(c.get("audio_config"))) {
                caps.push(Capability::Audio);
            }
            caps
        }
    };

    Classification {
        framework,
        model_type,
        capabilities,
        architecture,
        context_length: config.and_then(context_length),
        quantization: config.and_then(quantization),
    }
}

/// Whisper's translate task, as mlx-knife 2.0.8 decides it: a multilingual Whisper (its
/// vocabulary has the language tokens, 51865 entries or more; without `n_vocab`, a name
/// not ending in `.en`), and not a turbo one (its small decoder cannot translate reliably).
fn translates_to_english(lower_name: &str, arch: &str, config: Option<&Value>) -> bool {
    if arch != "whisper" || lower_name.contains("turbo") {
        return false;
    }
    match config
        .and_then(|c| c.get("n_vocab"))
        .and_then(Value::as_u64)
    {
        Some(n_vocab) => n_vocab >= WHISPER_MULTILINGUAL_VOCAB,
        None => !lower_name
            .split(['/', '-', '_'])
            .any(|part| part.ends_with(".en")),
    }
}

/// The first context-length key found at the top level, then in `text_config`.
pub fn context_length(config: &Value) -> Option<u64> {
    let find = |obj: &Value| {
        CONTEXT_KEYS
            .iter()
            .find_map(|key| obj.get(*key).and_then(Value::as_u64))
    };
    find(config).or_else(|| config.get("text_config").and_then(find))
}

fn quantization(config: &Value) -> Option<Quantization> {
    let number = |q: &Value, key: &str| {
        q.get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
    };
    let text = |q: &Value, key: &str| q.get(key).and_then(Value::as_str).map(str::to_string);
    if let Some(q) = config.get("quantization").filter(|q| q.is_object()) {
        return Some(Quantization {
            bits: number(q, "bits"),
            group_size: number(q, "group_size"),
            mode: text(q, "mode"),
            method: None,
        });
    }
    let q = config
        .get("quantization_config")
        .filter(|q| q.is_object())?;
    Some(Quantization {
        bits: number(q, "bits"),
        group_size: number(q, "group_size"),
        mode: text(q, "mode"),
        method: text(q, "quant_method"),
    })
}

fn has_chat_template(tokenizer_config: Option<&Value>, files: &[SnapshotFile]) -> bool {
    files
        .iter()
        .any(|f| f.name == "chat_template.jinja" || f.name == "chat_template.json")
        || tokenizer_config
            .and_then(|t| t.get("chat_template"))
            .is_some_and(|t| !t.is_null())
}

/// README front matter with `library_name: mlx` or an `mlx` tag marks an MLX model.
fn readme_declares_mlx(readme: &Path) -> bool {
    let Some(text) = read_small(readme) else {
        return false;
    };
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("---") {
        return false;
    }
    let mut in_tags = false;
    for line in lines.take_while(|l| l.trim() != "---") {
        let trimmed = line.trim();
        if let Some(value) = trimmed.strip_prefix("library_name:") {
            if value.trim().trim_matches(['"', '\'']) == "mlx" {
                return true;
            }
        }
        if let Some(value) = trimmed.strip_prefix("tags:") {
            let inline = value.trim();
            if inline.starts_with('[') {
                if inline
                    .trim_matches(['[', ']'])
                    .split(',')
                    .any(|t| t.trim().trim_matches(['"', '\'']) == "mlx")
                {
                    return true;
                }
            } else {
                in_tags = true;
            }
            continue;
        }
        if in_tags {
            match trimmed.strip_prefix("- ") {
                Some(tag) if tag.trim().trim_matches(['"', '\'']) == "mlx" => return true,
                Some(_) => {}
                None => in_tags = false,
            }
        }
    }
    false
}

fn read_small(path: &Path) -> Option<String> {
    let meta = fs::metadata(path).ok()?;
    (meta.len() <= MAX_METADATA_READ)
        .then(|| fs::read_to_string(path).ok())
        .flatten()
}

fn is_non_empty_object(value: Option<&Value>) -> bool {
    value
        .and_then(Value::as_object)
        .is_some_and(|o| !o.is_empty())
}

fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn classify_config(name: &str, config: Value) -> Classification {
        let dir = tempfile::tempdir().unwrap();
        classify(name, Some(&config), None, dir.path(), &[])
    }

    #[test]
    fn reads_quantization_and_context() {
        let c = classify_config(
            "org/Llama-3.2-1B-Instruct-4bit",
            json!({"model_type": "llama", "max_position_embeddings": 131072,
                   "quantization": {"bits": 4, "group_size": 64}}),
        );
        assert_eq!(c.framework, Framework::Mlx);
        assert_eq!(c.model_type, ModelType::Chat);
        assert_eq!(c.architecture.as_deref(), Some("llama"));
        assert_eq!(c.context_length, Some(131072));
        let q = c.quantization.unwrap();
        assert_eq!((q.bits, q.group_size), (Some(4), Some(64)));
    }

    #[test]
    fn context_length_falls_back_to_text_config() {
        let c = json!({"model_type": "gemma3", "text_config": {"max_position_embeddings": 8192}});
        assert_eq!(context_length(&c), Some(8192));
    }

    #[test]
    fn detects_vision_audio_embedding_and_base() {
        let vision = classify_config("mlx-community/x", json!({"model_type": "qwen2_vl"}));
        assert_eq!(vision.model_type, ModelType::Vision);
        assert!(vision.capabilities.contains(&Capability::Vision));
        let audio = classify_config(
            "mlx-community/whisper-tiny.en",
            json!({"model_type": "whisper"}),
        );
        assert_eq!(
            (audio.model_type, audio.capabilities),
            (ModelType::Audio, vec![Capability::Audio])
        );
        let multilingual = classify_config(
            "mlxk-test/whisper-base-mlx",
            json!({"model_type": "whisper", "n_vocab": 51865}),
        );
        assert_eq!(
            multilingual.capabilities,
            [Capability::Audio, Capability::AudioTranslateEn]
        );
        let english = classify_config(
            "mlxk-test/whisper-tiny.en-mlx",
            json!({"model_type": "whisper", "n_vocab": 51864}),
        );
        assert_eq!(english.capabilities, [Capability::Audio]);
        let by_name = |name| classify_config(name, json!({"model_type": "whisper"})).capabilities;
        assert_eq!(
            by_name("mlx-community/whisper-small.en-mlx"),
            [Capability::Audio]
        );
        assert_eq!(
            by_name("mlx-community/whisper-large-v3-turbo"),
            [Capability::Audio]
        );
        assert_eq!(by_name("mlx-community/whisper-small-mlx").len(), 2);
        assert_eq!(Capability::AudioTranslateEn.label(), "audio-translate-en");
        assert_eq!(
            serde_json::to_value(Capability::AudioTranslateEn).unwrap(),
            "audio-translate-en"
        );
        let embed = classify_config("mlx-community/e", json!({"model_type": "bert"}));
        assert_eq!(embed.model_type, ModelType::Embedding);
        let base = classify_config("org/tiny", json!({"model_type": "llama"}));
        assert_eq!(
            (base.model_type, base.framework),
            (ModelType::Base, Framework::Unknown)
        );
    }

    #[test]
    fn readme_front_matter_marks_mlx() {
        let dir = tempfile::tempdir().unwrap();
        let readme = dir.path().join("README.md");
        fs::write(
            &readme,
            "---\nlicense: mit\ntags:\n- text\n- mlx\n---\n# Hi\n",
        )
        .unwrap();
        assert!(readme_declares_mlx(&readme));
        fs::write(&readme, "---\nlibrary_name: transformers\n---\nmlx\n").unwrap();
        assert!(!readme_declares_mlx(&readme));
        fs::write(&readme, "---\ntags: [gguf, \"mlx\"]\n---\n").unwrap();
        assert!(readme_declares_mlx(&readme));
    }
}
