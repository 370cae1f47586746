//! Model conversion into MLX model folders.
//!
//! `convert_gguf` turns a GGUF model (one file or a split set; `llama`, `qwen2` or `gemma3`)
//! into the folder mlx-lm and `mlxk-engine` load: `config.json` with `quantization`,
//! `model.safetensors`, `tokenizer.json` rebuilt from the GGUF vocabulary and
//! `tokenizer_config.json` with the chat template. It needs no MLX at run time.
//!
//! Exactness: every tensor type with an MLX form is re-packed without loss (`Q4_0`, `Q4_1`,
//! `Q5_0`, `Q5_1`, `Q8_0`, and with float32 scales `Q4_K`, `Q5_K`: MLX affine, groups of 32);
//! `Q2_K`, `Q3_K`, `Q6_K` (16-value sub-blocks, no MLX form) and the float types are stored
//! dense in float32, also exact. Only two opt-ins lose precision, and the report says so:
//! `requantize` (those dense K-quant tensors quantized with MLX's own method) and float16
//! scales (which cannot hold every K-quant scale `d·sc`).
//!
//! `convert_ct2` turns a CTranslate2 (faster-whisper) Whisper model into the folder mlx-whisper
//! loads: renames, row splits and transposes only, the float16 values kept.
//!
//! `quantize_folder` and `dequantize_folder` turn a dense Hugging Face safetensors folder into an
//! MLX-quantized one and back, with the same tensors and `quantization` config as
//! `mlx_lm.convert`; `repair_index` rebuilds a folder's `model.safetensors.index.json`.
//!
//! The folder is written next to the target and renamed into place when complete, so an
//! interrupted conversion never leaves a folder that looks finished.

mod arch;
mod ct2;
mod error;
mod folder;
pub mod ggml;
mod gguf;
mod mlx_lm_quant;
pub mod quant;
mod tokenizer;
mod whisper;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use gguf_rs_lib::tensor::tensor_type::TensorType;
use half::f16;
use safetensors::tensor::{Dtype, TensorView};
use serde::Serialize;
use serde_json::{json, Value};

use arch::{Mapping, ModelParams};
pub use error::ConvertError;
use ggml::{MlxForm, GROUP};
use gguf::{GgufFile, TensorDesc};
pub use mlx_lm_quant::{
    dequantize_folder, quantize_folder, repair_index, FolderReport, RepairReport,
    DEFAULT_GROUP_SIZE, MLX_GROUP_SIZES,
};
use quant::MlxQuantized;
pub use whisper::{convert_ct2, Ct2Report, MULTILINGUAL_VOCAB};

/// The dtype of quantization scales and biases (and of dense weights) in the output.
/// float32 holds every GGUF scale exactly (float16 does not hold K-quant scales) and runs far
/// faster on MLX's CPU backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScaleDtype {
    #[default]
    F32,
    F16,
}

#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    pub scales: ScaleDtype,
    /// Store the tensors that have no exact MLX form (`Q2_K`, `Q3_K`, `Q6_K`) quantized with
    /// this many bits (groups of 32) instead of dense float32. Lossy.
    pub requantize: Option<u32>,
}

