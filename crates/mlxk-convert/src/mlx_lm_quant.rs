//! Dense Hugging Face safetensors folders into MLX-quantized folders and back, producing what
//! `mlx_lm.convert -q --q-bits B --q-group-size G` and `mlx_lm.convert --dequantize` produce.
//!
//! What mlx-lm does, and so what this does:
//! - loads the weights through the architecture's `sanitize` (unused rotary frequencies
//!   dropped; `lm_head.weight` dropped when the embeddings are tied);
//! - casts every floating tensor to the config's `torch_dtype` (or `text_config.dtype`) when it is
//!   float32, float16 or bfloat16, and otherwise keeps each tensor's own dtype;
//! - quantizes every `Linear` and `Embedding` whose input dimension (a weight's last) is a
//!   multiple of the group size with MLX's affine quantization (`mx.quantize`: computed in float32,
//!   scales and biases stored in the weight's dtype); for these architectures those are exactly
//!   the two-dimensional `*.weight` tensors;
//! - records `quantization` (and its copy `quantization_config`) = `{group_size, bits, mode}` in
//!   `config.json`, with `eos_token_id` from `generation_config.json` as its loader reads it.
//!
//! Dequantizing computes `scale * q + bias` in the scales' dtype (rounded after each step), as
//! `mx.dequantize` does, after the same dtype cast.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::tensor::Dtype;
use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::error::ConvertError;
use crate::folder::{self, ModelFolder, Tensor};
use crate::quant::{self, MlxQuantized, MLX_BITS};
use crate::{move_into_place, staging_dir, Progress};

/// The group sizes MLX's affine quantization has.
pub const MLX_GROUP_SIZES: [usize; 3] = [32, 64, 128];
/// mlx-lm's default group size.
pub const DEFAULT_GROUP_SIZE: usize = 64;

/// The architectures whose loading rules (which weights mlx-lm keeps) are known here.
pub const SUPPORTED_MODEL_TYPES: &str = "llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3_text";

#[derive(Debug, Clone, Serialize)]
pub struct FolderReport {
    pub source: PathBuf,
    pub target: PathBuf,
    /// `quantize` or `dequantize`.
    pub mode: &'static str,
    pub model_type: String,
    pub tensors: usize,
    pub quantized_modules: usize,
    pub dequantized_modules: usize,
    /// Matrices left dense because their last dimension is not a multiple of the group size.
    pub not_divisible: Vec<String>,
    pub bits: Option<u32>,
    pub group_size: Option<usize>,
    /// The dtype the floating tensors were cast to (`torch_dtype`), if any.
    pub dtype: Option<String>,
    /// Weights dropped as mlx-lm's loader drops them (tied `lm_head`, rotary frequencies).
    pub dropped: Vec<String>,
    pub shards: usize,
    pub bytes_written: u64,
    /// Files copied from the source beside the weights (tokenizer, templates...).
    pub copied: Vec<String>,
}

