//! The seek loop of mlx-whisper's `transcribe`: 30-second windows from `seek`, each decoded
//! with the temperature fallback, cut into segments at consecutive timestamps, and the next
//! window starting where the last complete segment ended. Each window is conditioned on the
//! text before it (unless a window needed a high temperature).
//!
//! The loop is resumable in small steps: one step encodes a window, the next ones each sample
//! at most [`TOKENS_PER_STEP`] tokens of it; the fallback and the move to the next window
//! happen at the step where a window's text ends.

use std::rc::Rc;

use mlx_rs::random::RandomState;

use crate::error::Result;
use crate::models::whisper::CrossKv;

use super::decoding::{DecodeResult, WindowDecode, WindowDecoder};
use super::mel::{LogMel, HOP_LENGTH, N_FRAMES};
use super::{Inner, Segment, Task, TranscribeOptions, Transcript, SAMPLE_RATE};

/// Mel frames per encoder position (and per timestamp step).
const INPUT_STRIDE: usize = 2;

/// An `f32` option as the decimal it was written as (0.6, not 0.6000000238), for comparisons
/// with the `f64` statistics as Python makes them.
fn decimal(value: f32) -> f64 {
    value.to_string().parse().unwrap_or(value as f64)
}

/// Tokens one [`Transcription::step`] samples at most. Each costs one decoder pass, about a
/// chat token's time on the same device, so a chat stream interleaved with a transcription
/// waits a few of its own tokens per step instead of a whole window (up to 224 tokens, more
/// with the fallback's retries: 10-20 s in a debug build).
pub const TOKENS_PER_STEP: usize = 16;

/// Where the window at `seek` is.
enum WindowState {
    /// Not encoded yet.
    Encode,
    /// Encoded (`cross`), being decoded at the `attempt`-th temperature.
    Decode {
        cross: Vec<CrossKv>,
        attempt: usize,
        decode: WindowDecode,
    },
}

/// A transcription under way.
pub struct Transcription {
    inner: Rc<Inner>,
    mel: LogMel,
    options: TranscribeOptions,
    language: &'static str,
    sot_sequence: Vec<u32>,
    duration: f64,
    /// The next window starts at this mel frame.
    seek: usize,
    all_tokens: Vec<u32>,
    initial_prompt_tokens: usize,
    prompt_reset_since: usize,
    segments: Vec<Segment>,
    random: RandomState,
    /// The first window's keys and values, when language detection encoded the same frames.
    first_window: Option<Vec<CrossKv>>,
    window: WindowState,
    /// Tokens sampled in all (fallback retries included).
    tokens_sampled: usize,
}

impl Transcription {
    pub(super) fn new(
        inner: Rc<Inner>,
        mel: LogMel,
        options: TranscribeOptions,
        language: &'static str,
        duration: f64,
        first_window: Option<Vec<CrossKv>>,
    ) -> Result<Self> {
        let sot_sequence = inner
            .tokenizer
            .sot_sequence(language, options.task == Task::Translate);
        let all_tokens = match options.initial_prompt.as_deref() {
            Some(prompt) => inner.tokenizer.encode(&format!(" {}", prompt.trim()))?,
            None => Vec::new(),
        };
        let random = match options.seed {
            Some(seed) => RandomState::with_seed(seed)?,
            None => RandomState::new()?,
        };
        Ok(Transcription {
            initial_prompt_tokens: all_tokens.len(),
            inner,
            mel,
            options,
            language,
            sot_sequence,
            duration,
            seek: 0,
            all_tokens,
            prompt_reset_since: 0,
            segments: Vec::new(),
            random,
            first_window,
            window: WindowState::Encode,
            tokens_sampled: 0,
        })
    }

