use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use mlxk_convert::{
    convert_ct2, convert_gguf, dequantize_folder, quantize_folder, repair_index, ConvertError,
    ConvertOptions, Ct2Report, FolderReport, Progress, RepairReport, ScaleDtype,
    DEFAULT_GROUP_SIZE,
};
use mlxk_core::health::{self, CheckDepth};
use mlxk_core::install::install_folder;
use mlxk_core::staging::{self, StagingDir};
use mlxk_core::workspace::{self, WorkspaceMetadata};
use mlxk_core::{HubCache, RepoId};
use serde_json::{json, Value};

use crate::output::{CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// SRC TARGET: a Hugging Face model folder (safetensors) and the folder to write (new or
    /// empty); with --from-gguf or --from-ct2 only TARGET; with --into-cache no TARGET.
    #[arg(value_names = ["SRC", "TARGET"], num_args = 0..=2)]
    pub paths: Vec<PathBuf>,
    /// A GGUF file to convert (llama, qwen2, gemma3; F32/F16/BF16, Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 and
    /// Q2_K-Q6_K tensors), or the first part of a split one (NAME-00001-of-0000N.gguf).
    #[arg(long = "from-gguf", value_name = "FILE", conflicts_with_all = ["quantize", "dequantize", "repair_index"])]
    pub from_gguf: Option<PathBuf>,
    /// A CTranslate2 (faster-whisper) Whisper model folder to convert to MLX Whisper: model.bin,
    /// config.json and tokenizer.json (float16/float32 weights; exact).
    #[arg(long = "from-ct2", value_name = "DIR", conflicts_with_all = ["from_gguf", "quantize", "dequantize", "repair_index"])]
    pub from_ct2: Option<PathBuf>,
    /// Quantize the dense safetensors model SRC with BITS bits (2, 3, 4, 5, 6, 8) as
    /// `mlx_lm.convert -q --q-bits BITS` does.
    #[arg(long, value_name = "BITS", conflicts_with_all = ["dequantize", "repair_index"])]
    pub quantize: Option<u32>,
    /// Values per quantization group (32, 64, 128), as mlx-lm's --q-group-size.
    /// [default: 64]
    #[arg(long, value_name = "G")]
    pub group_size: Option<usize>,
    /// Turn the MLX-quantized model SRC back into a dense one, as `mlx_lm.convert --dequantize`.
    #[arg(long, conflicts_with = "repair_index")]
    pub dequantize: bool,
    /// Copy SRC with its model.safetensors.index.json rebuilt from the shards' headers.
    #[arg(long)]
    pub repair_index: bool,
    /// Install the result into the Hugging Face cache as ORG/NAME instead of a folder.
    #[arg(long, value_name = "ORG/NAME")]
    pub into_cache: Option<String>,
    /// GGUF: dtype of quantization scales, biases and dense weights.
    #[arg(long, value_enum, default_value_t = Scales::F32)]
    pub scales: Scales,
    /// GGUF: store Q2_K/Q3_K/Q6_K tensors (no exact MLX form, dense float32 by default) quantized
    /// with BITS bits (2, 3, 4, 5, 6, 8; groups of 32) as MLX's quantize does. Lossy.
    #[arg(long, value_name = "BITS")]
    pub requantize: Option<u32>,
}