/// Quantizes the dense model in `source` into an MLX folder at `target` (new or empty).
pub fn quantize_folder(
    source: &Path,
    target: &Path,
    bits: u32,
    group_size: usize,
    mut progress: impl FnMut(Progress),
) -> Result<FolderReport, ConvertError> {
    if !MLX_BITS.contains(&bits) {
        return Err(ConvertError::Options(format!(
            "cannot quantize to {bits} bits (MLX has 2, 3, 4, 5, 6 and 8)"
        )));
    }
    if !MLX_GROUP_SIZES.contains(&group_size) {
        return Err(ConvertError::Options(format!(
            "no group size {group_size} in MLX (it has 32, 64 and 128)"
        )));
    }
    check_target(target)?;
    let model = ModelFolder::open(source)?;
    if model.config.contains_key("quantization") || model.config.contains_key("quantization_config")
    {
        return Err(ConvertError::Options(format!(
            "{} is already quantized (its config.json has a quantization); \
             --dequantize it first",
            source.display()
        )));
    }
    let rules = LoadRules::for_config(&model.config)?;
    let mut config = load_config(&model);
    let cast = cast_dtype(&config);
    let Loaded { tensors, dropped } = rules.load(&model)?;

    let mut out = BTreeMap::new();
    let mut not_divisible = Vec::new();
    let mut quantized_modules = 0;
    let mut parameters = 0u64;
    let total = tensors.len();
    for (index, (name, tensor)) in tensors.into_iter().enumerate() {
        progress(Progress::Tensor {
            index,
            total,
            name: name.clone(),
        });
        let dtype = float_dtype(&name, tensor.dtype)?;
        let dtype = cast.unwrap_or(dtype);
        // Cast first, as mlx-lm does: the quantizer sees the values in the target dtype.
        let values: Vec<f32> = to_f32(&tensor)
            .into_iter()
            .map(|v| round_to(v, dtype))
            .collect();
        let module = name
            .strip_suffix(".weight")
            .filter(|_| tensor.shape.len() == 2);
        match module {
            Some(module) if tensor.shape[1] % group_size == 0 => {
                let (rows, cols) = (tensor.shape[0], tensor.shape[1]);
                let q = quant::quantize(&values, rows, cols, bits, group_size);
                parameters += (rows * cols) as u64;
                insert_quantized(&mut out, module, &q, dtype);
                quantized_modules += 1;
            }
            _ => {
                if module.is_some() {
                    not_divisible.push(name.clone());
                }
                parameters += tensor.elements() as u64;
                out.insert(name, float_tensor(tensor.shape, &values, dtype));
            }
        }
    }
    if quantized_modules == 0 {
        return Err(ConvertError::Options(format!(
            "group size {group_size} divides the last dimension of no matrix in {}: \
             nothing to quantize",
            source.display()
        )));
    }
    let quantization = json!({"group_size": group_size, "bits": bits, "mode": "affine"});
    config.insert("quantization".into(), quantization.clone());
    config.insert("quantization_config".into(), quantization);

    progress(Progress::Writing);
    let (written, copied) = write_model(source, target, &out, &config, parameters)?;
    Ok(FolderReport {
        source: source.to_path_buf(),
        target: target.to_path_buf(),
        mode: "quantize",
        model_type: rules.model_type,
        tensors: out.len(),
        quantized_modules,
        dequantized_modules: 0,
        not_divisible,
        bits: Some(bits),
        group_size: Some(group_size),
        dtype: cast.map(|d| dtype_name(d).to_string()),
        dropped,
        shards: written.shards,
        bytes_written: written.bytes,
        copied,
    })
}

/// Dequantizes the MLX-quantized model in `source` into a dense folder at `target`.
pub fn dequantize_folder(
    source: &Path,
    target: &Path,
    mut progress: impl FnMut(Progress),
) -> Result<FolderReport, ConvertError> {
    check_target(target)?;
    let model = ModelFolder::open(source)?;
    let Some(Value::Object(quantization)) = model.config.get("quantization").cloned() else {
        return Err(ConvertError::Options(format!(
            "{} is not MLX-quantized (its config.json has no quantization)",
            source.display()
        )));
    };
    let rules = LoadRules::for_config(&model.config)?;
    let mut config = load_config(&model);
    let cast = cast_dtype(&config);
    let Loaded { tensors, dropped } = rules.load(&model)?;
    let default = QuantParams::read(&Value::Object(quantization.clone()), "quantization")?;

    let mut out = BTreeMap::new();
    let mut dequantized_modules = 0;
    let mut parameters = 0u64;
    let modules: Vec<String> = tensors
        .keys()
        .filter_map(|k| k.strip_suffix(".scales").map(str::to_string))
        .collect();
    let total = tensors.len();
    for (index, (name, tensor)) in tensors.iter().enumerate() {
        progress(Progress::Tensor {
            index,
            total,
            name: name.clone(),
        });
        let module = [".weight", ".scales", ".biases"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|m| modules.iter().any(|q| q == m));
        if let Some(module) = module {
            if !name.ends_with(".weight") {
                continue;
            }
            let params = match quantization.get(module) {
                Some(v @ Value::Object(_)) => QuantParams::read(v, module)?,
                _ => default,
            };
            let part = |suffix: &str| {
                tensors.get(&format!("{module}{suffix}")).ok_or_else(|| {
                    ConvertError::Safetensors(format!("{module} has no {suffix} tensor"))
                })
            };
            let scales = part(".scales")?;
            let biases = part(".biases")?;
            let dtype = cast.unwrap_or(float_dtype(&format!("{module}.scales"), scales.dtype)?);
            let dense = dequantize(module, tensor, scales, biases, params, dtype)?;
            parameters += dense.elements() as u64;
            out.insert(name.clone(), dense);
            dequantized_modules += 1;
        } else {
            let dtype = cast.unwrap_or(float_dtype(name, tensor.dtype)?);
            parameters += tensor.elements() as u64;
            out.insert(
                name.clone(),
                float_tensor(tensor.shape.clone(), &to_f32(tensor), dtype),
            );
        }
    }
    config.remove("quantization");
    config.remove("quantization_config");

    progress(Progress::Writing);
    let (written, copied) = write_model(source, target, &out, &config, parameters)?;
    Ok(FolderReport {
        source: source.to_path_buf(),
        target: target.to_path_buf(),
        mode: "dequantize",
        model_type: rules.model_type,
        tensors: out.len(),
        quantized_modules: 0,
        dequantized_modules,
        not_divisible: Vec::new(),
        bits: Some(default.bits),
        group_size: Some(default.group_size),
        dtype: cast.map(|d| dtype_name(d).to_string()),
        dropped,
        shards: written.shards,
        bytes_written: written.bytes,
        copied,
    })
}

