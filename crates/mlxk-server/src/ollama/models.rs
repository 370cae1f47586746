//! The models as Ollama describes them: `GET /api/tags` lists the runnable ones, `POST
//! /api/show` tells one's details and capabilities. What Ollama reads from a GGUF file comes
//! from the model's `config.json` and safetensors headers here: the family is the
//! architecture, the parameter count is read from the weights, the quantization level is
//! `Q<bits>` (or the mode, or the float type of an unquantized model), the digest is the
//! snapshot's commit. `show` has no `template` (the model's own is Jinja, not Ollama's
//! language); its `parameters` and `modelfile` state the sampling defaults this server applies
//! when a request leaves them out.

use axum::extract::State;
use axum::Json;
use mlxk_core::classify::ModelType;
use mlxk_core::ModelInfo;
use mlxk_engine::load_plan::WeightFacts;
use mlxk_engine::SamplingChoice;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{our_name, rfc3339, OllamaError, OllamaJson};
use crate::error::ApiError;
use crate::routes::Shared;
use crate::service::api_name;

/// `GET /api/tags`: every runnable model, under the name that resolves when sent back.
pub async fn tags(State(state): State<Shared>) -> Result<Json<Value>, OllamaError> {
    let models = state.service.runnable_models().await?;
    // The parameter count reads safetensors headers: off the async threads.
    let models = tokio::task::spawn_blocking(move || {
        models
            .iter()
            .map(|model| {
                let name = api_name(model);
                json!({
                    "name": name,
                    "model": name,
                    "modified_at": rfc3339(model.last_modified.into()),
                    "size": model.size_bytes,
                    "digest": model.commit.clone().unwrap_or_default(),
                    "details": details(model, parameter_count(model)),
                    "capabilities": model.path.as_deref().map(|dir| capabilities(model, dir)),
                })
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(json!({"models": models})))
}

#[derive(Debug, Deserialize)]
pub struct ShowRequest {
    /// The model, as Ollama's clients send it now...
    #[serde(default)]
    model: Option<String>,
    /// ...or as older ones did.
    #[serde(default)]
    name: Option<String>,
}

/// `POST /api/show`: one model's details, capabilities and the sampling it gets by default.
pub async fn show(
    State(state): State<Shared>,
    OllamaJson(request): OllamaJson<ShowRequest>,
) -> Result<Json<Value>, OllamaError> {
    let name = request
        .model
        .or(request.name)
        .ok_or_else(|| ApiError::bad_request("'model' is required").with_param("model"))?;
    let model = state.service.resolve(&our_name(&name)).await?;
    let shown = tokio::task::spawn_blocking(move || {
        let info = &model.info;
        let parameters = parameter_count(info);
        let defaults = defaults(&SamplingChoice::from_generation_config(&model.dir));
        let capabilities = capabilities(info, &model.dir);
        let arch = info
            .classification
            .architecture
            .clone()
            .unwrap_or_else(|| "unknown".into());
        let mut model_info = Map::new();
        model_info.insert("general.architecture".into(), json!(arch));
        if let Some(count) = parameters {
            model_info.insert("general.parameter_count".into(), json!(count));
        }
        model_info.insert(
            format!("{arch}.context_length"),
            json!(model.context_length),
        );
        let config = info.config.as_ref();
        for (ours, theirs) in [
            ("embedding_length", "hidden_size"),
            ("block_count", "num_hidden_layers"),
            ("attention.head_count", "num_attention_heads"),
            ("attention.head_count_kv", "num_key_value_heads"),
            ("vocab_size", "vocab_size"),
        ] {
            if let Some(value) = config.and_then(|c| c.get(theirs)).filter(|v| v.is_u64()) {
                model_info.insert(format!("{arch}.{ours}"), value.clone());
            }
        }
        let name = api_name(info);
        let parameter_lines: Vec<String> =
            defaults.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let modelfile = std::iter::once(format!(
            "# {name}, served by MLX Knife from the Hugging Face cache (no Modelfile)\nFROM {name}"
        ))
        .chain(
            parameter_lines
                .iter()
                .map(|line| format!("PARAMETER {line}")),
        )
        .collect::<Vec<_>>()
        .join("\n");
        json!({
            "modelfile": modelfile + "\n",
            "parameters": parameter_lines.join("\n"),
            "details": details(info, parameters),
            "model_info": model_info,
            "capabilities": capabilities,
            "modified_at": rfc3339(info.last_modified.into()),
        })
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Json(shown))
}

/// What a model does, in Ollama's words; a speech-to-text model's are ours (`audio`, and
/// `audio-translate-en` for a multilingual Whisper), as Ollama has none for it.
fn capabilities(model: &ModelInfo, dir: &std::path::Path) -> Vec<&'static str> {
    match model.classification.model_type {
        ModelType::Embedding => vec!["embedding"],
        ModelType::Audio => model
            .classification
            .capabilities
            .iter()
            .map(|c| c.label())
            .collect(),
        _ => {
            // Every text model takes tools: through its template's own format, or the generic one.
            let mut capabilities = vec!["completion", "tools"];
            if reasons(dir) {
                capabilities.push("thinking");
            }
            capabilities
        }
    }
}

/// Ollama's `details`; what is not known is left empty.
fn details(model: &ModelInfo, parameters: Option<u64>) -> Value {
    let c = &model.classification;
    let family = c.architecture.clone().unwrap_or_default();
    json!({
        "parent_model": "",
        "format": c.framework.label().to_lowercase(),
        "family": family,
        "families": if family.is_empty() { Value::Null } else { json!([family]) },
        "parameter_size": parameters.map(human_count).unwrap_or_default(),
        "quantization_level": quantization_level(model),
    })
}

/// The number of parameters the weights hold, from their safetensors headers (a quantized
/// weight counts as the values it packs).
fn parameter_count(model: &ModelInfo) -> Option<u64> {
    let (dir, config) = (model.path.as_deref()?, model.config.as_ref()?);
    let facts = WeightFacts::read(dir, config).ok()?;
    Some(facts.dense_float32_bytes / 4).filter(|n| *n > 0)
}

/// As Ollama writes sizes: `494.03M`, `1.5B`, `8B`.
fn human_count(n: u64) -> String {
    let n = n as f64;
    let whole = |x: f64| x.fract() == 0.0;
    match n {
        _ if n >= 1e9 && whole(n / 1e9) => format!("{:.0}B", n / 1e9),
        _ if n >= 1e9 => format!("{:.1}B", n / 1e9),
        _ if n >= 1e6 && whole(n / 1e6) => format!("{:.0}M", n / 1e6),
        _ if n >= 1e6 => format!("{:.2}M", n / 1e6),
        _ if n >= 1e3 => format!("{:.0}K", n / 1e3),
        _ => format!("{n}"),
    }
}

/// `Q4`, `Q8` for MLX's affine quantization; the mode or method otherwise (`MXFP4`, `GPTQ`);
/// the float type (`BF16`) of an unquantized model; empty when the config does not say.
fn quantization_level(model: &ModelInfo) -> String {
    if let Some(q) = &model.classification.quantization {
        let scheme = q
            .mode
            .as_deref()
            .filter(|m| *m != "affine")
            .or(q.method.as_deref());
        return match (scheme, q.bits) {
            (Some(scheme), _) => scheme.to_uppercase(),
            (None, Some(bits)) => format!("Q{bits}"),
            (None, None) => String::new(),
        };
    }
    let dtype = model
        .config
        .as_ref()
        .and_then(|c| c.get("torch_dtype").or_else(|| c.get("dtype")))
        .and_then(Value::as_str);
    match dtype {
        Some("bfloat16") => "BF16",
        Some("float16") => "F16",
        Some("float32") => "F32",
        _ => "",
    }
    .to_string()
}

/// The sampling a request that leaves it out gets, under Ollama's option names.
fn defaults(model: &SamplingChoice) -> Vec<(&'static str, String)> {
    let params = model.resolve();
    let mut lines = vec![
        ("temperature", params.temperature.to_string()),
        ("top_p", params.top_p.to_string()),
    ];
    if params.top_k > 0 {
        lines.push(("top_k", params.top_k.to_string()));
    }
    if params.min_p > 0.0 {
        lines.push(("min_p", params.min_p.to_string()));
    }
    if params.repetition_penalty != 1.0 {
        lines.push(("repeat_penalty", params.repetition_penalty.to_string()));
    }
    lines
}

/// Whether the model writes a reasoning block: its chat template or its added tokens have
/// `<think>`.
fn reasons(dir: &std::path::Path) -> bool {
    ["chat_template.jinja", "tokenizer_config.json"]
        .iter()
        .filter_map(|file| std::fs::read_to_string(dir.join(file)).ok())
        .any(|text| text.contains("<think>"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_ollama_writes_them() {
        assert_eq!(human_count(494_032_768), "494.03M");
        assert_eq!(human_count(1_543_714_304), "1.5B");
        assert_eq!(human_count(8_000_000_000), "8B");
        assert_eq!(human_count(9_216), "9K");
        assert_eq!(human_count(12), "12");
    }
}