/// Where a conversion is, for progress displays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "stage", rename_all = "snake_case")]
pub enum Progress {
    Tensor {
        index: usize,
        total: usize,
        name: String,
    },
    Tokenizer,
    Writing,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConvertReport {
    pub source: PathBuf,
    pub target: PathBuf,
    /// The GGUF architecture (`llama`, `qwen2`, `gemma3`).
    pub architecture: String,
    /// Files the model was read from (more than one for a split model).
    pub parts: usize,
    pub tensors: usize,
    /// The bits most quantized layers use (others are listed in `config.json`).
    pub bits: Option<u32>,
    pub group_size: Option<usize>,
    pub scales: ScaleDtype,
    pub vocab_size: usize,
    pub bytes_written: u64,
    /// GGUF tensor count by type, e.g. `{"Q4_K": 12, "Q6_K": 12}`.
    pub source_types: BTreeMap<String, usize>,
    /// Quantized GGUF tensors stored dense in float32 (exact; no MLX form).
    pub dense_tensors: Vec<String>,
    /// Every value equals what the GGUF file encodes; false only with a lossy option.
    pub exact: bool,
    /// Why not exact, if so.
    pub lossy: Vec<String>,
    /// `config.json` values the GGUF file does not hold, filled from the architecture's
    /// published configurations (`key = value`).
    pub assumed: Vec<String>,
}

/// A tensor of the folder being written, in its safetensors form.
pub(crate) struct OutTensor {
    pub(crate) name: String,
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    pub(crate) data: Vec<u8>,
}

/// Writes `out` as one safetensors file with MLX's `format` metadata.
pub(crate) fn write_mlx_weights(path: &Path, out: &[OutTensor]) -> Result<(), ConvertError> {
    let views: Vec<(String, TensorView)> = out
        .iter()
        .map(|t| {
            let view = TensorView::new(t.dtype, t.shape.clone(), &t.data)
                .expect("tensor sizes are consistent");
            (t.name.clone(), view)
        })
        .collect();
    let metadata = Some(
        [("format".to_string(), "mlx".to_string())]
            .into_iter()
            .collect(),
    );
    safetensors::serialize_to_file(views, metadata, path)
        .map_err(|e| ConvertError::io("writing", path, std::io::Error::other(e)))
}

/// What the tensors came to, for the report and `config.json`.
#[derive(Default)]
struct Tally {
    quantized_modules: BTreeMap<String, u32>,
    dense: Vec<String>,
    requantized: Vec<String>,
    /// Scales, biases or dense values float16 could not hold.
    rounded_scales: usize,
}

/// Converts a GGUF file (or split set) into an MLX model folder at `target` (new, or an empty
/// folder).
pub fn convert_gguf(
    source: &Path,
    target: &Path,
    options: &ConvertOptions,
    mut progress: impl FnMut(Progress),
) -> Result<ConvertReport, ConvertError> {
    if fs::read_dir(target).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ConvertError::TargetNotEmpty(target.to_path_buf()));
    }
    if let Some(bits) = options.requantize {
        if !quant::MLX_BITS.contains(&bits) {
            return Err(ConvertError::Options(format!(
                "cannot requantize to {bits} bits (MLX has 2, 3, 4, 5, 6 and 8)"
            )));
        }
    }
    let mut gguf = GgufFile::open(source)?;
    let params = ModelParams::read(&gguf)?;
    let tokenizer = tokenizer::GgufTokenizer::read(&gguf, params.arch.gguf_name())?;
    let descs = gguf.tensors();
    check_supported(&descs, &params)?;

    let mut out = Vec::new();
    let mut tally = Tally::default();
    let mut source_types: BTreeMap<String, usize> = BTreeMap::new();
    for (index, desc) in descs.iter().enumerate() {
        progress(Progress::Tensor {
            index,
            total: descs.len(),
            name: desc.name.clone(),
        });
        *source_types.entry(format!("{:?}", desc.kind)).or_default() += 1;
        let bytes = gguf.read(&desc.name)?;
        convert_tensor(desc, &bytes, &params, options, &mut out, &mut tally)
            .map_err(|why| ConvertError::Gguf(format!("{}: {why}", desc.name)))?;
    }

    let quantization = quantization_config(&tally.quantized_modules);
    let tied = !descs.iter().any(|d| d.name == "output.weight");
    let config = arch::config(
        &params,
        tokenizer.vocab_size(),
        tied,
        quantization.clone(),
        &tokenizer.special,
    );

    progress(Progress::Writing);
    let staging = staging_dir(target)?;
    let written = write_folder(
        &staging,
        &out,
        &config,
        &tokenizer,
        params.context_length,
        &mut progress,
    );
    let bytes_written = match written {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    move_into_place(&staging, target)?;

    let bits = quantization
        .get("bits")
        .and_then(Value::as_u64)
        .map(|b| b as u32);
    let mut lossy = Vec::new();
    if !tally.requantized.is_empty() {
        lossy.push(format!(
            "{} tensors without an exact MLX form requantized to {} bits",
            tally.requantized.len(),
            options.requantize.unwrap_or(0)
        ));
    }
    if tally.rounded_scales > 0 {
        lossy.push(format!(
            "{} scales, biases or weights rounded to float16",
            tally.rounded_scales
        ));
    }
    Ok(ConvertReport {
        source: source.to_path_buf(),
        target: target.to_path_buf(),
        architecture: params.arch.gguf_name().into(),
        parts: gguf.part_count(),
        tensors: out.len(),
        bits,
        group_size: bits.map(|_| GROUP),
        scales: options.scales,
        vocab_size: tokenizer.vocab_size(),
        bytes_written,
        source_types,
        dense_tensors: tally.dense,
        exact: lossy.is_empty(),
        lossy,
        assumed: arch::assumed_values(&params)
            .into_iter()
            .map(|(key, value)| format!("{key} = {value}"))
            .collect(),
    })
}

