//! Speech to text: Whisper models (an encoder over 30-second log-mel windows, a decoder that
//! writes timestamped text), transcribing as mlx-whisper 0.4.3 does, so that greedy tokens are
//! the same on the same weights.
//!
//! [`SpeechModel::start`] computes the log-mel spectrogram of the whole file and detects the
//! language; [`Transcription::step`] then decodes one 30-second window at a time (with Whisper's
//! temperature fallback), so a server can interleave windows with other work.

use std::path::Path;

use serde::Serialize;

use crate::error::{EngineError, Result};
use crate::load_plan::{LoadPlan, LoadPolicy};

/// Whisper reads 16 kHz mono samples.
pub const SAMPLE_RATE: u32 = 16_000;

/// What the decoder is asked to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// The speech's own language.
    Transcribe,
    /// English, from any language (multilingual models only).
    Translate,
}

impl Task {
    pub fn label(self) -> &'static str {
        match self {
            Task::Transcribe => "transcribe",
            Task::Translate => "translate",
        }
    }
}

/// How to transcribe; the defaults are Whisper's (and mlx-whisper's) own.
#[derive(Debug, Clone, PartialEq)]
pub struct TranscribeOptions {
    pub task: Task,
    /// A language code ("de") or English name ("german"); `None` detects it on multilingual
    /// models and is English on English-only ones.
    pub language: Option<String>,
    /// Text the first window is conditioned on (spelling, names, style).
    pub initial_prompt: Option<String>,
    /// Tried in turn while a window's result looks wrong (repetitive or unlikely).
    pub temperatures: Vec<f32>,
    /// A result whose text compresses better than this (gzip ratio) is repetitive: try the next
    /// temperature.
    pub compression_ratio_threshold: Option<f32>,
    /// A result whose average token log-probability is below this: try the next temperature.
    pub logprob_threshold: Option<f32>,
    /// A window whose no-speech probability is above this (and whose text is unlikely) is
    /// silence and skipped.
    pub no_speech_threshold: Option<f32>,
    /// Each window is prompted with the text before it.
    pub condition_on_previous_text: bool,
    /// Seeds the sampler used at temperatures above 0.
    pub seed: Option<u64>,
}

impl Default for TranscribeOptions {
    fn default() -> Self {
        TranscribeOptions {
            task: Task::Transcribe,
            language: None,
            initial_prompt: None,
            temperatures: vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0],
            compression_ratio_threshold: Some(2.4),
            logprob_threshold: Some(-1.0),
            no_speech_threshold: Some(0.6),
            condition_on_previous_text: true,
            seed: None,
        }
    }
}

impl TranscribeOptions {
    /// The fallback ladder starting at `t` (OpenAI's `temperature`): t, t+0.2, … up to 1.0.
    /// At 0 (or below) this is Whisper's default ladder.
    pub fn temperatures_from(t: f32) -> Vec<f32> {
        let start = t.max(0.0);
        let mut ladder = vec![start];
        let mut step = 1;
        loop {
            // Counted in steps, not summed, so the ladder has no drift (0.2 * 3 = 0.6).
            let next = start + 0.2 * step as f32;
            if next > 1.0 + 1e-6 {
                break;
            }
            ladder.push((next * 1e4).round() / 1e4);
            step += 1;
        }
        ladder
    }
}

/// A stretch of the transcript between two timestamps (mlx-whisper's segment).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Segment {
    pub id: usize,
    /// The mel frame (10 ms) where the window it came from starts.
    pub seek: usize,
    /// Seconds from the start of the audio.
    pub start: f64,
    pub end: f64,
    pub text: String,
    /// The tokens of the segment, timestamps included.
    pub tokens: Vec<u32>,
    /// The temperature the window was decoded at.
    pub temperature: f32,
    pub avg_logprob: f64,
    pub compression_ratio: f64,
    pub no_speech_prob: f64,
}

/// A whole transcription.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transcript {
    pub text: String,
    /// The language code ("en").
    pub language: String,
    pub task: Task,
    /// Seconds of audio.
    pub duration: f64,
    pub segments: Vec<Segment>,
}

/// A loaded Whisper model and its tokenizer.
pub struct SpeechModel {
    pub plan: LoadPlan,
}

fn not_yet() -> EngineError {
    EngineError::Speech("speech-to-text is not implemented yet".into())
}

impl SpeechModel {
    /// Loads the Whisper model in `dir` (an mlx-whisper folder: config.json with the Whisper
    /// dimensions, weights.safetensors, tokenizer.json).
    pub fn load(_dir: &Path, _policy: &LoadPolicy) -> Result<Self> {
        Err(not_yet())
    }

    /// Multilingual models detect the language and can translate; `.en` models cannot.
    pub fn is_multilingual(&self) -> bool {
        false
    }

    /// Refuses options this model cannot honour (an unknown language, translation on an
    /// English-only model), so a server can answer before queueing.
    pub fn check(&self, _options: &TranscribeOptions) -> Result<()> {
        Err(not_yet())
    }

    /// Transcribes 16 kHz mono samples whole.
    pub fn transcribe(&self, samples: &[f32], options: &TranscribeOptions) -> Result<Transcript> {
        let mut run = self.start(samples.to_vec(), options.clone())?;
        while !run.is_done() {
            run.step()?;
        }
        Ok(run.finish())
    }

    /// Prepares a transcription (the log-mel spectrogram, the language); windows are then
    /// decoded by [`Transcription::step`].
    pub fn start(&self, _samples: Vec<f32>, _options: TranscribeOptions) -> Result<Transcription> {
        Err(not_yet())
    }

    /// The language of the first 30 seconds: codes with their probabilities, most likely first.
    pub fn detect_language(&self, _samples: &[f32]) -> Result<Vec<(String, f32)>> {
        Err(not_yet())
    }

    /// Tokens of `text` (without special tokens).
    pub fn count_tokens(&self, _text: &str) -> usize {
        0
    }
}

/// A transcription under way.
pub struct Transcription {
    duration: f64,
}

impl Transcription {
    /// Decodes the next 30-second window (trying higher temperatures while its result looks
    /// wrong) and returns the segments it finished.
    pub fn step(&mut self) -> Result<Vec<Segment>> {
        Err(not_yet())
    }

    pub fn is_done(&self) -> bool {
        true
    }

    /// Seconds of audio done, and in all.
    pub fn progress(&self) -> (f64, f64) {
        (self.duration, self.duration)
    }

    pub fn finish(self) -> Transcript {
        Transcript {
            text: String::new(),
            language: "en".into(),
            task: Task::Transcribe,
            duration: self.duration,
            segments: Vec::new(),
        }
    }
}

/// The language code for a code or English name ("de", "German", "castilian"), if Whisper
/// knows the language.
pub fn resolve_language(name_or_code: &str) -> Option<&'static str> {
    let _ = name_or_code;
    None
}
