//! A safetensors file from the internet, as `health` reads it: an error or a summary, never a
//! panic, a hang or a huge allocation.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("a temp file");
    file.write_all(data).expect("writing the input");
    let _ = mlxk_core::weights::check_safetensors(file.path(), data.len() as u64);
});
