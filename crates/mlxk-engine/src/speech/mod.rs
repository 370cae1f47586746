//! Speech to text: Whisper models (an encoder over 30-second log-mel windows, a decoder that
//! writes timestamped text), transcribing as mlx-whisper 0.4.3 does, so that greedy tokens are
//! the same on the same weights.
//!
//! [`SpeechModel::start`] computes the log-mel spectrogram of the whole file and detects the
//! language; [`Transcription::step`] then does a bounded slice of the 30-second windows (an
//! encoder pass, or a few decoded tokens; Whisper's temperature fallback where a window's text
//! ends), so a server can interleave a transcription with other work token by token.

mod decoding;
mod languages;
pub mod mel;
mod tokens;
mod transcribe;

use std::path::Path;
use std::rc::Rc;

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::ops::softmax_axis;
use mlx_rs::Array;
use serde::Serialize;

use crate::checkpoint::Weights;
use crate::error::{EngineError, Result};
use crate::load_plan::{LoadPlan, LoadPolicy, WeightFacts};
use crate::models::{self, whisper};

use decoding::LogitMasks;
use mel::{LogMel, N_FRAMES};
use tokens::WhisperTokenizer;

pub use languages::{language_name, resolve_language, LANGUAGES};
pub use tokens::SpecialTokens;
pub use transcribe::{Transcription, TOKENS_PER_STEP};

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

/// What a model and a transcription share.
pub(crate) struct Inner {
    pub whisper: whisper::Whisper,
    pub tokenizer: WhisperTokenizer,
    pub masks: LogitMasks,
}

impl Inner {
    /// Every decoder layer's cross-attention keys and values for one mel window, evaluated (so
    /// the encoder's graph is freed and every decode of the window reuses them).
    fn encode(&self, window: &Array) -> Result<Vec<whisper::CrossKv>> {
        self.cross_keys_values(&self.whisper.encoder.forward(window)?)
    }

    /// The decoder's cross-attention keys and values of the audio `features`, evaluated.
    fn cross_keys_values(&self, features: &Array) -> Result<Vec<whisper::CrossKv>> {
        let cross = self.whisper.decoder.cross_keys_values(features)?;
        mlx_rs::transforms::eval(cross.iter().flat_map(|(k, v)| [k, v]))?;
        Ok(cross)
    }

    /// Language probabilities for the window whose keys and values are `cross`, in token
    /// order (mlx-whisper's `detect_language`: the logits after `<|startoftranscript|>`,
    /// restricted to the language tokens).
    fn language_probs(&self, cross: &[whisper::CrossKv]) -> Result<Vec<(&'static str, f32)>> {
        let sot = Array::from_slice(&[self.tokenizer.special.sot as i32], &[1, 1]);
        let mut cache = vec![None; self.whisper.decoder.num_layers()];
        let logits = self
            .whisper
            .decoder
            .forward(&sot, cross, &mut cache, None)?;
        let logits = logits.index((.., 0, ..));
        let languages: Vec<(u32, &'static str)> = self.tokenizer.language_tokens().collect();
        let n_vocab = self.whisper.dims.n_vocab as usize;
        let mut mask = vec![f32::NEG_INFINITY; n_vocab];
        for (token, _) in &languages {
            mask[*token as usize] = 0.0;
        }
        let masked = logits.add(Array::from_slice(&mask, &[1, n_vocab as i32]))?;
        let probs = softmax_axis(&masked, -1, None)?;
        probs.eval()?;
        let probs = probs.as_slice::<f32>();
        Ok(languages
            .into_iter()
            .map(|(token, code)| (code, probs[token as usize]))
            .collect())
    }
}

/// A loaded Whisper model and its tokenizer.
pub struct SpeechModel {
    inner: Rc<Inner>,
    pub plan: LoadPlan,
}

/// Speech-to-text architectures [`SpeechModel`] loads.
pub const SPEECH_ARCHITECTURES: &[&str] = &["whisper"];

impl SpeechModel {
    /// Loads the Whisper model in `dir` (an mlx-whisper folder: config.json with the Whisper
    /// dimensions, weights.safetensors, tokenizer.json) as `policy` plans it.
    pub fn load(dir: &Path, policy: &LoadPolicy) -> Result<Self> {
        let config = models::read_config(dir)?;
        let architecture = models::model_type(&config);
        if !SPEECH_ARCHITECTURES.contains(&architecture) {
            return Err(EngineError::UnsupportedArchitecture(format!(
                "{architecture} (as a speech-to-text model: whisper)"
            )));
        }
        let plan = policy.plan(&WeightFacts::read(dir, &config)?);
        let mut weights = Weights::load(dir, &config, &plan)?;
        let whisper = whisper::load(&config, &mut weights)?;
        weights.finish()?;
        let tokenizer = WhisperTokenizer::load(dir, whisper.dims.n_vocab)?;
        let masks = LogitMasks::new(&tokenizer, whisper.dims.n_vocab as usize)?;
        Ok(SpeechModel {
            inner: Rc::new(Inner {
                whisper,
                tokenizer,
                masks,
            }),
            plan,
        })
    }

