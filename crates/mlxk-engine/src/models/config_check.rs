//! A model's `config.json` is a file from the internet: its sizes are checked before anything
//! is built from them, so that a zero (a division), a negative number or an absurd size (an
//! allocation that aborts the process) is a clear error naming the field.

use serde_json::Value;

use crate::error::{EngineError, Result};

/// Sizes every architecture reads, with the largest value any real model comes near (with
/// room to spare). Present fields must be whole numbers from 1 to the bound.
const SIZES: &[(&str, u64)] = &[
    ("hidden_size", 1 << 17),
    ("num_hidden_layers", 1 << 12),
    ("num_attention_heads", 1 << 12),
    ("num_key_value_heads", 1 << 12),
    ("head_dim", 1 << 13),
    ("intermediate_size", 1 << 20),
    ("vocab_size", 1 << 23),
    ("max_position_embeddings", 1 << 26),
    ("sliding_window", 1 << 26),
    ("sliding_window_pattern", 1 << 12),
];

/// Small positive floats (a zero or negative epsilon makes every norm divide by zero).
const POSITIVE_FLOATS: &[&str] = &[
    "rms_norm_eps",
    "rope_theta",
    "rope_local_base_freq",
    "query_pre_attn_scalar",
];

/// Checks the sizes in `config` and that attention heads divide as the architectures need.
pub fn check(config: &Value) -> Result<()> {
    let bad = |field: &str, why: String| EngineError::Config(format!("{field}: {why}"));
    let size = |field: &str| config.get(field).and_then(Value::as_u64);
    for (field, max) in SIZES {
        let Some(value) = config.get(*field) else {
            continue;
        };
        if value.is_null() {
            continue;
        }
        match value.as_u64() {
            Some(n) if (1..=*max).contains(&n) => {}
            Some(n) => {
                return Err(bad(
                    field,
                    format!("{n} is outside 1..={max}, the sizes a model can have"),
                ))
            }
            None => {
                return Err(bad(
                    field,
                    format!("{value} is not a positive whole number"),
                ))
            }
        }
    }
    for field in POSITIVE_FLOATS {
        if let Some(value) = config.get(*field).filter(|v| !v.is_null()) {
            match value.as_f64() {
                Some(x) if x.is_finite() && x > 0.0 => {}
                _ => return Err(bad(field, format!("{value} is not a positive number"))),
            }
        }
    }
    if let Some(heads) = size("num_attention_heads") {
        if let Some(kv_heads) = size("num_key_value_heads") {
            if heads % kv_heads != 0 {
                return Err(bad(
                    "num_key_value_heads",
                    format!("{kv_heads} does not divide num_attention_heads ({heads})"),
                ));
            }
        }
        if let (Some(hidden), None) = (size("hidden_size"), size("head_dim")) {
            if hidden % heads != 0 {
                return Err(bad(
                    "num_attention_heads",
                    format!(
                        "{heads} does not divide hidden_size ({hidden}) and no head_dim is given"
                    ),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn base() -> Value {
        json!({
            "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 128,
            "vocab_size": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
        })
    }

    #[test]
    fn accepts_a_sane_config_and_ignores_absent_or_null_fields() {
        check(&base()).unwrap();
        let mut config = base();
        config["head_dim"] = Value::Null;
        check(&config).unwrap();
    }

    #[test]
    fn refuses_zero_negative_absurd_and_inconsistent_sizes() {
        let cases = [
            ("num_attention_heads", json!(0), "outside 1..="),
            ("num_hidden_layers", json!(1_000_000), "outside 1..="),
            ("hidden_size", json!(1_000_000_000), "outside 1..="),
            ("vocab_size", json!(-5), "not a positive whole number"),
            ("hidden_size", json!(64.5), "not a positive whole number"),
            ("head_dim", json!("64"), "not a positive whole number"),
            ("sliding_window_pattern", json!(0), "outside 1..="),
            ("rms_norm_eps", json!(0.0), "not a positive number"),
            ("rope_theta", json!(-1.0), "not a positive number"),
            ("num_key_value_heads", json!(3), "does not divide"),
            (
                "num_attention_heads",
                json!(6),
                "does not divide hidden_size",
            ),
        ];
        for (field, value, expected) in cases {
            let mut config = base();
            config[field] = value;
            let error = check(&config).unwrap_err().to_string();
            assert!(
                error.contains(field) && error.contains(expected),
                "{field}: {error}"
            );
        }
    }
}