/// What `repair_index` did.
#[derive(Debug, Clone, Serialize)]
pub struct RepairReport {
    pub source: PathBuf,
    pub target: PathBuf,
    pub tensors: usize,
    pub shards: usize,
    pub total_size: u64,
    /// Whether the source's index differed from the rebuilt one (or was missing).
    pub changed: bool,
}

/// Copies the model folder `source` to `target` with `model.safetensors.index.json` rebuilt
/// from its shards' headers.
pub fn repair_index(source: &Path, target: &Path) -> Result<RepairReport, ConvertError> {
    check_target(target)?;
    let model = ModelFolder::open(source)?;
    let index = folder::rebuilt_index(source)?;
    let old: Option<Value> = std::fs::read(source.join(folder::INDEX_FILE))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok());
    let changed = old.as_ref().map(|o| &o["weight_map"]) != Some(&index["weight_map"])
        || old.as_ref().map(|o| &o["metadata"]["total_size"])
            != Some(&index["metadata"]["total_size"]);
    let staging = staging_dir(target)?;
    let result = (|| {
        for file in &model.weight_files {
            let name = file.file_name().expect("a file");
            std::fs::copy(file, staging.join(name))
                .map_err(|e| ConvertError::io("copying", file, e))?;
        }
        folder::copy_all_but_weights(source, &staging)?;
        folder::write_json(&staging.join(folder::INDEX_FILE), &index)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&staging);
        return Err(e);
    }
    move_into_place(&staging, target)?;
    Ok(RepairReport {
        source: source.to_path_buf(),
        target: target.to_path_buf(),
        tensors: index["weight_map"].as_object().map_or(0, Map::len),
        shards: model.weight_files.len(),
        total_size: index["metadata"]["total_size"].as_u64().unwrap_or(0),
        changed,
    })
}

fn check_target(target: &Path) -> Result<(), ConvertError> {
    if std::fs::read_dir(target).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ConvertError::TargetNotEmpty(target.to_path_buf()));
    }
    Ok(())
}

/// Writes weights, config and companions into a staging folder and moves it into place.
fn write_model(
    source: &Path,
    target: &Path,
    tensors: &BTreeMap<String, Tensor>,
    config: &Map<String, Value>,
    parameters: u64,
) -> Result<(folder::Written, Vec<String>), ConvertError> {
    let staging = staging_dir(target)?;
    let result = (|| {
        let written = folder::write_weights(&staging, tensors, parameters)?;
        folder::write_config(&staging, config)?;
        let copied = folder::copy_companions(source, &staging)?;
        Ok((written, copied))
    })();
    match result {
        Ok(done) => {
            move_into_place(&staging, target)?;
            Ok(done)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&staging);
            Err(e)
        }
    }
}

