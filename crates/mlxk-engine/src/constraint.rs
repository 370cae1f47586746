//! Answers that must match a grammar: JSON objects, JSON schemas and tool calls.
//!
//! llguidance (the engine behind OpenAI's, vLLM's and llama.cpp's structured output) turns a
//! grammar into a mask over the vocabulary at every step, so the model can only sample tokens
//! that keep the text a prefix of something the grammar accepts. Nothing is checked after the
//! fact: an answer that ends (EOS while the grammar is complete) matches.
//!
//! A [`ConstraintFactory`] is built once per model from its tokenizer, since it needs the bytes
//! of every token; a [`Constraint`] follows one answer.

use std::sync::Arc;

use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{self, SimpleVob, TokRxInfo, TokTrie, TokenId, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};
use serde_json::{json, Value};

use crate::error::{EngineError, Result};

/// What an answer must match.
#[derive(Debug, Clone, PartialEq)]
pub enum Grammar {
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// JSON valid against this schema (`json_schema`; `strict` changes nothing here: we always
    /// enforce).
    JsonSchema(Value),
    /// Lark grammar text in llguidance's dialect, which can embed `%json { schema }`.
    Lark(String),
}

/// Whitespace allowed between two JSON tokens: one space, or one or two newlines and up to 20
/// spaces or tabs of indentation (llama.cpp's rule). llguidance's default, any run of
/// whitespace, lets a small model loop on newlines until it runs out of tokens.
const JSON_WHITESPACE: &str = r"\x20|\x0A{1,2}[\x20\x09]{0,20}";

/// The schema with our options for llguidance's JSON compiler, which replace any the client
/// sent (`x-guidance` could otherwise make it lenient about unsupported keywords).
fn with_json_options(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Value::Object(fields) = &mut schema {
        fields.insert(
            "x-guidance".into(),
            json!({ "whitespace_pattern": JSON_WHITESPACE }),
        );
    }
    schema
}

/// The Lark expression for JSON valid against `schema` (`%json { .. }`), with the same
/// whitespace rule as [`Grammar::JsonSchema`]: embed it in tool-call grammars.
pub fn lark_json(schema: &Value) -> String {
    format!("%json {}", with_json_options(schema))
}

impl Grammar {
    /// Checks the grammar without a model (over a vocabulary of single bytes): what a server
    /// does before queueing a request, so that a schema it cannot enforce is refused at once.
    pub fn check(&self) -> Result<()> {
        static BYTES: std::sync::OnceLock<std::result::Result<ParserFactory, String>> =
            std::sync::OnceLock::new();
        let parsers = BYTES
            .get_or_init(|| {
                let mut parsers =
                    ParserFactory::new_simple(&toktrie::ApproximateTokEnv::single_byte_env())
                        .map_err(|e| e.to_string())?;
                parsers.quiet();
                Ok(parsers)
            })
            .as_ref()
            .map_err(|e| EngineError::Grammar(e.clone()))?;
        parsers
            .create_parser(self.to_llguidance())
            .map(drop)
            .map_err(|e| invalid_grammar(self, e))
    }

    fn to_llguidance(&self) -> TopLevelGrammar {
        match self {
            Grammar::JsonObject => {
                TopLevelGrammar::from_json_schema(with_json_options(&json!({"type": "object"})))
            }
            Grammar::JsonSchema(schema) => {
                TopLevelGrammar::from_json_schema(with_json_options(schema))
            }
            Grammar::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Grammar::JsonObject | Grammar::JsonSchema(_) => "JSON schema",
            Grammar::Lark(_) => "Lark grammar",
        }
    }
}

/// Starts constraints for one model. Building it reads the whole vocabulary (under a second for
/// 150k tokens), so build it once per model; clones share it.
#[derive(Clone)]
pub struct ConstraintFactory {
    parsers: Arc<ParserFactory>,
    eos_ids: Arc<[u32]>,
    vocab_size: usize,
}

