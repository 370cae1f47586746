//! Audio files to the 16 kHz mono samples Whisper reads (no MLX).
//!
//! One entry point per source: [`decode_file`] for the CLI (streams from disk) and
//! [`decode_bytes`] for the server (an uploaded body). Both check the byte limit before decoding
//! and the duration as soon as it is known (from the container, else while decoding), mix every
//! channel down to mono and resample to [`WHISPER_RATE`]; 16 kHz mono sources pass through
//! untouched, so a reference implementation fed the same file sees the same samples.
//!
//! Decoding is pure Rust (symphonia) except Opus: symphonia demuxes it but has no decoder, and
//! the pure Rust port we tried (mousiki 0.2.1) decodes speech audibly wrong, so Opus goes to
//! libopus (C, built from source and linked statically by `symphonia-adapter-libopus`). Hostile
//! bytes give an [`AudioError`], never a panic.

mod decode;
mod resample;

use std::path::{Path, PathBuf};

pub use resample::to_whisper_rate;

/// The sample rate Whisper's front end expects.
pub const WHISPER_RATE: u32 = 16_000;

/// What the decoders accept, for error messages and help texts.
pub const SUPPORTED: &str =
    "WAV, FLAC, MP3, OGG (Vorbis, Opus), M4A/MP4 (AAC), WebM/MKV (Vorbis, Opus, FLAC, AAC)";

/// How much audio one request may bring: the file's size and its playing time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_seconds: f64,
}

impl Limits {
    /// An HTTP upload: OpenAI's own 25 MB, and an hour of speech.
    pub const SERVER: Limits = Limits {
        max_bytes: 25 << 20,
        max_seconds: 3600.0,
    };
    /// A local file: bounded only so a mistaken path cannot exhaust memory.
    pub const CLI: Limits = Limits {
        max_bytes: 4 << 30,
        max_seconds: 4.0 * 3600.0,
    };
}

/// What the file was, before it became 16 kHz mono.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct SourceInfo {
    /// `wav`, `flac`, `mp3`, `ogg`, `mp4`, `mkv`, `aac` (ADTS), ...
    pub container: &'static str,
    /// `pcm`, `adpcm`, `flac`, `mp3`, `vorbis`, `opus`, `aac`, ...
    pub codec: &'static str,
    pub sample_rate: u32,
    pub channels: usize,
    /// The decoded playing time.
    pub seconds: f64,
}

/// Decoded audio: mono samples at [`WHISPER_RATE`], in [-1, 1] for integer sources.
#[derive(Debug, Clone)]
pub struct Audio {
    pub samples: Vec<f32>,
    pub source: SourceInfo,
}

impl Audio {
    /// The playing time of `samples`.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(WHISPER_RATE)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("the audio file is empty")]
    Empty,
    #[error("the audio file is {bytes} bytes; the limit is {limit} bytes")]
    TooLarge { bytes: u64, limit: u64 },
    #[error("the audio is {seconds:.1} s long; the limit is {limit:.0} s")]
    TooLong { seconds: f64, limit: f64 },
    #[error("not a supported audio file ({0}); supported: {SUPPORTED}")]
    UnsupportedFormat(String),
    #[error("unsupported audio codec: {0}; supported: {SUPPORTED}")]
    UnsupportedCodec(String),
    #[error("the audio file is damaged: {0}")]
    Corrupt(String),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl AudioError {
    /// A stable machine-readable name (logs, JSON errors, tests).
    pub fn kind(&self) -> &'static str {
        match self {
            AudioError::Empty => "empty",
            AudioError::TooLarge { .. } => "too_large",
            AudioError::TooLong { .. } => "too_long",
            AudioError::UnsupportedFormat(_) => "unsupported_format",
            AudioError::UnsupportedCodec(_) => "unsupported_codec",
            AudioError::Corrupt(_) => "corrupt",
            AudioError::Io { .. } => "io",
        }
    }
}

/// Decodes a file from disk, streaming it (a long recording is never read whole into memory).
pub fn decode_file(path: &Path, limits: &Limits) -> Result<Audio, AudioError> {
    let io = |source| AudioError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let bytes = file.metadata().map_err(io)?.len();
    check_size(bytes, limits)?;
    let hint = path.file_name().and_then(|name| name.to_str());
    decode::decode(Box::new(file), hint, limits).map_err(|error| match error {
        decode::Failure::Audio(error) => error,
        decode::Failure::Io(source) => io(source),
    })
}

/// Decodes an uploaded file. `hint` is its file name, extension or MIME type, if known: it only
/// speeds up the probe, the bytes decide.
pub fn decode_bytes(
    bytes: Vec<u8>,
    hint: Option<&str>,
    limits: &Limits,
) -> Result<Audio, AudioError> {
    check_size(bytes.len() as u64, limits)?;
    decode::decode(Box::new(std::io::Cursor::new(bytes)), hint, limits).map_err(|error| match error
    {
        decode::Failure::Audio(error) => error,
        decode::Failure::Io(source) => AudioError::Corrupt(source.to_string()),
    })
}

fn check_size(bytes: u64, limits: &Limits) -> Result<(), AudioError> {
    if bytes == 0 {
        return Err(AudioError::Empty);
    }
    if bytes > limits.max_bytes {
        return Err(AudioError::TooLarge {
            bytes,
            limit: limits.max_bytes,
        });
    }
    Ok(())
}
