//! A `config.json` from a model file: checked, then taken as far as a model is built from it
//! without weights (each architecture's arguments and rotary embeddings), as every supported
//! architecture.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlxk_engine::models::{build_without_weights, check_config};
use mlxk_engine::EngineError;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if check_config(&config).is_ok() {
        // What the check lets through, the architectures can take apart without dividing by
        // zero or allocating without bound.
        for field in [
            "num_attention_heads",
            "num_key_value_heads",
            "sliding_window_pattern",
        ] {
            if let Some(v) = config.get(field).and_then(Value::as_u64) {
                assert!(v > 0, "{field} passed as 0");
            }
        }
    }
    let _ = mlxk_core::architectures::asks_for_custom_code(&config);
    let _ = build_without_weights(&config);
    // The same numbers as every architecture: one input exercises all of them.
    if let Value::Object(fields) = &config {
        for &architecture in mlxk_core::architectures::SUPPORTED_ARCHITECTURES {
            let mut as_architecture = fields.clone();
            as_architecture.insert("model_type".into(), architecture.into());
            let result = build_without_weights(&Value::Object(as_architecture));
            assert!(
                !matches!(result, Err(EngineError::UnsupportedArchitecture(_))),
                "{architecture} is supported but the engine does not build it"
            );
        }
    }
});
