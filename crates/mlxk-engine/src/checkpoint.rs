//! Loading a model folder's weights and building layers from them, quantized or dense.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use mlx_rs::transforms::eval;
use mlx_rs::{ops, Array, Dtype};
use serde_json::Value;

use crate::error::{EngineError, Result};
use crate::load_plan::{LoadPlan, WeightLayout};

/// Per-module quantization settings from `config.json` (`quantization`): a default plus
/// overrides keyed by module path, as mlx-lm writes them.
#[derive(Debug, Clone, Default)]
pub struct QuantizationConfig {
    default: Option<(i32, i32)>,
    overrides: HashMap<String, Option<(i32, i32)>>,
}

impl QuantizationConfig {
    pub fn from_config(config: &Value) -> Self {
        let Some(q) = config.get("quantization").and_then(Value::as_object) else {
            return QuantizationConfig::default();
        };
        let pair = |v: &Value| {
            Some((
                v.get("group_size")?.as_i64()? as i32,
                v.get("bits")?.as_i64()? as i32,
            ))
        };
        let default = pair(&Value::Object(q.clone()));
        let overrides = q
            .iter()
            .filter(|(k, _)| {
                k.as_str() != "group_size" && k.as_str() != "bits" && k.as_str() != "mode"
            })
            .map(|(k, v)| (k.clone(), if v.is_object() { pair(v) } else { None }))
            .collect();
        QuantizationConfig { default, overrides }
    }

    /// (group_size, bits) for a module.
    pub fn for_module(&self, path: &str) -> Option<(i32, i32)> {
        match self.overrides.get(path) {
            Some(setting) => *setting,
            None => self.default,
        }
    }
}

/// The `.safetensors` files of a model folder (one, or the shards), in name order.
pub fn safetensors_files(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .map_err(|e| EngineError::io("reading", dir, e))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(EngineError::Weights(format!(
            "no .safetensors files in {}",
            dir.display()
        )));
    }
    Ok(files)
}

/// All tensors of a model folder (single file or sharded), by name, laid out as a
/// [`LoadPlan`] says.
pub struct Weights {
    tensors: HashMap<String, Array>,
    quantization: QuantizationConfig,
    layout: WeightLayout,
    missing: Vec<String>,
    /// Tensors that could not be converted as the plan asked.
    failures: Vec<String>,
}

