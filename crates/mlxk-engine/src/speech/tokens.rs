//! Whisper's special tokens and suppression lists, from the model's `tokenizer.json`.
//!
//! Converted CTranslate2 folders ship a Hugging Face `tokenizer.json` that encodes as
//! mlx-whisper's tiktoken files do, but it has no timestamp tokens (they follow
//! `<|notimestamps|>`: `<|0.00|>` is its id + 1) and names `<|nospeech|>` `<|nocaptions|>`.
//! Text is encoded without the post-processor's special tokens.

use std::collections::BTreeSet;
use std::path::Path;

use tokenizers::Tokenizer as HfTokenizer;

use crate::error::{EngineError, Result};

use super::languages::LANGUAGES;

/// The ids of a model's special tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialTokens {
    pub eot: u32,
    pub sot: u32,
    pub translate: u32,
    pub transcribe: u32,
    pub sot_lm: u32,
    pub sot_prev: u32,
    pub no_speech: u32,
    pub no_timestamps: u32,
    /// `<|0.00|>`; the timestamp `<|t|>` is `timestamp_begin + t / 0.02`.
    pub timestamp_begin: u32,
    /// `<|en|>`, the first language token (`sot + 1`).
    pub first_language: u32,
    pub num_languages: usize,
}

/// The tokenizer of a Whisper model with its special tokens.
pub struct WhisperTokenizer {
    inner: HfTokenizer,
    pub special: SpecialTokens,
    multilingual: bool,
}

impl WhisperTokenizer {
    /// Reads `dir/tokenizer.json` for a model of `n_vocab` tokens.
    pub fn load(dir: &Path, n_vocab: i32) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let inner = HfTokenizer::from_file(&path)
            .map_err(|e| EngineError::Tokenizer(format!("{}: {e}", path.display())))?;
        Self::new(inner, n_vocab)
    }

    fn new(inner: HfTokenizer, n_vocab: i32) -> Result<Self> {
        let id = |token: &str| {
            inner.token_to_id(token).ok_or_else(|| {
                EngineError::Tokenizer(format!(
                    "tokenizer.json has no {token}: not a Whisper tokenizer"
                ))
            })
        };
        let multilingual = n_vocab >= 51865;
        let num_languages =
            (n_vocab - 51765 - i32::from(multilingual)).clamp(0, LANGUAGES.len() as i32) as usize;
        let no_timestamps = id("<|notimestamps|>")?;
        let special = SpecialTokens {
            eot: id("<|endoftext|>")?,
            sot: id("<|startoftranscript|>")?,
            translate: id("<|translate|>")?,
            transcribe: id("<|transcribe|>")?,
            sot_lm: id("<|startoflm|>")?,
            sot_prev: id("<|startofprev|>")?,
            no_speech: id("<|nospeech|>").or_else(|_| id("<|nocaptions|>"))?,
            no_timestamps,
            timestamp_begin: no_timestamps + 1,
            first_language: id("<|en|>")?,
            num_languages,
        };
        // The timestamps fill the vocabulary after <|notimestamps|>: 1501 of 0.02 s each.
        if special.timestamp_begin as i64 + 1501 != n_vocab as i64
            || special.first_language != special.sot + 1
        {
            return Err(EngineError::Tokenizer(format!(
                "tokenizer.json does not fit a Whisper model of {n_vocab} tokens \
                 (<|notimestamps|> is {no_timestamps}, <|startoftranscript|> {})",
                special.sot
            )));
        }
        // Language tokens follow <|startoftranscript|> in Whisper's order; their names are not
        // read (some tokenizer.json files call Hebrew <|iw|>, mlx-whisper <|he|>).
        Ok(WhisperTokenizer {
            inner,
            special,
            multilingual,
        })
    }

    pub fn is_multilingual(&self) -> bool {
        self.multilingual
    }

    /// Token ids of `text`, without special tokens around it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `tokens`, timestamps left out (as mlx-whisper's `Tokenizer.decode`).
    pub fn decode(&self, tokens: &[u32]) -> Result<String> {
        let text: Vec<u32> = tokens
            .iter()
            .copied()
            .filter(|&t| t < self.special.timestamp_begin)
            .collect();
        self.inner
            .decode(&text, false)
            .map_err(|e| EngineError::Tokenizer(e.to_string()))
    }

    /// The language token of a code this model knows.
    pub fn language_token(&self, code: &str) -> Option<u32> {
        let index = super::languages::language_index(code)?;
        (index < self.special.num_languages).then(|| self.special.first_language + index as u32)
    }

    /// Every language token with its code, in token order.
    pub fn language_tokens(&self) -> impl Iterator<Item = (u32, &'static str)> + '_ {
        LANGUAGES
            .iter()
            .take(self.special.num_languages)
            .enumerate()
            .map(|(i, (code, _))| (self.special.first_language + i as u32, *code))
    }

    /// The tokens that start every window: `[sot]` for English-only models, `[sot, language,
    /// task]` for multilingual ones.
    pub fn sot_sequence(&self, language: &str, translate: bool) -> Vec<u32> {
        let s = &self.special;
        match (self.multilingual, self.language_token(language)) {
            (true, Some(language)) => vec![
                s.sot,
                language,
                if translate { s.translate } else { s.transcribe },
            ],
            _ => vec![s.sot],
        }
    }

    /// Tokens never sampled: symbols of speaker tags and sound annotations ("♪", "[", "(")
    /// and the special tokens that are not text (mlx-whisper's `non_speech_tokens` plus task,
    /// start and no-speech tokens), sorted.
    pub fn suppress_tokens(&self) -> Result<Vec<u32>> {
        let mut symbols: Vec<String> = "\"#()*+/:;<=>@[\\]^_`{|}~「」『』"
            .chars()
            .map(String::from)
            .collect();
        symbols.extend(
            "<< >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪"
                .split(' ')
                .map(String::from),
        );
        // Between U+2640 and U+267F: when they are several tokens, the first (shared) one is
        // suppressed.
        let miscellaneous = ["♩", "♪", "♫", "♬", "♭", "♮", "♯"];
        symbols.extend(miscellaneous.iter().map(|s| s.to_string()));
        let mut result = BTreeSet::new();
        for start_of_word in [" -", " '"] {
            if let Some(&first) = self.encode(start_of_word)?.first() {
                result.insert(first);
            }
        }
        for symbol in &symbols {
            for text in [symbol.clone(), format!(" {symbol}")] {
                let tokens = self.encode(&text)?;
                if tokens.len() == 1
                    || (miscellaneous.contains(&symbol.as_str()) && !tokens.is_empty())
                {
                    result.insert(tokens[0]);
                }
            }
        }
        let s = &self.special;
        result.extend([
            s.transcribe,
            s.translate,
            s.sot,
            s.sot_prev,
            s.sot_lm,
            s.no_speech,
        ]);
        Ok(result.into_iter().collect())
    }

    /// Tokens the first sampled token may not be: a blank (`" "`) and the end of text.
    pub fn suppress_blank(&self) -> Result<Vec<u32>> {
        let mut tokens = self.encode(" ")?;
        tokens.push(self.special.eot);
        Ok(tokens)
    }
}
