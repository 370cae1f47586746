//! How a model's weights are held and computed on the device that runs it.
//!
//! On MLX's CPU device the dtype decides the speed: float16 quantized matmul is ~35x slower than
//! float32, and a dense float32 matmul reaches OpenBLAS, 6-80x faster again than the quantized
//! kernel (numbers in the README). So on the CPU every floating tensor is upcast to float32 at
//! load, and quantized linear layers are dequantized to dense float32 when the dense model fits
//! a memory budget. On a GPU the model is kept as published.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use safetensors::tensor::Metadata;
use safetensors::Dtype;
use serde::Serialize;
use serde_json::Value;

use crate::checkpoint::QuantizationConfig;
use crate::error::{EngineError, Result};
use crate::runtime::DeviceKind;

/// The environment variable that overrides the dense float32 budget (`0` turns dense off).
pub const DENSE_BUDGET_ENV: &str = "MLXK_DENSE_BUDGET";

/// How weights are held in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightLayout {
    /// Exactly as stored: dtype and quantization unchanged.
    AsPublished,
    /// Floating tensors (including quantization scales and biases) upcast to float32;
    /// quantized weights stay quantized.
    Float32,
    /// Quantized linear layers dequantized to dense float32, everything else float32.
    DenseFloat32,
}

impl WeightLayout {
    pub fn label(self) -> &'static str {
        match self {
            WeightLayout::AsPublished => "as published",
            WeightLayout::Float32 => "float32",
            WeightLayout::DenseFloat32 => "dense float32",
        }
    }
}

/// What the loader may do, decided once per process from the device and the user's settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LoadPolicy {
    /// Compute in float32 (the CPU device).
    pub upcast_to_float32: bool,
    /// The most memory a dense float32 copy of a quantized model may take.
    pub dense_budget_bytes: u64,
}

impl LoadPolicy {
    /// The policy for this process's default device: float32 and a dense budget of a quarter
    /// of physical memory on the CPU (or `budget`, or [`DENSE_BUDGET_ENV`]); as published on a GPU.
    pub fn for_this_machine(budget: Option<u64>) -> Result<Self> {
        let budget = match budget {
            Some(bytes) => bytes,
            None => match std::env::var(DENSE_BUDGET_ENV) {
                Ok(text) => parse_budget(&text).map_err(|e| {
                    EngineError::Config(format!("{DENSE_BUDGET_ENV}={text:?}: {e}"))
                })?,
                Err(_) => default_dense_budget(),
            },
        };
        Ok(Self::for_device(
            crate::RuntimeInfo::detect().default_device,
            budget,
        ))
    }

    pub fn for_device(device: DeviceKind, dense_budget_bytes: u64) -> Self {
        match device {
            DeviceKind::Cpu => LoadPolicy {
                upcast_to_float32: true,
                dense_budget_bytes,
            },
            DeviceKind::Gpu => Self::as_published(),
        }
    }

    /// Load models exactly as stored (what mlx-lm does; used as the parity reference).
    pub fn as_published() -> Self {
        LoadPolicy {
            upcast_to_float32: false,
            dense_budget_bytes: 0,
        }
    }

    pub fn plan(&self, facts: &WeightFacts) -> LoadPlan {
        let dense_fits = facts.quantized && facts.dense_float32_bytes <= self.dense_budget_bytes;
        let (layout, memory_bytes, reason) = if !self.upcast_to_float32 {
            (
                WeightLayout::AsPublished,
                facts.stored_bytes,
                "kept as published (GPU device)".to_string(),
            )
        } else if dense_fits {
            (
                WeightLayout::DenseFloat32,
                facts.dense_float32_bytes,
                format!(
                    "CPU: quantized layers dequantized to float32 ({} fits the {} dense budget)",
                    megabytes(facts.dense_float32_bytes),
                    megabytes(self.dense_budget_bytes)
                ),
            )
        } else if facts.quantized {
            (
                WeightLayout::Float32,
                facts.float32_bytes,
                format!(
                    "CPU: quantized weights kept, scales in float32 (dense would need {}, over the {} budget)",
                    megabytes(facts.dense_float32_bytes),
                    megabytes(self.dense_budget_bytes)
                ),
            )
        } else {
            (
                WeightLayout::Float32,
                facts.float32_bytes,
                "CPU: computed in float32".to_string(),
            )
        };
        LoadPlan {
            layout,
            memory_bytes,
            dense_float32_bytes: facts.dense_float32_bytes,
            dense_budget_bytes: self.dense_budget_bytes,
            reason,
        }
    }
}

