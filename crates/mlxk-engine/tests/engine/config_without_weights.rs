//! A `config.json` taken as far as a model is built from it without weights
//! (`models::build_without_weights`, what the fuzz target runs): every supported architecture
//! takes a sane config, and hostile numbers are config errors naming the field, before any
//! table is allocated from them.

use mlxk_engine::models::build_without_weights;
use mlxk_engine::EngineError;
use serde_json::{json, Value};

use super::mlx;

fn config(model_type: &str) -> Value {
    json!({
        "model_type": model_type, "hidden_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "intermediate_size": 128, "vocab_size": 256, "rms_norm_eps": 1e-5,
    })
}

fn config_error(config: &Value) -> String {
    let _mlx = mlx();
    match build_without_weights(config) {
        Err(error @ EngineError::Config(_)) => error.to_string(),
        other => panic!("{config}: expected a config error, got {other:?}"),
    }
}

#[test]
fn every_supported_architecture_builds_from_a_sane_config() {
    let _mlx = mlx();
    for &architecture in mlxk_core::architectures::SUPPORTED_ARCHITECTURES {
        build_without_weights(&config(architecture))
            .unwrap_or_else(|e| panic!("{architecture}: {e}"));
        let mut scaled = config(architecture);
        scaled["rope_scaling"] = json!({"rope_type": "llama3", "factor": 32.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192});
        build_without_weights(&scaled).unwrap_or_else(|e| panic!("{architecture}: {e}"));
    }
    let unknown = build_without_weights(&config("mamba"));
    assert!(
        matches!(unknown, Err(EngineError::UnsupportedArchitecture(ref a)) if a == "mamba"),
        "{unknown:?}"
    );
}

#[test]
fn a_partial_rotary_factor_of_a_billion_is_refused_before_its_frequency_table() {
    // Unchecked, llama3 scaling would compute 8 billion frequencies (about 4 GB).
    let mut phi3 = config("phi3");
    phi3["partial_rotary_factor"] = json!(1e9);
    phi3["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0});
    let error = config_error(&phi3);
    assert!(error.contains("partial_rotary_factor"), "{error}");

    // In range, yet too small to rotate one dimension of a 16-wide head.
    phi3["partial_rotary_factor"] = json!(0.01);
    let error = config_error(&phi3);
    assert!(
        error.contains("partial_rotary_factor") && error.contains("no dimension"),
        "{error}"
    );
}

#[test]
fn rope_scaling_that_would_give_inf_or_nan_is_a_config_error() {
    let scaled = |scaling: Value| {
        let mut llama = config("llama");
        llama["rope_scaling"] = scaling;
        llama
    };
    let cases = [
        (
            json!({"rope_type": "llama3", "factor": 0}),
            "rope_scaling.factor",
        ),
        (
            json!({"type": "linear", "factor": -2}),
            "rope_scaling.factor",
        ),
        (
            json!({"rope_type": "llama3", "low_freq_factor": 2, "high_freq_factor": 2}),
            "rope_scaling.low_freq_factor",
        ),
        (
            json!({"rope_type": "llama3", "original_max_position_embeddings": 0}),
            "rope_scaling.original_max_position_embeddings",
        ),
    ];
    for (scaling, field) in cases {
        let error = config_error(&scaled(scaling));
        assert!(error.contains(field), "{field}: {error}");
    }
    // Each number is fine alone; together they overflow f32.
    let mut overflowing = scaled(json!({"rope_type": "llama3", "factor": 1e30}));
    overflowing["rope_theta"] = json!(3e38);
    let error = config_error(&overflowing);
    assert!(
        error.contains("rope_scaling") && error.contains("not finite"),
        "{error}"
    );
}

#[test]
fn architectures_that_ignore_head_dim_check_their_own_head_size() {
    // With head_dim given, the check does not divide hidden_size; Qwen 2 and Phi-3 do.
    for architecture in ["qwen2", "phi3"] {
        let mut odd = config(architecture);
        odd["hidden_size"] = json!(4);
        odd["num_attention_heads"] = json!(8);
        let error = config_error(&odd);
        assert!(
            error.contains("does not divide hidden_size"),
            "{architecture}: {error}"
        );
    }
}

#[test]
fn a_bert_config_builds_and_names_what_the_encoder_does_not_implement() {
    let mut bert = config("bert");
    bert["max_position_embeddings"] = json!(512);
    build_without_weights(&bert).unwrap();
    for (field, value, words) in [
        ("hidden_act", json!("relu"), "hidden_act"),
        ("position_embedding_type", json!("relative_key"), "absolute"),
        ("hidden_size", json!(66), "does not divide hidden_size"),
    ] {
        let mut hostile = bert.clone();
        hostile[field] = value;
        let error = config_error(&hostile);
        assert!(error.contains(words), "{field}: {error}");
    }
}
