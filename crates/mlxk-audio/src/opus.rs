//! Opus packets (demuxed by symphonia from Ogg, WebM or MKV) through mousiki.
//!
//! Opus decodes natively at 16 kHz and mixes down itself, so the output is already what Whisper
//! reads: no resampler runs on this path.

use mousiki::{Channels, Decoder};
use symphonia::core::codecs::audio::AudioCodecParameters;

use crate::decode::{Decoded, Failure, Stream};
use crate::{AudioError, WHISPER_RATE};

/// The longest Opus packet, 120 ms, at 16 kHz.
const MAX_PACKET_FRAMES: usize = 1920;

pub(crate) fn decode(
    mut stream: Stream,
    params: &AudioCodecParameters,
) -> Result<Decoded, Failure> {
    let head = Head::parse(params.extra_data.as_deref())?;
    let mut decoder = Decoder::new(WHISPER_RATE, Channels::Mono)
        .map_err(|error| AudioError::Corrupt(format!("opus decoder: {error:?}")))?;
    let mut mono = Vec::new();
    let mut pcm = [0f32; MAX_PACKET_FRAMES];
    let mut first_error = None;
    while let Some(packet) = stream.next_packet()? {
        let frames = match decoder.decode_float(&packet.data, &mut pcm, false) {
            Ok(frames) => frames.min(pcm.len()),
            Err(error) => {
                first_error.get_or_insert_with(|| format!("opus packet: {error:?}"));
                continue;
            }
        };
        let start = stream
            .trim_frames(packet.trim_start, WHISPER_RATE)
            .min(frames);
        let end = frames
            - stream
                .trim_frames(packet.trim_end, WHISPER_RATE)
                .min(frames - start);
        mono.extend(pcm[start..end].iter().map(|sample| sample * head.gain));
        stream.check_frames(mono.len(), WHISPER_RATE)?;
    }
    if mono.is_empty() {
        if let Some(message) = first_error {
            return Err(AudioError::Corrupt(message).into());
        }
    }
    Ok(Decoded {
        codec: "opus",
        channels: head.channels,
        samples: mono,
    })
}

/// What the decoder needs of the `OpusHead` header (RFC 7845 §5.1).
struct Head {
    channels: usize,
    /// The header's output gain (Q7.8 dB) as a factor.
    gain: f32,
}

impl Head {
    fn parse(bytes: Option<&[u8]>) -> Result<Head, AudioError> {
        let head = bytes
            .filter(|head| head.len() >= 19 && head.starts_with(b"OpusHead"))
            .ok_or_else(|| AudioError::Corrupt("the Opus stream has no OpusHead header".into()))?;
        let channels = usize::from(head[9]);
        let family = head[18];
        // Family 0 is mono or stereo; 1 and up need a multistream decoder (surround sound).
        if family != 0 || !(1..=2).contains(&channels) {
            return Err(AudioError::UnsupportedCodec(format!(
                "Opus with {channels} channels (mapping family {family}); mono and stereo are supported"
            )));
        }
        let gain_q8 = i16::from_le_bytes([head[16], head[17]]);
        let gain = 10f32.powf(f32::from(gain_q8) / (20.0 * 256.0));
        Ok(Head { channels, gain })
    }
}