impl Weights {
    pub fn load(dir: &Path, config: &Value, plan: &LoadPlan) -> Result<Self> {
        let mut tensors = HashMap::new();
        for file in safetensors_files(dir)? {
            let loaded = Array::load_safetensors(&file)
                .map_err(|e| EngineError::Weights(format!("{}: {e}", file.display())))?;
            tensors.extend(loaded);
        }
        // A checkpoint saved from the bare transformer (Qwen3-Embedding's are) is read as the
        // causal model it came from.
        if tensors.contains_key("embed_tokens.weight")
            && !tensors.keys().any(|k| k.starts_with("model."))
        {
            tensors = tensors
                .into_iter()
                .map(|(name, tensor)| (format!("model.{name}"), tensor))
                .collect();
        }
        if plan.layout != WeightLayout::AsPublished {
            upcast_to_float32(&mut tensors)?;
        }
        Ok(Weights {
            tensors,
            quantization: QuantizationConfig::from_config(config),
            layout: plan.layout,
            missing: Vec::new(),
            failures: Vec::new(),
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Takes a tensor; a missing one is recorded and reported by [`Weights::finish`].
    pub fn take(&mut self, name: &str) -> Array {
        self.tensors.remove(name).unwrap_or_else(|| {
            self.missing.push(name.to_string());
            Array::from_f32(0.0)
        })
    }

    pub fn take_optional(&mut self, name: &str) -> Option<Array> {
        self.tensors.remove(name)
    }

    pub fn linear(&mut self, path: &str) -> Linear {
        let weight = self.take(&format!("{path}.weight"));
        let bias = self.take_optional(&format!("{path}.bias"));
        match self.take_optional(&format!("{path}.scales")) {
            Some(scales) => {
                let (group_size, bits) = self.quantization.for_module(path).unwrap_or((64, 4));
                let biases = self.take_optional(&format!("{path}.biases"));
                if self.layout == WeightLayout::DenseFloat32 {
                    return match dense(&weight, &scales, biases.as_ref(), group_size, bits) {
                        Ok(weight) => Linear::Dense { weight, bias },
                        Err(e) => {
                            self.failures
                                .push(format!("dequantizing {path}.weight: {e}"));
                            Linear::Dense { weight, bias }
                        }
                    };
                }
                Linear::Quantized {
                    weight,
                    scales,
                    biases,
                    bias,
                    group_size,
                    bits,
                }
            }
            None => Linear::Dense { weight, bias },
        }
    }

    pub fn embedding(&mut self, path: &str) -> Embedding {
        Embedding {
            table: self.linear(path),
        }
    }

    /// Fails with every missing tensor named, once the model has taken what it needs.
    pub fn finish(self) -> Result<()> {
        if !self.missing.is_empty() {
            Err(EngineError::MissingWeights(self.missing))
        } else if !self.failures.is_empty() {
            Err(EngineError::Weights(self.failures.join("; ")))
        } else {
            Ok(())
        }
    }
}

/// Every float16/bfloat16 tensor (weights, norms, quantization scales and biases) as float32,
/// evaluated now so the 16-bit copies are freed before the model runs.
fn upcast_to_float32(tensors: &mut HashMap<String, Array>) -> Result<()> {
    let mut upcast = Vec::new();
    for (name, tensor) in tensors.iter_mut() {
        if matches!(tensor.dtype(), Dtype::Float16 | Dtype::Bfloat16) {
            *tensor = tensor.as_dtype(Dtype::Float32)?;
            upcast.push(name.clone());
        }
    }
    eval(upcast.iter().map(|name| &tensors[name]))?;
    Ok(())
}

/// A quantized weight as dense float32 (its scales already are), evaluated so the packed copy
/// can be freed.
fn dense(
    weight: &Array,
    scales: &Array,
    biases: Option<&Array>,
    group_size: i32,
    bits: i32,
) -> Result<Array> {
    let dense =
        ops::dequantize(weight, scales, biases, group_size, bits)?.as_dtype(Dtype::Float32)?;
    dense.eval()?;
    Ok(dense)
}

/// A linear layer (`x · Wᵀ + b`), dense or MLX-quantized.
pub enum Linear {
    Dense {
        weight: Array,
        bias: Option<Array>,
    },
    Quantized {
        weight: Array,
        scales: Array,
        biases: Option<Array>,
        bias: Option<Array>,
        group_size: i32,
        bits: i32,
    },
}

impl Linear {
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let (out, bias) = match self {
            Linear::Dense { weight, bias } => (x.matmul(weight.t())?, bias),
            Linear::Quantized {
                weight,
                scales,
                biases,
                bias,
                group_size,
                bits,
            } => (
                ops::quantized_matmul(
                    x,
                    weight,
                    scales,
                    biases.as_ref(),
                    true,
                    *group_size,
                    *bits,
                )?,
                bias,
            ),
        };
        Ok(match bias {
            Some(b) => out.add(b)?,
            None => out,
        })
    }
}

/// A token embedding, dense or MLX-quantized: a table of rows that doubles as the output
/// projection when the model ties them, so it is kept as the [`Linear`] it then acts as.
pub struct Embedding {
    table: Linear,
}

impl Embedding {
    /// The rows of `tokens` (dequantized when the table is quantized).
    pub fn forward(&self, tokens: &Array) -> Result<Array> {
        Ok(match &self.table {
            Linear::Dense { weight, .. } => weight.take_axis(tokens, 0)?,
            Linear::Quantized {
                weight,
                scales,
                biases,
                group_size,
                bits,
                ..
            } => {
                let biases = match biases {
                    Some(b) => Some(b.take_axis(tokens, 0)?),
                    None => None,
                };
                ops::dequantize(
                    weight.take_axis(tokens, 0)?,
                    scales.take_axis(tokens, 0)?,
                    biases.as_ref(),
                    *group_size,
                    *bits,
                )?
            }
        })
    }

    /// `x · Eᵀ`: the tied output projection.
    pub fn as_linear(&self, x: &Array) -> Result<Array> {
        self.table.forward(x)
    }
}
