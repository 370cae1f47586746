//! An uploaded audio file, as `/v1/audio/transcriptions` decodes it: any bytes give audio or an
//! error, never a panic, a hang or a balloon (the server's limits apply).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mlxk_audio::{decode_bytes, Limits};

fuzz_target!(|data: &[u8]| {
    // The first byte picks a hint, as a client's file name or content type would.
    let Some((&pick, bytes)) = data.split_first() else { return };
    let hint = [None, Some("clip.wav"), Some("audio/mpeg"), Some("clip.m4a"), Some("ogg")];
    let hint = hint[usize::from(pick) % hint.len()];
    if let Ok(audio) = decode_bytes(bytes.to_vec(), hint, &Limits::SERVER) {
        assert!(audio.samples.iter().all(|sample| sample.is_finite()));
    }
});
