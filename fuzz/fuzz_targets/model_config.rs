//! A `config.json` from a model file: checked before any model is built from it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(config) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if mlxk_engine::models::check_config(&config).is_ok() {
        // What the check lets through, the architectures can take apart without dividing by
        // zero or allocating without bound.
        for field in ["num_attention_heads", "num_key_value_heads", "sliding_window_pattern"] {
            if let Some(v) = config.get(field).and_then(serde_json::Value::as_u64) {
                assert!(v > 0, "{field} passed as 0");
            }
        }
    }
    let _ = mlxk_core::architectures::asks_for_custom_code(&config);
});
