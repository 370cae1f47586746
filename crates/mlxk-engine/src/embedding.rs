//! Text to vectors: an encoder's (BERT) or a causal model's last hidden states, pooled as the
//! model's sentence-transformers files declare (`modules.json`, `1_Pooling/config.json`), and
//! normalised when they say so.
//!
//! Texts are tokenized with the model's own `tokenizer.json` (special tokens included), cut at
//! the model's maximum length, sorted by length and run in padded batches with a mask, so that a
//! batch of short texts never pays for a long one; the vectors come back in the order asked.

use std::fs;
use std::path::Path;
use std::rc::Rc;

use mlx_rs::transforms::eval;
use mlx_rs::{ops, Array};
use serde_json::Value;
use tokenizers::{Tokenizer as HfTokenizer, TruncationDirection, TruncationParams};

use crate::checkpoint::Weights;
use crate::error::{EngineError, Result};
use crate::load_plan::{LoadPlan, LoadPolicy, WeightFacts};
use crate::models::{self, bert::Bert, LanguageModel};

/// Texts run together in one forward pass, at most.
pub const MAX_BATCH: usize = 32;
/// Padded tokens in one forward pass, at most (batch × longest text): bounds the attention's
/// memory for long texts, and larger passes are no faster.
const MAX_BATCH_TOKENS: usize = 8_192;

/// How the token states of a text become one vector (sentence-transformers' `Pooling`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolingMode {
    /// The average over the text's tokens.
    Mean,
    /// The first token's state (`[CLS]`).
    Cls,
    /// The last token's state (causal embedders such as Qwen3-Embedding).
    LastToken,
    /// The largest value per dimension.
    Max,
    /// The sum divided by the square root of the length.
    MeanSqrtLen,
}

impl PoolingMode {
    pub fn label(self) -> &'static str {
        match self {
            PoolingMode::Mean => "mean",
            PoolingMode::Cls => "cls",
            PoolingMode::LastToken => "lasttoken",
            PoolingMode::Max => "max",
            PoolingMode::MeanSqrtLen => "mean_sqrt_len",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling {
    pub mode: PoolingMode,
    /// Vectors scaled to length 1 (a `Normalize` module).
    pub normalize: bool,
}

impl Pooling {
    /// The pooling `dir` declares: `1_Pooling/config.json` (or the folder `modules.json` names)
    /// and a `Normalize` module. `None` when the model declares none.
    pub fn read(dir: &Path) -> Result<Option<Pooling>> {
        let modules = read_json(&dir.join("modules.json"))?;
        let module_path = |kind: &str| -> Option<String> {
            modules.as_ref()?.as_array()?.iter().find_map(|m| {
                let ty = m.get("type")?.as_str()?;
                ty.ends_with(kind).then(|| {
                    m.get("path")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_string()
                })
            })
        };
        let pooling_dir = module_path("models.Pooling").unwrap_or_else(|| "1_Pooling".into());
        if pooling_dir.contains("..") || Path::new(&pooling_dir).is_absolute() {
            return Err(EngineError::Config(format!(
                "modules.json: the pooling module's path '{pooling_dir}' leaves the model folder"
            )));
        }
        let Some(config) = read_json(&dir.join(&pooling_dir).join("config.json"))? else {
            return Ok(None);
        };
        let on = |key: &str| config.get(key).and_then(Value::as_bool) == Some(true);
        let mode = match config.get("pooling_mode").and_then(Value::as_str) {
            Some("mean") => PoolingMode::Mean,
            Some("cls") => PoolingMode::Cls,
            Some("lasttoken") => PoolingMode::LastToken,
            Some("max") => PoolingMode::Max,
            Some("mean_sqrt_len_tokens") => PoolingMode::MeanSqrtLen,
            Some(other) => return Err(unsupported_pooling(other)),
            None => {
                let modes = [
                    ("pooling_mode_mean_tokens", PoolingMode::Mean),
                    ("pooling_mode_cls_token", PoolingMode::Cls),
                    ("pooling_mode_lasttoken", PoolingMode::LastToken),
                    ("pooling_mode_max_tokens", PoolingMode::Max),
                    (
                        "pooling_mode_mean_sqrt_len_tokens",
                        PoolingMode::MeanSqrtLen,
                    ),
                ];
                for unsupported in ["pooling_mode_weightedmean_tokens"] {
                    if on(unsupported) {
                        return Err(unsupported_pooling(unsupported));
                    }
                }
                let chosen: Vec<PoolingMode> = modes
                    .iter()
                    .filter(|(key, _)| on(key))
                    .map(|(_, mode)| *mode)
                    .collect();
                match chosen.as_slice() {
                    [mode] => *mode,
                    [] => {
                        return Err(EngineError::Config(format!(
                            "{pooling_dir}/config.json: no pooling mode is switched on"
                        )))
                    }
                    _ => {
                        return Err(EngineError::Config(format!(
                            "{pooling_dir}/config.json: several pooling modes at once (concatenated vectors) are not supported"
                        )))
                    }
                }
            }
        };
        Ok(Some(Pooling {
            mode,
            normalize: module_path("models.Normalize").is_some(),
        }))
    }
}

fn unsupported_pooling(mode: &str) -> EngineError {
    EngineError::Config(format!(
        "pooling '{mode}' is not supported (mean, cls, lasttoken, max, mean_sqrt_len_tokens)"
    ))
}

/// What a person asks to embed: text, or token ids as the OpenAI API allows.
#[derive(Debug, Clone, PartialEq)]
pub enum EmbeddingInput {
    Text(String),
    Tokens(Vec<u32>),
}

/// Whether a text is a search query or a document, for models that embed them differently
/// (a prompt set before the text, from `config_sentence_transformers.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    Query,
    Document,
}

/// One input's vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedded {
    pub vector: Vec<f32>,
    /// Tokens the model read (after any cut).
    pub tokens: usize,
    /// The input was longer than the model reads and was cut.
    pub truncated: bool,
}

