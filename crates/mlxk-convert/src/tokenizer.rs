//! `tokenizer.json` and `tokenizer_config.json` rebuilt from a GGUF file's vocabulary.
//!
//! GGUF keeps a tokenizer as tokens and token types plus, for byte-level BPE
//! (`tokenizer.ggml.model = gpt2`), the merges and the name of the pre-tokenizer llama.cpp
//! applies (`tokenizer.ggml.pre`); for SentencePiece BPE (`llama`, as Gemma's), scores and no
//! merges. The `tokenizers` crate builds the equivalent Hugging Face tokenizer from those and
//! serialises it.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Map, Value};
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::normalizers::replace::Replace;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::ConvertError;
use crate::gguf::GgufFile;

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Qwen 2's split before byte-level BPE: contractions, letters with one leading non-letter,
/// single digits, punctuation runs, newlines, other whitespace.
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
/// Llama 3's: as Qwen 2's, but digits in runs of up to three.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Special token ids the model declares.
#[derive(Debug, Clone, Default)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
    pub unk: Option<u32>,
}

/// How the vocabulary's pieces are put together.
enum Vocabulary {
    /// Byte-level BPE (`gpt2`): merges given, text split by the named pre-tokenizer first.
    ByteLevel {
        merges: Vec<(String, String)>,
        pre: String,
    },
    /// SentencePiece BPE as Gemma's (`llama` on a Gemma architecture): spaces as `▁`, byte
    /// fallback, merges implied by the vocabulary.
    Gemma,
}

pub struct GgufTokenizer {
    tokens: Vec<String>,
    types: Vec<i64>,
    vocabulary: Vocabulary,
    add_bos: bool,
    pub special: SpecialTokens,
    pub chat_template: Option<String>,
}

impl GgufTokenizer {
    /// `architecture` is `general.architecture`: a SentencePiece vocabulary is read as the
    /// architecture's own tokenizer is built.
    pub fn read(gguf: &GgufFile, architecture: &str) -> Result<Self, ConvertError> {
        let model = gguf.string("tokenizer.ggml.model").unwrap_or("");
        let mut tokens = gguf.strings("tokenizer.ggml.tokens")?;
        let vocabulary = match (model, architecture) {
            ("gpt2", _) => Vocabulary::ByteLevel {
                merges: gguf
                    .strings("tokenizer.ggml.merges")?
                    .into_iter()
                    .map(|m| {
                        m.split_once(' ')
                            .map(|(a, b)| (a.to_string(), b.to_string()))
                            .ok_or_else(|| {
                                ConvertError::Tokenizer(format!("malformed merge '{m}'"))
                            })
                    })
                    .collect::<Result<_, _>>()?,
                pre: gguf
                    .string("tokenizer.ggml.pre")
                    .unwrap_or("gpt-2")
                    .to_string(),
            },
            ("llama", "gemma3") => {
                // llama.cpp writes a token of spaces with real spaces; Gemma spells them `▁`.
                for token in &mut tokens {
                    if token.contains(' ') && token.chars().all(char::is_whitespace) {
                        *token = "\u{2581}".repeat(token.chars().count());
                    }
                }
                Vocabulary::Gemma
            }
            _ => {
                return Err(ConvertError::Tokenizer(format!(
                    "tokenizer model '{model}' on architecture '{architecture}' is not supported \
                     (supported: gpt2 byte-level BPE; llama SentencePiece on gemma3)"
                )))
            }
        };
        let types = gguf
            .integers("tokenizer.ggml.token_type")
            .unwrap_or_else(|_| vec![1; tokens.len()]);
        let id = |key: &str| gguf.u64(key).and_then(|v| u32::try_from(v).ok());
        let default_bos = matches!(vocabulary, Vocabulary::Gemma);
        Ok(GgufTokenizer {
            add_bos: gguf
                .bool("tokenizer.ggml.add_bos_token")
                .unwrap_or(default_bos),
            special: SpecialTokens {
                bos: id("tokenizer.ggml.bos_token_id"),
                eos: id("tokenizer.ggml.eos_token_id"),
                pad: id("tokenizer.ggml.padding_token_id"),
                unk: id("tokenizer.ggml.unknown_token_id"),
            },
            chat_template: gguf.string("tokenizer.chat_template").map(str::to_string),
            tokens,
            types,
            vocabulary,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    fn token(&self, id: Option<u32>) -> Option<&str> {
        id.and_then(|i| self.tokens.get(i as usize))
            .map(String::as_str)
    }

    fn vocab(&self) -> Vocab {
        self.tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), id as u32))
            .collect()
    }

