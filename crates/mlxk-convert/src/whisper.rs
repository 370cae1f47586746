//! CTranslate2 Whisper (the faster-whisper format) into the MLX Whisper folder mlx-whisper and
//! `mlxk-engine` load.
//!
//! Exact: tensors are renamed, fused projections split by rows, the convolutions transposed to
//! MLX's `[out, kernel, in]`; every value keeps its bytes and dtype. What a standard Whisper
//! does not have (another activation, ALiBi, scaled embeddings, an untied output projection,
//! learned encoder positions, a bias on a key projection, quantized weights, unknown tensors)
//! is refused rather than silently dropped, since mlx-whisper would compute something else.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use safetensors::tensor::Dtype as StDtype;
use serde::Serialize;
use serde_json::{json, Value};

use crate::ct2::{Ct2File, Dtype, Variable};
use crate::{move_into_place, staging_dir, ConvertError, Progress};
use crate::{write_mlx_weights, OutTensor};

/// The only CTranslate2 spec this converts, and the newest revision whose layout it knows.
const SPEC: &str = "WhisperSpec";
const MAX_REVISION: u32 = 3;
/// Multilingual Whisper vocabularies have 51865 or more entries (English-only ones 51864).
pub const MULTILINGUAL_VOCAB: u64 = 51865;
/// The README's front matter: `library_name: mlx` is what classifies the folder as MLX.
const README_FRONT_MATTER: &str = "---\nlibrary_name: mlx\npipeline_tag: automatic-speech-recognition\nlicense: mit\ntags:\n- mlx\n- whisper\n---\n";
/// CTranslate2 options stored as scalars, with the value mlx-whisper's network implies
/// (`None`: any value; they concern CTranslate2's own runtime). Required ones are marked.
const SCALARS: &[(&str, Option<i64>, bool)] = &[
    ("decoder/activation", Some(3), true), // GELU (erf)
    ("decoder/pre_norm", Some(1), true),
    ("decoder/scale_embeddings", Some(0), false),
    ("decoder/alibi", Some(0), false),
    ("decoder/start_from_zero_embedding", Some(0), false),
    ("decoder/alignment_heads", None, false),
    ("decoder/alignment_layer", None, false),
    ("encoder/num_heads", None, true),
    ("decoder/num_heads", None, true),
];
/// Companion files larger than this are not CTranslate2 configs or vocabularies.
const MAX_COMPANION_BYTES: u64 = 64 << 20;

#[derive(Debug, Clone, Serialize)]
pub struct Ct2Report {
    pub source: PathBuf,
    pub target: PathBuf,
    /// `whisper`.
    pub architecture: String,
    /// The ten mlx-whisper dimensions, as written to `config.json`.
    pub config: Value,
    /// Whether the vocabulary has the language tokens (can detect languages and translate).
    pub multilingual: bool,
    /// Tensors written (with `alignment_heads`).
    pub tensors: usize,
    /// The weights' dtype as stored (`float16`), or `mixed`.
    pub dtype: String,
    pub bytes_written: u64,
    /// Always true: only renames, row splits and transposes.
    pub exact: bool,
}

/// mlx-whisper's `ModelDimensions`, in its order.
#[derive(Debug, Clone, Copy, Serialize)]
struct Dims {
    n_mels: usize,
    n_audio_ctx: usize,
    n_audio_state: usize,
    n_audio_head: usize,
    n_audio_layer: usize,
    n_vocab: usize,
    n_text_ctx: usize,
    n_text_state: usize,
    n_text_head: usize,
    n_text_layer: usize,
}

/// Converts the CTranslate2 Whisper folder `source_dir` (`model.bin`, `config.json`,
/// `tokenizer.json`; `vocabulary.txt` checked when present) into an MLX Whisper folder at
/// `target` (new, or an empty folder).
pub fn convert_ct2(
    source_dir: &Path,
    target: &Path,
    mut progress: impl FnMut(Progress),
) -> Result<Ct2Report, ConvertError> {
    if fs::read_dir(target).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(ConvertError::TargetNotEmpty(target.to_path_buf()));
    }
    if !source_dir.is_dir() {
        return Err(ConvertError::Ct2(format!(
            "{} is not a folder (give the folder holding model.bin, config.json and \
             tokenizer.json)",
            source_dir.display()
        )));
    }
    let model_bin = companion(source_dir, "model.bin")?;
    let ct2_config = read_json(&companion(source_dir, "config.json")?)?;
    let tokenizer = companion(source_dir, "tokenizer.json")?;
    tokenizers::Tokenizer::from_file(&tokenizer).map_err(|e| {
        ConvertError::Tokenizer(format!("{} does not load: {e}", tokenizer.display()))
    })?;

    let file = Ct2File::open(&model_bin)?;
    if file.spec != SPEC {
        return Err(ConvertError::Ct2(format!(
            "the model is a CTranslate2 '{}', not a Whisper model ({SPEC})",
            file.spec
        )));
    }
    if file.revision > MAX_REVISION {
        return Err(ConvertError::Ct2(format!(
            "{SPEC} revision {} is newer than this converter knows ({MAX_REVISION})",
            file.revision
        )));
    }
    let mut mapper = Mapper::new(&file);
    for (name, expected, required) in SCALARS {
        match (file.get(name), expected) {
            (None, _) if *required => {
                return Err(ConvertError::Ct2(format!("the model has no '{name}'")))
            }
            (None, _) => {}
            (Some(_), Some(want)) => {
                let value = file.scalar(name)?;
                if value != *want {
                    return Err(ConvertError::Ct2(format!(
                        "'{name}' is {value}; a standard Whisper has {want}, which mlx-whisper \
                         computes with"
                    )));
                }
            }
            (Some(_), None) => {}
        }
        mapper.used.insert(name.to_string());
    }
    let dims = mapper.dims()?;
    let alignment_heads = alignment_heads(&ct2_config, &dims)?;
    if let Some(vocabulary) = present(source_dir, "vocabulary.txt") {
        let lines = read_small(&vocabulary)?.lines().count();
        if lines != dims.n_vocab {
            return Err(ConvertError::Ct2(format!(
                "vocabulary.txt has {lines} tokens but the embedding {} rows",
                dims.n_vocab
            )));
        }
    }

    let total = file.names().count();
    mapper.map_all(&dims, &mut |index, name| {
        progress(Progress::Tensor {
            index,
            total,
            name: name.to_string(),
        })
    })?;
    let unknown: Vec<&str> = file.names().filter(|n| !mapper.used.contains(*n)).collect();
    if !unknown.is_empty() {
        return Err(ConvertError::Ct2(format!(
            "tensors a standard Whisper does not have (not converted, so refused): {}",
            unknown.join(", ")
        )));
    }
    let dtype = match mapper.dtypes.iter().next() {
        Some(one) if mapper.dtypes.len() == 1 => one.to_string(),
        _ => "mixed".to_string(),
    };
    let mut out = mapper.out;
    if let Some(heads) = alignment_heads {
        out.push(heads);
    }

    let mut config = serde_json::to_value(dims).expect("dimensions serialise");
    let dims_only = config.clone();
    config["model_type"] = json!("whisper");
    progress(Progress::Writing);
    let staging = staging_dir(target)?;
    let bytes_written = match write_folder(&staging, &out, &config, &tokenizer, &mut progress) {
        Ok(bytes) => bytes,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };
    move_into_place(&staging, target)?;
    Ok(Ct2Report {
        source: source_dir.to_path_buf(),
        target: target.to_path_buf(),
        architecture: "whisper".into(),
        config: dims_only,
        multilingual: dims.n_vocab as u64 >= MULTILINGUAL_VOCAB,
        tensors: out.len(),
        dtype,
        bytes_written,
        exact: true,
    })
}

