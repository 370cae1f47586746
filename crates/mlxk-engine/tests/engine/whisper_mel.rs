//! The log-mel front end against mlx-whisper's: the filter bank computed in code equals the
//! `mel_filters.npz` it ships, and the spectrogram of a clip (padded with 30 s, as
//! `transcribe` computes it) equals `log_mel_spectrogram`'s.

use mlxk_engine::speech::mel::{mel_filters, LogMel};

use super::parity_whisper::{reference, TINY_EN};

#[test]
fn filters_and_log_mel_match_mlx_whisper() {
    let _mlx = super::mlx();
    let (_, reference) = reference(TINY_EN, "sonnet.wav", &[]);
    let n_mels = reference.result["n_mels"].as_u64().unwrap() as usize;
    let theirs = reference.floats("filters.f32");
    let ours = mel_filters(n_mels);
    assert_eq!(ours.len(), theirs.len());
    let worst = ours
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!("mel filters: max |diff| {worst:e}");
    assert!(worst <= 1e-8, "filters differ by {worst}");

    let samples = reference.floats("samples.f32");
    let mel = LogMel::compute(&samples, n_mels).unwrap();
    let theirs = reference.floats("mel.f32");
    assert_eq!(
        mel.frames,
        reference.result["mel_frames"].as_u64().unwrap() as usize
    );
    assert_eq!(mel.values().len(), theirs.len());
    let worst = mel
        .values()
        .iter()
        .zip(&theirs)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    eprintln!(
        "log-mel ({} frames, computed in chunks): max |diff| {worst:e}",
        mel.frames
    );
    assert!(worst <= 1e-6, "log-mel differs by {worst}");
}
