//! `tokenizer.json` and `tokenizer_config.json` rebuilt from a GGUF file's vocabulary.
//!
//! GGUF keeps a byte-level BPE tokenizer as tokens, token types and merges, plus the name of the
//! pre-tokenizer llama.cpp applies (`tokenizer.ggml.pre`). The `tokenizers` crate builds the
//! equivalent Hugging Face tokenizer from those and serialises it.

use std::path::Path;

use serde_json::{json, Map, Value};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{Vocab, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::ConvertError;
use crate::gguf::GgufFile;

/// GGUF token types (llama.cpp's `llama_token_type`).
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Special token ids the model declares.
#[derive(Debug, Clone, Default)]
pub struct SpecialTokens {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub pad: Option<u32>,
    pub unk: Option<u32>,
}

pub struct GgufTokenizer {
    tokens: Vec<String>,
    types: Vec<i64>,
    merges: Vec<(String, String)>,
    pre: String,
    add_bos: bool,
    pub special: SpecialTokens,
    pub chat_template: Option<String>,
}

impl GgufTokenizer {
    pub fn read(gguf: &GgufFile) -> Result<Self, ConvertError> {
        let model = gguf.string("tokenizer.ggml.model").unwrap_or("");
        if model != "gpt2" {
            return Err(ConvertError::Tokenizer(format!(
                "tokenizer model '{model}' is not supported (supported: gpt2, byte-level BPE)"
            )));
        }
        let tokens = gguf.strings("tokenizer.ggml.tokens")?;
        let types = gguf
            .integers("tokenizer.ggml.token_type")
            .unwrap_or_else(|_| vec![1; tokens.len()]);
        let merges = gguf
            .strings("tokenizer.ggml.merges")?
            .into_iter()
            .map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
                    .ok_or_else(|| ConvertError::Tokenizer(format!("malformed merge '{m}'")))
            })
            .collect::<Result<_, _>>()?;
        let id = |key: &str| gguf.u64(key).and_then(|v| u32::try_from(v).ok());
        Ok(GgufTokenizer {
            pre: gguf
                .string("tokenizer.ggml.pre")
                .unwrap_or("gpt-2")
                .to_string(),
            add_bos: gguf.bool("tokenizer.ggml.add_bos_token").unwrap_or(false),
            special: SpecialTokens {
                bos: id("tokenizer.ggml.bos_token_id"),
                eos: id("tokenizer.ggml.eos_token_id"),
                pad: id("tokenizer.ggml.padding_token_id"),
                unk: id("tokenizer.ggml.unknown_token_id"),
            },
            chat_template: gguf.string("tokenizer.chat_template").map(str::to_string),
            tokens,
            types,
            merges,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    fn token(&self, id: Option<u32>) -> Option<&str> {
        id.and_then(|i| self.tokens.get(i as usize))
            .map(String::as_str)
    }

    /// The pre-tokenizer llama.cpp names, as a Hugging Face pre-tokenizer.
    fn pre_tokenizer(&self) -> Result<PreTokenizerWrapper, ConvertError> {
        let byte_level = ByteLevel::new(false, true, true);
        match self.pre.as_str() {
            // SmolLM: every digit on its own, then GPT-2's byte-level split.
            "smollm" => Ok(PreTokenizerWrapper::Sequence(Sequence::new(vec![
                PreTokenizerWrapper::Digits(Digits::new(true)),
                PreTokenizerWrapper::ByteLevel(byte_level),
            ]))),
            "gpt-2" | "default" => Ok(PreTokenizerWrapper::ByteLevel(byte_level)),
            other => Err(ConvertError::Tokenizer(format!(
                "pre-tokenizer '{other}' is not supported (supported: smollm, gpt-2)"
            ))),
        }
    }

    pub fn build(&self) -> Result<Tokenizer, ConvertError> {
        let vocab: Vocab = self
            .tokens
            .iter()
            .enumerate()
            .map(|(id, token)| (token.clone(), id as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, self.merges.clone())
            .build()
            .map_err(|e| ConvertError::Tokenizer(e.to_string()))?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(self.pre_tokenizer()?));
        tokenizer.with_decoder(Some(ByteLevelDecoder::default()));
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
            None => PostProcessorWrapper::ByteLevel(ByteLevel::new(true, false, true)),
        };
        tokenizer.with_post_processor(Some(processor));
        let added = |kind: i64, special: bool| -> Vec<AddedToken> {
            self.tokens
                .iter()
                .zip(&self.types)
                .filter(|(_, t)| **t == kind)
                .map(|(token, _)| AddedToken::from(token.clone(), special))
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
        let mut config = json!({
            "add_bos_token": self.add_bos,
            "add_prefix_space": false,
            "added_tokens_decoder": decoder,
            "clean_up_tokenization_spaces": false,
            "model_max_length": context_length,
            "tokenizer_class": "GPT2Tokenizer",
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
