//! The log-mel spectrogram Whisper reads, computed as mlx-whisper's `log_mel_spectrogram`:
//! 25 ms periodic-Hann frames every 10 ms (reflect-padded at both ends), power spectrum, the
//! Slaney mel filter bank, `log10`, clamped to 8 below the loudest value of the whole file, and
//! scaled to about [-1, 1].
//!
//! The file is padded with 30 s of silence first (as `transcribe` does), so every window has
//! 3000 frames to read. Frames are computed in chunks (each frame depends only on its own
//! samples), so a long file never holds its whole complex spectrum at once; the clamp waits
//! for the global maximum.

use mlx_rs::fft::rfft;
use mlx_rs::ops::maximum;
use mlx_rs::Array;

use crate::error::Result;

use super::SAMPLE_RATE;

pub const N_FFT: usize = 400;
pub const HOP_LENGTH: usize = 160;
/// Samples in a 30-second window.
pub const N_SAMPLES: usize = 30 * SAMPLE_RATE as usize;
/// Mel frames in a 30-second window.
pub const N_FRAMES: usize = N_SAMPLES / HOP_LENGTH;
/// Frames computed in one pass.
const CHUNK_FRAMES: usize = 3000;

/// Slaney's mel scale (librosa's default, `htk=False`).
fn hz_to_mel(f: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if f >= min_log_hz {
        min_log_mel + (f / min_log_hz).ln() / logstep
    } else {
        f / f_sp
    }
}

fn mel_to_hz(m: f64) -> f64 {
    let f_sp = 200.0 / 3.0;
    let min_log_hz = 1000.0;
    let min_log_mel = min_log_hz / f_sp;
    let logstep = (6.4f64).ln() / 27.0;
    if m >= min_log_mel {
        min_log_hz * (logstep * (m - min_log_mel)).exp()
    } else {
        f_sp * m
    }
}

/// `numpy.linspace(start, stop, n)`.
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    let step = (stop - start) / (n - 1) as f64;
    let mut values: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
    values[n - 1] = stop;
    values
}

/// librosa's `filters.mel(sr=16000, n_fft=400, n_mels)` (Slaney scale and area norm, what
/// mlx-whisper ships as `mel_filters.npz`), computed in f64 as librosa does: `[n_mels, 201]`
/// row-major.
pub fn mel_filters(n_mels: usize) -> Vec<f32> {
    let bins = 1 + N_FFT / 2;
    let fft_freqs = linspace(0.0, SAMPLE_RATE as f64 / 2.0, bins);
    let mel_f: Vec<f64> = linspace(
        hz_to_mel(0.0),
        hz_to_mel(SAMPLE_RATE as f64 / 2.0),
        n_mels + 2,
    )
    .into_iter()
    .map(mel_to_hz)
    .collect();
    let mut weights = Vec::with_capacity(n_mels * bins);
    for i in 0..n_mels {
        let (lower_width, upper_width) = (mel_f[i + 1] - mel_f[i], mel_f[i + 2] - mel_f[i + 1]);
        let norm = 2.0 / (mel_f[i + 2] - mel_f[i]);
        for &f in &fft_freqs {
            let lower = -(mel_f[i] - f) / lower_width;
            let upper = (mel_f[i + 2] - f) / upper_width;
            // librosa keeps the triangles in float32 before the norm: rounding twice, as
            // it does, gives its values to the bit.
            let triangle = 0f64.max(lower.min(upper)) as f32;
            weights.push((triangle as f64 * norm) as f32);
        }
    }
    weights
}

/// The periodic Hann window of `N_FFT` samples (`numpy.hanning(401)[:-1]`).
fn hann_window() -> Vec<f32> {
    let m = (N_FFT + 1) as f64;
    (0..N_FFT)
        .map(|k| {
            let n = (2 * k) as f64 + 1.0 - m;
            (0.5 + 0.5 * (std::f64::consts::PI * n / (m - 1.0)).cos()) as f32
        })
        .collect()
}