/// A file the source folder must hold, or an error naming it.
fn companion(dir: &Path, name: &str) -> Result<PathBuf, ConvertError> {
    if let Some(path) = present(dir, name) {
        return Ok(path);
    }
    let hint = if name == "model.bin" && dir.join("model.bin.part1").is_file() {
        " (it holds model.bin.part1: join the parts in order into model.bin first)"
    } else {
        " (a CTranslate2 Whisper folder holds model.bin, config.json and tokenizer.json)"
    };
    Err(ConvertError::Ct2(format!(
        "{} has no {name}{hint}",
        dir.display()
    )))
}

fn present(dir: &Path, name: &str) -> Option<PathBuf> {
    let path = dir.join(name);
    path.is_file().then_some(path)
}

fn read_small(path: &Path) -> Result<String, ConvertError> {
    let len = fs::metadata(path)
        .map_err(|e| ConvertError::io("reading", path, e))?
        .len();
    if len > MAX_COMPANION_BYTES {
        return Err(ConvertError::Ct2(format!(
            "{} is {len} bytes, too large for a CTranslate2 companion file",
            path.display()
        )));
    }
    fs::read_to_string(path).map_err(|e| ConvertError::io("reading", path, e))
}

fn read_json(path: &Path) -> Result<Value, ConvertError> {
    serde_json::from_str(&read_small(path)?)
        .map_err(|e| ConvertError::Ct2(format!("{} is not JSON: {e}", path.display())))
}

/// CTranslate2's `alignment_heads` (`[[layer, head], ...]`) as mlx-whisper's int64 `[N, 2]`
/// tensor; none when the config has no list (mlx-whisper then uses its default heads).
fn alignment_heads(config: &Value, dims: &Dims) -> Result<Option<OutTensor>, ConvertError> {
    let Some(list) = config.get("alignment_heads").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let bad = |why: String| ConvertError::Ct2(format!("config.json alignment_heads: {why}"));
    let pairs = list.as_array().ok_or_else(|| bad("not a list".into()))?;
    if pairs.is_empty() {
        return Ok(None);
    }
    let mut data = Vec::with_capacity(pairs.len() * 16);
    for pair in pairs {
        let values: Option<Vec<u64>> = pair
            .as_array()
            .filter(|p| p.len() == 2)
            .map(|p| p.iter().filter_map(Value::as_u64).collect());
        match values.as_deref() {
            Some(&[layer, head])
                if layer < dims.n_text_layer as u64 && head < dims.n_text_head as u64 =>
            {
                data.extend((layer as i64).to_le_bytes());
                data.extend((head as i64).to_le_bytes());
            }
            _ => {
                return Err(bad(format!(
                    "{pair} is not [layer, head] of this decoder ({} layers, {} heads)",
                    dims.n_text_layer, dims.n_text_head
                )))
            }
        }
    }
    Ok(Some(OutTensor {
        name: "alignment_heads".into(),
        dtype: StDtype::I64,
        shape: vec![pairs.len(), 2],
        data,
    }))
}

/// Reads CTranslate2 variables into MLX tensors, remembering which were used.
struct Mapper<'a> {
    file: &'a Ct2File,
    used: BTreeSet<String>,
    out: Vec<OutTensor>,
    /// The dtypes of the tensors taken.
    dtypes: BTreeSet<&'static str>,
}

impl<'a> Mapper<'a> {
    fn new(file: &'a Ct2File) -> Self {
        Mapper {
            file,
            used: BTreeSet::new(),
            out: Vec::new(),
            dtypes: BTreeSet::new(),
        }
    }