/// Every tensor is one the architecture has, in a type this converter reads; all others are
/// named.
fn check_supported(descs: &[TensorDesc], params: &ModelParams) -> Result<(), ConvertError> {
    let unsupported: Vec<String> = descs
        .iter()
        .filter_map(|d| match arch::map_tensor(&d.name, params) {
            None => Some(format!(
                "{} (unknown to {})",
                d.name,
                params.arch.gguf_name()
            )),
            Some(_) if ggml::mlx_form(d.kind).is_none() => {
                Some(format!("{} ({:?})", d.name, d.kind))
            }
            Some(_) => None,
        })
        .collect();
    if unsupported.is_empty() {
        Ok(())
    } else {
        Err(ConvertError::UnsupportedTensors(unsupported))
    }
}

/// One GGUF tensor into its MLX tensors: quantized blocks re-packed (and the quantized module
/// noted), the rest as float values; query and key rows back in Hugging Face head order,
/// Gemma's `1 + w` norms back to `w`.
fn convert_tensor(
    desc: &TensorDesc,
    bytes: &[u8],
    params: &ModelParams,
    options: &ConvertOptions,
    out: &mut Vec<OutTensor>,
    tally: &mut Tally,
) -> Result<(), String> {
    let mapping = arch::map_tensor(&desc.name, params).expect("checked as supported");
    let (rows, cols) = desc.rows_cols();
    let is_vector = desc.dims.len() == 1;
    let form = ggml::mlx_form(desc.kind).expect("checked as supported");
    let unpermute = |row: usize| match mapping.unpermute_heads {
        Some(heads) => quant::unpermute_qk_source_row(row, rows, heads as usize),
        None => row,
    };
    let quantized = match form {
        MlxForm::Affine { bits } => {
            let groups = ggml::affine_groups(desc.kind, bytes, rows * cols, cols)?;
            Some(MlxQuantized::from_groups(&groups, rows, cols, bits))
        }
        MlxForm::Dense => None,
    };
    let quantized = match quantized {
        Some(q) if is_vector => {
            // A quantized vector (never seen in practice) is stored as its values.
            let values = (0..cols).map(|c| q.value(0, c)).collect();
            return push_dense(out, &mapping, desc, values, options, tally);
        }
        Some(q) => q,
        None => {
            let values = ggml::dequantize(desc.kind, bytes, rows * cols, cols)?;
            let requantize = options.requantize.filter(|_| {
                !is_vector
                    && matches!(
                        desc.kind,
                        TensorType::Q2_K | TensorType::Q3_K | TensorType::Q6_K
                    )
            });
            match requantize {
                Some(bits) => {
                    tally.requantized.push(desc.name.clone());
                    quant::quantize(&values, rows, cols, bits, GROUP)
                }
                None => {
                    if !matches!(
                        desc.kind,
                        TensorType::F32 | TensorType::F16 | TensorType::BF16
                    ) {
                        tally.dense.push(desc.name.clone());
                    }
                    let values = if mapping.unpermute_heads.is_some() && !is_vector {
                        (0..rows)
                            .flat_map(|r| values[unpermute(r) * cols..][..cols].to_vec())
                            .collect()
                    } else {
                        values
                    };
                    return push_dense(out, &mapping, desc, values, options, tally);
                }
            }
        }
    };
    let quantized = if mapping.unpermute_heads.is_some() {
        quantized.permute_rows(unpermute)
    } else {
        quantized
    };
    tally
        .quantized_modules
        .insert(mapping.mlx_name.clone(), quantized.bits);
    tally.rounded_scales += push_quantized(out, &mapping.mlx_name, &quantized, options.scales);
    Ok(())
}

fn push_dense(
    out: &mut Vec<OutTensor>,
    mapping: &Mapping,
    desc: &TensorDesc,
    mut values: Vec<f32>,
    options: &ConvertOptions,
    tally: &mut Tally,
) -> Result<(), String> {
    let (rows, cols) = desc.rows_cols();
    let is_vector = desc.dims.len() == 1;
    if mapping.stored_plus_one {
        values.iter_mut().for_each(|v| *v -= 1.0);
    }
    let name = if is_vector {
        mapping.mlx_name.clone()
    } else {
        format!("{}.weight", mapping.mlx_name)
    };
    // Vectors (norms, biases) stay float32: they are tiny and mlx-lm computes norms in it.
    // A float16 source matrix stays exact in float16.
    let dtype = if is_vector {
        ScaleDtype::F32
    } else {
        options.scales
    };
    let shape = if is_vector {
        vec![cols]
    } else {
        vec![rows, cols]
    };
    let (tensor, rounded) = float_tensor(name, shape, &values, dtype);
    out.push(tensor);
    tally.rounded_scales += rounded;
    Ok(())
}

