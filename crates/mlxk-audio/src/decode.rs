//! Containers and codecs through symphonia: probe, pick the audio track, decode every packet into
//! mono samples at the source rate, then resample.

use std::io::ErrorKind;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::LazyLock;

use symphonia::core::codecs::audio::{AudioCodecParameters, AudioDecoderOptions};
use symphonia::core::codecs::registry::CodecRegistry;
use symphonia::core::errors::Error;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::well_known as formats;
use symphonia::core::formats::{FormatOptions, FormatReader, Track, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::packet::Packet;
use symphonia_adapter_libopus::OpusDecoder;

use crate::{resample, Audio, AudioError, Limits, SourceInfo};

/// Source rates outside this range are refused: no real recording uses them, and a hostile
/// header's rate would size the resampler's FFT.
const RATES: std::ops::RangeInclusive<u32> = 1_000..=384_000;

/// Symphonia's decoders and libopus: symphonia demuxes Ogg Opus (and Opus in WebM) but has no
/// Opus decoder of its own.
static CODECS: LazyLock<CodecRegistry> = LazyLock::new(|| {
    let mut codecs = CodecRegistry::new();
    symphonia::default::register_enabled_codecs(&mut codecs);
    codecs.register_audio_decoder::<OpusDecoder>();
    codecs
});

/// A decoding failure; I/O errors are kept apart so a file's error can name its path.
pub(crate) enum Failure {
    Audio(AudioError),
    Io(std::io::Error),
}

impl From<AudioError> for Failure {
    fn from(error: AudioError) -> Self {
        Failure::Audio(error)
    }
}

/// Decodes a whole source to 16 kHz mono. A panic inside a third-party decoder on hostile bytes
/// becomes [`AudioError::Corrupt`] (the fuzz target still sees it: libfuzzer aborts on panic).
pub(crate) fn decode(
    source: Box<dyn MediaSource>,
    hint: Option<&str>,
    limits: &Limits,
) -> Result<Audio, Failure> {
    catch_unwind(AssertUnwindSafe(|| decode_source(source, hint, limits))).unwrap_or_else(|_| {
        Err(AudioError::Corrupt("the decoder stopped on malformed data".into()).into())
    })
}

fn decode_source(
    source: Box<dyn MediaSource>,
    hint: Option<&str>,
    limits: &Limits,
) -> Result<Audio, Failure> {
    let stream = MediaSourceStream::new(source, Default::default());
    let mut format = symphonia::default::get_probe()
        .probe(
            &probe_hint(hint),
            stream,
            FormatOptions::default(),
            MetadataOptions::default(),
        )
        .map_err(probe_error)?;
    let container = container_name(format.as_ref());
    let track = format
        .default_track(TrackType::Audio)
        .ok_or_else(|| {
            AudioError::UnsupportedFormat(format!("no audio track in the {container} file"))
        })?
        .clone();
    let params = track
        .codec_params
        .as_ref()
        .and_then(|params| params.audio())
        .ok_or_else(|| AudioError::UnsupportedCodec("the audio track names no codec".into()))?
        .clone();
    let rate = params
        .sample_rate
        .ok_or_else(|| AudioError::Corrupt("the audio track has no sample rate".into()))?;
    if !RATES.contains(&rate) {
        return Err(AudioError::Corrupt(format!("sample rate {rate} Hz is out of range")).into());
    }
    if let Some(frames) = track.num_frames {
        check_length(frames as f64 / f64::from(rate), limits)?;
    }
    let stream = Stream {
        format: format.as_mut(),
        track: &track,
        rate,
        limits,
    };
    let Decoded {
        codec,
        channels,
        samples,
    } = decode_packets(stream, &params)?;
    if samples.is_empty() {
        return Err(AudioError::Empty.into());
    }
    let seconds = samples.len() as f64 / f64::from(rate);
    let samples = resample::mono_to_whisper_rate(samples, rate)?;
    let source = SourceInfo {
        container,
        codec,
        sample_rate: rate,
        channels,
        seconds,
    };
    Ok(Audio { samples, source })
}

/// The demuxer positioned on the chosen track, and what every codec path needs to know of it.
struct Stream<'a> {
    format: &'a mut dyn FormatReader,
    track: &'a Track,
    rate: u32,
    limits: &'a Limits,
}

impl Stream<'_> {
    /// The next packet of the chosen track; `None` at the end. A file cut short ends the stream
    /// (what was read is kept, as players do); a malformed container is `Corrupt`.
    fn next_packet(&mut self) -> Result<Option<Packet>, Failure> {
        loop {
            match self.format.next_packet() {
                Ok(Some(packet)) if packet.track_id == self.track.id => return Ok(Some(packet)),
                Ok(Some(_)) => continue,
                Ok(None) | Err(Error::ResetRequired) => return Ok(None),
                Err(Error::IoError(error)) if error.kind() == ErrorKind::UnexpectedEof => {
                    return Ok(None)
                }
                Err(Error::IoError(error)) => return Err(Failure::Io(error)),
                Err(error) => return Err(AudioError::Corrupt(error.to_string()).into()),
            }
        }
    }

    /// Fails once `frames` is more than the limit allows.
    fn check_frames(&self, frames: usize) -> Result<(), AudioError> {
        check_length(frames as f64 / f64::from(self.rate), self.limits)
    }
}

