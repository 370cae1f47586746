//! Model architectures, one file each, behind one trait.

pub(crate) mod bert;
mod common;
mod config_check;
mod gemma2;
mod gemma3;
mod llama;
mod phi3;
mod qwen2;
mod qwen3;
mod rope;
pub(crate) mod whisper;

use std::fs;
use std::path::Path;
use std::rc::Rc;

use mlx_rs::Array;
use serde_json::Value;

use crate::checkpoint::Weights;
use crate::error::{EngineError, Result};
use crate::kv_cache::KvCache;
use crate::load_plan::{LoadPlan, LoadPolicy, WeightFacts};

pub use config_check::check as check_config;

/// Which positions a forward pass computes logits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Positions {
    All,
    /// Only the last: what generation needs, and the output projection of a long prompt
    /// is by far its largest matmul.
    Last,
    /// One per row, at the given index: each row's last token when rows of different lengths
    /// are padded on the right (several prompts prefilled in one pass).
    LastOf(Vec<i32>),
}

impl Positions {
    /// The hidden states `[B, L, D]` to project: all, or one position per row `[B, 1, D]`.
    pub fn select(self, h: Array) -> Result<Array> {
        match self {
            Positions::All => Ok(h),
            Positions::Last => {
                let last = h.shape()[1] - 1;
                Ok(h.take_axis(Array::from_slice(&[last], &[1]), 1)?)
            }
            Positions::LastOf(indices) => {
                let rows = indices.len() as i32;
                let at = Array::from_slice(&indices, &[rows, 1, 1]);
                Ok(h.take_along_axis(&at, 1)?)
            }
        }
    }
}

/// One part of a fused forward pass ([`LanguageModel::forward_groups`]): tokens `[B, L]` over
/// their own caches, with the positions to compute logits for.
pub struct Group<'a> {
    pub tokens: &'a Array,
    pub caches: &'a mut [KvCache],
    pub positions: Positions,
}

/// A causal language model: token ids in, next-token logits out.
pub trait LanguageModel {
    /// `tokens` is `[B, L]`, one row per sequence of the caches (whose rows must be `B`);
    /// returns logits `[B, L, vocab]` (or `[B, 1, vocab]` for [`Positions::Last`]), updating
    /// the caches.
    fn forward_positions(
        &self,
        tokens: &Array,
        caches: &mut [KvCache],
        positions: Positions,
    ) -> Result<Array> {
        self.forward_embedded(&self.embed(tokens)?, caches, positions)
    }

    /// The input embeddings `[B, L, hidden]` of `tokens` `[B, L]`: the embedding table's rows,
    /// before any scaling the model applies (where image or audio features can take the place
    /// of their placeholder tokens).
    fn embed(&self, tokens: &Array) -> Result<Array>;

    /// [`LanguageModel::forward_positions`] from input embeddings `[B, L, hidden]` (as
    /// [`LanguageModel::embed`] gives them).
    fn forward_embedded(
        &self,
        embeddings: &Array,
        caches: &mut [KvCache],
        positions: Positions,
    ) -> Result<Array>;

