//! A GGUF file's header, metadata and tensor table, as `health` reads them.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("a temp file");
    file.write_all(data).expect("writing the input");
    let _ = mlxk_core::weights::check_gguf(file.path());
});
