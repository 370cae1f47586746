//! Model conversion into MLX model folders.
//!
//! `convert_gguf` turns a llama-family GGUF file (F32/F16 tensors, Q4_1 and Q8_0 blocks) into
//! the folder mlx-lm and `mlxk-engine` load: `config.json` with `quantization`, MLX-quantized
//! `model.safetensors` (re-packed without loss), `tokenizer.json` rebuilt from the GGUF
//! vocabulary and `tokenizer_config.json` with the chat template. It needs no MLX at run time.
//! The folder is written next to the target and renamed into place when complete, so an
//! interrupted conversion never leaves a folder that looks finished.

mod error;
mod gguf;
mod llama;
pub mod quant;
mod tokenizer;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use gguf_rs_lib::tensor::tensor_type::TensorType;
use half::f16;
use safetensors::tensor::{Dtype, TensorView};
use serde::Serialize;
use serde_json::{json, Value};

pub use error::ConvertError;
use gguf::{GgufFile, TensorDesc};
use quant::{MlxQuantized, BLOCK};

/// The dtype of quantization scales and biases (and of dense weights) in the output.
/// GGUF stores them as float16; float32 holds the same values exactly and runs far faster on
/// MLX's CPU backend.
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
    pub architecture: String,
    pub tensors: usize,
    /// The bits most quantized layers use (others are listed in `config.json`).
    pub bits: Option<u32>,
    pub group_size: Option<usize>,
    pub scales: ScaleDtype,
    pub vocab_size: usize,
    pub bytes_written: u64,
}

struct OutTensor {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    data: Vec<u8>,
}

/// Converts a GGUF file into an MLX model folder at `target` (new, or an empty folder).
pub fn convert_gguf(
    source: &Path,
    target: &Path,
    options: &ConvertOptions,
    mut progress: impl FnMut(Progress),
) -> Result<ConvertReport, ConvertError> {
    if fs::read_dir(target).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ConvertError::TargetNotEmpty(target.to_path_buf()));
    }
    let mut gguf = GgufFile::open(source)?;
    let params = llama::LlamaParams::read(&gguf)?;
    let tokenizer = tokenizer::GgufTokenizer::read(&gguf)?;
    let descs = gguf.tensors();
    check_supported(&descs, &params)?;

    let mut out = Vec::new();
    let mut quantized_modules: BTreeMap<String, u32> = BTreeMap::new();
    for (index, desc) in descs.iter().enumerate() {
        progress(Progress::Tensor {
            index,
            total: descs.len(),
            name: desc.name.clone(),
        });
        let bytes = gguf.read(&desc.name)?;
        convert_tensor(
            desc,
            &bytes,
            &params,
            options,
            &mut out,
            &mut quantized_modules,
        )?;
    }

    let quantization = quantization_config(&quantized_modules);
    let tied = !descs.iter().any(|d| d.name == "output.weight");
    let config = llama::config(
        &params,
        tokenizer.vocab_size(),
        tied,
        quantization.clone(),
        &tokenizer.special,
    );

    progress(Progress::Writing);
    let staging = staging_dir(target)?;
    let written = write_folder(&staging, &out, &config, &tokenizer, &params, &mut progress);
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
    Ok(ConvertReport {
        source: source.to_path_buf(),
        target: target.to_path_buf(),
        architecture: "llama".into(),
        tensors: out.len(),
        bits,
        group_size: bits.map(|_| BLOCK),
        scales: options.scales,
        vocab_size: tokenizer.vocab_size(),
        bytes_written,
    })
}