/// Writes the model folder's files into `staging`; returns the size of the weights.
fn write_folder(
    staging: &Path,
    out: &[OutTensor],
    config: &Value,
    tokenizer: &tokenizer::GgufTokenizer,
    context_length: u64,
    progress: &mut impl FnMut(Progress),
) -> Result<u64, ConvertError> {
    let weights_path = staging.join("model.safetensors");
    write_mlx_weights(&weights_path, out)?;
    write_json(&staging.join("config.json"), config)?;
    progress(Progress::Tokenizer);
    tokenizer.write_tokenizer_json(&staging.join("tokenizer.json"))?;
    write_json(
        &staging.join("tokenizer_config.json"),
        &tokenizer.tokenizer_config(context_length),
    )?;
    write_json(
        &staging.join("generation_config.json"),
        &json!({"bos_token_id": tokenizer.special.bos, "eos_token_id": tokenizer.special.eos}),
    )?;
    Ok(fs::metadata(&weights_path).map(|m| m.len()).unwrap_or(0))
}

/// The finished folder takes the target's place (an empty target folder is replaced).
pub(crate) fn move_into_place(staging: &Path, target: &Path) -> Result<(), ConvertError> {
    if target.exists() {
        fs::remove_dir(target)
            .map_err(|e| ConvertError::io("replacing the empty folder", target, e))?;
    }
    fs::rename(staging, target).map_err(|e| ConvertError::io("moving the result to", target, e))
}

/// A hidden folder beside the target, on the same file system, for the atomic rename.
pub(crate) fn staging_dir(target: &Path) -> Result<PathBuf, ConvertError> {
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| ConvertError::io("creating", parent, e))?;
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("model");
    let staging = parent.join(format!(".{name}.converting-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    fs::create_dir(&staging).map_err(|e| ConvertError::io("creating", &staging, e))?;
    Ok(staging)
}

fn write_json(path: &Path, value: &Value) -> Result<(), ConvertError> {
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise");
    fs::write(path, text).map_err(|e| ConvertError::io("writing", path, e))
}

/// `{"group_size", "bits"}` of the most common setting, plus per-module overrides.
fn quantization_config(modules: &BTreeMap<String, u32>) -> Value {
    let mut counts: BTreeMap<u32, usize> = BTreeMap::new();
    for bits in modules.values() {
        *counts.entry(*bits).or_default() += 1;
    }
    let Some((&default_bits, _)) = counts.iter().max_by_key(|(bits, n)| (**n, **bits)) else {
        return Value::Null;
    };
    let mut config = json!({"group_size": GROUP, "bits": default_bits});
    for (module, bits) in modules.iter().filter(|(_, b)| **b != default_bits) {
        config[module] = json!({"group_size": GROUP, "bits": bits});
    }
    config
}

/// A float tensor; also how many values the dtype could not hold exactly.
fn float_tensor(
    name: String,
    shape: Vec<usize>,
    values: &[f32],
    dtype: ScaleDtype,
) -> (OutTensor, usize) {
    let (dtype, data, rounded) = match dtype {
        ScaleDtype::F32 => (
            Dtype::F32,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            0,
        ),
        ScaleDtype::F16 => {
            let halves: Vec<f16> = values.iter().map(|v| f16::from_f32(*v)).collect();
            let rounded = halves
                .iter()
                .zip(values)
                .filter(|(h, v)| h.to_f32() != **v)
                .count();
            (
                Dtype::F16,
                halves.iter().flat_map(|h| h.to_le_bytes()).collect(),
                rounded,
            )
        }
    };
    let tensor = OutTensor {
        name,
        dtype,
        shape,
        data,
    };
    (tensor, rounded)
}

/// Pushes a quantized module's three tensors; returns how many scales and biases the chosen
/// dtype rounded.
fn push_quantized(
    out: &mut Vec<OutTensor>,
    module: &str,
    q: &MlxQuantized,
    dtype: ScaleDtype,
) -> usize {
    out.push(OutTensor {
        name: format!("{module}.weight"),
        dtype: Dtype::U32,
        shape: vec![q.rows, q.words_per_row()],
        data: q.packed.iter().flat_map(|w| w.to_le_bytes()).collect(),
    });
    let groups = vec![q.rows, q.groups_per_row()];
    let (scales, rounded_scales) =
        float_tensor(format!("{module}.scales"), groups.clone(), &q.scales, dtype);
    let (biases, rounded_biases) =
        float_tensor(format!("{module}.biases"), groups, &q.biases, dtype);
    out.push(scales);
    out.push(biases);
    rounded_scales + rounded_biases
}