/// What one `convert` invocation asks for.
enum Job<'a> {
    Gguf(&'a Path),
    Ct2(&'a Path),
    Quantize(&'a Path, u32, usize),
    Dequantize(&'a Path),
    RepairIndex(&'a Path),
}

impl ConvertArgs {
    /// The job and the target folder (`None` with --into-cache); usage errors for the
    /// combinations clap cannot express.
    fn job(&self) -> Result<(Job<'_>, Option<&Path>), CliError> {
        let (job, rest) =
            match (&self.from_gguf, self.paths.split_first()) {
                (Some(gguf), _) => (Job::Gguf(gguf), self.paths.as_slice()),
                (None, _) if self.from_ct2.is_some() => (
                    Job::Ct2(self.from_ct2.as_deref().expect("checked")),
                    self.paths.as_slice(),
                ),
                (None, Some((source, rest))) => {
                    let job = if let Some(bits) = self.quantize {
                        Job::Quantize(source, bits, self.group_size.unwrap_or(DEFAULT_GROUP_SIZE))
                    } else if self.dequantize {
                        Job::Dequantize(source)
                    } else if self.repair_index {
                        Job::RepairIndex(source)
                    } else {
                        return Err(CliError::usage(
                        "say what to do with SRC: --quantize BITS, --dequantize or --repair-index \
                         (or convert a GGUF file with --from-gguf FILE)",
                    ));
                    };
                    (job, rest)
                }
                (None, None) => return Err(CliError::usage(
                    "nothing to convert: give SRC TARGET with --quantize BITS, --dequantize or \
                     --repair-index, or --from-gguf FILE TARGET, or --from-ct2 DIR TARGET",
                )),
            };
        if self.group_size.is_some() && self.quantize.is_none() {
            return Err(CliError::usage("--group-size goes with --quantize"));
        }
        if !matches!(job, Job::Gguf(_)) && (self.requantize.is_some() || self.scales != Scales::F32)
        {
            return Err(CliError::usage(
                "--scales and --requantize apply to --from-gguf only",
            ));
        }
        match (rest, &self.into_cache) {
            ([target], None) => Ok((job, Some(target.as_path()))),
            ([], Some(_)) => Ok((job, None)),
            ([], None) => Err(CliError::usage(
                "give a TARGET folder or --into-cache ORG/NAME",
            )),
            ([_], Some(_)) => Err(CliError::usage(
                "give either a TARGET folder or --into-cache ORG/NAME, not both",
            )),
            _ => Err(CliError::usage("too many paths: SRC TARGET at most")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scales {
    /// Exact, and fast on MLX's CPU backend.
    F32,
    /// As GGUF and most published MLX models store them.
    F16,
}

pub fn run(args: &ConvertArgs, output: &Output) -> Result<Outcome, CliError> {
    let (job, target) = args.job()?;
    let destination = match &args.into_cache {
        Some(name) => Destination::cache(name)?,
        None => Destination::Folder(workspace::place(target.expect("a target or the cache"))),
    };
    let folder = destination.conversion_folder();
    let show_progress = !output.json && io::stderr().is_terminal();
    let progress = |p: Progress| {
        if show_progress {
            report_progress(&p);
        }
    };
    let converted = match job {
        Job::Gguf(file) => from_gguf(file, &folder, args, progress),
        Job::Ct2(dir) => convert_ct2(dir, &folder, progress).map(ct2_result),
        Job::Quantize(source, bits, group_size) => {
            quantize_folder(source, &folder, bits, group_size, progress).map(folder_result)
        }
        Job::Dequantize(source) => dequantize_folder(source, &folder, progress).map(folder_result),
        Job::RepairIndex(source) => repair_index(source, &folder).map(repair_result),
    }
    .map_err(|e| CliError::new(e.kind(), e.to_string()))?;
    if show_progress {
        eprintln!();
    }
    let Converted {
        mut data,
        summary,
        source_name,
        mode,
        quantization,
    } = converted;

    let health = health::check_folder(&folder, CheckDepth::Deep);
    data["target"] = json!(folder);
    data["health_check"] = json!(true);
    data["health_status"] = json!(if health.is_healthy() {
        "healthy"
    } else {
        "unhealthy"
    });
    data["health_reason"] = json!(health.reason());
    // Into the cache, the folder is a staging one: the message names where it ends up.
    let shown_target = match &destination {
        Destination::Cache(..) => "the cache".to_string(),
        Destination::Folder(folder) => folder.display().to_string(),
    };
    let mut message = format!(
        "Converted {} into {shown_target} ({summary})",
        data["source"].as_str().unwrap_or_default()
    );
    if let Destination::Cache(cache, repo_id, _) = &destination {
        let commit = install_folder(cache, repo_id, &folder)?;
        data["target"] = json!(cache.repo_dir(repo_id).join("snapshots").join(&commit));
        data["repo_id"] = json!(repo_id.as_str());
        data["commit"] = json!(commit);
        message = format!(
            "{message}; installed in the cache as {repo_id}@{}",
            &commit[..7]
        );
    }
    if !health.is_healthy() {
        return Err(CliError::new(
            "health_check_failed",
            format!("the converted model is not healthy: {}", health.reason()),
        ));
    }
    if let Destination::Folder(folder) = &destination {
        // A workspace as mlx-knife marks its conversions: managed, with a content hash.
        let mut marker = WorkspaceMetadata::new(folder, "convert", Some(&source_name), None)?;
        marker.mode = Some(mode.into());
        marker.quantization = quantization;
        workspace::write_marker(folder, &marker)?;
        data["content_hash"] = json!(marker.content_hash);
    }
    data["message"] = json!(message);
    Ok(Outcome::new(data, message))
}

/// A conversion's result before the health check and installation.
struct Converted {
    data: Value,
    /// The parenthesised part of the message.
    summary: String,
    source_name: String,
    /// The workspace marker's mode.
    mode: &'static str,
    quantization: Option<Value>,
}

fn from_gguf(
    file: &Path,
    folder: &Path,
    args: &ConvertArgs,
    progress: impl FnMut(Progress),
) -> Result<Converted, ConvertError> {
    let options = ConvertOptions {
        scales: match args.scales {
            Scales::F32 => ScaleDtype::F32,
            Scales::F16 => ScaleDtype::F16,
        },
        requantize: args.requantize,
    };
    let report = convert_gguf(file, folder, &options, progress)?;
    let data = json!({
        "source": report.source,
        "mode": "quantize",
        "source_format": "gguf",
        "architecture": report.architecture,
        "bits": report.bits,
        "group_size": report.group_size,
        "scales_dtype": report.scales,
        "tensors": report.tensors,
        "parts": report.parts,
        "source_types": report.source_types,
        "dense_tensors": report.dense_tensors.len(),
        "exact": report.exact,
        "lossy": report.lossy,
        "assumed_config": report.assumed,
    });
    let mut summary = format!(
        "{} tensors, {}-bit, {} MB, {}",
        report.tensors,
        report.bits.map_or("no".to_string(), |b| b.to_string()),
        report.bytes_written / 1_000_000,
        if report.exact {
            "exact".to_string()
        } else {
            format!("lossy: {}", report.lossy.join("; "))
        }
    );
    if !report.dense_tensors.is_empty() {
        summary.push_str(&format!(
            "; {} tensors without an MLX quantized form stored dense in float32 (exact; \
             --requantize BITS to store them quantized, lossy)",
            report.dense_tensors.len()
        ));
    }
    if !report.assumed.is_empty() {
        summary.push_str(&format!(
            "; not in the GGUF file, filled from the architecture's published configs: {}",
            report.assumed.join(", ")
        ));
    }
    Ok(Converted {
        data,
        summary,
        source_name: file_name(file),
        mode: "gguf",
        quantization: report
            .bits
            .map(|bits| json!({"bits": bits, "group_size": report.group_size})),
    })
}

fn ct2_result(report: Ct2Report) -> Converted {
    let data = json!({
        "source": report.source,
        "mode": "convert",
        "source_format": "ctranslate2",
        "architecture": report.architecture,
        "dims": report.config,
        "multilingual": report.multilingual,
        "tensors": report.tensors,
        "dtype": report.dtype,
        "exact": report.exact,
    });
    let summary = format!(
        "Whisper, {}, {} tensors, {}, {} MB, exact",
        if report.multilingual {
            "multilingual"
        } else {
            "English-only"
        },
        report.tensors,
        report.dtype,
        report.bytes_written / 1_000_000
    );
    Converted {
        data,
        summary,
        source_name: file_name(&report.source),
        mode: "ct2",
        quantization: None,
    }
}

fn folder_result(report: FolderReport) -> Converted {
    let quantizing = report.mode == "quantize";
    let mut summary = if quantizing {
        format!(
            "{} of {} tensors quantized, {}-bit, group size {}",
            report.quantized_modules,
            report.tensors - 2 * report.quantized_modules,
            report.bits.unwrap_or(0),
            report.group_size.unwrap_or(0),
        )
    } else {
        format!(
            "{} tensors, {} dequantized",
            report.tensors, report.dequantized_modules
        )
    };
    summary.push_str(&format!(
        ", {}, {} MB",
        report.dtype.as_deref().unwrap_or("dtypes kept"),
        report.bytes_written / 1_000_000
    ));
    if !report.not_divisible.is_empty() {
        summary.push_str(&format!(
            "; {} matrices kept dense (last dimension not a multiple of the group size, as \
             mlx-lm keeps them)",
            report.not_divisible.len()
        ));
    }
    let data = json!({
        "source": report.source,
        "mode": report.mode,
        "source_format": "safetensors",
        "architecture": report.model_type,
        "bits": report.bits,
        "group_size": report.group_size,
        "dtype": report.dtype,
        "tensors": report.tensors,
        "quantized_modules": report.quantized_modules,
        "dequantized_modules": report.dequantized_modules,
        "not_divisible": report.not_divisible,
        "dropped": report.dropped,
        "shards": report.shards,
        "copied": report.copied,
    });
    Converted {
        data,
        summary,
        source_name: file_name(&report.source),
        mode: report.mode,
        quantization: quantizing
            .then(|| json!({"bits": report.bits, "group_size": report.group_size})),
    }
}

fn repair_result(report: RepairReport) -> Converted {
    let summary = format!(
        "index rebuilt: {} tensors in {} files, {}",
        report.tensors,
        report.shards,
        if report.changed {
            "the old index differed or was missing"
        } else {
            "the old index was right"
        }
    );
    let data = json!({
        "source": report.source,
        "mode": "repair_index",
        "source_format": "safetensors",
        "tensors": report.tensors,
        "shards": report.shards,
        "total_size": report.total_size,
        "index_changed": report.changed,
    });
    Converted {
        data,
        summary,
        source_name: file_name(&report.source),
        mode: "repair-index",
        quantization: None,
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().to_string(),
    )
}

enum Destination {
    Folder(PathBuf),
    /// Converted into a staging folder inside the cache root (same file system), installed,
    /// and removed with it.
    Cache(HubCache, RepoId, StagingDir),
}

impl Destination {
    /// A staging folder in the cache root, after removing what interrupted conversions left.
    fn cache(name: &str) -> Result<Destination, CliError> {
        let cache = HubCache::from_env();
        let repo_id = RepoId::parse(name)?;
        for leftover in staging::remove_stale(cache.root()) {
            eprintln!(
                "removed {}, left in the cache by an interrupted conversion",
                leftover.display()
            );
        }
        let staging = StagingDir::create(cache.root(), &repo_id.cache_dir_name()).map_err(|e| {
            CliError::new(
                "io_error",
                format!(
                    "cannot create a staging folder in {}: {e}",
                    cache.root().display()
                ),
            )
        })?;
        Ok(Destination::Cache(cache, repo_id, staging))
    }

    /// Where the converter writes: the target folder, or a folder inside the staging folder.
    fn conversion_folder(&self) -> PathBuf {
        match self {
            Destination::Folder(path) => path.clone(),
            Destination::Cache(_, _, staging) => staging.path().join("model"),
        }
    }
}

fn report_progress(progress: &Progress) {
    let line = match progress {
        Progress::Tensor { index, total, name } => {
            format!("converting tensor {}/{total}: {name}", index + 1)
        }
        Progress::Tokenizer => "writing the tokenizer".to_string(),
        Progress::Writing => "writing the weights".to_string(),
    };
    let mut stderr = io::stderr().lock();
    let _ = write!(stderr, "\r\x1b[2K{line}");
    let _ = stderr.flush();
}