/// Every tensor is one llama has, in a type this converter reads; all others are named.
fn check_supported(descs: &[TensorDesc], params: &llama::LlamaParams) -> Result<(), ConvertError> {
    let unsupported: Vec<String> = descs
        .iter()
        .filter_map(|d| match llama::map_tensor(&d.name, params) {
            None => Some(format!("{} (unknown to llama)", d.name)),
            Some(_)
                if !matches!(
                    d.kind,
                    TensorType::F32 | TensorType::F16 | TensorType::Q4_1 | TensorType::Q8_0
                ) =>
            {
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
/// noted), float tensors as they are; query and key rows back in Hugging Face head order.
fn convert_tensor(
    desc: &TensorDesc,
    bytes: &[u8],
    params: &llama::LlamaParams,
    options: &ConvertOptions,
    out: &mut Vec<OutTensor>,
    quantized_modules: &mut BTreeMap<String, u32>,
) -> Result<(), ConvertError> {
    let mapping = llama::map_tensor(&desc.name, params).expect("checked as supported");
    let (rows, cols) = desc.rows_cols();
    let unpermute = |row: usize| match mapping.unpermute_heads {
        Some(heads) => quant::unpermute_qk_source_row(row, rows, heads as usize),
        None => row,
    };
    let bad = |why: String| ConvertError::Gguf(format!("{}: {why}", desc.name));
    if matches!(desc.kind, TensorType::Q4_1 | TensorType::Q8_0) {
        let q = if desc.kind == TensorType::Q4_1 {
            quant::q4_1_to_mlx(bytes, rows, cols)
        } else {
            quant::q8_0_to_mlx(bytes, rows, cols)
        }
        .map_err(bad)?;
        let q = if mapping.unpermute_heads.is_some() {
            q.permute_rows(unpermute)
        } else {
            q
        };
        quantized_modules.insert(mapping.mlx_name.clone(), q.bits);
        push_quantized(out, &mapping.mlx_name, &q, options.scales);
        return Ok(());
    }
    let values = dense_values(bytes, desc.kind).map_err(bad)?;
    let is_vector = desc.dims.len() == 1;
    let name = if is_vector {
        mapping.mlx_name.clone()
    } else {
        format!("{}.weight", mapping.mlx_name)
    };
    let values = if mapping.unpermute_heads.is_some() && !is_vector {
        (0..rows)
            .flat_map(|r| values[unpermute(r) * cols..][..cols].to_vec())
            .collect()
    } else {
        values
    };
    // Norm weights stay float32: they are tiny and mlx-lm computes norms in it anyway.
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
    out.push(float_tensor(name, shape, &values, dtype));
    Ok(())
}

/// Writes the model folder's files into `staging`; returns the size of the weights.
fn write_folder(
    staging: &Path,
    out: &[OutTensor],
    config: &Value,
    tokenizer: &tokenizer::GgufTokenizer,
    params: &llama::LlamaParams,
    progress: &mut impl FnMut(Progress),
) -> Result<u64, ConvertError> {
    let weights_path = staging.join("model.safetensors");
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
    safetensors::serialize_to_file(views, metadata, &weights_path)
        .map_err(|e| ConvertError::io("writing", &weights_path, std::io::Error::other(e)))?;
    write_json(&staging.join("config.json"), config)?;
    progress(Progress::Tokenizer);
    tokenizer.write_tokenizer_json(&staging.join("tokenizer.json"))?;
    write_json(
        &staging.join("tokenizer_config.json"),
        &tokenizer.tokenizer_config(params.context_length),
    )?;
    write_json(
        &staging.join("generation_config.json"),
        &json!({"bos_token_id": tokenizer.special.bos, "eos_token_id": tokenizer.special.eos}),
    )?;
    Ok(fs::metadata(&weights_path).map(|m| m.len()).unwrap_or(0))
}

/// The finished folder takes the target's place (an empty target folder is replaced).
fn move_into_place(staging: &Path, target: &Path) -> Result<(), ConvertError> {
    if target.exists() {
        fs::remove_dir(target)
            .map_err(|e| ConvertError::io("replacing the empty folder", target, e))?;
    }
    fs::rename(staging, target).map_err(|e| ConvertError::io("moving the result to", target, e))
}

/// A hidden folder beside the target, on the same file system, for the atomic rename.
fn staging_dir(target: &Path) -> Result<PathBuf, ConvertError> {
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
    let mut config = json!({"group_size": BLOCK, "bits": default_bits});
    for (module, bits) in modules.iter().filter(|(_, b)| **b != default_bits) {
        config[module] = json!({"group_size": BLOCK, "bits": bits});
    }
    config
}

fn dense_values(bytes: &[u8], kind: TensorType) -> Result<Vec<f32>, String> {
    match kind {
        TensorType::F32 => Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect()),
        TensorType::F16 => Ok(bytes
            .chunks_exact(2)
            .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect()),
        other => Err(format!("{other:?} is not a dense type")),
    }
}

fn float_tensor(name: String, shape: Vec<usize>, values: &[f32], dtype: ScaleDtype) -> OutTensor {
    let (dtype, data) = match dtype {
        ScaleDtype::F32 => (
            Dtype::F32,
            values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ),
        ScaleDtype::F16 => (
            Dtype::F16,
            values
                .iter()
                .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                .collect(),
        ),
    };
    OutTensor {
        name,
        dtype,
        shape,
        data,
    }
}

fn push_quantized(out: &mut Vec<OutTensor>, module: &str, q: &MlxQuantized, dtype: ScaleDtype) {
    out.push(OutTensor {
        name: format!("{module}.weight"),
        dtype: Dtype::U32,
        shape: vec![q.rows, q.words_per_row()],
        data: q.packed.iter().flat_map(|w| w.to_le_bytes()).collect(),
    });
    let groups = vec![q.rows, q.groups_per_row()];
    out.push(float_tensor(
        format!("{module}.scales"),
        groups.clone(),
        &q.scales,
        dtype,
    ));
    out.push(float_tensor(
        format!("{module}.biases"),
        groups,
        &q.biases,
        dtype,
    ));
}