    pub fn build(&self) -> Result<Tokenizer, ConvertError> {
        let error = |e: tokenizers::Error| ConvertError::Tokenizer(e.to_string());
        let mut tokenizer = match &self.vocabulary {
            Vocabulary::ByteLevel { merges, pre } => {
                let bpe = BPE::builder()
                    .vocab_and_merges(self.vocab(), merges.clone())
                    .build()
                    .map_err(error)?;
                let mut tokenizer = Tokenizer::new(bpe);
                if pre == "qwen2" {
                    tokenizer.with_normalizer(Some(NormalizerWrapper::NFC(NFC)));
                }
                tokenizer.with_pre_tokenizer(Some(byte_level_pre_tokenizer(pre)?));
                tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
                tokenizer
            }
            Vocabulary::Gemma => {
                let unk = self.token(self.special.unk).unwrap_or("<unk>");
                let bpe = BPE::builder()
                    .vocab_and_merges(self.vocab(), merges_by_position(&self.tokens))
                    .unk_token(unk.to_string())
                    .fuse_unk(true)
                    .byte_fallback(true)
                    .build()
                    .map_err(error)?;
                let mut tokenizer = Tokenizer::new(bpe);
                tokenizer.with_normalizer(Some(NormalizerWrapper::Replace(
                    Replace::new(" ", "\u{2581}").map_err(error)?,
                )));
                tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::Split(
                    Split::new(
                        SplitPattern::String(" ".into()),
                        SplitDelimiterBehavior::MergedWithPrevious,
                        false,
                    )
                    .map_err(error)?,
                )));
                tokenizer.with_decoder(Some(DecoderWrapper::Sequence(DecoderSequence::new(vec![
                    DecoderWrapper::Replace(Replace::new("\u{2581}", " ").map_err(error)?),
                    DecoderWrapper::ByteFallback(ByteFallback::new()),
                    DecoderWrapper::Fuse(Fuse::new()),
                ]))));
                tokenizer
            }
        };
        let processor = match self.token(self.special.bos).filter(|_| self.add_bos) {
            Some(bos) => PostProcessorWrapper::Template(
                TemplateProcessing::builder()
                    .try_single(format!("{bos} $A"))
                    .and_then(|b| b.try_pair(format!("{bos} $A {bos} $B")))
                    .map_err(|e| ConvertError::Tokenizer(e.to_string()))?
                    .special_tokens(vec![(bos.to_string(), self.special.bos.unwrap_or(0))])
                    .build()
                    .map_err(|e| ConvertError::Tokenizer(e.to_string()))?,
            ),
            None if matches!(self.vocabulary, Vocabulary::ByteLevel { .. }) => {
                PostProcessorWrapper::ByteLevel(ByteLevel::new(true, false, true))
            }
            None => PostProcessorWrapper::Sequence(
                tokenizers::processors::sequence::Sequence::new(Vec::new()),
            ),
        };
        tokenizer.with_post_processor(Some(processor));
        let added = |kind: i64, special: bool| -> Vec<AddedToken> {
            self.tokens
                .iter()
                .zip(&self.types)
                .filter(|(_, t)| **t == kind)
                .map(|(token, _)| AddedToken::from(token.clone(), special).normalized(false))
                .collect()
        };
        tokenizer.add_special_tokens(&added(TOKEN_TYPE_CONTROL, true));
        tokenizer.add_tokens(&added(TOKEN_TYPE_USER_DEFINED, false));
        Ok(tokenizer)
    }

    pub fn write_tokenizer_json(&self, path: &Path) -> Result<(), ConvertError> {
        self.build()?
            .save(path, false)
            .map_err(|e| ConvertError::Tokenizer(format!("writing {}: {e}", path.display())))
    }

    /// `tokenizer_config.json`: special tokens, the chat template and how to load the tokenizer.
    pub fn tokenizer_config(&self, context_length: u64) -> Value {
        let mut decoder = Map::new();
        for (id, token) in self.tokens.iter().enumerate() {
            if self.types.get(id) == Some(&TOKEN_TYPE_CONTROL) {
                decoder.insert(
                    id.to_string(),
                    json!({"content": token, "lstrip": false, "normalized": false,
                           "rstrip": false, "single_word": false, "special": true}),
                );
            }
        }
        let class = match self.vocabulary {
            Vocabulary::ByteLevel { .. } => "GPT2Tokenizer",
            Vocabulary::Gemma => "GemmaTokenizer",
        };
        let mut config = json!({
            "add_bos_token": self.add_bos,
            "add_prefix_space": false,
            "added_tokens_decoder": decoder,
            "clean_up_tokenization_spaces": false,
            "model_max_length": context_length,
            "tokenizer_class": class,
        });
        for (key, id) in [
            ("bos_token", self.special.bos),
            ("eos_token", self.special.eos),
            ("pad_token", self.special.pad),
            ("unk_token", self.special.unk),
        ] {
            if let Some(token) = self.token(id) {
                config[key] = json!(token);
            }
        }
        if let Some(template) = &self.chat_template {
            config["chat_template"] = json!(template);
        }
        config
    }
}

