//! The one table of model architectures the inference engine runs.
//!
//! `runtime_compatible` everywhere (list, show, the server's model list, the app) comes from
//! here. The engine fills the table as it gains architectures.

use crate::classify::{Framework, ModelType};

/// `model_type` values (from `config.json`) that `mlxk-engine` can load and run. The engine
/// checks in its tests that it loads each of them.
pub const SUPPORTED_ARCHITECTURES: &[&str] = &[
    "llama",
    "mistral",
    "qwen2",
    "qwen3",
    "phi3",
    "gemma2",
    "gemma3_text",
];

/// `model_type` values the engine embeds text with: the BERT encoder, and causal models whose
/// last hidden states an embedding model such as Qwen3-Embedding pools.
pub const EMBEDDING_ARCHITECTURES: &[&str] = &["bert", "llama", "mistral", "qwen2", "qwen3"];

/// `model_type` values the engine transcribes speech with (mlx-whisper's layout:
/// `config.json` with the ten `n_*` dimensions, `weights.safetensors`).
pub const SPEECH_ARCHITECTURES: &[&str] = &["whisper"];

/// Whether a `config.json` asks for Python code shipped with the model: `model_file`, or
/// `auto_map` / `trust_remote_code` for an architecture the engine does not implement itself
/// (for one it does, the model runs natively and the code is ignored). Such code never runs here.
pub fn asks_for_custom_code(config: &serde_json::Value) -> bool {
    if config.get("model_file").is_some() {
        return true;
    }
    let asks = config.get("auto_map").is_some()
        || config
            .get("trust_remote_code")
            .and_then(serde_json::Value::as_bool)
            == Some(true);
    let native = config
        .get("model_type")
        .and_then(serde_json::Value::as_str)
        .is_some_and(|arch| SUPPORTED_ARCHITECTURES.contains(&arch));
    asks && !native
}

/// Whether the engine can run a model, and if not, why not (a sentence for people).
pub fn runtime_compatibility(
    healthy: bool,
    framework: Framework,
    model_type: ModelType,
    architecture: Option<&str>,
    declares_remote_code: bool,
    has_safetensors: bool,
) -> Result<(), String> {
    if !healthy {
        return Err("the model is not healthy".into());
    }
    if model_type == ModelType::Embedding {
        return embedding_compatibility(
            framework,
            architecture,
            declares_remote_code,
            has_safetensors,
        );
    }
    if framework != Framework::Mlx {
        return Err(format!(
            "incompatible framework: {} (MLX is required)",
            framework.label()
        ));
    }
    if declares_remote_code {
        return Err(
            "the model needs custom Python code (config.json: model_file, auto_map or trust_remote_code), which is never executed"
                .into(),
        );
    }
    if model_type == ModelType::Audio {
        return match architecture {
            _ if !has_safetensors => {
                Err("the weights are not safetensors (pickled weights are never loaded)".into())
            }
            Some(arch) if SPEECH_ARCHITECTURES.contains(&arch) => Ok(()),
            Some(arch) => Err(format!(
                "speech architecture '{arch}' is not supported by the engine yet ({})",
                SPEECH_ARCHITECTURES.join(", ")
            )),
            None => Err("config.json does not name an architecture (model_type)".into()),
        };
    }
    if !matches!(model_type, ModelType::Chat | ModelType::Base) {
        return Err(format!(
            "{} models are not supported by the engine",
            model_type.label()
        ));
    }
    match architecture {
        None => Err("config.json does not name an architecture (model_type)".into()),
        Some(arch) if SUPPORTED_ARCHITECTURES.contains(&arch) => Ok(()),
        Some(arch) => Err(format!(
            "architecture '{arch}' is not supported by the engine yet"
        )),
    }
}

/// An embedding model runs from MLX conversions and from the float safetensors
/// sentence-transformers publish (MLX reads those as they are); never from pickled weights.
fn embedding_compatibility(
    framework: Framework,
    architecture: Option<&str>,
    declares_remote_code: bool,
    has_safetensors: bool,
) -> Result<(), String> {
    if !matches!(framework, Framework::Mlx | Framework::PyTorch) {
        return Err(format!(
            "incompatible framework: {} (MLX or safetensors weights are required)",
            framework.label()
        ));
    }
    if !has_safetensors {
        return Err("the weights are not safetensors (pickled weights are never loaded)".into());
    }
    if declares_remote_code {
        return Err(
            "the model needs custom Python code (config.json: model_file, auto_map or trust_remote_code), which is never executed"
                .into(),
        );
    }
    match architecture {
        None => Err("config.json does not name an architecture (model_type)".into()),
        Some(arch) if EMBEDDING_ARCHITECTURES.contains(&arch) => Ok(()),
        Some(arch) => Err(format!(
            "embedding architecture '{arch}' is not supported by the engine yet (bert, or a causal {})",
            EMBEDDING_ARCHITECTURES[1..].join("/")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedding_models_run_from_safetensors_of_known_architectures() {
        let check = |framework, arch, safetensors| {
            runtime_compatibility(
                true,
                framework,
                ModelType::Embedding,
                arch,
                false,
                safetensors,
            )
        };
        assert_eq!(check(Framework::PyTorch, Some("bert"), true), Ok(()));
        assert_eq!(check(Framework::Mlx, Some("qwen3"), true), Ok(()));
        assert!(check(Framework::PyTorch, Some("bert"), false)
            .unwrap_err()
            .contains("pickled"));
        assert!(check(Framework::Gguf, Some("bert"), true)
            .unwrap_err()
            .contains("GGUF"));
        assert!(check(Framework::Mlx, Some("xlm-roberta"), true)
            .unwrap_err()
            .contains("xlm-roberta"));
        // A text model still needs MLX.
        assert!(runtime_compatibility(
            true,
            Framework::PyTorch,
            ModelType::Chat,
            Some("llama"),
            false,
            true
        )
        .is_err());
    }

    #[test]
    fn whisper_runs_from_mlx_safetensors() {
        let check = |framework, arch, safetensors| {
            runtime_compatibility(true, framework, ModelType::Audio, arch, false, safetensors)
        };
        assert_eq!(check(Framework::Mlx, Some("whisper"), true), Ok(()));
        assert!(check(Framework::PyTorch, Some("whisper"), true)
            .unwrap_err()
            .contains("MLX is required"));
        assert!(check(Framework::Mlx, Some("whisper"), false)
            .unwrap_err()
            .contains("pickled"));
        assert!(check(Framework::Mlx, Some("voxtral"), true)
            .unwrap_err()
            .contains("voxtral"));
    }
}
