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
) -> Result<(), String> {
    if !healthy {
        return Err("the model is not healthy".into());
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