enum Encoder {
    Bert(Box<Bert>),
    /// A causal language model's last hidden states (no padding: one text per pass).
    Causal(Rc<dyn LanguageModel>),
}

/// A loaded embedding model with its tokenizer and pooling.
pub struct EmbeddingModel {
    encoder: Encoder,
    tokenizer: HfTokenizer,
    pooling: Pooling,
    pad_id: u32,
    max_tokens: usize,
    dimensions: usize,
    query_prompt: Option<String>,
    document_prompt: Option<String>,
    pub plan: LoadPlan,
}

/// Architectures a causal model can embed with (its last hidden states, last-token pooling).
pub const CAUSAL_EMBEDDING_ARCHITECTURES: &[&str] = &["llama", "mistral", "qwen2", "qwen3"];

impl EmbeddingModel {
    /// Loads the embedding model in `dir`: a BERT encoder, or a causal model of
    /// [`CAUSAL_EMBEDDING_ARCHITECTURES`] (pooled by its last token unless it declares otherwise).
    pub fn load(dir: &Path, policy: &LoadPolicy) -> Result<Self> {
        let config = models::read_config(dir)?;
        let architecture = models::model_type(&config).to_string();
        let declared = Pooling::read(dir)?;
        let (encoder, pooling, plan, positions, dimensions) = if architecture == "bert" {
            let plan = policy.plan(&WeightFacts::read(dir, &config)?);
            let mut weights = Weights::load(dir, &config, &plan)?;
            let bert = models::bert::load(&config, &mut weights)?;
            weights.finish()?;
            let pooling = declared.unwrap_or(Pooling {
                mode: PoolingMode::Cls,
                normalize: false,
            });
            let positions = bert.max_positions();
            (
                Encoder::Bert(Box::new(bert)),
                pooling,
                plan,
                positions,
                hidden_size(&config)?,
            )
        } else if CAUSAL_EMBEDDING_ARCHITECTURES.contains(&architecture.as_str()) {
            let loaded = models::load(dir, policy)?;
            let pooling = declared.unwrap_or(Pooling {
                mode: PoolingMode::LastToken,
                normalize: true,
            });
            let positions = config
                .get("max_position_embeddings")
                .and_then(Value::as_u64)
                .unwrap_or(8192) as usize;
            let dimensions = hidden_size(&config)?;
            (
                Encoder::Causal(loaded.model),
                pooling,
                loaded.plan,
                positions,
                dimensions,
            )
        } else {
            return Err(EngineError::UnsupportedArchitecture(format!(
                "{architecture} (as an embedding model: bert, or a causal {})",
                CAUSAL_EMBEDDING_ARCHITECTURES.join("/")
            )));
        };
        let mut tokenizer = HfTokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| {
            EngineError::Tokenizer(format!("{}: {e}", dir.join("tokenizer.json").display()))
        })?;
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| {
                config
                    .get("pad_token_id")
                    .and_then(Value::as_u64)
                    .map(|n| n as u32)
            })
            .unwrap_or(0);
        // The tokenizer's own padding is ours to do; its cut is set to the model's length below.
        tokenizer.with_padding(None);
        let st_config = read_json(&dir.join("sentence_bert_config.json"))?;
        let declared_max = st_config
            .as_ref()
            .and_then(|c| c.get("max_seq_length"))
            .and_then(Value::as_u64)
            .map(|n| n as usize);
        let max_tokens = declared_max.unwrap_or(positions).clamp(1, positions);
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                direction: TruncationDirection::Right,
                ..TruncationParams::default()
            }))
            .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
        let prompts = read_json(&dir.join("config_sentence_transformers.json"))?
            .and_then(|c| c.get("prompts").cloned());
        let prompt = |name: &str| {
            prompts
                .as_ref()
                .and_then(|p| p.get(name))
                .and_then(Value::as_str)
                .filter(|p| !p.is_empty())
                .map(str::to_string)
        };
        Ok(EmbeddingModel {
            encoder,
            tokenizer,
            pooling,
            pad_id,
            max_tokens,
            dimensions,
            query_prompt: prompt("query"),
            document_prompt: prompt("document"),
            plan,
        })
    }

    /// The length of the vectors.
    pub fn dimensions(&self) -> usize {
        self.dimensions
    }

    /// Tokens of one input the model reads; longer inputs are cut.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Whether queries and documents are embedded differently (each has its own prompt).
    pub fn distinguishes_queries(&self) -> bool {
        self.query_prompt.is_some() || self.document_prompt.is_some()
    }

    /// Token ids of each input as the model reads them, and whether it was cut.
    pub fn tokenize(
        &self,
        inputs: &[EmbeddingInput],
        kind: InputKind,
    ) -> Result<Vec<(Vec<u32>, bool)>> {
        let prompt = match kind {
            InputKind::Query => self.query_prompt.as_deref(),
            InputKind::Document => self.document_prompt.as_deref(),
        };
        inputs
            .iter()
            .map(|input| match input {
                EmbeddingInput::Text(text) => {
                    let text = match prompt {
                        Some(prompt) => format!("{prompt}{text}"),
                        None => text.clone(),
                    };
                    let encoding = self
                        .tokenizer
                        .encode(text, true)
                        .map_err(|e| EngineError::Tokenizer(e.to_string()))?;
                    Ok((
                        encoding.get_ids().to_vec(),
                        !encoding.get_overflowing().is_empty(),
                    ))
                }
                EmbeddingInput::Tokens(ids) => {
                    let vocab = self.tokenizer.get_vocab_size(true) as u32;
                    if let Some(bad) = ids.iter().find(|&&id| id >= vocab) {
                        return Err(EngineError::Tokenizer(format!(
                            "token id {bad} is outside the vocabulary (0..{vocab})"
                        )));
                    }
                    let truncated = ids.len() > self.max_tokens;
                    Ok((ids[..ids.len().min(self.max_tokens)].to_vec(), truncated))
                }
            })
            .collect()
    }

    /// The vectors of `inputs`, in their order.
    pub fn embed(&self, inputs: &[EmbeddingInput], kind: InputKind) -> Result<Vec<Embedded>> {
        let tokenized = self.tokenize(inputs, kind)?;
        if let Some(i) = tokenized.iter().position(|(ids, _)| ids.is_empty()) {
            return Err(EngineError::Tokenizer(format!(
                "input {i} has no tokens (an empty list of token ids)"
            )));
        }
        let mut order: Vec<usize> = (0..tokenized.len()).collect();
        // Longest first: each batch pads to its first text, and a batch of equals wastes nothing.
        order.sort_by_key(|&i| std::cmp::Reverse(tokenized[i].0.len()));
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; tokenized.len()];
        let mut start = 0;
        while start < order.len() {
            let longest = tokenized[order[start]].0.len();
            let fits = match self.encoder {
                Encoder::Bert(_) => (MAX_BATCH_TOKENS / longest).clamp(1, MAX_BATCH),
                Encoder::Causal(_) => 1,
            };
            // A batch ends where padding would double a text: one long text does not make
            // thirty short ones pay for its length.
            let size = order[start..]
                .iter()
                .take(fits)
                .take_while(|&&i| tokenized[i].0.len() * 2 > longest)
                .count()
                .max(1);
            let batch = &order[start..start + size];
            let ids: Vec<&[u32]> = batch.iter().map(|&i| tokenized[i].0.as_slice()).collect();
            for (&i, vector) in batch.iter().zip(self.embed_batch(&ids)?) {
                vectors[i] = Some(vector);
            }
            start += batch.len();
        }
        Ok(tokenized
            .into_iter()
            .zip(vectors)
            .map(|((ids, truncated), vector)| Embedded {
                vector: vector.expect("every input is in one batch"),
                tokens: ids.len(),
                truncated,
            })
            .collect())
    }

    /// One forward pass over texts padded to the longest.
    fn embed_batch(&self, texts: &[&[u32]]) -> Result<Vec<Vec<f32>>> {
        let batch = texts.len();
        let length = texts.iter().map(|t| t.len()).max().unwrap_or(0);
        let mut ids = vec![self.pad_id as i32; batch * length];
        let mut mask = vec![false; batch * length];
        for (row, text) in texts.iter().enumerate() {
            for (col, &id) in text.iter().enumerate() {
                ids[row * length + col] = id as i32;
                mask[row * length + col] = true;
            }
        }
        let shape = [batch as i32, length as i32];
        let tokens = Array::from_slice(&ids, &shape);
        let hidden = match &self.encoder {
            Encoder::Bert(bert) => {
                let padded = texts.iter().any(|t| t.len() < length);
                let mask = padded.then(|| Array::from_slice(&mask, &shape));
                bert.forward(&tokens, mask.as_ref())?
            }
            Encoder::Causal(model) => model.hidden_states(&tokens)?,
        };
        let hidden = hidden.as_dtype(mlx_rs::Dtype::Float32)?;
        let pooled = match self.pooling.mode {
            PoolingMode::Max => {
                let keep = Array::from_slice(&mask, &shape).expand_dims(-1)?;
                let floor = Array::from_f32(f32::NEG_INFINITY);
                ops::select(&keep, &hidden, &floor)?.max_axis(1, false)?
            }
            mode => {
                // Every other pooling is a weighted sum over positions: [B, 1, L] · [B, L, D].
                let weights = pooling_weights(mode, texts, length);
                Array::from_slice(&weights, &[batch as i32, 1, length as i32])
                    .matmul(&hidden)?
                    .squeeze_axes(&[1])?
            }
        };
        let pooled = if self.pooling.normalize {
            normalized(&pooled)?
        } else {
            pooled
        };
        eval([&pooled])?;
        let flat = pooled.as_slice::<f32>();
        Ok(flat.chunks(self.dimensions).map(<[f32]>::to_vec).collect())
    }
}