impl ConstraintFactory {
    /// From the model's tokenizer, its EOS ids (the grammar lets them through exactly when it
    /// is complete) and `vocab_size`, the width of its logits: ids past the tokenizer's
    /// vocabulary are never allowed; tokenizer ids past the logits cannot be sampled and are
    /// left out.
    pub fn new(
        tokenizer: &tokenizers::Tokenizer,
        eos_ids: &[u32],
        vocab_size: usize,
    ) -> Result<Self> {
        let env = VocabularyEnv::new(tokenizer, eos_ids, vocab_size)?;
        let eos_ids = env.trie.eos_tokens().into();
        let env: toktrie::TokEnv = Arc::new(env);
        let mut parsers = ParserFactory::new_simple(&env).map_err(grammar_error)?;
        // Problems reach the caller as errors; nothing goes to stderr behind its back.
        parsers.quiet();
        Ok(ConstraintFactory {
            parsers: Arc::new(parsers),
            eos_ids,
            vocab_size,
        })
    }

    /// Checks the grammar and starts a matcher at the beginning of the answer.
    pub fn start(&self, grammar: &Grammar) -> Result<Constraint> {
        let parser = self
            .parsers
            .create_parser(grammar.to_llguidance())
            .map_err(|e| invalid_grammar(grammar, e))?;
        Ok(Constraint {
            matcher: Matcher::new(Ok(parser)),
            mask: None,
            eos_ids: self.eos_ids.clone(),
            mask_words: self.vocab_size.div_ceil(32),
            vocab_size: self.vocab_size,
        })
    }

    /// Only the check, for validating a request before it waits for the model: an unsupported
    /// JSON-schema keyword or an invalid Lark grammar is an error that names it, never ignored.
    pub fn check(&self, grammar: &Grammar) -> Result<()> {
        self.start(grammar).map(drop)
    }
}

/// Where one answer stands in its grammar.
pub struct Constraint {
    matcher: Matcher,
    /// The last mask handed out, to refuse a token sampled outside it.
    mask: Option<SimpleVob>,
    eos_ids: Arc<[u32]>,
    mask_words: usize,
    vocab_size: usize,
}

impl Constraint {
    /// The tokens allowed next, as a bitmask over the model's vocabulary (bit `i % 32` of
    /// word `i / 32`), computed on the CPU. EOS ids are allowed exactly when the grammar is
    /// complete; once it is finished, only they are.
    pub fn allowed(&mut self) -> Result<&[u32]> {
        let mask = self.matcher.compute_mask_or_eos().map_err(matcher_error)?;
        let mask = self.mask.insert(mask);
        // llguidance may keep a spare word past the vocabulary.
        Ok(&mask.as_slice()[..self.mask_words])
    }

    /// Records the sampled token. A token outside the last mask is an error (the sampler did
    /// not apply it), and so is one the grammar refuses. EOS after the answer finished is fine.
    pub fn commit(&mut self, token: u32) -> Result<()> {
        if self.matcher.is_stopped() && self.eos_ids.contains(&token) && !self.matcher.is_error() {
            self.mask = None;
            return Ok(());
        }
        if token as usize >= self.vocab_size {
            return Err(EngineError::Grammar(format!(
                "token {token} is outside the vocabulary of {} tokens",
                self.vocab_size
            )));
        }
        if let Some(mask) = self.mask.take() {
            if !mask.is_allowed(token) {
                return Err(EngineError::Grammar(format!(
                    "token {token} was sampled but the grammar does not allow it here"
                )));
            }
        }
        self.matcher.consume_token(token).map_err(matcher_error)
    }

    /// Whether generation must stop: the answer is complete (an EOS was committed, or the
    /// grammar allows nothing more), or a [`Constraint::commit`] failed.
    pub fn is_finished(&self) -> bool {
        self.matcher.is_stopped()
    }

    /// Tokens the grammar forces next, with no choice left (empty when there is a choice, or
    /// when the tokenizer cannot say how the model would spell the forced text). Each still
    /// goes through [`Constraint::commit`].
    pub fn forced(&mut self) -> Vec<u32> {
        self.matcher.compute_ff_tokens()
    }
}

fn grammar_error(e: impl std::fmt::Display) -> EngineError {
    EngineError::Grammar(e.to_string())
}

fn invalid_grammar(grammar: &Grammar, e: impl std::fmt::Display) -> EngineError {
    EngineError::Grammar(format!("invalid {}: {e}", grammar.kind()))
}

