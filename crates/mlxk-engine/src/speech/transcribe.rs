//! The seek loop of mlx-whisper's `transcribe`: 30-second windows from `seek`, each decoded
//! with the temperature fallback, cut into segments at consecutive timestamps, and the next
//! window starting where the last complete segment ended. Each window is conditioned on the
//! text before it (unless a window needed a high temperature).
//!
//! The loop is resumable in small steps: a window is encoded a layer per step, then each step
//! samples at most [`TOKENS_PER_STEP`] tokens of it; the fallback and the move to the next
//! window happen at the step where a window's text ends.

use std::rc::Rc;

use mlx_rs::random::RandomState;
use mlx_rs::transforms::eval;
use mlx_rs::Array;

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

/// Tokens one [`Transcription::step`] samples at most. Each costs one decoder pass (no more
/// than a chat token of a small model), so a chat stream interleaved with a transcription
/// waits about as long as an encoder layer per step (1-2 s for tiny.en in a debug build)
/// instead of a whole window (up to 224 tokens, more with the fallback's retries: 10-20 s).
pub const TOKENS_PER_STEP: usize = 16;

/// Where the window at `seek` is.
enum WindowState {
    /// Not begun.
    Start,
    /// Being encoded (an encoder pass of a window takes as long as dozens of tokens):
    /// `features` have been through the first `layers` blocks.
    Encode { features: Array, layers: usize },
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
            window: WindowState::Start,
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

    /// A bounded slice of the work: the next encoder layer of a window, or up to
    /// [`TOKENS_PER_STEP`] of its tokens. Returns the segments finished (none until a window's
    /// text ends, and none for silence).
    pub fn step(&mut self) -> Result<Vec<Segment>> {
        if self.is_done() {
            return Ok(Vec::new());
        }
        match std::mem::replace(&mut self.window, WindowState::Start) {
            WindowState::Start => self.window = self.start_window()?,
            WindowState::Encode { features, layers } => {
                self.window = self.encode_layer(features, layers)?
            }
            WindowState::Decode {
                cross,
                attempt,
                decode,
            } => return self.decode_tokens(cross, attempt, decode),
        }
        Ok(Vec::new())
    }

    /// The window at `seek` through the encoder's convolutions (or, when language detection
    /// encoded the same frames, ready to decode).
    fn start_window(&mut self) -> Result<WindowState> {
        let segment_size = N_FRAMES.min(self.mel.content_frames - self.seek);
        if let Some(cross) = self.first_window.take() {
            if self.seek == 0 && segment_size == N_FRAMES {
                return Ok(self.decode_state(cross, 0));
            }
        }
        let window = self.mel.window(self.seek, segment_size);
        let features = self.inner.whisper.encoder.embed(&window)?;
        eval([&features])?;
        Ok(WindowState::Encode {
            features,
            layers: 0,
        })
    }

    /// The encoder's next block over `features`; after the last, the window's keys and values.
    fn encode_layer(&self, features: Array, layers: usize) -> Result<WindowState> {
        let encoder = &self.inner.whisper.encoder;
        let (features, layers) = (encoder.block(layers, &features)?, layers + 1);
        if layers < encoder.num_layers() {
            eval([&features])?;
            return Ok(WindowState::Encode { features, layers });
        }
        let cross = self.inner.cross_keys_values(&encoder.finish(&features)?)?;
        Ok(self.decode_state(cross, 0))
    }

    /// Decoding the window whose keys and values are `cross` at the `attempt`-th temperature.
    fn decode_state(&self, cross: Vec<CrossKv>, attempt: usize) -> WindowState {
        WindowState::Decode {
            decode: self.begin_decode(attempt),
            cross,
            attempt,
        }
    }

    /// Up to [`TOKENS_PER_STEP`] tokens of the window; where its text ends, the next
    /// temperature (when the result looks wrong) or its segments.
    fn decode_tokens(
        &mut self,
        cross: Vec<CrossKv>,
        attempt: usize,
        mut decode: WindowDecode,
    ) -> Result<Vec<Segment>> {
        let decoder = WindowDecoder {
            model: &self.inner.whisper,
            tokenizer: &self.inner.tokenizer,
            masks: &self.inner.masks,
        };
        let before = decode.sampled();
        let ended = decoder.advance(&mut decode, &cross, TOKENS_PER_STEP, &mut self.random)?;
        self.tokens_sampled += decode.sampled() - before;
        let Some(result) = ended else {
            self.window = WindowState::Decode {
                cross,
                attempt,
                decode,
            };
            return Ok(Vec::new());
        };
        let next = attempt + 1;
        if !self.acceptable(&result) && next < self.options.temperatures.len() {
            self.window = self.decode_state(cross, next);
            return Ok(Vec::new());
        }
        // The window is done (its keys and values dropped here); the next one starts.
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
