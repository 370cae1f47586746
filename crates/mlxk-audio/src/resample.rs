//! Mono at 16 kHz: the mean of the channels (as `ffmpeg -ac 1`), then rubato's FFT resampler.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Resampler};

use crate::{AudioError, WHISPER_RATE};

/// Interleaved samples of `channels` channels at `rate` Hz to mono at [`WHISPER_RATE`].
/// 16 kHz mono passes through unchanged.
pub fn to_whisper_rate(
    interleaved: &[f32],
    channels: usize,
    rate: u32,
) -> Result<Vec<f32>, AudioError> {
    if channels == 0 {
        return Err(AudioError::Corrupt("the audio has no channels".into()));
    }
    let mut mono = Vec::with_capacity(interleaved.len() / channels);
    push_mean(&mut mono, interleaved, channels);
    mono_to_whisper_rate(mono, rate)
}

/// Appends the mean of each whole frame of `interleaved` to `mono`.
pub(crate) fn push_mean(mono: &mut Vec<f32>, interleaved: &[f32], channels: usize) {
    if channels == 1 {
        mono.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channels as f32;
    mono.extend(
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * scale),
    );
}

/// Resamples mono audio; the result has exactly `ceil(len * 16000 / rate)` samples, aligned with
/// the input (rubato trims its own delay).
pub(crate) fn mono_to_whisper_rate(mono: Vec<f32>, rate: u32) -> Result<Vec<f32>, AudioError> {
    if rate == WHISPER_RATE || mono.is_empty() {
        return Ok(mono);
    }
    let failed = |error: &dyn std::fmt::Display| {
        AudioError::Corrupt(format!(
            "cannot resample {rate} Hz to {WHISPER_RATE} Hz: {error}"
        ))
    };
    let mut resampler = Fft::<f32>::new(
        rate as usize,
        WHISPER_RATE as usize,
        1024,
        1,
        FixedSync::Both,
    )
    .map_err(|error| failed(&error))?;
    let input = InterleavedSlice::new(&mono, 1, mono.len()).map_err(|error| failed(&error))?;
    let output = resampler
        .process_all(&input, mono.len(), None)
        .map_err(|error| failed(&error))?;
    Ok(output.take_data())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_khz_mono_passes_through_bit_for_bit() {
        let samples: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin()).collect();
        assert_eq!(to_whisper_rate(&samples, 1, 16_000).unwrap(), samples);
    }

    #[test]
    fn channels_are_averaged() {
        let stereo = [1.0, 0.0, 0.5, -0.5, -1.0, -1.0];
        assert_eq!(
            to_whisper_rate(&stereo, 2, 16_000).unwrap(),
            vec![0.5, 0.0, -1.0]
        );
    }

    #[test]
    fn a_tone_keeps_its_length_and_loudness_when_resampled() {
        // One second of 440 Hz at 44.1 kHz: one second at 16 kHz, same RMS (0.5/sqrt 2).
        let tone: Vec<f32> = (0..44_100)
            .map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 44_100.0).sin())
            .collect();
        let out = to_whisper_rate(&tone, 1, 44_100).unwrap();
        assert_eq!(out.len(), 16_000);
        let rms = (out[1000..15_000].iter().map(|s| s * s).sum::<f32>() / 14_000.0).sqrt();
        assert!((rms - 0.5 / 2f32.sqrt()).abs() < 0.01, "rms {rms}");
    }

    #[test]
    fn common_rates_give_exactly_the_16khz_length() {
        for (rate, frames, expected) in [
            (8_000, 8_000, 16_000),
            (22_050, 45_544, 33_048),
            (48_000, 4_801, 1_601),
        ] {
            let out = to_whisper_rate(&vec![0.1; frames], 1, rate).unwrap();
            assert_eq!(out.len(), expected, "{rate} Hz");
        }
    }

    #[test]
    fn no_channels_is_an_error_not_a_division_by_zero() {
        assert_eq!(
            to_whisper_rate(&[0.0], 0, 16_000).unwrap_err().kind(),
            "corrupt"
        );
    }
}
