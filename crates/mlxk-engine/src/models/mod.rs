//! Model architectures, one file each, behind one trait.

mod common;
mod config_check;
mod gemma2;
mod gemma3;
mod llama;
mod phi3;
mod qwen2;
mod qwen3;
mod rope;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    All,
    /// Only the last: what generation needs, and the output projection of a long prompt
    /// is by far its largest matmul.
    Last,
}

impl Positions {
    /// The hidden states `[1, L, D]` to project: all, or the last position `[1, 1, D]`.
    pub fn select(self, h: Array) -> Result<Array> {
        match self {
            Positions::All => Ok(h),
            Positions::Last => {
                let last = h.shape()[1] - 1;
                Ok(h.take_axis(Array::from_slice(&[last], &[1]), 1)?)
            }
        }
    }
}

/// A causal language model: token ids in, next-token logits out.
pub trait LanguageModel {
    /// `tokens` is `[1, L]`; returns logits `[1, L, vocab]` (or `[1, 1, vocab]` for
    /// [`Positions::Last`]), updating the caches.
    fn forward_positions(
        &self,
        tokens: &Array,
        caches: &mut [KvCache],
        positions: Positions,
    ) -> Result<Array>;

    /// Logits for every position.
    fn forward(&self, tokens: &Array, caches: &mut [KvCache]) -> Result<Array> {
        self.forward_positions(tokens, caches, Positions::All)
    }
    fn num_layers(&self) -> usize;

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

fn read_config(dir: &Path) -> Result<Value> {
    let path = dir.join("config.json");
    let text = fs::read(&path).map_err(|e| EngineError::io("reading", &path, e))?;
    let config: Value =
        serde_json::from_slice(&text).map_err(|e| EngineError::Config(e.to_string()))?;
    config_check::check(&config)?;
    Ok(config)
}

/// Loads the model in `dir` (an MLX model folder: `config.json` plus safetensors) as `policy`
/// plans it.
pub fn load(dir: &Path, policy: &LoadPolicy) -> Result<LoadedModel> {
    let config = read_config(dir)?;
    let plan = policy.plan(&WeightFacts::read(dir, &config)?);
    let model_type = config
        .get("model_type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let mut weights = Weights::load(dir, &config, &plan)?;
    let model: Rc<dyn LanguageModel> = match model_type.as_str() {
        "llama" | "mistral" => Rc::new(llama::load(&config, &mut weights)?),
        "qwen2" => Rc::new(qwen2::load(&config, &mut weights)?),
        "phi3" => Rc::new(phi3::load(&config, &mut weights)?),
        "gemma2" => Rc::new(gemma2::load(&config, &mut weights)?),
        "gemma3_text" => Rc::new(gemma3::load(&config, &mut weights)?),
        "qwen3" => Rc::new(qwen3::load(&config, &mut weights)?),
        other => return Err(EngineError::UnsupportedArchitecture(other.to_string())),
    };
    weights.finish()?;
    Ok(LoadedModel {
        model,
        config,
        plan,
    })
}