    fn var(&self, name: &str) -> Result<&'a Variable, ConvertError> {
        self.file
            .get(name)
            .ok_or_else(|| ConvertError::Ct2(format!("the model has no '{name}'")))
    }

    /// The dimensions, from the tensors' shapes and the head counts.
    fn dims(&self) -> Result<Dims, ConvertError> {
        let shape = |name: &str, rank: usize| -> Result<Vec<usize>, ConvertError> {
            let var = self.var(name)?;
            if var.shape.len() != rank {
                return Err(ConvertError::Ct2(format!(
                    "'{name}' has shape {:?}; rank {rank} expected",
                    var.shape
                )));
            }
            Ok(var.shape.clone())
        };
        let conv1 = shape("encoder/conv1/weight", 3)?;
        let audio_positions = shape("encoder/position_encodings/encodings", 2)?;
        let embeddings = shape("decoder/embeddings/weight", 2)?;
        let text_positions = shape("decoder/position_encodings/encodings", 2)?;
        let heads = |name: &str| -> Result<usize, ConvertError> {
            let n = self.file.scalar(name)?;
            usize::try_from(n)
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| ConvertError::Ct2(format!("'{name}' is {n}")))
        };
        let dims = Dims {
            n_mels: conv1[1],
            n_audio_ctx: audio_positions[0],
            n_audio_state: conv1[0],
            n_audio_head: heads("encoder/num_heads")?,
            n_audio_layer: self.layers("encoder")?,
            n_vocab: embeddings[0],
            n_text_ctx: text_positions[0],
            n_text_state: embeddings[1],
            n_text_head: heads("decoder/num_heads")?,
            n_text_layer: self.layers("decoder")?,
        };
        let refuse = |why: String| Err(ConvertError::Ct2(why));
        if dims.n_audio_state != dims.n_text_state {
            return refuse(format!(
                "encoder width {} differs from decoder width {} (Whisper's cross-attention needs \
                 them equal)",
                dims.n_audio_state, dims.n_text_state
            ));
        }
        if !dims.n_audio_state.is_multiple_of(dims.n_audio_head)
            || !dims.n_text_state.is_multiple_of(dims.n_text_head)
        {
            return refuse(format!(
                "width {} is not a multiple of the head counts ({}, {})",
                dims.n_audio_state, dims.n_audio_head, dims.n_text_head
            ));
        }
        if dims.n_audio_state < 4 || !dims.n_audio_state.is_multiple_of(2) || conv1[2] != 3 {
            return refuse(format!(
                "encoder/conv1/weight has shape {conv1:?}; Whisper's is [width (even), mels, 3]"
            ));
        }
        if dims.n_mels == 0 || dims.n_audio_ctx == 0 || dims.n_text_ctx == 0 || dims.n_vocab == 0 {
            return refuse(format!("an empty dimension: {dims:?}"));
        }
        Ok(dims)
    }

    /// How many `{side}/layer_N` blocks there are; they must be numbered 0..N.
    fn layers(&self, side: &str) -> Result<usize, ConvertError> {
        let prefix = format!("{side}/layer_");
        let indices: BTreeSet<usize> = self
            .file
            .names()
            .filter_map(|n| n.strip_prefix(&prefix))
            .filter_map(|rest| rest.split('/').next()?.parse().ok())
            .collect();
        let n = indices.len();
        if n == 0 || indices.last() != Some(&(n - 1)) {
            return Err(ConvertError::Ct2(format!(
                "the {side} layers are numbered {indices:?}, not 0..N"
            )));
        }
        Ok(n)
    }

    fn map_all(
        &mut self,
        dims: &Dims,
        progress: &mut impl FnMut(usize, &str),
    ) -> Result<(), ConvertError> {
        let d = dims.n_audio_state;
        self.conv("encoder/conv1", "encoder.conv1", d, dims.n_mels)?;
        self.conv("encoder/conv2", "encoder.conv2", d, d)?;
        self.check_sinusoids(dims)?;
        for i in 0..dims.n_audio_layer {
            let (s, p) = (format!("encoder/layer_{i}"), format!("encoder.blocks.{i}"));
            progress(self.used.len(), &s);
            self.block_common(&s, &p, d)?;
        }
        self.norm("encoder/layer_norm", "encoder.ln_post", d)?;
        self.copy(
            "decoder/embeddings/weight",
            "decoder.token_embedding.weight",
            &[dims.n_vocab, d],
        )?;
        self.copy(
            "decoder/position_encodings/encodings",
            "decoder.positional_embedding",
            &[dims.n_text_ctx, d],
        )?;
        self.check_tied_projection()?;
        for i in 0..dims.n_text_layer {
            let (s, p) = (format!("decoder/layer_{i}"), format!("decoder.blocks.{i}"));
            progress(self.used.len(), &s);
            self.block_common(&s, &p, d)?;
            self.norm(
                &format!("{s}/attention/layer_norm"),
                &format!("{p}.cross_attn_ln"),
                d,
            )?;
            self.linear(
                &format!("{s}/attention/linear_0"),
                &format!("{p}.cross_attn.query"),
                d,
                d,
            )?;
            self.split(
                &format!("{s}/attention/linear_1"),
                &[
                    &format!("{p}.cross_attn.key"),
                    &format!("{p}.cross_attn.value"),
                ],
                d,
            )?;
            self.linear(
                &format!("{s}/attention/linear_2"),
                &format!("{p}.cross_attn.out"),
                d,
                d,
            )?;
        }
        self.norm("decoder/layer_norm", "decoder.ln", d)
    }

    /// What encoder and decoder blocks share: self-attention and the MLP with their norms.
    fn block_common(&mut self, s: &str, p: &str, d: usize) -> Result<(), ConvertError> {
        self.norm(
            &format!("{s}/self_attention/layer_norm"),
            &format!("{p}.attn_ln"),
            d,
        )?;
        self.split(
            &format!("{s}/self_attention/linear_0"),
            &[
                &format!("{p}.attn.query"),
                &format!("{p}.attn.key"),
                &format!("{p}.attn.value"),
            ],
            d,
        )?;
        self.linear(
            &format!("{s}/self_attention/linear_1"),
            &format!("{p}.attn.out"),
            d,
            d,
        )?;
        self.norm(&format!("{s}/ffn/layer_norm"), &format!("{p}.mlp_ln"), d)?;
        let hidden = self.var(&format!("{s}/ffn/linear_0/weight"))?.shape[0];
        self.linear(
            &format!("{s}/ffn/linear_0"),
            &format!("{p}.mlp1"),
            hidden,
            d,
        )?;
        self.linear(
            &format!("{s}/ffn/linear_1"),
            &format!("{p}.mlp2"),
            d,
            hidden,
        )
    }

    /// A float variable of the expected shape, its bytes, and marks it used.
    fn take(&mut self, name: &str, shape: &[usize]) -> Result<(Dtype, Vec<u8>), ConvertError> {
        let var = self.var(name)?;
        if !var.dtype.is_float() {
            return Err(ConvertError::Ct2(format!(
                "'{name}' is {}: a quantized CTranslate2 model; only float16, bfloat16 and \
                 float32 models convert exactly (convert the original with \
                 --quantization float16)",
                var.dtype.name()
            )));
        }
        if var.shape != shape {
            return Err(ConvertError::Ct2(format!(
                "'{name}' has shape {:?}; this Whisper needs {shape:?}",
                var.shape
            )));
        }
        let data = self.file.read(var)?;
        self.used.insert(name.to_string());
        self.dtypes.insert(var.dtype.name());
        Ok((var.dtype, data))
    }

    fn push(&mut self, name: String, dtype: Dtype, shape: Vec<usize>, data: Vec<u8>) {
        let dtype = match dtype {
            Dtype::F32 => StDtype::F32,
            Dtype::F16 => StDtype::F16,
            Dtype::Bf16 => StDtype::BF16,
            Dtype::I8 | Dtype::I16 | Dtype::I32 => unreachable!("only floats are taken"),
        };
        self.out.push(OutTensor {
            name,
            dtype,
            shape,
            data,
        });
    }

    fn copy(&mut self, from: &str, to: &str, shape: &[usize]) -> Result<(), ConvertError> {
        let (dtype, data) = self.take(from, shape)?;
        self.push(to.to_string(), dtype, shape.to_vec(), data);
        Ok(())
    }

    /// `gamma`/`beta` as `weight`/`bias`.
    fn norm(&mut self, from: &str, to: &str, d: usize) -> Result<(), ConvertError> {
        self.copy(&format!("{from}/gamma"), &format!("{to}.weight"), &[d])?;
        self.copy(&format!("{from}/beta"), &format!("{to}.bias"), &[d])
    }

    fn linear(&mut self, from: &str, to: &str, out: usize, inp: usize) -> Result<(), ConvertError> {
        self.copy(
            &format!("{from}/weight"),
            &format!("{to}.weight"),
            &[out, inp],
        )?;
        self.copy(&format!("{from}/bias"), &format!("{to}.bias"), &[out])
    }

    /// A fused projection (`[n·d, d]` rows) into `n` linears in order. Whisper's key projections
    /// have no bias: CTranslate2 stores zeros there, which must be zeros to be dropped.
    fn split(&mut self, from: &str, to: &[&str], d: usize) -> Result<(), ConvertError> {
        let n = to.len();
        let (dtype, weight) = self.take(&format!("{from}/weight"), &[n * d, d])?;
        let bias_name = format!("{from}/bias");
        let (bias_dtype, bias) = self.take(&bias_name, &[n * d])?;
        let (w_part, b_part) = (d * d * dtype.size(), d * bias_dtype.size());
        for (i, name) in to.iter().enumerate() {
            self.push(
                format!("{name}.weight"),
                dtype,
                vec![d, d],
                weight[i * w_part..][..w_part].to_vec(),
            );
            let part = &bias[i * b_part..][..b_part];
            if name.ends_with(".key") {
                if !all_zero(part, bias_dtype) {
                    return Err(ConvertError::Ct2(format!(
                        "'{bias_name}' has a non-zero key bias (rows {}..{}); Whisper's key \
                         projections have none, so it cannot be dropped",
                        i * d,
                        (i + 1) * d
                    )));
                }
            } else {
                self.push(format!("{name}.bias"), bias_dtype, vec![d], part.to_vec());
            }
        }
        Ok(())
    }

    /// PyTorch's Conv1d `[out, in, kernel]` to MLX's `[out, kernel, in]`.
    fn conv(&mut self, from: &str, to: &str, out: usize, inp: usize) -> Result<(), ConvertError> {
        const K: usize = 3;
        let (dtype, w) = self.take(&format!("{from}/weight"), &[out, inp, K])?;
        let size = dtype.size();
        let mut t = vec![0u8; w.len()];
        for o in 0..out {
            for i in 0..inp {
                for k in 0..K {
                    let src = ((o * inp + i) * K + k) * size;
                    let dst = ((o * K + k) * inp + i) * size;
                    t[dst..dst + size].copy_from_slice(&w[src..src + size]);
                }
            }
        }
        self.push(format!("{to}.weight"), dtype, vec![out, K, inp], t);
        self.copy(&format!("{from}/bias"), &format!("{to}.bias"), &[out])
    }

    /// mlx-whisper computes the encoder's positions (sinusoids) rather than loading them, so
    /// the stored ones must be those.
    fn check_sinusoids(&mut self, dims: &Dims) -> Result<(), ConvertError> {
        let name = "encoder/position_encodings/encodings";
        let (ctx, d) = (dims.n_audio_ctx, dims.n_audio_state);
        let (dtype, data) = self.take(name, &[ctx, d])?;
        let half = d / 2;
        let increment = 10000f64.ln() / (half as f64 - 1.0);
        let mut worst = 0f64;
        for (index, stored) in floats(&data, dtype).enumerate() {
            let (t, c) = (index / d, index % d);
            let angle = t as f64 * (-increment * (c % half) as f64).exp();
            let want = if c < half { angle.sin() } else { angle.cos() };
            let off = (stored - want).abs();
            worst = worst.max(if off.is_nan() { f64::INFINITY } else { off });
        }
        if worst > 1e-3 {
            return Err(ConvertError::Ct2(format!(
                "'{name}' are not Whisper's sinusoids (off by {worst:.3e}): not a standard \
                 Whisper encoder"
            )));
        }
        Ok(())
    }

    /// The output projection must be the token embedding (mlx-whisper ties them); it is
    /// stored as an alias, or at worst as an identical copy.
    fn check_tied_projection(&mut self) -> Result<(), ConvertError> {
        let name = "decoder/projection/weight";
        let embeddings = "decoder/embeddings/weight";
        let Some(projection) = self.file.get(name) else {
            return Ok(());
        };
        let embedding = self.var(embeddings)?;
        let tied = if self.file.is_alias(name) {
            projection.name == embedding.name
        } else {
            projection.dtype == embedding.dtype
                && projection.shape == embedding.shape
                && self.file.read(projection)? == self.file.read(embedding)?
        };
        if !tied {
            return Err(ConvertError::Ct2(format!(
                "'{name}' differs from '{embeddings}'; Whisper ties its output projection to \
                 the token embedding"
            )));
        }
        self.used.insert(name.to_string());
        Ok(())
    }
}

