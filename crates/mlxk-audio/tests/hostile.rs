//! Bytes that are not (whole) audio give a clear error, never a panic or a hang; the limits are
//! enforced before decoding when they can be.

use std::path::{Path, PathBuf};

use mlxk_audio::{decode_bytes, decode_file, AudioError, Limits};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/audio")
        .join(name)
}

const FIXTURES: [&str; 6] = [
    "hello.wav",
    "hello.flac",
    "hello.ogg",
    "hello.mp3",
    "hello.m4a",
    "hello.opus",
];

#[test]
fn zero_bytes_are_empty() {
    assert!(matches!(
        decode_bytes(Vec::new(), Some("a.wav"), &Limits::SERVER),
        Err(AudioError::Empty)
    ));
}

#[test]
fn garbage_is_an_unsupported_format_naming_what_is_supported() {
    let garbage: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for hint in [None, Some("x.wav"), Some("audio/mpeg")] {
        let error = decode_bytes(garbage.clone(), hint, &Limits::SERVER).unwrap_err();
        assert!(
            matches!(error.kind(), "unsupported_format" | "corrupt" | "empty"),
            "{hint:?}: {error}"
        );
        if error.kind() == "unsupported_format" {
            assert!(error.to_string().contains("FLAC"), "{error}");
        }
    }
    let text = b"{\"model\": \"whisper\"}".to_vec();
    assert_eq!(
        decode_bytes(text, None, &Limits::SERVER)
            .unwrap_err()
            .kind(),
        "unsupported_format"
    );
}

#[test]
fn every_truncation_and_corruption_of_every_fixture_is_an_error_or_audio() {
    for name in FIXTURES {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let mut cuts: Vec<usize> = (0..64).chain((64..bytes.len()).step_by(997)).collect();
        cuts.push(bytes.len() - 1);
        for cut in cuts {
            // Whatever the outcome, it must return.
            let _ = decode_bytes(bytes[..cut].to_vec(), Some(name), &Limits::SERVER);
        }
        for seed in 0..40u32 {
            let mut damaged = bytes.clone();
            for k in 0..8u32 {
                let at = (seed
                    .wrapping_mul(7_919)
                    .wrapping_add(k.wrapping_mul(104_729)) as usize)
                    % damaged.len();
                damaged[at] ^= 0x5a ^ (seed as u8);
            }
            if let Ok(audio) = decode_bytes(damaged, Some(name), &Limits::SERVER) {
                assert!(
                    audio.samples.iter().all(|s| s.is_finite()),
                    "{name} seed {seed}"
                );
            }
        }
    }
}

#[test]
fn a_file_cut_in_half_keeps_the_first_half() {
    let bytes = std::fs::read(fixture("hello.wav")).unwrap();
    let audio = decode_bytes(bytes[..bytes.len() / 2].to_vec(), None, &Limits::SERVER).unwrap();
    assert!(
        (0.9..1.1).contains(&audio.seconds()),
        "{} s",
        audio.seconds()
    );
}

#[test]
fn the_byte_limit_is_checked_before_decoding() {
    let limits = Limits {
        max_bytes: 1000,
        max_seconds: 3600.0,
    };
    let error = decode_bytes(vec![0; 1001], None, &limits).unwrap_err();
    assert!(
        matches!(
            error,
            AudioError::TooLarge {
                bytes: 1001,
                limit: 1000
            }
        ),
        "{error}"
    );
    let error = decode_file(&fixture("hello.flac"), &limits).unwrap_err();
    assert_eq!(error.kind(), "too_large");
}

#[test]
fn the_duration_limit_holds_for_every_format() {
    let limits = Limits {
        max_bytes: 1 << 30,
        max_seconds: 1.0,
    };
    for name in [
        "hello.wav",
        "hello.flac",
        "hello.ogg",
        "hello.mp3",
        "hello.m4a",
    ] {
        let error = decode_file(&fixture(name), &limits).unwrap_err();
        let AudioError::TooLong { seconds, limit } = error else {
            panic!("{name}: {error}")
        };
        assert!(seconds > 1.0 && limit == 1.0, "{name}: {seconds}");
    }
}

#[test]
fn a_missing_file_names_its_path() {
    let error = decode_file(Path::new("/nonexistent/clip.wav"), &Limits::CLI).unwrap_err();
    assert_eq!(error.kind(), "io");
    assert!(
        error.to_string().contains("/nonexistent/clip.wav"),
        "{error}"
    );
}

#[test]
fn a_wav_header_claiming_an_absurd_rate_is_refused() {
    let mut wav = std::fs::read(fixture("hello.wav")).unwrap();
    // The fmt chunk's sample rate sits at byte 24.
    wav[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
    let error = decode_bytes(wav, None, &Limits::SERVER).unwrap_err();
    assert!(
        matches!(error.kind(), "corrupt" | "unsupported_format"),
        "{error}"
    );
}
