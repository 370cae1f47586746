//! Decoding one 30-second window, as mlx-whisper's `DecodingTask` with one sequence: the
//! prompt (previous text) and start tokens, then greedy or sampled tokens under Whisper's logit
//! filters until the end of text, with the statistics the temperature fallback reads.

use std::io::Write;

use flate2::write::ZlibEncoder;
use flate2::Compression;
use mlx_rs::ops::indexing::{argmax_axis, IndexOp};
use mlx_rs::ops::{select, softmax_axis};
use mlx_rs::random::{categorical, RandomState};
use mlx_rs::transforms::eval;
use mlx_rs::Array;

use crate::error::Result;
use crate::models::whisper::{CrossKv, SelfKv, Whisper};

use super::tokens::WhisperTokenizer;

/// The first timestamp may be at most 1 s into the window (`max_initial_timestamp`), in
/// 0.02 s steps.
const MAX_INITIAL_TIMESTAMP_INDEX: u32 = 50;

/// What decoding a window gave.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DecodeResult {
    /// Sampled tokens up to (not including) the end of text, timestamps included.
    pub tokens: Vec<u32>,
    pub text: String,
    pub avg_logprob: f64,
    pub no_speech_prob: f64,
    pub temperature: f32,
    pub compression_ratio: f64,
}

/// The additive masks of Whisper's logit filters, built once per model (`[1, n_vocab]`, 0 or
/// -inf).
pub(crate) struct LogitMasks {
    /// SuppressTokens: non-speech symbols and non-text special tokens, on every step.
    suppress: Array,
    /// SuppressBlank: a blank or the end of text as the first token.
    blank: Array,
    /// The timestamp rules' own masks: `<|notimestamps|>` always, plus...
    /// ... nothing more (text or a timestamp may follow),
    any: Array,
    /// ... after two timestamps (or one at the start): text must follow,
    text_next: Array,
    /// ... after text and one timestamp: a timestamp (the pair's end) or the end of text,
    timestamp_next: Array,
    /// ... at the first step: a timestamp of at most 1 s.
    initial: Array,
    /// `true` at the text tokens (below `<|0.00|>`).
    is_text: Array,
    timestamp_begin: i32,
}

impl LogitMasks {
    pub fn new(tokenizer: &WhisperTokenizer, n_vocab: usize) -> Result<Self> {
        let s = &tokenizer.special;
        let ts = s.timestamp_begin as usize;
        let mask = |blocked: &dyn Fn(usize) -> bool| {
            let values: Vec<f32> = (0..n_vocab)
                .map(|i| if blocked(i) { f32::NEG_INFINITY } else { 0.0 })
                .collect();
            Array::from_slice(&values, &[1, n_vocab as i32])
        };
        let suppress = tokenizer.suppress_tokens()?;
        let blank = tokenizer.suppress_blank()?;
        let no_ts = s.no_timestamps as usize;
        let eot = s.eot as usize;
        let last_allowed = ts + MAX_INITIAL_TIMESTAMP_INDEX as usize;
        let is_text: Vec<bool> = (0..n_vocab).map(|i| i < ts).collect();
        Ok(LogitMasks {
            suppress: mask(&|i| suppress.binary_search(&(i as u32)).is_ok()),
            blank: mask(&|i| blank.contains(&(i as u32))),
            any: mask(&|i| i == no_ts),
            text_next: mask(&|i| i == no_ts || i >= ts),
            timestamp_next: mask(&|i| i == no_ts || i < eot),
            initial: mask(&|i| i == no_ts || i < ts || i > last_allowed),
            is_text: Array::from_slice(&is_text, &[1, n_vocab as i32]),
            timestamp_begin: ts as i32,
        })
    }

    fn timestamp_mask(&self, seq: &[u32]) -> &Array {
        match timestamp_rule(seq, self.timestamp_begin as u32) {
            TimestampRule::Initial => &self.initial,
            TimestampRule::TextNext => &self.text_next,
            TimestampRule::TimestampNext => &self.timestamp_next,
            TimestampRule::Any => &self.any,
        }
    }