/// The values of a float tensor, widened to f64.
fn floats(data: &[u8], dtype: Dtype) -> Box<dyn Iterator<Item = f64> + '_> {
    match dtype {
        Dtype::F16 => Box::new(
            data.chunks_exact(2)
                .map(|b| f64::from(half::f16::from_le_bytes([b[0], b[1]]).to_f32())),
        ),
        Dtype::Bf16 => Box::new(
            data.chunks_exact(2)
                .map(|b| f64::from(half::bf16::from_le_bytes([b[0], b[1]]).to_f32())),
        ),
        _ => Box::new(
            data.chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        ),
    }
}

/// Every value is +0 or -0.
fn all_zero(data: &[u8], dtype: Dtype) -> bool {
    floats(data, dtype).all(|v| v == 0.0)
}

fn write_folder(
    staging: &Path,
    out: &[OutTensor],
    config: &Value,
    tokenizer: &Path,
    progress: &mut impl FnMut(Progress),
) -> Result<u64, ConvertError> {
    let weights_path = staging.join("weights.safetensors");
    write_mlx_weights(&weights_path, out)?;

    // mlx-whisper passes every key but `model_type` and `quantization` to ModelDimensions, so
    // nothing else may be in it; four spaces as mlx-whisper's own conversions.
    let config_path = staging.join("config.json");
    let mut text = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut text, formatter);
    config
        .serialize(&mut serializer)
        .expect("JSON values serialise");
    fs::write(&config_path, text).map_err(|e| ConvertError::io("writing", &config_path, e))?;

    progress(Progress::Tokenizer);
    let tokenizer_path = staging.join("tokenizer.json");
    fs::copy(tokenizer, &tokenizer_path).map_err(|e| ConvertError::io("copying", tokenizer, e))?;
    let readme = staging.join("README.md");
    fs::write(&readme, readme_text(config)).map_err(|e| ConvertError::io("writing", &readme, e))?;
    Ok(fs::metadata(&weights_path).map(|m| m.len()).unwrap_or(0))
}