/// A log-mel spectrogram `[frames, n_mels]` of a file padded with 30 s of silence.
pub struct LogMel {
    values: Vec<f32>,
    pub n_mels: usize,
    /// Frames in all, the padding's included.
    pub frames: usize,
    /// Frames of the audio itself (`samples / 160`).
    pub content_frames: usize,
}

impl LogMel {
    /// The spectrogram of 16 kHz `samples`.
    pub fn compute(samples: &[f32], n_mels: usize) -> Result<LogMel> {
        let padded_len = samples.len() + N_SAMPLES;
        // The zero-padded audio, reflect-padded by half a frame at both ends.
        let half = N_FFT / 2;
        let at = |i: usize| -> f32 {
            let x = |j: usize| samples.get(j).copied().unwrap_or(0.0);
            if i < half {
                x(half - i)
            } else if i < half + padded_len {
                x(i - half)
            } else {
                x(padded_len - 2 - (i - half - padded_len))
            }
        };
        let frames = padded_len / HOP_LENGTH;
        let window = Array::from_slice(&hann_window(), &[N_FFT as i32]);
        let filters = Array::from_slice(
            &mel_filters(n_mels),
            &[n_mels as i32, (1 + N_FFT / 2) as i32],
        );
        let floor = Array::from_f32(1e-10);
        let mut values = Vec::with_capacity(frames * n_mels);
        for first in (0..frames).step_by(CHUNK_FRAMES) {
            let count = CHUNK_FRAMES.min(frames - first);
            let start = first * HOP_LENGTH;
            let span: Vec<f32> = (start..start + (count - 1) * HOP_LENGTH + N_FFT)
                .map(at)
                .collect();
            let span = Array::from_slice(&span, &[span.len() as i32]);
            let framed = span.as_strided(
                &[count as i32, N_FFT as i32][..],
                &[HOP_LENGTH as i64, 1][..],
                None,
            )?;
            let spectrum = rfft(framed.multiply(&window)?, None, None)?;
            let power = spectrum.abs()?.square()?;
            let mel = power.matmul(filters.t())?;
            let log = maximum(&mel, &floor)?.log10()?;
            log.eval()?;
            values.extend_from_slice(log.as_slice::<f32>());
        }
        let top = values.iter().copied().fold(f32::NEG_INFINITY, f32::max) - 8.0;
        for v in values.iter_mut() {
            *v = (v.max(top) + 4.0) / 4.0;
        }
        Ok(LogMel {
            values,
            n_mels,
            frames,
            content_frames: samples.len() / HOP_LENGTH,
        })
    }

    /// All frames, row-major `[frames, n_mels]`.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// `count` frames from `seek`, padded with 0.0 to a 30-second window: `[1, 3000, n_mels]`
    /// (what `transcribe` gives the encoder).
    pub fn window(&self, seek: usize, count: usize) -> Array {
        let n = self.n_mels;
        let count = count.min(N_FRAMES).min(self.frames.saturating_sub(seek));
        let mut window = vec![0f32; N_FRAMES * n];
        window[..count * n].copy_from_slice(&self.values[seek * n..(seek + count) * n]);
        Array::from_slice(&window, &[1, N_FRAMES as i32, n as i32])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_and_filters_have_the_known_shape_and_values() {
        let w = hann_window();
        assert_eq!(w.len(), 400);
        assert_eq!(w[0], 0.0);
        assert!((w[200] - 1.0).abs() < 1e-7);
        assert!((w[100] - 0.5).abs() < 1e-6);
        let f = mel_filters(80);
        assert_eq!(f.len(), 80 * 201);
        // Every filter is a triangle with some weight; the top bins past the last filter are 0.
        for row in f.chunks(201) {
            assert!(row.iter().any(|&v| v > 0.0));
            assert!(row.iter().all(|&v| v >= 0.0));
        }
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((mel_to_hz(hz_to_mel(4321.0)) - 4321.0).abs() < 1e-9);
    }
}