    /// The language code transcribed (given or detected).
    pub fn language(&self) -> &'static str {
        self.language
    }

    pub fn is_done(&self) -> bool {
        self.seek >= self.mel.content_frames
    }

    /// Seconds of audio done, and in all.
    pub fn progress(&self) -> (f64, f64) {
        if self.is_done() {
            return (self.duration, self.duration);
        }
        let done = self.seek * HOP_LENGTH;
        (done as f64 / SAMPLE_RATE as f64, self.duration)
    }

    /// Tokens sampled so far, fallback retries included (at most [`TOKENS_PER_STEP`] more
    /// per step).
    pub fn tokens_sampled(&self) -> usize {
        self.tokens_sampled
    }

    fn decoder(&self) -> WindowDecoder<'_> {
        WindowDecoder {
            model: &self.inner.whisper,
            tokenizer: &self.inner.tokenizer,
            masks: &self.inner.masks,
        }
    }

    /// A decoding of the window at `seek` at the `attempt`-th temperature, after the text
    /// since the last prompt reset.
    fn begin_decode(&self, attempt: usize) -> WindowDecode {
        self.decoder().begin(
            &self.all_tokens[self.prompt_reset_since..],
            &self.sot_sequence,
            self.options.temperatures[attempt],
        )
    }

    /// Whether a decoded window is kept: it is silence, or it is neither repetitive nor
    /// unlikely (else the next temperature is tried).
    fn acceptable(&self, decoded: &DecodeResult) -> bool {
        let o = &self.options;
        let too_repetitive = o
            .compression_ratio_threshold
            .is_some_and(|t| decoded.compression_ratio > decimal(t));
        let too_unlikely = o
            .logprob_threshold
            .is_some_and(|t| decoded.avg_logprob < decimal(t));
        let silence = o
            .no_speech_threshold
            .is_some_and(|t| decoded.no_speech_prob > decimal(t));
        silence || !(too_repetitive || too_unlikely)
    }

    /// A bounded slice of the work: encodes the next window, or samples up to
    /// [`TOKENS_PER_STEP`] of its tokens. Returns the segments finished (none until a window's
    /// text ends, and none for silence).
    pub fn step(&mut self) -> Result<Vec<Segment>> {
        if self.is_done() {
            return Ok(Vec::new());
        }
        let WindowState::Decode {
            cross,
            attempt,
            decode,
        } = &mut self.window
        else {
            let segment_size = N_FRAMES.min(self.mel.content_frames - self.seek);
            let cross = match self.first_window.take() {
                Some(cross) if self.seek == 0 && segment_size == N_FRAMES => cross,
                _ => self
                    .inner
                    .encode(&self.mel.window(self.seek, segment_size))?,
            };
            self.window = WindowState::Decode {
                cross,
                attempt: 0,
                decode: self.begin_decode(0),
            };
            return Ok(Vec::new());
        };
        let decoder = WindowDecoder {
            model: &self.inner.whisper,
            tokenizer: &self.inner.tokenizer,
            masks: &self.inner.masks,
        };
        let before = decode.sampled();
        let ended = decoder.advance(decode, cross, TOKENS_PER_STEP, &mut self.random)?;
        self.tokens_sampled += decode.sampled() - before;
        let Some(result) = ended else {
            return Ok(Vec::new());
        };
        let next = *attempt + 1;
        if !self.acceptable(&result) && next < self.options.temperatures.len() {
            let retry = self.begin_decode(next);
            if let WindowState::Decode {
                attempt, decode, ..
            } = &mut self.window
            {
                *attempt = next;
                *decode = retry;
            }
            return Ok(Vec::new());
        }
        // The window's keys and values are no longer needed.
        self.window = WindowState::Encode;
        self.end_window(result)
    }

    /// Cuts a window's kept result into segments and moves `seek` past them.
    fn end_window(&mut self, result: DecodeResult) -> Result<Vec<Segment>> {
        let seek = self.seek;
        let content_frames = self.mel.content_frames;
        let segment_size = N_FRAMES.min(content_frames - seek);
        let rate = SAMPLE_RATE as f64;
        let time_offset = (seek * HOP_LENGTH) as f64 / rate;
        let segment_duration = (segment_size * HOP_LENGTH) as f64 / rate;
        let time_precision = (INPUT_STRIDE * HOP_LENGTH) as f64 / rate;

        if let Some(threshold) = self.options.no_speech_threshold {
            let likely = self
                .options
                .logprob_threshold
                .is_some_and(|t| result.avg_logprob > decimal(t));
            if result.no_speech_prob > decimal(threshold) && !likely {
                self.seek += segment_size;
                return Ok(Vec::new());
            }
        }

        let tokens = &result.tokens;
        let ts_begin = self.inner.tokenizer.special.timestamp_begin as i64;
        let is_timestamp: Vec<bool> = tokens.iter().map(|&t| t as i64 >= ts_begin).collect();
        let n = tokens.len();
        let single_timestamp_ending = n >= 2 && !is_timestamp[n - 2] && is_timestamp[n - 1];
        let consecutive: Vec<usize> = (0..n.saturating_sub(1))
            .filter(|&i| is_timestamp[i] && is_timestamp[i + 1])
            .map(|i| i + 1)
            .collect();
        let position = |token: u32| token as i64 - ts_begin;
        let mut current: Vec<(f64, f64, Vec<u32>)> = Vec::new();
        let next_seek;
        if !consecutive.is_empty() {
            let mut slices = consecutive;
            if single_timestamp_ending {
                slices.push(n);
            }
            let mut last_slice = 0;
            for &slice in &slices {
                let sliced = &tokens[last_slice..slice];
                let start = time_offset + position(sliced[0]) as f64 * time_precision;
                let end = time_offset + position(sliced[sliced.len() - 1]) as f64 * time_precision;
                current.push((start, end, sliced.to_vec()));
                last_slice = slice;
            }
            next_seek = if single_timestamp_ending {
                seek + segment_size
            } else {
                let last = position(tokens[last_slice - 1]).max(0) as usize;
                seek + last * INPUT_STRIDE
            };
        } else {
            let mut duration = segment_duration;
            if let Some(&last) = tokens.iter().rev().find(|&&t| t as i64 >= ts_begin) {
                if last as i64 != ts_begin {
                    duration = position(last) as f64 * time_precision;
                }
            }
            current.push((time_offset, time_offset + duration, tokens.clone()));
            next_seek = seek + segment_size;
        }
        // mlx-whisper would decode the same window again (with a longer prompt) when the last
        // pair of timestamps is <|0.00|>; moving on keeps a transcription from looping.
        self.seek = if next_seek > seek {
            next_seek
        } else {
            seek + segment_size
        };

        let eot = self.inner.tokenizer.special.eot;
        let mut finished = Vec::with_capacity(current.len());
        for (start, end, mut tokens) in current {
            let text_tokens: Vec<u32> = tokens.iter().copied().filter(|&t| t < eot).collect();
            let mut text = self.inner.tokenizer.decode(&text_tokens)?;
            if start == end || text.trim().is_empty() {
                text.clear();
                tokens.clear();
            }
            self.all_tokens.extend_from_slice(&tokens);
            finished.push(Segment {
                id: self.segments.len() + finished.len(),
                seek,
                start,
                end,
                text,
                tokens,
                temperature: result.temperature,
                avg_logprob: result.avg_logprob,
                compression_ratio: result.compression_ratio,
                no_speech_prob: result.no_speech_prob,
            });
        }
        if !self.options.condition_on_previous_text || result.temperature > 0.5 {
            self.prompt_reset_since = self.all_tokens.len();
        }
        self.segments.extend(finished.iter().cloned());
        Ok(finished)
    }

    /// The transcript so far (all of it once [`Transcription::is_done`]).
    pub fn finish(self) -> Transcript {
        let text = self
            .inner
            .tokenizer
            .decode(&self.all_tokens[self.initial_prompt_tokens..])
            .unwrap_or_default();
        Transcript {
            text,
            language: self.language.to_string(),
            task: self.options.task,
            duration: self.duration,
            segments: self.segments,
        }
    }
}
