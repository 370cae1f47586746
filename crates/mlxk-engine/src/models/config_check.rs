//! A model's `config.json` is a file from the internet: its sizes are checked before anything
//! is built from them, so that a zero (a division), a negative number or an absurd size (an
//! allocation that aborts the process) is a clear error naming the field.

use serde_json::Value;

use crate::error::{EngineError, Result};

use super::rope::{scaling_kind, Llama3Scaling};

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
    // Whisper (mlx-whisper's ModelDimensions); large-v3 has 128 mels, 1280 wide, 32 layers.
    ("n_mels", 512),
    ("n_audio_ctx", 1 << 16),
    ("n_audio_state", 1 << 14),
    ("n_audio_head", 1 << 10),
    ("n_audio_layer", 1 << 10),
    ("n_vocab", 1 << 23),
    ("n_text_ctx", 1 << 16),
    ("n_text_state", 1 << 14),
    ("n_text_head", 1 << 10),
    ("n_text_layer", 1 << 10),
];

/// Whisper's (state, heads) pairs: the heads split the state evenly.
const STATE_HEADS: &[(&str, &str)] = &[
    ("n_audio_state", "n_audio_head"),
    ("n_text_state", "n_text_head"),
];

/// Small positive floats (a zero or negative epsilon makes every norm divide by zero).
const POSITIVE_FLOATS: &[&str] = &[
    "rms_norm_eps",
    "rope_theta",
    "rope_local_base_freq",
    "query_pre_attn_scalar",
];

/// Numbers in `rope_scaling` that divide or multiply every frequency: a zero, a negative or
/// an overflow makes every rotation angle inf or NaN.
const ROPE_SCALING_FLOATS: &[&str] = &[
    "factor",
    "low_freq_factor",
    "high_freq_factor",
    "original_max_position_embeddings",
];

fn bad(field: &str, why: String) -> EngineError {
    EngineError::Config(format!("{field}: {why}"))
}

/// A positive number that stays one as the `f32` the architectures read it as (`1e39`
/// would be inf, `1e-40` a denormal whose inverse is inf).
fn is_usable_positive(value: &Value) -> bool {
    value
        .as_f64()
        .is_some_and(|x| x > 0.0 && (x as f32).is_normal())
}