/// The pre-tokenizer llama.cpp names, as a Hugging Face pre-tokenizer.
fn byte_level_pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, ConvertError> {
    let split_then_bytes = |pattern: &str| -> Result<PreTokenizerWrapper, ConvertError> {
        let split = Split::new(
            SplitPattern::Regex(pattern.into()),
            SplitDelimiterBehavior::Isolated,
            false,
        )
        .map_err(|e| ConvertError::Tokenizer(e.to_string()))?;
        Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Split(split),
            PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
        ])))
    };
    let byte_level = ByteLevel::new(false, true, true);
    match pre {
        // SmolLM: every digit on its own, then GPT-2's byte-level split.
        "smollm" => Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            PreTokenizerWrapper::ByteLevel(byte_level),
        ]))),
        "gpt-2" | "default" => Ok(PreTokenizerWrapper::ByteLevel(byte_level)),
        "qwen2" | "deepseek-r1-qwen" => split_then_bytes(QWEN2_SPLIT),
        "llama-bpe" | "llama3" | "llama-v3" | "smaug-bpe" => split_then_bytes(LLAMA3_SPLIT),
        other => Err(ConvertError::Tokenizer(format!(
            "pre-tokenizer '{other}' is not supported (supported: smollm, gpt-2, qwen2, \
             llama-bpe)"
        ))),
    }
}

/// Merges for a SentencePiece BPE vocabulary that lists none: every way of cutting a token in
/// two known tokens, best first. Gemma's merge order is the order of its tokens in the file
/// (its scores do not follow it): earlier tokens merge first; among cuts of one token, the
/// longer left part first, then by the parts' ids.
fn merges_by_position(tokens: &[String]) -> Vec<(String, String)> {
    let ids: HashMap<&str, usize> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| (t.as_str(), id))
        .collect();
    // (position of the merged token, left, right)
    let mut merges: Vec<(usize, &str, &str)> = Vec::new();
    for (position, token) in tokens.iter().enumerate() {
        if ids[token.as_str()] != position {
            continue; // a repeated spelling: the later id is the token
        }
        let start = merges.len();
        for (cut, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(cut);
            if ids.contains_key(left) && ids.contains_key(right) {
                merges.push((position, left, right));
            }
        }
        merges[start..].sort_by_key(|(_, l, r)| (ids[l], ids[r]));
    }
    let chars = |s: &str| s.chars().count();
    merges.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| chars(b.1).cmp(&chars(a.1)))
            .then_with(|| chars(b.2).cmp(&chars(a.2)))
    });
    merges
        .into_iter()
        .map(|(_, l, r)| (l.to_string(), r.to_string()))
        .collect()
}
