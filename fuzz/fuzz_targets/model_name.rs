//! What a person types as a model name (`org/name@rev`, paths, patterns): never a panic, and
//! a name that parses round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlxk_core::{ModelSpec, RepoId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(spec) = ModelSpec::parse(text) {
        let again = ModelSpec::parse(&spec.to_string()).expect("a parsed name parses again");
        assert_eq!(again.to_string(), spec.to_string());
    }
    if let Ok(id) = RepoId::parse(text) {
        assert!(!id.as_str().contains(".."), "{id}");
        let _ = id.cache_dir_name();
    }
    let _ = mlxk_core::workspace::looks_like_path(text);
    let _ = mlxk_core::secrets::redact_tokens(text);
});
