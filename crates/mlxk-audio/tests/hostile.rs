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
    for name in FIXTURES {
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

/// Damage inside Ogg pages whose CRC is then made right again, so the bytes reach libopus (the
/// demuxer drops a page with a wrong CRC before any decoder sees it). libopus is C: its answers
/// must be errors or finite audio, and no Rust panic may be hidden by the crate's catch_unwind.
#[test]
fn damaged_opus_that_reaches_libopus_is_an_error_or_audio_never_a_panic() {
    let bytes = std::fs::read(fixture("hello.opus")).unwrap();
    let pages = ogg_pages(&bytes);
    assert_eq!(pages.len(), 5, "OpusHead, OpusTags and three audio pages");
    let before = panics_on_this_thread();
    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    let mut record = |damaged: &[u8], what: &str| match decode_bytes(
        damaged.to_vec(),
        Some("hello.opus"),
        &Limits::SERVER,
    ) {
        Ok(audio) => {
            assert!(audio.samples.iter().all(|s| s.is_finite()), "{what}");
            assert!(audio.seconds() < 2.2, "{what}: {} s", audio.seconds());
            *outcomes.entry("audio").or_default() += 1;
        }
        Err(error) => {
            assert!(
                matches!(
                    error.kind(),
                    "corrupt" | "unsupported_codec" | "unsupported_format" | "empty"
                ),
                "{what}: {error}"
            );
            *outcomes.entry(error.kind()).or_default() += 1;
        }
    };
    // Random bytes flipped in the packets of one audio page.
    for seed in 0..300u32 {
        let mut damaged = bytes.clone();
        let (start, body, end) = pages[2 + seed as usize % 3];
        for k in 0..1 + seed % 6 {
            let at =
                body + (seed.wrapping_mul(7_919) ^ k.wrapping_mul(104_729)) as usize % (end - body);
            damaged[at] ^= 0x5a ^ (seed as u8 | 1);
        }
        seal_ogg_page(&mut damaged[start..end]);
        record(&damaged, &format!("seed {seed}"));
    }
    // OpusHead fields: channel count (byte 9 of the packet), pre-skip (10..12), mapping family (18).
    let (start, body, end) = pages[0];
    for (offset, values) in [
        (9, &[0u8, 2, 3, 8, 255][..]),
        (10, &[0xff][..]),
        (11, &[0xff][..]),
        (18, &[1, 2, 255][..]),
    ] {
        for &value in values {
            let mut damaged = bytes.clone();
            damaged[body + offset] = value;
            seal_ogg_page(&mut damaged[start..end]);
            record(&damaged, &format!("OpusHead byte {offset} = {value}"));
        }
    }
    println!("damaged Opus: {outcomes:?}");
    assert_eq!(panics_on_this_thread(), before, "a decoder panicked");
    assert!(
        outcomes.get("audio") > Some(&0),
        "valid-looking damage still decodes"
    );
}

/// Each Ogg page of `bytes` as (start, start of its body, end).
fn ogg_pages(bytes: &[u8]) -> Vec<(usize, usize, usize)> {
    let mut pages = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        assert_eq!(&bytes[start..start + 4], b"OggS");
        let segments = usize::from(bytes[start + 26]);
        let table = &bytes[start + 27..start + 27 + segments];
        let body = start + 27 + segments;
        let end = body + table.iter().map(|&len| usize::from(len)).sum::<usize>();
        pages.push((start, body, end));
        start = end;
    }
    pages
}

/// Rewrites an Ogg page's CRC (bytes 22..26; CRC-32, polynomial 0x04c11db7, unreflected, over the
/// page with those bytes zeroed).
fn seal_ogg_page(page: &mut [u8]) {
    page[22..26].fill(0);
    let mut crc = 0u32;
    for &byte in page.iter() {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    page[22..26].copy_from_slice(&crc.to_le_bytes());
}

thread_local! {
    static PANICS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Panics so far on this thread, even those caught inside the crate (tests run on threads of
/// their own, so other tests' panics do not count).
fn panics_on_this_thread() -> usize {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.with(|count| count.set(count.get() + 1));
            previous(info);
        }));
    });
    PANICS.with(std::cell::Cell::get)
}