/// Which of a checkpoint's weights mlx-lm's model class keeps (its `sanitize`).
struct LoadRules {
    model_type: String,
    /// `lm_head.weight` is dropped (the output layer is the embedding).
    tied: bool,
}

impl LoadRules {
    fn for_config(config: &Map<String, Value>) -> Result<LoadRules, ConvertError> {
        let model_type = config
            .get("model_type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let tie = config.get("tie_word_embeddings").and_then(Value::as_bool);
        let tied = match model_type.as_str() {
            // llama.py / qwen2.py / qwen3.py: `tie_word_embeddings` (True when absent).
            "llama" | "mistral" | "qwen2" | "qwen3" => tie.unwrap_or(true),
            // No sanitize: a present lm_head is kept (and loaded).
            "phi3" | "gemma2" | "gemma3_text" => false,
            other => return Err(ConvertError::UnsupportedModelType(other.to_string())),
        };
        Ok(LoadRules { model_type, tied })
    }

    /// The folder's tensors as the model class loads them, and the names it dropped.
    fn load(&self, model: &ModelFolder) -> Result<Loaded, ConvertError> {
        let mut tensors = model.read_tensors()?;
        let dropped: Vec<String> = tensors
            .keys()
            .filter(|k| {
                k.contains("self_attn.rotary_emb.inv_freq")
                    || (self.tied && k.as_str() == "lm_head.weight")
            })
            .cloned()
            .collect();
        for name in &dropped {
            tensors.remove(name);
        }
        Ok(Loaded { tensors, dropped })
    }
}

struct Loaded {
    tensors: BTreeMap<String, Tensor>,
    dropped: Vec<String>,
}

/// `config.json` as mlx-lm's `load_config` reads it: with `eos_token_id` from
/// `generation_config.json` when that names one.
fn load_config(model: &ModelFolder) -> Map<String, Value> {
    let mut config = model.config.clone();
    let generation: Option<Value> = std::fs::read(model.path.join("generation_config.json"))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok());
    if let Some(eos) = generation.as_ref().and_then(|g| g.get("eos_token_id")) {
        let truthy = match eos {
            Value::Null | Value::Bool(false) => false,
            Value::Number(n) => n.as_f64() != Some(0.0),
            Value::Array(a) => !a.is_empty(),
            Value::String(s) => !s.is_empty(),
            _ => true,
        };
        if truthy {
            config.insert("eos_token_id".into(), eos.clone());
        }
    }
    config
}

/// The dtype mlx-lm casts floating tensors to: `torch_dtype`, else `text_config.dtype`, when it
/// names one of the three float types.
fn cast_dtype(config: &Map<String, Value>) -> Option<Dtype> {
    let named = match config.get("torch_dtype") {
        Some(Value::Null) | None => config
            .get("text_config")
            .and_then(|t| t.get("dtype"))
            .and_then(Value::as_str),
        Some(v) => v.as_str(),
    };
    match named? {
        "float32" => Some(Dtype::F32),
        "float16" => Some(Dtype::F16),
        "bfloat16" => Some(Dtype::BF16),
        _ => None,
    }
}

fn dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::F16 => "float16",
        Dtype::BF16 => "bfloat16",
        _ => "float32",
    }
}

fn float_dtype(name: &str, dtype: Dtype) -> Result<Dtype, ConvertError> {
    match dtype {
        Dtype::F32 | Dtype::F16 | Dtype::BF16 => Ok(dtype),
        other => Err(ConvertError::UnsupportedDtype {
            tensor: name.to_string(),
            dtype: format!("{other:?}"),
        }),
    }
}

fn to_f32(tensor: &Tensor) -> Vec<f32> {
    let data = &tensor.data;
    match tensor.dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect(),
        Dtype::F16 => data
            .chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => data
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        other => unreachable!("float_dtype refuses {other:?}"),
    }
}