    /// Multilingual models detect the language and can translate; `.en` models cannot.
    pub fn is_multilingual(&self) -> bool {
        self.inner.tokenizer.is_multilingual()
    }

    /// The model's special token ids.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.inner.tokenizer.special
    }

    /// The tokens never sampled (symbols of non-speech annotations, non-text special tokens).
    pub fn suppressed_tokens(&self) -> Result<Vec<u32>> {
        self.inner.tokenizer.suppress_tokens()
    }

    /// Refuses options this model cannot honour (an unknown language, translation on an
    /// English-only model, no temperature), so a server can answer before queueing.
    pub fn check(&self, options: &TranscribeOptions) -> Result<()> {
        self.language_of(options).map(drop)
    }

    /// The language code the options ask for (`None`: detect it), after checking them.
    fn language_of(&self, options: &TranscribeOptions) -> Result<Option<&'static str>> {
        let bad = |why: String| Err(EngineError::Speech(why));
        if options.temperatures.is_empty() {
            return bad("at least one temperature is needed".into());
        }
        if let Some(t) = options
            .temperatures
            .iter()
            .find(|t| !t.is_finite() || **t < 0.0)
        {
            return bad(format!("temperature {t} is not a number of 0 or more"));
        }
        let thresholds = [
            options.compression_ratio_threshold,
            options.logprob_threshold,
            options.no_speech_threshold,
        ];
        if thresholds.iter().flatten().any(|t| !t.is_finite()) {
            return bad("thresholds must be finite numbers".into());
        }
        let multilingual = self.is_multilingual();
        if options.task == Task::Translate && !multilingual {
            return bad(
                "this model is English-only (a Whisper .en model): it transcribes English \
                 but cannot translate"
                    .into(),
            );
        }
        let Some(asked) = options.language.as_deref() else {
            return Ok(if multilingual { None } else { Some("en") });
        };
        let Some(code) = resolve_language(asked) else {
            return bad(format!(
                "language '{asked}' is not one Whisper knows (give a code such as 'de' or a \
                 name such as 'German')"
            ));
        };
        if !multilingual && code != "en" {
            return bad(format!(
                "this model is English-only (a Whisper .en model): it cannot transcribe \
                 '{code}'"
            ));
        }
        if self.inner.tokenizer.language_token(code).is_none() {
            return bad(format!("this model does not know the language '{code}'"));
        }
        Ok(Some(code))
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
    pub fn start(&self, samples: Vec<f32>, options: TranscribeOptions) -> Result<Transcription> {
        let language = self.language_of(&options)?;
        let inner = &self.inner;
        let mel = LogMel::compute(&samples, inner.whisper.dims.n_mels as usize)?;
        let duration = samples.len() as f64 / SAMPLE_RATE as f64;
        drop(samples);
        let (language, first_window) = match language {
            Some(code) => (code, None),
            None => {
                // As mlx-whisper: once, on the first 30 s of the padded spectrogram. When the
                // audio fills that window, it is the first window decoded too.
                let cross = inner.encode(&mel.window(0, N_FRAMES))?;
                let code = most_likely(&inner.language_probs(&cross)?);
                let reuse = mel.content_frames >= N_FRAMES;
                (code, reuse.then_some(cross))
            }
        };
        Transcription::new(
            Rc::clone(inner),
            mel,
            options,
            language,
            duration,
            first_window,
        )
    }

    /// The language of the first 30 seconds: codes with their probabilities, most likely first
    /// (English alone for English-only models).
    pub fn detect_language(&self, samples: &[f32]) -> Result<Vec<(String, f32)>> {
        if !self.is_multilingual() {
            return Ok(vec![("en".to_string(), 1.0)]);
        }
        let inner = &self.inner;
        let mel = LogMel::compute(samples, inner.whisper.dims.n_mels as usize)?;
        let cross = inner.encode(&mel.window(0, N_FRAMES))?;
        let mut probs: Vec<(String, f32)> = inner
            .language_probs(&cross)?
            .into_iter()
            .map(|(code, p)| (code.to_string(), p))
            .collect();
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(probs)
    }

    /// Tokens of `text` (without special tokens).
    pub fn count_tokens(&self, text: &str) -> usize {
        self.inner.tokenizer.encode(text).map_or(0, |t| t.len())
    }
}

/// The first most likely language (Python's `max(probs, key=probs.get)`).
fn most_likely(probs: &[(&'static str, f32)]) -> &'static str {
    let mut best = probs[0];
    for &candidate in &probs[1..] {
        if candidate.1 > best.1 {
            best = candidate;
        }
    }
    best.0
}