/// llguidance appends its whole state and grammar to a matcher error; the first line says what
/// went wrong.
fn matcher_error(e: impl std::fmt::Display) -> EngineError {
    let message = e.to_string();
    let first_line = message.lines().next().unwrap_or_default();
    EngineError::Grammar(first_line.to_string())
}

/// The vocabulary as llguidance needs it: the bytes of every token in a trie, and the model's
/// own tokenizer to spell text the grammar forces the way the model was trained to see it.
struct VocabularyEnv {
    trie: TokTrie,
    tokenizer: tokenizers::Tokenizer,
    /// Whether the tokenizer spells a fragment of text as it would inside a longer text. A
    /// tokenizer that prepends a space to every input (SentencePiece) does not; llguidance
    /// then leaves forced text for the model to spell.
    spells_fragments: bool,
}

impl VocabularyEnv {
    fn new(tokenizer: &tokenizers::Tokenizer, eos_ids: &[u32], vocab_size: usize) -> Result<Self> {
        let mut unique_eos = Vec::with_capacity(eos_ids.len());
        for &id in eos_ids {
            if !unique_eos.contains(&id) {
                unique_eos.push(id);
            }
        }
        let eos_ids = unique_eos;
        let Some(&first_eos) = eos_ids.first() else {
            return Err(EngineError::Grammar(
                "the model has no EOS token to end a constrained answer with".into(),
            ));
        };
        if let Some(eos) = eos_ids.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(EngineError::Grammar(format!(
                "EOS token {eos} is outside the vocabulary of {vocab_size} tokens"
            )));
        }
        let tokens = token_bytes(tokenizer, vocab_size)?;
        let info = TokRxInfo::new(vocab_size as u32, first_eos);
        let mut trie = TokTrie::from(&info, &tokens);
        if eos_ids.len() > 1 {
            trie = trie.with_eos_tokens(&eos_ids);
        }
        Ok(VocabularyEnv {
            trie,
            spells_fragments: spells_fragments(tokenizer),
            tokenizer: tokenizer.clone(),
        })
    }
}

impl TokenizerEnv for VocabularyEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, bytes: &[u8]) -> Vec<TokenId> {
        if !self.spells_fragments {
            return self.trie.greedy_tokenize(bytes);
        }
        self.trie.tokenize_with_greedy_fallback(bytes, |text| {
            let vocab_size = self.trie.vocab_size();
            match self.tokenizer.encode(text, false) {
                Ok(encoding)
                    if encoding
                        .get_ids()
                        .iter()
                        .all(|&id| (id as usize) < vocab_size) =>
                {
                    encoding.get_ids().to_vec()
                }
                _ => self.trie.greedy_tokenize(text.as_bytes()),
            }
        })
    }

    fn tokenize_is_canonical(&self) -> bool {
        self.spells_fragments
    }
}

/// How a vocabulary writes the bytes its tokens stand for.
enum VocabularySpelling {
    /// GPT-2's table of one printable character per byte (Qwen, Llama 3, SmolLM).
    ByteLevel,
    /// Text with a stand-in for the space (SentencePiece's `▁`), and `<0xNN>` for raw bytes.
    SpaceMarker(char),
}

/// The bytes of every token id below `vocab_size`. Special added tokens start with llguidance's
/// marker byte, so grammar text never matches them (a grammar names them as `<|im_end|>`);
/// other added tokens (Qwen's `<tool_call>`) are their text. Ids no token has stay empty,
/// which the grammar never allows.
fn token_bytes(tokenizer: &tokenizers::Tokenizer, vocab_size: usize) -> Result<Vec<Vec<u8>>> {
    let spelling = vocabulary_spelling(tokenizer)?;
    let byte_level = byte_level_table();
    let added = tokenizer.get_added_tokens_decoder();
    let mut tokens = vec![Vec::new(); vocab_size];
    for (text, id) in tokenizer.get_vocab(true) {
        let Some(slot) = tokens.get_mut(id as usize) else {
            continue;
        };
        *slot = match added.get(&id) {
            Some(token) if token.special => {
                let mut bytes = vec![TokTrie::SPECIAL_TOKEN_MARKER];
                bytes.extend_from_slice(token.content.as_bytes());
                bytes
            }
            Some(token) => token.content.clone().into_bytes(),
            None => match spelling {
                VocabularySpelling::ByteLevel => text
                    .chars()
                    .map(|c| byte_level.get(c as usize).copied().flatten())
                    .collect::<Option<Vec<u8>>>()
                    .unwrap_or_default(),
                VocabularySpelling::SpaceMarker(space) => match raw_byte(&text) {
                    Some(byte) => vec![byte],
                    None => text.replace(space, " ").into_bytes(),
                },
            },
        };
    }
    Ok(tokens)
}