/// Each position's weight in a text's vector, per pooling mode, for texts padded to `length`.
fn pooling_weights(mode: PoolingMode, texts: &[&[u32]], length: usize) -> Vec<f32> {
    let mut weights = vec![0.0f32; texts.len() * length];
    for (row, text) in texts.iter().enumerate() {
        let n = text.len();
        let row = &mut weights[row * length..(row + 1) * length];
        match mode {
            PoolingMode::Mean => row[..n].fill(1.0 / n as f32),
            PoolingMode::MeanSqrtLen => row[..n].fill(1.0 / (n as f32).sqrt()),
            PoolingMode::Cls => row[0] = 1.0,
            PoolingMode::LastToken => row[n - 1] = 1.0,
            PoolingMode::Max => unreachable!("max pooling is not a weighted sum"),
        }
    }
    weights
}

/// Rows scaled to length 1 (a zero row stays zero).
pub fn normalized(x: &Array) -> Result<Array> {
    let norm = x.square()?.sum_axis(-1, true)?.sqrt()?;
    Ok(x.divide(ops::maximum(&norm, Array::from_f32(1e-12))?)?)
}

/// The first `dimensions` of `vector`, scaled back to length 1 (as Ollama and OpenAI shorten
/// vectors).
pub fn shortened(vector: &[f32], dimensions: usize) -> Vec<f32> {
    let cut = &vector[..dimensions.min(vector.len())];
    let norm = cut.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    cut.iter().map(|x| x / norm).collect()
}