/// Mono samples at the source rate, and what they were.
struct Decoded {
    codec: &'static str,
    channels: usize,
    samples: Vec<f32>,
}

fn decode_packets(mut stream: Stream, params: &AudioCodecParameters) -> Result<Decoded, Failure> {
    let mut decoder = CODECS
        .make_audio_decoder(params, &AudioDecoderOptions::default())
        .map_err(|error| match error {
            Error::Unsupported(_) => {
                AudioError::UnsupportedCodec(format!("codec {}", params.codec))
            }
            other => AudioError::Corrupt(other.to_string()),
        })?;
    let codec = codec_name(decoder.codec_info().short_name);
    let mut channels = params
        .channels
        .as_ref()
        .map_or(0, |channels| channels.count());
    let mut mono = Vec::new();
    let mut interleaved: Vec<f32> = Vec::new();
    let mut first_error = None;
    loop {
        let packet = match stream.next_packet() {
            Ok(Some(packet)) => packet,
            Ok(None) => break,
            // Damage after some audio ends it, as a cut does; damage before any is `Corrupt`.
            Err(Failure::Audio(AudioError::Corrupt(_))) if !mono.is_empty() => break,
            Err(error) => return Err(error),
        };
        let buffer = match decoder.decode(&packet) {
            Ok(buffer) => buffer,
            // One damaged packet is skipped, as players do; a stream of nothing else is Corrupt.
            Err(Error::DecodeError(message)) => {
                first_error.get_or_insert_with(|| message.to_string());
                continue;
            }
            Err(Error::IoError(error)) => {
                first_error.get_or_insert_with(|| error.to_string());
                continue;
            }
            Err(Error::ResetRequired) => break,
            Err(error) => return Err(AudioError::Corrupt(error.to_string()).into()),
        };
        let count = buffer.spec().channels().count();
        if count == 0 || buffer.frames() == 0 {
            continue;
        }
        channels = count;
        // The buffer is already trimmed: symphonia's decoders drop a packet's encoder delay and
        // padding themselves (gapless, their default), libopus' adapter the pre-skip and padding.
        buffer.copy_to_vec_interleaved(&mut interleaved);
        resample::push_mean(&mut mono, &interleaved, count);
        stream.check_frames(mono.len())?;
    }
    if mono.is_empty() {
        if let Some(message) = first_error {
            return Err(AudioError::Corrupt(message).into());
        }
    }
    Ok(Decoded {
        codec,
        channels,
        samples: mono,
    })
}

fn check_length(seconds: f64, limits: &Limits) -> Result<(), AudioError> {
    if seconds > limits.max_seconds {
        return Err(AudioError::TooLong {
            seconds,
            limit: limits.max_seconds,
        });
    }
    Ok(())
}

/// A file name or extension (`hello.mp3`, `mp3`) or a MIME type (`audio/mpeg`).
fn probe_hint(hint: Option<&str>) -> Hint {
    let mut probe = Hint::new();
    let Some(hint) = hint.map(str::trim).filter(|hint| !hint.is_empty()) else {
        return probe;
    };
    match std::path::Path::new(hint)
        .extension()
        .and_then(|ext| ext.to_str())
    {
        Some(extension) => probe.with_extension(&extension.to_ascii_lowercase()),
        None if hint.contains('/') => probe.mime_type(hint),
        None => probe.with_extension(&hint.to_ascii_lowercase()),
    };
    probe
}

fn probe_error(error: Error) -> Failure {
    match error {
        Error::Unsupported(_) => AudioError::UnsupportedFormat("unknown container".into()).into(),
        Error::IoError(error) if error.kind() == ErrorKind::UnexpectedEof => {
            AudioError::UnsupportedFormat("no known container found".into()).into()
        }
        Error::IoError(error) => Failure::Io(error),
        other => AudioError::Corrupt(other.to_string()).into(),
    }
}

fn container_name(format: &dyn FormatReader) -> &'static str {
    let info = format.format_info();
    match info.format {
        formats::FORMAT_ID_WAVE => "wav",
        formats::FORMAT_ID_FLAC => "flac",
        formats::FORMAT_ID_MP1 | formats::FORMAT_ID_MP2 | formats::FORMAT_ID_MP3 => "mp3",
        formats::FORMAT_ID_OGG => "ogg",
        formats::FORMAT_ID_ISOMP4 => "mp4",
        formats::FORMAT_ID_MKV => "mkv",
        formats::FORMAT_ID_ADTS => "aac",
        _ => info.short_name,
    }
}

/// Symphonia's decoder names (`pcm_s16le`, `adpcm_ima_wav`) by family.
fn codec_name(short_name: &'static str) -> &'static str {
    if short_name.starts_with("pcm") {
        "pcm"
    } else if short_name.starts_with("adpcm") {
        "adpcm"
    } else {
        short_name
    }
}