impl Default for LoadPolicy {
    /// The device MLX defaults to on this platform (Metal on macOS, the CPU elsewhere) and the
    /// default dense budget; unlike [`LoadPolicy::for_this_machine`] it reads no environment.
    fn default() -> Self {
        let device = if cfg!(target_os = "macos") {
            DeviceKind::Gpu
        } else {
            DeviceKind::Cpu
        };
        Self::for_device(device, default_dense_budget())
    }
}

/// What the loader will do with one model, and why: what `mlxk show`, `mlxk run --verbose`
/// and the server's model list report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoadPlan {
    pub layout: WeightLayout,
    /// Memory the weights will take once loaded.
    pub memory_bytes: u64,
    pub dense_float32_bytes: u64,
    pub dense_budget_bytes: u64,
    pub reason: String,
}

impl LoadPlan {
    /// The dtype activations are computed in.
    pub fn compute_dtype(&self) -> &'static str {
        match self.layout {
            WeightLayout::AsPublished => "as published",
            WeightLayout::Float32 | WeightLayout::DenseFloat32 => "float32",
        }
    }
}

/// A model's weights as their safetensors headers describe them (nothing is loaded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WeightFacts {
    pub quantized: bool,
    /// Bytes of the tensors as stored.
    pub stored_bytes: u64,
    /// Bytes with every floating tensor in float32 and quantized weights kept packed.
    pub float32_bytes: u64,
    /// Bytes with quantized linear layers dequantized to float32 as well.
    pub dense_float32_bytes: u64,
}

impl WeightFacts {
    /// Reads the headers of every `.safetensors` file in a model folder.
    pub fn read(dir: &Path, config: &Value) -> Result<Self> {
        let mut tensors = HashMap::new();
        for file in crate::checkpoint::safetensors_files(dir)? {
            tensors.extend(read_header(&file)?);
        }
        Ok(Self::from_tensors(
            &tensors,
            &QuantizationConfig::from_config(config),
        ))
    }

    fn from_tensors(
        tensors: &HashMap<String, (Dtype, Vec<usize>)>,
        quantization: &QuantizationConfig,
    ) -> Self {
        let mut facts = WeightFacts::default();
        for (name, (dtype, shape)) in tensors {
            let elements: u64 = shape.iter().map(|&d| d as u64).product();
            let stored = elements * dtype.bitsize() as u64 / 8;
            facts.stored_bytes += stored;
            let is_float = matches!(dtype, Dtype::F16 | Dtype::BF16 | Dtype::F32 | Dtype::F64);
            let float32 = if is_float { elements * 4 } else { stored };
            facts.float32_bytes += float32;
            let module = name.strip_suffix(".weight");
            let packed = module.filter(|m| tensors.contains_key(&format!("{m}.scales")));
            let part_of_quantized = [".scales", ".biases"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|m| tensors.contains_key(&format!("{m}.scales")))
            });
            facts.dense_float32_bytes += match packed {
                Some(module) => {
                    facts.quantized = true;
                    let (_, bits) = quantization.for_module(module).unwrap_or((64, 4));
                    elements * 32 / bits.max(1) as u64 * 4
                }
                None if part_of_quantized => 0,
                None => float32,
            };
        }
        facts
    }
}

fn read_header(path: &Path) -> Result<HashMap<String, (Dtype, Vec<usize>)>> {
    let bad = |what: String| EngineError::Weights(format!("{}: {what}", path.display()));
    let mut file = File::open(path).map_err(|e| EngineError::io("reading", path, e))?;
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|e| bad(format!("no safetensors header: {e}")))?;
    let len = u64::from_le_bytes(len);
    if len > 100_000_000 {
        return Err(bad(format!("header of {len} bytes is not plausible")));
    }
    let mut header = vec![0u8; len as usize];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("truncated header: {e}")))?;
    let metadata: Metadata =
        serde_json::from_slice(&header).map_err(|e| bad(format!("header: {e}")))?;
    Ok(metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| (name, (info.dtype, info.shape.clone())))
        .collect())
}