fn hidden_size(config: &Value) -> Result<usize> {
    config
        .get("hidden_size")
        .and_then(Value::as_u64)
        .map(|n| n as usize)
        .ok_or_else(|| EngineError::Config("hidden_size: missing".into()))
}

/// A small JSON file of the model folder; `None` when it does not exist.
fn read_json(path: &Path) -> Result<Option<Value>> {
    match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            EngineError::Config(format!(
                "{}: {e}",
                path.file_name().unwrap_or_default().to_string_lossy()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(EngineError::io("reading", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        dir
    }

    const MODULES: &str = r#"[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
        {"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
        {"idx":2,"name":"2","path":"2_Normalize","type":"sentence_transformers.models.Normalize"}]"#;

    #[test]
    fn reads_sentence_transformers_pooling() {
        let dir = folder(&[
            ("modules.json", MODULES),
            (
                "1_Pooling/config.json",
                r#"{"word_embedding_dimension":384,"pooling_mode_cls_token":false,"pooling_mode_mean_tokens":true}"#,
            ),
        ]);
        assert_eq!(
            Pooling::read(dir.path()).unwrap(),
            Some(Pooling {
                mode: PoolingMode::Mean,
                normalize: true
            })
        );
        let dir = folder(&[(
            "1_Pooling/config.json",
            r#"{"pooling_mode_lasttoken":true}"#,
        )]);
        assert_eq!(
            Pooling::read(dir.path()).unwrap(),
            Some(Pooling {
                mode: PoolingMode::LastToken,
                normalize: false
            })
        );
        assert_eq!(Pooling::read(folder(&[]).path()).unwrap(), None);
    }

    #[test]
    fn refuses_pooling_it_cannot_do_and_paths_out_of_the_folder() {
        let weighted = folder(&[(
            "1_Pooling/config.json",
            r#"{"pooling_mode_weightedmean_tokens":true}"#,
        )]);
        let err = Pooling::read(weighted.path()).unwrap_err().to_string();
        assert!(err.contains("weightedmean"), "{err}");
        let two = folder(&[(
            "1_Pooling/config.json",
            r#"{"pooling_mode_mean_tokens":true,"pooling_mode_max_tokens":true}"#,
        )]);
        assert!(Pooling::read(two.path()).is_err());
        let escape = folder(&[(
            "modules.json",
            r#"[{"path":"../../etc","type":"sentence_transformers.models.Pooling"}]"#,
        )]);
        let err = Pooling::read(escape.path()).unwrap_err().to_string();
        assert!(err.contains("leaves the model folder"), "{err}");
        let broken = folder(&[("modules.json", "[{")]);
        assert!(Pooling::read(broken.path()).is_err());
    }

    #[test]
    fn pooling_weights_cover_only_real_tokens() {
        let texts: [&[u32]; 2] = [&[1, 2, 3, 4], &[5, 6]];
        assert_eq!(
            pooling_weights(PoolingMode::Mean, &texts, 4),
            [0.25, 0.25, 0.25, 0.25, 0.5, 0.5, 0.0, 0.0]
        );
        assert_eq!(
            pooling_weights(PoolingMode::LastToken, &texts, 4),
            [0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0]
        );
        assert_eq!(
            pooling_weights(PoolingMode::Cls, &texts, 4),
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn shortened_vectors_are_unit_length() {
        let v = shortened(&[3.0, 4.0, 12.0], 2);
        assert_eq!(v, [0.6, 0.8]);
        assert_eq!(shortened(&[0.0, 0.0], 1), [0.0]);
    }
}