/// Checks the sizes in `config`, that attention heads divide as the architectures need, and
/// the numbers the rotary embeddings are computed from.
pub fn check(config: &Value) -> Result<()> {
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
            if !is_usable_positive(value) {
                return Err(bad(field, format!("{value} is not a positive number")));
            }
        }
    }
    // The share of each head that is rotated: above 1 the rotation is wider than the head
    // (1e9 would size a frequency table of gigabytes).
    if let Some(value) = config.get("partial_rotary_factor").filter(|v| !v.is_null()) {
        if !value.as_f64().is_some_and(|x| x > 0.0 && x <= 1.0) {
            return Err(bad(
                "partial_rotary_factor",
                format!("{value} is not a share of the head in (0, 1]"),
            ));
        }
    }
    if let Some(scaling) = config.get("rope_scaling").filter(|v| !v.is_null()) {
        check_rope_scaling(scaling)?;
    }
    for (state_field, heads_field) in STATE_HEADS {
        if let (Some(state), Some(heads)) = (size(state_field), size(heads_field)) {
            if state % heads != 0 {
                return Err(bad(
                    heads_field,
                    format!("{heads} does not divide {state_field} ({state})"),
                ));
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

fn check_rope_scaling(scaling: &Value) -> Result<()> {
    let Some(fields) = scaling.as_object() else {
        return Err(bad("rope_scaling", format!("{scaling} is not an object")));
    };
    for key in ROPE_SCALING_FLOATS {
        if let Some(value) = fields.get(*key).filter(|v| !v.is_null()) {
            if !is_usable_positive(value) {
                return Err(bad(
                    &format!("rope_scaling.{key}"),
                    format!("{value} is not a positive number"),
                ));
            }
        }
    }
    if scaling_kind(scaling) == "llama3" {
        // The band between the two is blended by dividing by their difference.
        let numbers = Llama3Scaling::from_config(scaling);
        if numbers.low_freq_factor >= numbers.high_freq_factor {
            return Err(bad(
                "rope_scaling.low_freq_factor",
                format!(
                    "{} is not below high_freq_factor ({})",
                    numbers.low_freq_factor, numbers.high_freq_factor
                ),
            ));
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
            ("n_mels", json!(100_000), "outside 1..="),
            ("n_text_layer", json!(0), "outside 1..="),
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

    #[test]
    fn accepts_the_rope_settings_of_real_models() {
        let real = [
            // Llama 3.1 / 3.2
            (
                "rope_scaling",
                json!({"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                       "original_max_position_embeddings": 8192, "rope_type": "llama3"}),
            ),
            // Gemma 3
            (
                "rope_scaling",
                json!({"factor": 8.0, "rope_type": "linear"}),
            ),
            ("rope_scaling", json!({"type": "linear", "factor": 2.0})),
            ("rope_scaling", Value::Null),
            // Phi-3.5 and others rotate part of each head
            ("partial_rotary_factor", json!(0.5)),
            ("partial_rotary_factor", json!(1)),
        ];
        for (field, value) in real {
            let mut config = base();
            config[field] = value.clone();
            check(&config).unwrap_or_else(|e| panic!("{field} = {value}: {e}"));
        }
    }

    #[test]
    fn refuses_rope_numbers_that_would_give_inf_nan_or_a_huge_table() {
        let llama3 = |extra: Value| {
            let mut scaling = json!({"rope_type": "llama3", "factor": 8.0,
                "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192});
            for (key, value) in extra.as_object().unwrap() {
                scaling[key] = value.clone();
            }
            scaling
        };
        let cases = [
            (
                "partial_rotary_factor",
                json!(1e9),
                "partial_rotary_factor",
                "(0, 1]",
            ),
            (
                "partial_rotary_factor",
                json!(0),
                "partial_rotary_factor",
                "(0, 1]",
            ),
            (
                "partial_rotary_factor",
                json!(-0.5),
                "partial_rotary_factor",
                "(0, 1]",
            ),
            (
                "partial_rotary_factor",
                json!(1.01),
                "partial_rotary_factor",
                "(0, 1]",
            ),
            (
                "partial_rotary_factor",
                json!("0.5"),
                "partial_rotary_factor",
                "(0, 1]",
            ),
            (
                "rope_scaling",
                llama3(json!({"factor": 0})),
                "rope_scaling.factor",
                "not a positive number",
            ),
            (
                "rope_scaling",
                llama3(json!({"factor": -8.0})),
                "rope_scaling.factor",
                "not a positive number",
            ),
            // Finite as JSON, inf as the f32 the engine computes with.
            (
                "rope_scaling",
                llama3(json!({"factor": 1e39})),
                "rope_scaling.factor",
                "not a positive number",
            ),
            (
                "rope_scaling",
                json!({"type": "linear", "factor": 0.0}),
                "rope_scaling.factor",
                "not a positive number",
            ),
            (
                "rope_scaling",
                json!({"type": "linear", "factor": "8"}),
                "rope_scaling.factor",
                "not a positive number",
            ),
            (
                "rope_scaling",
                llama3(json!({"low_freq_factor": 0})),
                "rope_scaling.low_freq_factor",
                "not a positive number",
            ),
            (
                "rope_scaling",
                llama3(json!({"high_freq_factor": -4})),
                "rope_scaling.high_freq_factor",
                "not a positive number",
            ),
            (
                "rope_scaling",
                llama3(json!({"original_max_position_embeddings": 0})),
                "rope_scaling.original_max_position_embeddings",
                "not a positive number",
            ),
            (
                "rope_scaling",
                llama3(json!({"low_freq_factor": 4.0})),
                "rope_scaling.low_freq_factor",
                "not below high_freq_factor",
            ),
            (
                "rope_scaling",
                llama3(json!({"low_freq_factor": 6.0})),
                "rope_scaling.low_freq_factor",
                "not below high_freq_factor",
            ),
            // Left out, high_freq_factor is mlx-lm's 4: a lone low of 4 divides by zero too.
            (
                "rope_scaling",
                json!({"rope_type": "llama3", "low_freq_factor": 4}),
                "rope_scaling.low_freq_factor",
                "not below high_freq_factor",
            ),
            (
                "rope_scaling",
                json!("llama3"),
                "rope_scaling",
                "not an object",
            ),
            (
                "rope_theta",
                json!(1e39),
                "rope_theta",
                "not a positive number",
            ),
            (
                "rms_norm_eps",
                json!(1e-40),
                "rms_norm_eps",
                "not a positive number",
            ),
        ];
        for (field, value, named, expected) in cases {
            let mut config = base();
            config[field] = value.clone();
            let error = check(&config)
                .expect_err(&format!("{field} = {value} passed"))
                .to_string();
            assert!(
                error.contains(&format!("{named}: ")) && error.contains(expected),
                "{field} = {value}: {error}"
            );
        }
    }
}
