//! The JSON API 0.2.4 of mlx-knife: the shapes scripts written for it rely on.

use mlxk_core::classify::Quantization;
use mlxk_core::ModelInfo;
use serde_json::{json, Value};

pub const JSON_API_VERSION: &str = "0.2.4";

/// The `modelObject` of the schema (no other fields are allowed there).
pub fn model_object(model: &ModelInfo, with_quantization: bool) -> Value {
    let c = &model.classification;
    let hash = model
        .commit
        .as_ref()
        .filter(|h| h.len() == 40 && h.chars().all(|ch| ch.is_ascii_alphanumeric()));
    let mut object = json!({
        "name": model.name,
        "hash": hash,
        "size_bytes": model.size_bytes,
        "last_modified": utc(model.last_modified),
        "framework": c.framework.label(),
        "model_type": c.model_type.label(),
        "capabilities": c.capabilities.iter().map(|cap| cap.label()).collect::<Vec<_>>(),
        "health": if model.is_healthy() { "healthy" } else { "unhealthy" },
        "runtime_compatible": model.runtime.compatible,
        "reason": model.reason(),
        "cached": model.workspace.is_none(),
        "origin": model.workspace.as_ref().and_then(|w| w.origin.clone()),
        "content_hash": model.workspace.as_ref().and_then(|w| w.content_hash.clone()),
        "hash_modified": model.workspace.as_ref().and_then(|w| w.hash_modified.clone()),
        "clean": model.workspace.as_ref().and_then(|w| w.clean),
    });
    if with_quantization {
        object["quantization"] = c.quantization.as_ref().map_or(Value::Null, quantization);
    }
    object
}

pub fn quantization(q: &Quantization) -> Value {
    let mut value = json!({"bits": q.bits, "group_size": q.group_size});
    if let Some(mode) = &q.mode {
        value["mode"] = json!(mode);
    }
    if let Some(method) = &q.method {
        value["method"] = json!(method);
    }
    value
}

/// `2026-11-21T22:28:43Z`: real UTC, as the schema's `isoUtcZ` wants.
pub fn utc(time: chrono::DateTime<chrono::Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A health entry `{name, status, reason}`.
pub fn health_entry(model: &ModelInfo) -> Value {
    json!({
        "name": model.name,
        "status": if model.is_healthy() { "healthy" } else { "unhealthy" },
        "reason": model.health.reason(),
    })
}