/// The bytes one ordinary (not added) token stands for, from its vocabulary string: for a token
/// whose text alone is not valid UTF-8 (part of a character). `None` if the spelling is unknown.
pub(crate) fn bytes_of_token(tokenizer: &tokenizers::Tokenizer, id: u32) -> Option<Vec<u8>> {
    let text = tokenizer.id_to_token(id)?;
    match vocabulary_spelling(tokenizer).ok()? {
        VocabularySpelling::ByteLevel => {
            let table = byte_level_table();
            text.chars()
                .map(|c| table.get(c as usize).copied().flatten())
                .collect()
        }
        VocabularySpelling::SpaceMarker(space) => Some(match raw_byte(&text) {
            Some(byte) => vec![byte],
            None => text.replace(space, " ").into_bytes(),
        }),
    }
}

/// The character GPT-2's byte-level tokenizers print for each byte, inverted: printable
/// Latin-1 bytes stand for themselves, the others for U+0100 onwards in byte order.
fn byte_level_table() -> Vec<Option<u8>> {
    let mut table = vec![None; 0x100 + 68];
    let mut next_stand_in = 0x100;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let ch = if printable {
            byte as usize
        } else {
            next_stand_in += 1;
            next_stand_in - 1
        };
        table[ch] = Some(byte);
    }
    table
}

