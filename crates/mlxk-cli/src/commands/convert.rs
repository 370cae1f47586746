use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};
use mlxk_convert::{convert_gguf, ConvertOptions, Progress, ScaleDtype};
use mlxk_core::health::{self, CheckDepth};
use mlxk_core::install::install_folder;
use mlxk_core::staging::{self, StagingDir};
use mlxk_core::workspace::{self, WorkspaceMetadata};
use mlxk_core::{HubCache, RepoId};
use serde_json::json;

use crate::output::{CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct ConvertArgs {
    /// A GGUF file to convert (llama, qwen2, gemma3; F32/F16/BF16, Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 and
    /// Q2_K-Q6_K tensors), or the first part of a split one (NAME-00001-of-0000N.gguf).
    #[arg(long = "from-gguf", value_name = "FILE")]
    pub from_gguf: PathBuf,
    /// The MLX model folder to write (new or empty).
    #[arg(required_unless_present = "into_cache", conflicts_with = "into_cache")]
    pub target: Option<PathBuf>,
    /// Install the result into the Hugging Face cache as ORG/NAME instead of a folder.
    #[arg(long, value_name = "ORG/NAME")]
    pub into_cache: Option<String>,
    /// Dtype of quantization scales, biases and dense weights.
    #[arg(long, value_enum, default_value_t = Scales::F32)]
    pub scales: Scales,
    /// Store Q2_K/Q3_K/Q6_K tensors (no exact MLX form, dense float32 by default) quantized with
    /// BITS bits (2, 3, 4, 5, 6, 8; groups of 32) as MLX's quantize does. Lossy.
    #[arg(long, value_name = "BITS")]
    pub requantize: Option<u32>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Scales {
    /// Exact, and fast on MLX's CPU backend.
    F32,
    /// As GGUF and most published MLX models store them.
    F16,
}

pub fn run(args: &ConvertArgs, output: &Output) -> Result<Outcome, CliError> {
    let options = ConvertOptions {
        scales: match args.scales {
            Scales::F32 => ScaleDtype::F32,
            Scales::F16 => ScaleDtype::F16,
        },
        requantize: args.requantize,
    };
    let destination = match &args.into_cache {
        Some(name) => {
            let cache = HubCache::from_env();
            let repo_id = RepoId::parse(name)?;
            // What a conversion killed midway left in the cache goes first.
            for leftover in staging::remove_stale(cache.root()) {
                eprintln!(
                    "removed {}, left in the cache by an interrupted conversion",
                    leftover.display()
                );
            }
            let staging =
                StagingDir::create(cache.root(), &repo_id.cache_dir_name()).map_err(|e| {
                    CliError::new(
                        "io_error",
                        format!(
                            "cannot create a staging folder in {}: {e}",
                            cache.root().display()
                        ),
                    )
                })?;
            Destination::Cache(cache, repo_id, staging)
        }
        None => Destination::Folder(workspace::place(
            args.target.as_deref().expect("clap requires a target"),
        )),
    };
    let folder = destination.conversion_folder();
    let show_progress = !output.json && io::stderr().is_terminal();
    let report = convert_gguf(&args.from_gguf, &folder, &options, |p| {
        if show_progress {
            report_progress(&p);
        }
    })
    .map_err(|e| CliError::new(e.kind(), e.to_string()))?;
    if show_progress {
        eprintln!();
    }

    let health = health::check_folder(&folder, CheckDepth::Deep);
    let mut data = json!({
        "source": report.source,
        "target": folder,
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
        "health_check": true,
        "health_status": if health.is_healthy() { "healthy" } else { "unhealthy" },
        "health_reason": health.reason(),
    });
    // Into the cache, the folder is a staging one: the message names where it ends up.
    let shown_target = match &destination {
        Destination::Cache(..) => "the cache".to_string(),
        Destination::Folder(folder) => folder.display().to_string(),
    };
    let mut message = format!(
        "Converted {} into {} ({} tensors, {}-bit, {} MB, {})",
        args.from_gguf.display(),
        shown_target,
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
        message.push_str(&format!(
            "; {} tensors without an MLX quantized form stored dense in float32 (exact; \
             --requantize BITS to store them quantized, lossy)",
            report.dense_tensors.len()
        ));
    }
    if !report.assumed.is_empty() {
        message.push_str(&format!(
            "; not in the GGUF file, filled from the architecture's published configs: {}",
            report.assumed.join(", ")
        ));
    }
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
        let mut marker = WorkspaceMetadata::new(folder, "convert", Some(&source_name(args)), None)?;
        marker.mode = Some("gguf".into());
        marker.quantization = report
            .bits
            .map(|bits| json!({"bits": bits, "group_size": report.group_size}));
        workspace::write_marker(folder, &marker)?;
        data["content_hash"] = json!(marker.content_hash);
    }
    data["message"] = json!(message);
    Ok(Outcome::new(data, message))
}

fn source_name(args: &ConvertArgs) -> String {
    args.from_gguf.file_name().map_or_else(
        || args.from_gguf.display().to_string(),
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
        Progress::Writing => "writing model.safetensors".to_string(),
    };
    let mut stderr = io::stderr().lock();
    let _ = write!(stderr, "\r\x1b[2K{line}");
    let _ = stderr.flush();
}
