//! Every fixture format decodes to the same speech: right length, right loudness, and the same
//! waveform as the WAV it was encoded from (so a decoder returning silence or noise fails).

use std::path::PathBuf;

use mlxk_audio::{decode_bytes, decode_file, Audio, Limits, WHISPER_RATE};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/audio")
        .join(name)
}

fn decode(name: &str) -> Audio {
    decode_file(&fixture(name), &Limits::CLI).unwrap_or_else(|error| panic!("{name}: {error}"))
}

fn rms(samples: &[f32]) -> f32 {
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt()
}

/// The normalised correlation of `b` against `a` shifted by `lag` samples.
fn correlation(a: &[f32], b: &[f32], lag: isize) -> f32 {
    let (mut xy, mut xx, mut yy) = (0f64, 0f64, 0f64);
    for (i, &x) in a.iter().enumerate() {
        let j = i as isize + lag;
        if let Some(&y) = usize::try_from(j).ok().and_then(|j| b.get(j)) {
            xy += f64::from(x) * f64::from(y);
            xx += f64::from(x) * f64::from(x);
            yy += f64::from(y) * f64::from(y);
        }
    }
    (xy / (xx * yy).sqrt()) as f32
}

/// The best correlation over lags of up to ±1200 samples, and that lag (codecs shift the signal:
/// AAC's priming is 1024 frames): a coarse search, then the neighbourhood of the best.
fn best_correlation(a: &[f32], b: &[f32]) -> (f32, isize) {
    let best = |lags: &mut dyn Iterator<Item = isize>| {
        lags.map(|lag| (correlation(a, b, lag), lag))
            .fold(
                (f32::MIN, 0),
                |best, next| if next.0 > best.0 { next } else { best },
            )
    };
    let (_, coarse) = best(&mut (-1200..=1200).step_by(6));
    best(&mut (coarse - 6..=coarse + 6))
}

/// The WAV's length at 16 kHz.
const SECONDS: f64 = 2.066;

#[test]
fn every_format_decodes_to_the_same_speech() {
    let reference = decode("hello.wav");
    assert!((reference.seconds() - SECONDS).abs() < 0.001);
    // Symphonia 0.6 ignores MP4 edit lists, so AAC keeps the encoder's 1024 priming frames in
    // front (64 ms of near-silence at 16 kHz) and its last frame's padding; Whisper does not mind.
    let aac_frame = 1024.0 / 16_000.0;
    for (name, container, codec, rate, channels, extra_frames) in [
        ("hello.wav", "wav", "pcm", 22_050, 1, 0.0),
        ("hello.flac", "flac", "flac", 22_050, 1, 0.0),
        ("hello.ogg", "ogg", "vorbis", 44_100, 2, 0.0),
        ("hello.mp3", "mp3", "mp3", 44_100, 2, 0.0),
        ("hello.m4a", "mp4", "aac", 16_000, 1, 2.0),
        // Ogg Opus decodes at 48 kHz (the rate in OpusHead is only the input's).
        ("hello.opus", "ogg", "opus", 48_000, 1, 0.0),
    ] {
        let audio = decode(name);
        let source = &audio.source;
        let (r, lag) = best_correlation(&reference.samples, &audio.samples);
        let loudness = rms(&audio.samples) / rms(&reference.samples);
        println!(
            "{name}: {container}/{codec} {} Hz {} ch, {:.3} s decoded, correlation {r:.3} at lag {lag}, loudness {loudness:.3}",
            source.sample_rate, source.channels, audio.seconds()
        );
        assert_eq!(
            (source.container, source.codec),
            (container, codec),
            "{name}"
        );
        assert_eq!(
            (source.sample_rate, source.channels),
            (rate, channels),
            "{name}"
        );
        // At most `extra_frames` AAC frames more than the WAV (priming and padding).
        let extra = audio.seconds() - SECONDS;
        let allowed = -0.01..0.01 + extra_frames * aac_frame;
        assert!(allowed.contains(&extra), "{name}: {} s", audio.seconds());
        assert!((source.seconds - audio.seconds()).abs() < 0.001, "{name}");
        assert!(r > 0.95, "{name}: correlation {r}");
        assert!(
            (0.9..1.1).contains(&loudness),
            "{name}: loudness {loudness}"
        );
    }
}

#[test]
fn wav_at_16k_mono_passes_through_as_s16_divided_by_32768() {
    // A 16 kHz mono s16 WAV built by hand: the samples come back exactly as i16 / 32768.
    let pcm: Vec<i16> = (0..1600)
        .map(|i| ((i * 37) % 2000 - 1000) as i16 * 16)
        .collect();
    let audio = decode_bytes(wav_16k_mono(&pcm), Some("clip.wav"), &Limits::SERVER).unwrap();
    let expected: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
    assert_eq!(audio.samples, expected);
    assert_eq!(audio.source.sample_rate, WHISPER_RATE);
    assert!((audio.source.seconds - 0.1).abs() < 1e-9);
}

#[test]
fn bytes_and_file_give_the_same_samples_whatever_the_hint() {
    let bytes = std::fs::read(fixture("hello.mp3")).unwrap();
    let from_file = decode("hello.mp3").samples;
    for hint in [
        None,
        Some("hello.mp3"),
        Some("audio/mpeg"),
        Some("mp3"),
        Some("wrong.wav"),
    ] {
        let audio = decode_bytes(bytes.clone(), hint, &Limits::SERVER).unwrap();
        assert_eq!(audio.samples, from_file, "hint {hint:?}");
    }
}

pub fn wav_16k_mono(pcm: &[i16]) -> Vec<u8> {
    let data_len = (pcm.len() * 2) as u32;
    let mut wav = Vec::new();
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes()); // PCM
    wav.extend_from_slice(&1u16.to_le_bytes()); // mono
    wav.extend_from_slice(&16_000u32.to_le_bytes());
    wav.extend_from_slice(&32_000u32.to_le_bytes()); // bytes per second
    wav.extend_from_slice(&2u16.to_le_bytes()); // block align
    wav.extend_from_slice(&16u16.to_le_bytes()); // bits
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for sample in pcm {
        wav.extend_from_slice(&sample.to_le_bytes());
    }
    wav
}