/// A SentencePiece byte token, `<0x0A>`.
fn raw_byte(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Read from the decoder, which turns token strings back into text.
fn vocabulary_spelling(tokenizer: &tokenizers::Tokenizer) -> Result<VocabularySpelling> {
    let decoder = tokenizer
        .get_decoder()
        .and_then(|d| serde_json::to_value(d).ok())
        .unwrap_or(Value::Null);
    let steps = match decoder["type"].as_str() {
        Some("Sequence") => decoder["decoders"].as_array().cloned().unwrap_or_default(),
        _ => vec![decoder.clone()],
    };
    let mut space_marker = None;
    for step in &steps {
        match step["type"].as_str() {
            Some("ByteLevel") => return Ok(VocabularySpelling::ByteLevel),
            Some("ByteFallback") => {
                space_marker.get_or_insert('▁');
            }
            Some("Metaspace") => {
                let replacement = step["replacement"].as_str().and_then(single_char);
                space_marker = Some(replacement.unwrap_or('▁'));
            }
            Some("Replace") if step["content"] == " " => {
                if let Some(marker) = step["pattern"]["String"].as_str().and_then(single_char) {
                    space_marker = Some(marker);
                }
            }
            _ => {}
        }
    }
    space_marker
        .map(VocabularySpelling::SpaceMarker)
        .ok_or_else(|| {
            EngineError::Grammar(format!(
                "cannot tell the bytes of this tokenizer's tokens from its decoder {decoder}"
            ))
        })
}

fn single_char(text: &str) -> Option<char> {
    let mut chars = text.chars();
    chars.next().filter(|_| chars.next().is_none())
}

/// Byte-level tokenizers that add no leading space spell a fragment as they spell it in context;
/// SentencePiece ones (a `Prepend` normalizer, a `Metaspace` pre-tokenizer that prepends) do not.
fn spells_fragments(tokenizer: &tokenizers::Tokenizer) -> bool {
    if !matches!(
        vocabulary_spelling(tokenizer),
        Ok(VocabularySpelling::ByteLevel)
    ) {
        return false;
    }
    let normalizer = tokenizer
        .get_normalizer()
        .and_then(|n| serde_json::to_value(n).ok());
    let pre_tokenizer = tokenizer
        .get_pre_tokenizer()
        .and_then(|p| serde_json::to_value(p).ok());
    ![normalizer, pre_tokenizer]
        .iter()
        .flatten()
        .any(prepends_space)
}

fn prepends_space(step: &Value) -> bool {
    match step {
        Value::Object(fields) => {
            fields.get("type").and_then(Value::as_str) == Some("Prepend")
                || fields.get("add_prefix_space") == Some(&Value::Bool(true))
                || matches!(
                    fields.get("prepend_scheme").and_then(Value::as_str),
                    Some("first" | "always")
                )
                || fields.values().any(prepends_space)
        }
        Value::Array(items) => items.iter().any(prepends_space),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};

    use super::*;

    /// The tokenizer folders `scripts/setup.sh` installs: SmolLM2's small llama BPE, and
    /// Qwen2.5's 151k byte-level one with many added tokens.
    const SMOLLM2: &str = "demo-hf-home/hub/models--mlxk-demo--SmolLM2-135M-Instruct-Q4_1-mlx";
    const QWEN: &str =
        "test-models-hf-home/hub/models--mlxk-test--Qwen2.5-Coder-0.5B-Instruct-Q4_K_M-mlx";

    fn snapshot(repo: &str) -> PathBuf {
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"),
            PathBuf::from,
        );
        let snapshots = target.join(repo).join("snapshots");
        std::fs::read_dir(&snapshots)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .find(|dir| dir.join("tokenizer.json").is_file())
            .unwrap_or_else(|| {
                panic!(
                    "no tokenizer.json under {}: run ./scripts/setup.sh",
                    snapshots.display()
                )
            })
    }

    /// A model's tokenizer and the factory built from it, as the engine will build it.
    struct Model {
        name: &'static str,
        tokenizer: tokenizers::Tokenizer,
        eos_ids: Vec<u32>,
        factory: ConstraintFactory,
    }

    /// Each factory is built once for all tests (seconds for 150k tokens in a debug build).
    fn smollm2() -> &'static Model {
        static MODEL: OnceLock<Model> = OnceLock::new();
        MODEL.get_or_init(|| model("SmolLM2", SMOLLM2))
    }

    fn qwen() -> &'static Model {
        static MODEL: OnceLock<Model> = OnceLock::new();
        MODEL.get_or_init(|| model("Qwen2.5", QWEN))
    }

    fn model(name: &'static str, repo: &str) -> Model {
        let dir = snapshot(repo);
        let tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap();
        let eos_ids = crate::Tokenizer::load(&dir).unwrap().eos_ids().to_vec();
        let config: Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        let vocab_size = config["vocab_size"].as_u64().unwrap() as usize;
        let start = Instant::now();
        let factory = ConstraintFactory::new(&tokenizer, &eos_ids, vocab_size).unwrap();
        println!(
            "{name}: factory for {vocab_size} tokens built in {:.0?}",
            start.elapsed()
        );
        Model {
            name,
            tokenizer,
            eos_ids,
            factory,
        }
    }

    /// A seeded xorshift, so a failing walk can be replayed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<T: Copy>(&mut self, items: &[T]) -> T {
            items[self.below(items.len())]
        }
    }

    fn set_bits(mask: &[u32]) -> Vec<u32> {
        let mut ids = Vec::new();
        for (word_index, &word) in mask.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                ids.push(word_index as u32 * 32 + bits.trailing_zeros());
                bits &= bits - 1;
            }
        }
        ids
    }

    struct Walk {
        text: String,
        /// How long `start` took, then each `allowed`.
        start_time: Duration,
        mask_times: Vec<Duration>,
    }

    /// What the walks of one tokenizer cost.
    #[derive(Default)]
    struct Timings {
        starts: Vec<Duration>,
        masks: Vec<Duration>,
    }

    impl Timings {
        fn add(&mut self, walk: Walk) {
            self.starts.push(walk.start_time);
            self.masks.extend(walk.mask_times);
        }

        fn report(&self, name: &str) {
            let mean_max = |times: &[Duration]| {
                let total: Duration = times.iter().sum();
                let mean = total / times.len().max(1) as u32;
                (mean, times.iter().max().copied().unwrap_or_default())
            };
            let (start_mean, start_max) = mean_max(&self.starts);
            let (mask_mean, mask_max) = mean_max(&self.masks);
            println!(
                "{name}: start() x{}: mean {start_mean:.1?}, max {start_max:.1?}; \
                 allowed() x{}: mean {mask_mean:.1?}, max {mask_max:.1?}",
                self.starts.len(),
                self.masks.len()
            );
        }
    }

    const MAX_STEPS: usize = 400;

    /// Samples random allowed tokens until the grammar finishes. Half the time it prefers a
    /// token that closes something (`"`, `}`, `]`), and EOS whenever allowed, so walks end.
    fn walk(model: &Model, grammar: &Grammar, seed: u64) -> Walk {
        let start = Instant::now();
        let mut constraint = model.factory.start(grammar).unwrap();
        let start_time = start.elapsed();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let mut tokens = Vec::new();
        let mut mask_times = Vec::new();
        let closes = |id: u32| {
            model
                .tokenizer
                .id_to_token(id)
                .is_some_and(|t| t.ends_with(['"', '}', ']']))
        };
        for _ in 0..MAX_STEPS {
            if constraint.is_finished() {
                break;
            }
            let start = Instant::now();
            let allowed = set_bits(constraint.allowed().unwrap());
            mask_times.push(start.elapsed());
            let (eos, other): (Vec<u32>, Vec<u32>) =
                allowed.iter().partition(|id| model.eos_ids.contains(id));
            let closing: Vec<u32> = other.iter().copied().filter(|&id| closes(id)).collect();
            let token = if !eos.is_empty() && (other.is_empty() || rng.below(2) == 0) {
                rng.pick(&eos)
            } else if !closing.is_empty() && rng.below(2) == 0 {
                rng.pick(&closing)
            } else {
                assert!(!other.is_empty(), "{}: an empty mask", model.name);
                rng.pick(&other)
            };
            constraint.commit(token).unwrap();
            if !model.eos_ids.contains(&token) {
                tokens.push(token);
            }
        }
        let text = model.tokenizer.decode(&tokens, false).unwrap();
        assert!(
            constraint.is_finished(),
            "{}: {grammar:?} (seed {seed}) not finished after {MAX_STEPS} steps: {text:?}",
            model.name
        );
        Walk {
            text,
            start_time,
            mask_times,
        }
    }

    fn assert_valid(model: &Model, schema: &Value, text: &str) -> Value {
        let value: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text:?}", model.name));
        let validator = jsonschema::validator_for(schema).unwrap();
        if let Err(e) = validator.validate(&value) {
            panic!("{}: {text:?} does not match {schema}: {e}", model.name);
        }
        value
    }

    fn schemas() -> Vec<Value> {
        vec![
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 12},
                    "address": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string"},
                            "zip": {"type": "string", "pattern": "^[0-9]{5}$"}
                        },
                        "required": ["city", "zip"],
                        "additionalProperties": false
                    }
                },
                "required": ["name", "address"],
                "additionalProperties": false
            }),
            json!({
                "type": "object",
                "properties": {
                    "unit": {"enum": ["celsius", "fahrenheit"]},
                    "mood": {"type": "string", "enum": ["calm", "stormy", "say \"hi\""]}
                },
                "required": ["unit", "mood"]
            }),
            json!({
                "type": "object",
                "properties": {
                    "tags": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": 8},
                        "minItems": 2,
                        "maxItems": 4
                    }
                },
                "required": ["tags"],
                "additionalProperties": false
            }),
            json!({
                "type": "object",
                "properties": {
                    "age": {"type": "integer", "minimum": 18, "maximum": 120},
                    "score": {"type": "number", "minimum": 0, "maximum": 1},
                    "active": {"type": "boolean"}
                },
                "required": ["age", "score", "active"],
                "additionalProperties": false
            }),
            json!({
                "type": "object",
                "properties": {
                    "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
                    "note": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}]}
                },
                "required": ["code", "note"],
                "additionalProperties": false
            }),
            json!({
                "$defs": {
                    "point": {
                        "type": "object",
                        "properties": {"x": {"type": "integer"}, "y": {"type": "integer"}},
                        "required": ["x", "y"],
                        "additionalProperties": false
                    }
                },
                "type": "array",
                "items": {"$ref": "#/$defs/point"},
                "minItems": 1,
                "maxItems": 3
            }),
        ]
    }

    const SEEDS: u64 = 6;

    fn check_json_object(model: &Model, timings: &mut Timings) {
        for seed in 0..SEEDS {
            let walk = walk(model, &Grammar::JsonObject, seed);
            let value: Value = serde_json::from_str(&walk.text)
                .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {:?}", model.name, walk.text));
            assert!(value.is_object(), "{}: {:?}", model.name, walk.text);
            timings.add(walk);
        }
    }

    fn check_schemas(model: &Model, timings: &mut Timings) {
        for schema in schemas() {
            for seed in 0..SEEDS {
                let walk = walk(model, &Grammar::JsonSchema(schema.clone()), seed);
                assert_valid(model, &schema, &walk.text);
                timings.add(walk);
            }
        }
    }

    /// A tool call as Qwen writes it: the JSON between the markers must match the schema.
    fn check_tool_call(model: &Model, timings: &mut Timings) {
        let arguments = json!({
            "type": "object",
            "properties": {
                "name": {"const": "get_weather"},
                "arguments": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string", "maxLength": 20},
                        "days": {"type": "integer", "minimum": 1, "maximum": 7}
                    },
                    "required": ["city", "days"],
                    "additionalProperties": false
                }
            },
            "required": ["name", "arguments"],
            "additionalProperties": false
        });
        let lark = format!(
            "start: \"<tool_call>\\n\" {} \"\\n</tool_call>\"",
            lark_json(&arguments)
        );
        for seed in 0..SEEDS {
            let walk = walk(model, &Grammar::Lark(lark.clone()), seed);
            let json = walk
                .text
                .strip_prefix("<tool_call>\n")
                .and_then(|rest| rest.strip_suffix("\n</tool_call>"))
                .unwrap_or_else(|| panic!("{}: not a tool call: {:?}", model.name, walk.text));
            let call = assert_valid(model, &arguments, json);
            assert_eq!(call["name"], "get_weather");
            timings.add(walk);
        }
    }

    #[test]
    fn random_walks_match_their_grammar_with_smollm2() {
        let model = smollm2();
        let mut timings = Timings::default();
        check_json_object(model, &mut timings);
        check_schemas(model, &mut timings);
        check_tool_call(model, &mut timings);
        timings.report(model.name);
    }

    #[test]
    fn random_walks_match_their_grammar_with_qwen() {
        let model = qwen();
        let mut timings = Timings::default();
        check_json_object(model, &mut timings);
        check_schemas(model, &mut timings);
        check_tool_call(model, &mut timings);
        timings.report(model.name);
    }

    fn error_message(result: Result<impl Sized>) -> String {
        match result {
            Ok(_) => panic!("the grammar was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn unsupported_schemas_are_refused_by_name() {
        let factory = &smollm2().factory;
        let remote_ref = json!({
            "type": "object",
            "properties": {"a": {"$ref": "http://example.com/x"}}
        });
        let message = error_message(factory.check(&Grammar::JsonSchema(remote_ref)));
        assert!(message.contains("http://example.com/x"), "{message}");
        assert!(
            message.starts_with("grammar: invalid JSON schema"),
            "{message}"
        );

        let unique = json!({"type": "array", "items": {"type": "integer"}, "uniqueItems": true});
        let message = error_message(factory.start(&Grammar::JsonSchema(unique)));
        assert!(message.contains("uniqueItems"), "{message}");

        // A client's own llguidance options cannot make it lenient.
        let lenient = json!({"type": "object", "if": {}, "x-guidance": {"lenient": true}});
        let message = error_message(factory.check(&Grammar::JsonSchema(lenient)));
        assert!(message.contains("if"), "{message}");
    }

    #[test]
    fn invalid_lark_grammars_are_refused() {
        let factory = &smollm2().factory;
        for lark in [
            "start: \"a\" (",
            "start: missing_rule",
            "start: %json { \"type\": \"object\", \"uniqueItems\": true }",
            "",
        ] {
            let message = error_message(factory.check(&Grammar::Lark(lark.into())));
            assert!(
                message.starts_with("grammar: invalid Lark grammar"),
                "{lark:?}: {message}"
            );
        }
        let message = error_message(factory.check(&Grammar::Lark("start: missing_rule".into())));
        assert!(message.contains("missing_rule"), "{message}");
    }

    fn encode(model: &Model, text: &str) -> Vec<u32> {
        model
            .tokenizer
            .encode(text, false)
            .unwrap()
            .get_ids()
            .to_vec()
    }

    fn is_allowed(mask: &[u32], token: u32) -> bool {
        mask[token as usize / 32] & (1 << (token % 32)) != 0
    }

    #[test]
    fn eos_is_allowed_exactly_when_the_answer_is_complete() {
        let model = qwen();
        let mut constraint = model.factory.start(&Grammar::JsonObject).unwrap();
        let mask = constraint.allowed().unwrap();
        assert_eq!(mask.len(), 151_936 / 32);
        assert!(model.eos_ids.iter().all(|&eos| !is_allowed(mask, eos)));
        for token in encode(model, r#"{"a": [1, 2]}"#) {
            assert!(!constraint.is_finished());
            let mask = constraint.allowed().unwrap();
            assert!(is_allowed(mask, token), "token {token}");
            assert!(model.eos_ids.iter().all(|&eos| !is_allowed(mask, eos)));
            constraint.commit(token).unwrap();
        }
        let mask = constraint.allowed().unwrap();
        assert!(model.eos_ids.iter().all(|&eos| is_allowed(mask, eos)));
        constraint.commit(model.eos_ids[0]).unwrap();
        assert!(constraint.is_finished());
        // Finished: only EOS is left.
        assert_eq!(set_bits(constraint.allowed().unwrap()), model.eos_ids);
    }

    #[test]
    fn a_token_outside_the_mask_is_refused() {
        let model = smollm2();
        let mut constraint = model.factory.start(&Grammar::JsonObject).unwrap();
        let letter = encode(model, "a")[0];
        assert!(!is_allowed(constraint.allowed().unwrap(), letter));
        let message = error_message(constraint.commit(letter));
        assert!(message.contains("not allow"), "{message}");
        let message = error_message(constraint.commit(49_152));
        assert!(message.contains("outside the vocabulary"), "{message}");
    }

    #[test]
    fn whitespace_between_json_tokens_is_bounded() {
        let model = smollm2();
        let mut constraint = model.factory.start(&Grammar::JsonObject).unwrap();
        let newline = encode(model, "\n")[0];
        let space = encode(model, " ")[0];
        constraint.commit(encode(model, "{")[0]).unwrap();
        constraint.commit(newline).unwrap();
        for _ in 0..20 {
            assert!(is_allowed(constraint.allowed().unwrap(), space));
            constraint.commit(space).unwrap();
        }
        assert!(!is_allowed(constraint.allowed().unwrap(), space));
    }

    #[test]
    fn forced_text_comes_as_the_models_own_tokens() {
        let model = qwen();
        let schema = json!({"type": "object", "properties": {"name": {"const": "get_weather"}}, "required": ["name"]});
        let lark = format!("start: \"<tool_call>\\n\" {}", lark_json(&schema));
        let mut constraint = model.factory.start(&Grammar::Lark(lark)).unwrap();
        let forced = constraint.forced();
        // Qwen's `<tool_call>` is one added token; the grammar forces it, not its letters.
        assert_eq!(forced.first(), encode(model, "<tool_call>").first());
        for &token in &forced {
            assert!(is_allowed(constraint.allowed().unwrap(), token));
            constraint.commit(token).unwrap();
        }
        let text = model.tokenizer.decode(&forced, false).unwrap();
        assert!(text.starts_with("<tool_call>\n"), "{text:?}");
    }

    #[test]
    fn factories_and_constraints_cross_threads() {
        fn send_and_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_and_sync::<ConstraintFactory>();
        send::<Constraint>();
    }
}