/// A quarter of physical memory: room for the model, its KV caches and everything else.
pub fn default_dense_budget() -> u64 {
    let mut system = sysinfo::System::new();
    system.refresh_memory();
    system.total_memory() / 4
}

/// `4GiB`, `512 MB`, `0` (no dense layers).
pub fn parse_budget(text: &str) -> std::result::Result<u64, String> {
    parse_size::parse_size(text.trim()).map_err(|e| format!("not a size ({e}); try 4GiB or 0"))
}

fn megabytes(bytes: u64) -> String {
    format!("{} MB", bytes.div_ceil(1_000_000))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts(tensors: &[(&str, Dtype, &[usize])], config: Value) -> WeightFacts {
        let tensors = tensors
            .iter()
            .map(|(n, d, s)| (n.to_string(), (*d, s.to_vec())))
            .collect();
        WeightFacts::from_tensors(&tensors, &QuantizationConfig::from_config(&config))
    }

    fn four_bit_layer() -> WeightFacts {
        // A 64x128 linear layer in 4-bit groups of 32 with float16 scales, plus a float16 norm.
        facts(
            &[
                ("l.weight", Dtype::U32, &[64, 16]),
                ("l.scales", Dtype::F16, &[64, 4]),
                ("l.biases", Dtype::F16, &[64, 4]),
                ("norm.weight", Dtype::F16, &[128]),
            ],
            json!({"quantization": {"group_size": 32, "bits": 4}}),
        )
    }

    #[test]
    fn sizes_follow_the_headers_and_the_quantization() {
        let f = four_bit_layer();
        assert!(f.quantized);
        assert_eq!(f.stored_bytes, 64 * 16 * 4 + 2 * 64 * 4 * 2 + 128 * 2);
        assert_eq!(f.float32_bytes, 64 * 16 * 4 + 2 * 64 * 4 * 4 + 128 * 4);
        assert_eq!(f.dense_float32_bytes, 64 * 128 * 4 + 128 * 4);
    }

    #[test]
    fn cpu_goes_dense_within_the_budget_and_stays_quantized_beyond_it() {
        let f = four_bit_layer();
        let within = LoadPolicy::for_device(DeviceKind::Cpu, f.dense_float32_bytes).plan(&f);
        assert_eq!(within.layout, WeightLayout::DenseFloat32);
        assert_eq!(within.memory_bytes, f.dense_float32_bytes);
        let beyond = LoadPolicy::for_device(DeviceKind::Cpu, f.dense_float32_bytes - 1).plan(&f);
        assert_eq!(beyond.layout, WeightLayout::Float32);
        assert_eq!(beyond.memory_bytes, f.float32_bytes);
        assert!(beyond.reason.contains("over the"), "{}", beyond.reason);
        assert_eq!(beyond.compute_dtype(), "float32");
    }

    #[test]
    fn gpu_and_the_reference_keep_the_model_as_published() {
        let f = four_bit_layer();
        for policy in [
            LoadPolicy::for_device(DeviceKind::Gpu, u64::MAX),
            LoadPolicy::as_published(),
        ] {
            let plan = policy.plan(&f);
            assert_eq!(plan.layout, WeightLayout::AsPublished);
            assert_eq!(plan.memory_bytes, f.stored_bytes);
        }
    }

    #[test]
    fn dense_models_are_upcast_not_dequantized() {
        let f = facts(&[("w.weight", Dtype::BF16, &[8, 8])], json!({}));
        assert!(!f.quantized);
        let plan = LoadPolicy::for_device(DeviceKind::Cpu, u64::MAX).plan(&f);
        assert_eq!(plan.layout, WeightLayout::Float32);
        assert_eq!(plan.memory_bytes, 8 * 8 * 4);
    }

    #[test]
    fn budgets_parse_with_units() {
        assert_eq!(parse_budget("0"), Ok(0));
        assert_eq!(parse_budget("4GiB"), Ok(4 << 30));
        assert_eq!(parse_budget(" 512 MB "), Ok(512_000_000));
        assert!(parse_budget("lots").is_err());
    }
}