fn readme_text(config: &Value) -> String {
    let multilingual = config["n_vocab"].as_u64().unwrap_or(0) >= MULTILINGUAL_VOCAB;
    format!(
        "{README_FRONT_MATTER}\n# Whisper ({}, {} encoder and {} decoder layers of width {})\n\n\
         Converted from a CTranslate2 (faster-whisper) `model.bin` by `mlxk convert --from-ct2`: \
         tensors renamed, fused attention projections split, convolutions transposed to MLX's \
         layout. The values are unchanged. It loads in mlx-whisper and in MLX Knife \
         (`mlxk run MODEL --audio FILE`).\n",
        if multilingual {
            "multilingual"
        } else {
            "English-only"
        },
        config["n_audio_layer"],
        config["n_text_layer"],
        config["n_audio_state"],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ct2::writer::Writer;
    use half::f16;
    use safetensors::SafeTensors;

    const D: usize = 8;
    const MELS: usize = 4;
    const AUDIO_CTX: usize = 6;
    const TEXT_CTX: usize = 5;
    const VOCAB: usize = 11;
    const HIDDEN: usize = 32;
    const LAYERS: usize = 2;

    /// A distinct float16 value for every element of every tensor, so a misplaced row or a
    /// wrong transpose shows.
    fn values(seed: usize, n: usize) -> Vec<f16> {
        (0..n)
            .map(|i| f16::from_f32(((seed * 131 + i * 7) % 2003) as f32 / 64.0 - 15.0))
            .collect()
    }

    fn bytes(v: &[f16]) -> Vec<u8> {
        v.iter().flat_map(|h| h.to_le_bytes()).collect()
    }

    fn sinusoids(ctx: usize, d: usize) -> Vec<f16> {
        let half = d / 2;
        let inc = 10000f64.ln() / (half as f64 - 1.0);
        (0..ctx * d)
            .map(|i| {
                let (t, c) = (i / d, i % d);
                let a = t as f64 * (-inc * (c % half) as f64).exp();
                f16::from_f64(if c < half { a.sin() } else { a.cos() })
            })
            .collect()
    }

    /// The synthetic model's variables: name, shape, dtype id, data.
    type Var = (String, Vec<u32>, u8, Vec<u8>);

    /// Builds the synthetic model's variables, each float16 tensor with its own values.
    #[derive(Default)]
    struct Builder {
        vars: Vec<Var>,
        seed: usize,
    }

    impl Builder {
        fn f(&mut self, name: &str, shape: &[usize]) {
            self.seed += 1;
            let n = shape.iter().product();
            let dims = shape.iter().map(|d| *d as u32).collect();
            let data = bytes(&values(self.seed, n));
            self.vars.push((name.to_string(), dims, 4, data));
        }

        /// A fused bias of `n` blocks whose block `key` (the key projection's) is zero.
        fn fused_bias(&mut self, name: &str, n: usize, key: usize) {
            self.seed += 1;
            let mut bias = values(self.seed, n * D);
            bias[key * D..(key + 1) * D].fill(f16::ZERO);
            self.vars
                .push((name.to_string(), vec![(n * D) as u32], 4, bytes(&bias)));
        }

        fn scalar(&mut self, name: &str, id: u8, data: &[u8]) {
            self.vars
                .push((name.to_string(), vec![], id, data.to_vec()));
        }

        fn attention(&mut self, prefix: &str) {
            self.f(&format!("{prefix}/layer_norm/gamma"), &[D]);
            self.f(&format!("{prefix}/layer_norm/beta"), &[D]);
            self.f(&format!("{prefix}/linear_0/weight"), &[3 * D, D]);
            self.fused_bias(&format!("{prefix}/linear_0/bias"), 3, 1);
            self.f(&format!("{prefix}/linear_1/weight"), &[D, D]);
            self.f(&format!("{prefix}/linear_1/bias"), &[D]);
        }
    }

    fn model_vars() -> Vec<Var> {
        let mut b = Builder::default();
        b.f("encoder/conv1/weight", &[D, MELS, 3]);
        b.f("encoder/conv1/bias", &[D]);
        b.f("encoder/conv2/weight", &[D, D, 3]);
        b.f("encoder/conv2/bias", &[D]);
        b.vars.push((
            "encoder/position_encodings/encodings".into(),
            vec![AUDIO_CTX as u32, D as u32],
            4,
            bytes(&sinusoids(AUDIO_CTX, D)),
        ));
        for side in ["encoder", "decoder"] {
            for i in 0..LAYERS {
                let s = format!("{side}/layer_{i}");
                b.attention(&format!("{s}/self_attention"));
                b.f(&format!("{s}/ffn/layer_norm/gamma"), &[D]);
                b.f(&format!("{s}/ffn/layer_norm/beta"), &[D]);
                b.f(&format!("{s}/ffn/linear_0/weight"), &[HIDDEN, D]);
                b.f(&format!("{s}/ffn/linear_0/bias"), &[HIDDEN]);
                b.f(&format!("{s}/ffn/linear_1/weight"), &[D, HIDDEN]);
                b.f(&format!("{s}/ffn/linear_1/bias"), &[D]);
                if side == "decoder" {
                    // Cross-attention: query, fused key;value (key bias zero), out.
                    b.f(&format!("{s}/attention/layer_norm/gamma"), &[D]);
                    b.f(&format!("{s}/attention/layer_norm/beta"), &[D]);
                    b.f(&format!("{s}/attention/linear_0/weight"), &[D, D]);
                    b.f(&format!("{s}/attention/linear_0/bias"), &[D]);
                    b.f(&format!("{s}/attention/linear_1/weight"), &[2 * D, D]);
                    b.fused_bias(&format!("{s}/attention/linear_1/bias"), 2, 0);
                    b.f(&format!("{s}/attention/linear_2/weight"), &[D, D]);
                    b.f(&format!("{s}/attention/linear_2/bias"), &[D]);
                }
            }
            b.f(&format!("{side}/layer_norm/gamma"), &[D]);
            b.f(&format!("{side}/layer_norm/beta"), &[D]);
        }
        b.f("decoder/embeddings/weight", &[VOCAB, D]);
        b.f("decoder/position_encodings/encodings", &[TEXT_CTX, D]);
        b.scalar("decoder/activation", 1, &[3]);
        b.scalar("decoder/alibi", 1, &[0]);
        b.scalar("decoder/alignment_heads", 2, &[1, 0]);
        b.scalar("decoder/alignment_layer", 2, &[0xff, 0xff]);
        b.scalar("decoder/num_heads", 2, &[2, 0]);
        b.scalar("decoder/pre_norm", 1, &[1]);
        b.scalar("decoder/scale_embeddings", 1, &[0]);
        b.scalar("decoder/start_from_zero_embedding", 1, &[0]);
        b.scalar("encoder/num_heads", 2, &[4, 0]);
        b.vars.sort_by(|a, b| a.0.cmp(&b.0));
        b.vars
    }

    fn serialize(spec: &str, vars: &[Var], aliases: &[(&str, &str)]) -> Vec<u8> {
        let mut w = Writer::new(spec, 3, vars.len() as u32);
        for (name, shape, id, data) in vars {
            w.variable(name, shape, *id, data);
        }
        w.aliases(aliases);
        w.bytes
    }

    const TIED: &[(&str, &str)] = &[("decoder/projection/weight", "decoder/embeddings/weight")];

    /// A source folder: model.bin, a CTranslate2 config and a tiny tokenizer.json.
    fn source(model: &[u8]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("model.bin"), model).unwrap();
        fs::write(
            dir.path().join("config.json"),
            r#"{"alignment_heads": [[1, 0], [1, 1]], "suppress_ids": [1]}"#,
        )
        .unwrap();
        let tokenizer = json!({"version": "1.0", "model": {"type": "BPE", "vocab": {"a": 0, "b": 1},
            "merges": []}});
        fs::write(dir.path().join("tokenizer.json"), tokenizer.to_string()).unwrap();
        dir
    }

    fn convert(model: &[u8]) -> (tempfile::TempDir, Result<Ct2Report, ConvertError>) {
        let src = source(model);
        let out = tempfile::tempdir().unwrap();
        let result = convert_ct2(src.path(), &out.path().join("m"), |_| {});
        (out, result)
    }

    fn refusal(model: &[u8]) -> String {
        let (_, result) = convert(model);
        let e = result.expect_err("refused");
        assert!(matches!(e.kind(), "invalid_ct2"), "{e}");
        e.to_string()
    }

    fn get(vars: &[Var], name: &str) -> Vec<f16> {
        let data = &vars.iter().find(|v| v.0 == name).unwrap().3;
        data.chunks_exact(2)
            .map(|b| f16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    #[test]
    fn maps_every_tensor_exactly() {
        let vars = model_vars();
        let (out, report) = convert(&serialize(SPEC, &vars, TIED));
        let report = report.unwrap();
        let folder = out.path().join("m");
        assert_eq!(report.tensors, 6 + LAYERS * 15 + LAYERS * 24 + 4 + 1);
        assert!(!report.multilingual);
        assert_eq!(report.dtype, "float16");

        let config = fs::read_to_string(folder.join("config.json")).unwrap();
        assert!(config.starts_with("{\n    \"n_mels\": 4,"), "{config}");
        let config: Value = serde_json::from_str(&config).unwrap();
        assert_eq!(
            config,
            json!({"n_mels": MELS, "n_audio_ctx": AUDIO_CTX, "n_audio_state": D, "n_audio_head": 4,
                   "n_audio_layer": LAYERS, "n_vocab": VOCAB, "n_text_ctx": TEXT_CTX,
                   "n_text_state": D, "n_text_head": 2, "n_text_layer": LAYERS,
                   "model_type": "whisper"})
        );
        let readme = fs::read_to_string(folder.join("README.md")).unwrap();
        assert!(readme.starts_with(README_FRONT_MATTER));
        assert!(folder.join("tokenizer.json").is_file());

        let raw = fs::read(folder.join("weights.safetensors")).unwrap();
        let (_, meta) = SafeTensors::read_metadata(&raw).unwrap();
        assert_eq!(
            meta.metadata().as_ref().unwrap().get("format").unwrap(),
            "mlx"
        );
        let st = SafeTensors::deserialize(&raw).unwrap();
        let tensor = |name: &str| -> (Vec<usize>, Vec<f16>) {
            let t = st.tensor(name).unwrap_or_else(|_| panic!("{name}"));
            assert_eq!(t.dtype(), StDtype::F16, "{name}");
            let v = t
                .data()
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]))
                .collect();
            (t.shape().to_vec(), v)
        };
        let mut expected: BTreeSet<String> = BTreeSet::new();
        // A tensor copied as it is; its name, for the set of expected names.
        let same = |from: &str, to: &str| {
            let (_, v) = tensor(to);
            assert_eq!(v, get(&vars, from), "{to}");
            to.to_string()
        };
        expected.insert(same("encoder/conv1/bias", "encoder.conv1.bias"));
        expected.insert(same("encoder/conv2/bias", "encoder.conv2.bias"));
        expected.insert(same("encoder/layer_norm/gamma", "encoder.ln_post.weight"));
        expected.insert(same("encoder/layer_norm/beta", "encoder.ln_post.bias"));
        expected.insert(same("decoder/layer_norm/gamma", "decoder.ln.weight"));
        expected.insert(same("decoder/layer_norm/beta", "decoder.ln.bias"));
        expected.insert(same(
            "decoder/embeddings/weight",
            "decoder.token_embedding.weight",
        ));
        expected.insert(same(
            "decoder/position_encodings/encodings",
            "decoder.positional_embedding",
        ));
        for side in ["encoder", "decoder"] {
            for i in 0..LAYERS {
                let (s, p) = (format!("{side}/layer_{i}"), format!("{side}.blocks.{i}"));
                let mut pairs = vec![
                    ("self_attention/layer_norm/gamma", "attn_ln.weight"),
                    ("self_attention/layer_norm/beta", "attn_ln.bias"),
                    ("self_attention/linear_1/weight", "attn.out.weight"),
                    ("self_attention/linear_1/bias", "attn.out.bias"),
                    ("ffn/layer_norm/gamma", "mlp_ln.weight"),
                    ("ffn/layer_norm/beta", "mlp_ln.bias"),
                    ("ffn/linear_0/weight", "mlp1.weight"),
                    ("ffn/linear_0/bias", "mlp1.bias"),
                    ("ffn/linear_1/weight", "mlp2.weight"),
                    ("ffn/linear_1/bias", "mlp2.bias"),
                ];
                if side == "decoder" {
                    pairs.extend([
                        ("attention/layer_norm/gamma", "cross_attn_ln.weight"),
                        ("attention/layer_norm/beta", "cross_attn_ln.bias"),
                        ("attention/linear_0/weight", "cross_attn.query.weight"),
                        ("attention/linear_0/bias", "cross_attn.query.bias"),
                        ("attention/linear_2/weight", "cross_attn.out.weight"),
                        ("attention/linear_2/bias", "cross_attn.out.bias"),
                    ]);
                }
                for (from, to) in pairs {
                    expected.insert(same(&format!("{s}/{from}"), &format!("{p}.{to}")));
                }
                // Fused rows, in order; no key bias.
                let mut fused = vec![(
                    "self_attention/linear_0",
                    vec!["attn.query", "attn.key", "attn.value"],
                )];
                if side == "decoder" {
                    fused.push((
                        "attention/linear_1",
                        vec!["cross_attn.key", "cross_attn.value"],
                    ));
                }
                for (from, parts) in fused {
                    let w = get(&vars, &format!("{s}/{from}/weight"));
                    let b = get(&vars, &format!("{s}/{from}/bias"));
                    for (k, part) in parts.iter().enumerate() {
                        let (shape, v) = tensor(&format!("{p}.{part}.weight"));
                        assert_eq!(shape, [D, D]);
                        assert_eq!(v, w[k * D * D..(k + 1) * D * D], "{p}.{part}");
                        expected.insert(format!("{p}.{part}.weight"));
                        let bias = format!("{p}.{part}.bias");
                        if part.ends_with("key") {
                            assert!(st.tensor(&bias).is_err(), "{bias}");
                        } else {
                            assert_eq!(tensor(&bias).1, b[k * D..(k + 1) * D]);
                            expected.insert(bias);
                        }
                    }
                }
            }
        }
        // Convolutions: [out, in, k] to [out, k, in].
        for (conv, inp) in [("conv1", MELS), ("conv2", D)] {
            let w = get(&vars, &format!("encoder/{conv}/weight"));
            let (shape, v) = tensor(&format!("encoder.{conv}.weight"));
            assert_eq!(shape, [D, 3, inp]);
            for o in 0..D {
                for i in 0..inp {
                    for k in 0..3 {
                        assert_eq!(v[(o * 3 + k) * inp + i], w[(o * inp + i) * 3 + k]);
                    }
                }
            }
            expected.insert(format!("encoder.{conv}.weight"));
        }
        let heads = st.tensor("alignment_heads").unwrap();
        assert_eq!((heads.dtype(), heads.shape()), (StDtype::I64, &[2, 2][..]));
        let heads: Vec<i64> = heads
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(heads, [1, 0, 1, 1]);
        expected.insert("alignment_heads".into());
        let written: BTreeSet<String> = st.names().into_iter().map(String::from).collect();
        assert_eq!(written, expected);
        assert_eq!(report.tensors, written.len());
    }

    #[test]
    fn an_identical_stored_projection_counts_as_tied() {
        let mut vars = model_vars();
        let embedding = vars
            .iter()
            .find(|v| v.0 == "decoder/embeddings/weight")
            .unwrap()
            .clone();
        vars.push((
            "decoder/projection/weight".into(),
            embedding.1,
            4,
            embedding.3,
        ));
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        assert!(convert(&serialize(SPEC, &vars, &[])).1.is_ok());
        // An untied one is refused, as is a projection aliased to another tensor.
        let last = vars
            .iter_mut()
            .find(|v| v.0 == "decoder/projection/weight")
            .unwrap();
        last.3[0] ^= 1;
        assert!(refusal(&serialize(SPEC, &vars, &[])).contains("ties"));
        let vars = model_vars();
        let wrong = [(
            "decoder/projection/weight",
            "decoder/position_encodings/encodings",
        )];
        assert!(refusal(&serialize(SPEC, &vars, &wrong)).contains("ties"));
    }

    #[test]
    fn refuses_what_mlx_whisper_would_compute_differently() {
        let with = |edit: &dyn Fn(&mut Vec<Var>)| {
            let mut vars = model_vars();
            edit(&mut vars);
            refusal(&serialize(SPEC, &vars, TIED))
        };
        let set = |name: &'static str, data: Vec<u8>| {
            move |vars: &mut Vec<Var>| {
                vars.iter_mut().find(|v| v.0 == name).unwrap().3 = data.clone()
            }
        };
        assert!(
            refusal(&serialize("TransformerSpec", &model_vars(), TIED)).contains("not a Whisper")
        );
        // int8 weights (a quantized model).
        let msg = with(&|vars| {
            let v = vars
                .iter_mut()
                .find(|v| v.0 == "encoder/conv1/bias")
                .unwrap();
            v.2 = 1;
            v.3.truncate(D);
        });
        assert!(msg.contains("int8") && msg.contains("quantized"), "{msg}");
        // A non-zero key bias, in self- and in cross-attention.
        let msg = with(&|vars| {
            let v = vars
                .iter_mut()
                .find(|v| v.0 == "encoder/layer_1/self_attention/linear_0/bias")
                .unwrap();
            v.3[2 * D + 1] = 0x3c; // a key row, float16 1.0's high byte
        });
        assert!(msg.contains("non-zero key bias"), "{msg}");
        let msg = with(&|vars| {
            let v = vars
                .iter_mut()
                .find(|v| v.0 == "decoder/layer_0/attention/linear_1/bias")
                .unwrap();
            v.3[1] = 0x3c;
        });
        assert!(msg.contains("non-zero key bias"), "{msg}");
        assert!(with(&set("decoder/activation", vec![1])).contains("'decoder/activation' is 1"));
        assert!(with(&set("decoder/alibi", vec![1])).contains("alibi"));
        assert!(with(&set("decoder/pre_norm", vec![0])).contains("pre_norm"));
        let msg = with(&|vars| {
            let v = vars
                .iter_mut()
                .find(|v| v.0 == "encoder/position_encodings/encodings")
                .unwrap();
            v.3[D * 2 + 1] ^= 0x40;
        });
        assert!(msg.contains("sinusoids"), "{msg}");
        let msg = with(&|vars| vars.push(("encoder/extra".into(), vec![], 1, vec![0])));
        assert!(
            msg.contains("does not have") && msg.contains("encoder/extra"),
            "{msg}"
        );
        let msg = with(&|vars| vars.retain(|v| v.0 != "decoder/layer_1/ffn/linear_1/bias"));
        assert!(
            msg.contains("no 'decoder/layer_1/ffn/linear_1/bias'"),
            "{msg}"
        );
        let msg = with(&|vars| {
            let v = vars
                .iter_mut()
                .find(|v| v.0 == "decoder/layer_0/attention/linear_0/weight")
                .unwrap();
            v.1 = vec![D as u32 / 2, 2 * D as u32];
        });
        assert!(msg.contains("needs [8, 8]"), "{msg}");
        let msg = with(&|vars| vars.retain(|v| !v.0.starts_with("encoder/layer_0/")));
        assert!(msg.contains("numbered {1}"), "{msg}");
    }

    #[test]
    fn refuses_damaged_files_and_missing_companions() {
        let good = serialize(SPEC, &model_vars(), TIED);
        for cut in [0, 3, 40, good.len() / 2, good.len() - 1] {
            let msg = refusal(&good[..cut]);
            assert!(msg.contains("model.bin"), "{msg}");
        }
        let src = source(&good);
        let out = tempfile::tempdir().unwrap();
        fs::rename(
            src.path().join("model.bin"),
            src.path().join("model.bin.part1"),
        )
        .unwrap();
        let e = convert_ct2(src.path(), &out.path().join("m"), |_| {}).unwrap_err();
        assert!(e.to_string().contains("no model.bin") && e.to_string().contains("join"));
        fs::remove_file(src.path().join("tokenizer.json")).unwrap();
        fs::write(src.path().join("model.bin"), &good).unwrap();
        let e = convert_ct2(src.path(), &out.path().join("m"), |_| {}).unwrap_err();
        assert!(e.to_string().contains("no tokenizer.json"), "{e}");
        let e = convert_ct2(&src.path().join("model.bin"), &out.path().join("m"), |_| {});
        assert!(e.unwrap_err().to_string().contains("is not a folder"));
        // A vocabulary of the wrong size; alignment heads outside the decoder.
        let src = source(&good);
        fs::write(src.path().join("vocabulary.txt"), "a\nb\n").unwrap();
        let e = convert_ct2(src.path(), &out.path().join("m"), |_| {}).unwrap_err();
        assert!(e.to_string().contains("vocabulary.txt has 2"), "{e}");
        let src = source(&good);
        fs::write(
            src.path().join("config.json"),
            r#"{"alignment_heads": [[2, 0]]}"#,
        )
        .unwrap();
        let e = convert_ct2(src.path(), &out.path().join("m"), |_| {}).unwrap_err();
        assert!(e.to_string().contains("alignment_heads"), "{e}");
        // Nothing is left behind by a refusal.
        assert_eq!(fs::read_dir(out.path()).unwrap().count(), 0);
    }
}