    /// The logits every filter has passed: SuppressBlank (first step), SuppressTokens, then
    /// the timestamp rules, which also forbid text when the timestamps together are likelier
    /// than any single text token.
    fn apply(&self, logits: &Array, seq: &[u32]) -> Result<Array> {
        let mut logits = logits.clone();
        if seq.is_empty() {
            logits = logits.add(&self.blank)?;
        }
        let logits = logits.add(&self.suppress)?;
        let logprobs = logits.subtract(logits.logsumexp_axis(-1, true)?)?;
        let ts = self.timestamp_begin;
        let timestamp_logprob = logprobs.index((.., ts..)).logsumexp_axis(-1, true)?;
        let max_text_logprob = logprobs.index((.., ..ts)).max_axis(-1, true)?;
        let timestamps_win = timestamp_logprob.gt(&max_text_logprob)?;
        let masked = logits.add(self.timestamp_mask(seq))?;
        Ok(select(
            &timestamps_win.logical_and(&self.is_text)?,
            Array::from_f32(f32::NEG_INFINITY),
            &masked,
        )?)
    }
}

/// What the timestamp rules allow next, besides the probability rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimestampRule {
    /// The first token: a timestamp of at most 1 s.
    Initial,
    /// After two timestamps (or one at the start): text.
    TextNext,
    /// After text and one timestamp: a timestamp (closing the pair) or the end of text.
    TimestampNext,
    Any,
}

/// The rule for the tokens sampled so far (`seq`), as mlx-whisper 0.4.3 applies them. Its
/// rule that timestamps must not decrease compares positions in `seq` with token ids (so it
/// masks an empty range): it is left out here, to give the same tokens.
fn timestamp_rule(seq: &[u32], timestamp_begin: u32) -> TimestampRule {
    let Some(&last) = seq.last() else {
        return TimestampRule::Initial;
    };
    let penultimate_was_timestamp = seq.len() < 2 || seq[seq.len() - 2] >= timestamp_begin;
    match (last >= timestamp_begin, penultimate_was_timestamp) {
        (true, true) => TimestampRule::TextNext,
        (true, false) => TimestampRule::TimestampNext,
        _ => TimestampRule::Any,
    }
}

/// The model, tokenizer and masks one window is decoded with.
pub(crate) struct WindowDecoder<'a> {
    pub model: &'a Whisper,
    pub tokenizer: &'a WhisperTokenizer,
    pub masks: &'a LogitMasks,
}

/// One window's decoding at one temperature, part way: the tokens so far (prompt, start
/// tokens, samples), the decoder's self-attention cache and the running statistics, so that
/// it can be resumed a few tokens at a time by [`WindowDecoder::advance`].
pub(crate) struct WindowDecode {
    tokens: Vec<u32>,
    /// Where `<|startoftranscript|>` is in `tokens` (the no-speech probability is read there).
    sot_index: usize,
    /// Where the sampled tokens begin in `tokens`.
    sample_begin: usize,
    cache: Vec<SelfKv>,
    sum_logprob: f32,
    no_speech_prob: f32,
    temperature: f32,
    ended: bool,
}

impl WindowDecode {
    /// Tokens sampled so far (the end of text included).
    pub fn sampled(&self) -> usize {
        self.tokens.len() - self.sample_begin
    }
}