/// `values` stored in `dtype`, rounded to nearest even as MLX's casts do.
fn float_tensor(shape: Vec<usize>, values: &[f32], dtype: Dtype) -> Tensor {
    let data = match dtype {
        Dtype::F16 => values
            .iter()
            .flat_map(|v| f16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::BF16 => values
            .iter()
            .flat_map(|v| bf16::from_f32(*v).to_le_bytes())
            .collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    };
    Tensor { dtype, shape, data }
}

/// A value rounded to `dtype` and back.
fn round_to(value: f32, dtype: Dtype) -> f32 {
    match dtype {
        Dtype::F16 => f16::from_f32(value).to_f32(),
        Dtype::BF16 => bf16::from_f32(value).to_f32(),
        _ => value,
    }
}

fn insert_quantized(
    out: &mut BTreeMap<String, Tensor>,
    module: &str,
    q: &MlxQuantized,
    dtype: Dtype,
) {
    out.insert(
        format!("{module}.weight"),
        Tensor {
            dtype: Dtype::U32,
            shape: vec![q.rows, q.words_per_row()],
            data: q.packed.iter().flat_map(|w| w.to_le_bytes()).collect(),
        },
    );
    let groups = vec![q.rows, q.groups_per_row()];
    out.insert(
        format!("{module}.scales"),
        float_tensor(groups.clone(), &q.scales, dtype),
    );
    out.insert(
        format!("{module}.biases"),
        float_tensor(groups, &q.biases, dtype),
    );
}

#[derive(Debug, Clone, Copy)]
struct QuantParams {
    bits: u32,
    group_size: usize,
}

impl QuantParams {
    fn read(value: &Value, at: &str) -> Result<QuantParams, ConvertError> {
        let bits = value.get("bits").and_then(Value::as_u64);
        let group_size = value.get("group_size").and_then(Value::as_u64);
        let mode = value
            .get("mode")
            .and_then(Value::as_str)
            .unwrap_or("affine");
        match (bits, group_size) {
            (Some(bits), Some(group_size)) if mode == "affine" => Ok(QuantParams {
                bits: bits as u32,
                group_size: group_size as usize,
            }),
            _ => Err(ConvertError::Options(format!(
                "config.json's quantization for {at} is not MLX affine with bits and group_size: {value}"
            ))),
        }
    }
}

/// A quantized module's dense weight in `dtype`, as `mx.dequantize` computes it there.
fn dequantize(
    module: &str,
    packed: &Tensor,
    scales: &Tensor,
    biases: &Tensor,
    params: QuantParams,
    dtype: Dtype,
) -> Result<Tensor, ConvertError> {
    let bad = |why: &str| ConvertError::Safetensors(format!("{module}: {why}"));
    if packed.dtype != Dtype::U32 || packed.shape.len() != 2 {
        return Err(bad("the packed weight is not a uint32 matrix"));
    }
    let rows = packed.shape[0];
    let cols = packed.shape[1] * 32 / params.bits as usize;
    let groups = cols / params.group_size;
    if scales.shape != [rows, groups] || biases.shape != [rows, groups] {
        return Err(bad("scales and biases do not fit the packed weight"));
    }
    let round = |v: f32| round_to(v, dtype);
    let scales: Vec<f32> = to_f32(scales).into_iter().map(round).collect();
    let biases: Vec<f32> = to_f32(biases).into_iter().map(round).collect();
    let q = MlxQuantized {
        rows,
        cols,
        bits: params.bits,
        group_size: params.group_size,
        packed: packed
            .data
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .collect(),
        scales,
        biases,
    };
    let mut values = Vec::with_capacity(rows * cols);
    for row in 0..rows {
        for col in 0..cols {
            let g = row * groups + col / params.group_size;
            let scaled = round(q.scales[g] * q.quant(row, col) as f32);
            values.push(round(scaled + q.biases[g]));
        }
    }
    Ok(float_tensor(vec![rows, cols], &values, dtype))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cast_follows_torch_dtype_then_text_config() {
        let config = |v: Value| v.as_object().unwrap().clone();
        assert_eq!(
            cast_dtype(&config(json!({"torch_dtype": "bfloat16"}))),
            Some(Dtype::BF16)
        );
        assert_eq!(
            cast_dtype(&config(json!({"text_config": {"dtype": "float16"}}))),
            Some(Dtype::F16)
        );
        assert_eq!(cast_dtype(&config(json!({"dtype": "float16"}))), None);
        assert_eq!(cast_dtype(&config(json!({"torch_dtype": "int8"}))), None);
    }
}