    /// Several forward passes in one, each group over its own caches (the rows decoding and
    /// the prompts being prefilled beside them): each group's logits, as
    /// [`LanguageModel::forward_positions`] gives them. A model may project every group's
    /// tokens together, reading each weight once (on a CPU, what a pass costs whatever its
    /// length); by default each group is a pass of its own.
    fn forward_groups(&self, groups: &mut [Group<'_>]) -> Result<Vec<Array>> {
        groups
            .iter_mut()
            .map(|g| self.forward_positions(g.tokens, g.caches, g.positions.clone()))
            .collect()
    }

    /// Logits for every position.
    fn forward(&self, tokens: &Array, caches: &mut [KvCache]) -> Result<Array> {
        self.forward_positions(tokens, caches, Positions::All)
    }
    fn num_layers(&self) -> usize;

    /// The last hidden states `[1, L, hidden]` of `tokens` `[1, L]` (after the final norm,
    /// before the output projection): what a causal embedding model pools.
    fn hidden_states(&self, _tokens: &Array) -> Result<Array> {
        Err(EngineError::UnsupportedArchitecture(
            "this architecture (as an embedding model)".into(),
        ))
    }

    /// Fresh caches for a generation, one per layer.
    fn make_caches(&self) -> Vec<KvCache> {
        KvCache::new_per_layer(self.num_layers())
    }
}

/// A model in memory, with its configuration and how its weights were laid out.
pub struct LoadedModel {
    pub model: Rc<dyn LanguageModel>,
    pub config: Value,
    pub plan: LoadPlan,
}

/// What loading the model in `dir` would do under `policy`, from its config and safetensors
/// headers alone.
pub fn plan(dir: &Path, policy: &LoadPolicy) -> Result<LoadPlan> {
    let config = read_config(dir)?;
    Ok(policy.plan(&WeightFacts::read(dir, &config)?))
}

pub(crate) fn read_config(dir: &Path) -> Result<Value> {
    let path = dir.join("config.json");
    let text = fs::read(&path).map_err(|e| EngineError::io("reading", &path, e))?;
    let config: Value =
        serde_json::from_slice(&text).map_err(|e| EngineError::Config(e.to_string()))?;
    config_check::check(&config)?;
    Ok(config)
}

pub(crate) fn model_type(config: &Value) -> &str {
    config
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Takes `config` as far as a model is built from it without weights: the config check, the
/// architecture's own arguments and its rotary embeddings. For the fuzz target: whatever a
/// `config.json` holds, this is an error or `Ok`, never a panic, a hang or a huge allocation.
#[doc(hidden)]
pub fn build_without_weights(config: &Value) -> Result<()> {
    config_check::check(config)?;
    match model_type(config) {
        "llama" | "mistral" => llama::prepare(config).map(drop),
        "qwen2" => qwen2::prepare(config).map(drop),
        "phi3" => phi3::prepare(config).map(drop),
        "gemma2" => gemma2::prepare(config).map(drop),
        "gemma3_text" => gemma3::prepare(config).map(drop),
        "qwen3" => qwen3::prepare(config).map(drop),
        "bert" => bert::prepare(config).map(drop),
        "whisper" => whisper::prepare(config).map(drop),
        other => Err(EngineError::UnsupportedArchitecture(other.to_string())),
    }
}

/// Why a Whisper folder is not a language model.
pub(crate) const WHISPER_IS_SPEECH: &str =
    "whisper (a speech-to-text model: use SpeechModel / mlxk run MODEL --audio FILE)";

/// Loads the model in `dir` (an MLX model folder: `config.json` plus safetensors) as `policy`
/// plans it.
pub fn load(dir: &Path, policy: &LoadPolicy) -> Result<LoadedModel> {
    let config = read_config(dir)?;
    let plan = policy.plan(&WeightFacts::read(dir, &config)?);
    let mut weights = Weights::load(dir, &config, &plan)?;
    let model: Rc<dyn LanguageModel> = match model_type(&config) {
        "llama" | "mistral" => Rc::new(llama::load(&config, &mut weights)?),
        "qwen2" => Rc::new(qwen2::load(&config, &mut weights)?),
        "phi3" => Rc::new(phi3::load(&config, &mut weights)?),
        "gemma2" => Rc::new(gemma2::load(&config, &mut weights)?),
        "gemma3_text" => Rc::new(gemma3::load(&config, &mut weights)?),
        "qwen3" => Rc::new(qwen3::load(&config, &mut weights)?),
        "whisper" => {
            return Err(EngineError::UnsupportedArchitecture(
                WHISPER_IS_SPEECH.into(),
            ))
        }
        other => return Err(EngineError::UnsupportedArchitecture(other.to_string())),
    };
    weights.finish()?;
    Ok(LoadedModel {
        model,
        config,
        plan,
    })
}