impl WindowDecoder<'_> {
    /// A decoding of a window after `prompt` (earlier text, may be empty) and `sot_sequence`,
    /// at `temperature` (0: greedy; above: drawn), before its first token.
    pub fn begin(&self, prompt: &[u32], sot_sequence: &[u32], temperature: f32) -> WindowDecode {
        let n_ctx = self.model.dims.n_text_ctx as usize;
        let mut tokens = Vec::new();
        if !prompt.is_empty() {
            tokens.push(self.tokenizer.special.sot_prev);
            tokens.extend_from_slice(&prompt[prompt.len().saturating_sub(n_ctx / 2 - 1)..]);
        }
        let sot_index = tokens.len();
        tokens.extend_from_slice(sot_sequence);
        WindowDecode {
            sample_begin: tokens.len(),
            tokens,
            sot_index,
            cache: vec![None; self.model.decoder.num_layers()],
            sum_logprob: 0.0,
            no_speech_prob: f32::NAN,
            temperature,
            ended: false,
        }
    }

    /// Samples up to `max_tokens` more tokens of `decode`'s window (whose cross-attention keys
    /// and values are `cross`), drawing with `random` above temperature 0. Gives the result
    /// once the text has ended (the end of text, or half the text context sampled).
    pub fn advance(
        &self,
        decode: &mut WindowDecode,
        cross: &[CrossKv],
        max_tokens: usize,
        random: &mut RandomState,
    ) -> Result<Option<DecodeResult>> {
        for _ in 0..max_tokens {
            if decode.ended {
                break;
            }
            self.sample(decode, cross, random)?;
        }
        if decode.ended {
            self.result(decode).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Samples one token under the logit filters.
    fn sample(
        &self,
        d: &mut WindowDecode,
        cross: &[CrossKv],
        random: &mut RandomState,
    ) -> Result<()> {
        let n_ctx = self.model.dims.n_text_ctx as usize;
        let sample_len = n_ctx / 2;
        let s = &self.tokenizer.special;
        let first = d.tokens.len() == d.sample_begin;
        let input: Vec<i32> = if first {
            d.tokens.iter().map(|&t| t as i32).collect()
        } else {
            vec![d.tokens[d.tokens.len() - 1] as i32]
        };
        // The first step reads the logits after <|startoftranscript|> (no-speech) and
        // after the last start token (the first sample).
        let positions = [d.sot_index as i32, input.len() as i32 - 1];
        let input = Array::from_slice(&input, &[1, input.len() as i32]);
        let logits = self.model.decoder.forward(
            &input,
            cross,
            &mut d.cache,
            first.then_some(&positions[..]),
        )?;
        let length = logits.shape()[1];
        let last = logits.index((.., length - 1, ..));
        let filtered = self.masks.apply(&last, &d.tokens[d.sample_begin..])?;
        let next = if d.temperature == 0.0 {
            argmax_axis(&filtered, -1, None)?
        } else {
            let key = random.next_key()?;
            let temperature = Array::from_f32(d.temperature);
            categorical(filtered.divide(&temperature)?, -1, None, &key)?
        };
        let logprobs = filtered.subtract(filtered.logsumexp_axis(-1, true)?)?;
        let chosen = logprobs.take_along_axis(&next.reshape(&[1, 1])?, -1)?;
        if first {
            let at_sot = logits.index((.., 0, ..));
            let no_speech = softmax_axis(&at_sot, -1, None)?.index((.., s.no_speech as i32));
            eval([&next, &chosen, &no_speech])?;
            d.no_speech_prob = no_speech.as_slice::<f32>()[0];
        } else {
            eval([&next, &chosen])?;
        }
        let token = next.as_slice::<u32>()[0];
        d.sum_logprob += chosen.as_slice::<f32>()[0];
        d.tokens.push(token);
        d.ended = token == s.eot || d.sampled() >= sample_len || d.tokens.len() > n_ctx;
        Ok(())
    }

    /// The sampled text of an ended decoding, with the statistics the fallback reads.
    fn result(&self, d: &WindowDecode) -> Result<DecodeResult> {
        let mut sampled = d.tokens[d.sample_begin..].to_vec();
        if let Some(end) = sampled
            .iter()
            .position(|&t| t == self.tokenizer.special.eot)
        {
            sampled.truncate(end);
        }
        let text = self.tokenizer.decode(&sampled)?.trim().to_string();
        Ok(DecodeResult {
            avg_logprob: d.sum_logprob as f64 / (sampled.len() + 1) as f64,
            no_speech_prob: d.no_speech_prob as f64,
            temperature: d.temperature,
            compression_ratio: compression_ratio(&text),
            tokens: sampled,
            text,
        })
    }
}

/// How much better than 1 the text compresses with zlib (Whisper's test for repetition).
pub(crate) fn compression_ratio(text: &str) -> f64 {
    let bytes = text.as_bytes();
    let mut encoder = ZlibEncoder::new(Vec::new(), Compression::default());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    let compressed = encoder.finish().map(|c| c.len()).unwrap_or(1).max(1);
    bytes.len() as f64 / compressed as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_come_in_pairs_around_text() {
        let ts = 50363; // tiny.en's <|0.00|>
        let (text, t1, t2) = (383, ts + 10, ts + 150);
        use TimestampRule::*;
        assert_eq!(timestamp_rule(&[], ts), Initial);
        // One timestamp at the start counts as a pair: text must follow.
        assert_eq!(timestamp_rule(&[t1], ts), TextNext);
        assert_eq!(timestamp_rule(&[t1, text], ts), Any);
        // Text then a timestamp: the pair's second timestamp (or the end).
        assert_eq!(timestamp_rule(&[t1, text, t2], ts), TimestampNext);
        assert_eq!(timestamp_rule(&[t1, text, t2, t2], ts), TextNext);
        // 0.4.3's quirk: an earlier timestamp after a later one is not masked (no rule
        // depends on the values of earlier timestamps).
        assert_eq!(timestamp_rule(&[t2, text, t1], ts), TimestampNext);
    }

    #[test]
    fn compression_ratio_grows_with_repetition() {
        assert!(compression_ratio("The quick brown fox.") < 1.2);
        assert!(compression_ratio(&"la ".repeat(100)) > 2.4);
        assert_eq!(compression_ratio(""), 0.0);
    }
}
