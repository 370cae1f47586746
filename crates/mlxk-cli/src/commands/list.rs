use chrono::Utc;
use clap::Args;
use mlxk_core::classify::{Capability, Framework};
use mlxk_core::{Library, ModelInfo};
use serde_json::json;

use crate::human;
use crate::json_api;
use crate::output::{CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only models whose name contains this (case-insensitive).
    pub pattern: Option<String>,
    /// Every cached model: also unhealthy, GGUF and PyTorch ones.
    #[arg(long)]
    pub all: bool,
    /// Add a health column.
    #[arg(long)]
    pub health: bool,
    /// Full names, framework, and (with --health) the reason.
    #[arg(long, short)]
    pub verbose: bool,
}

const DEFAULT_ORG_PREFIX: &str = "mlx-community/";

pub fn run(args: &ListArgs, output: &Output) -> Result<Outcome, CliError> {
    let library = Library::from_env();
    if args.all {
        super::note_stale_staging(library.cache());
    }
    let models = match &args.pattern {
        Some(pattern) => library.list_matching(pattern)?,
        None => library.list()?,
    };
    let total = models.len();
    let shown: Vec<&ModelInfo> = models
        .iter()
        // Healthy MLX models, and whatever else runs here (an embedding model in the float
        // safetensors sentence-transformers publish).
        .filter(|m| {
            args.all
                || (m.is_healthy()
                    && (m.classification.framework == Framework::Mlx || m.runtime.compatible))
        })
        .collect();
    let data = json!({
        "models": shown.iter().map(|m| json_api::model_object(m, false)).collect::<Vec<_>>(),
        "count": shown.len(),
    });
    let text = if output.json {
        String::new()
    } else {
        render(args, &shown, total - shown.len(), library.cache().root())
    };
    Ok(Outcome::new(data, text))
}

fn render(args: &ListArgs, models: &[&ModelInfo], hidden: usize, root: &std::path::Path) -> String {
    let hidden_note = if hidden > 0 {
        format!("{hidden} more (unhealthy or not MLX) hidden: use --all")
    } else {
        String::new()
    };
    if models.is_empty() {
        let what = match &args.pattern {
            Some(p) => format!("No models matching '{p}' in {}", root.display()),
            None => format!("No models in {}", root.display()),
        };
        // An empty cache: say how to fill it.
        let next = if hidden == 0 && args.pattern.is_none() {
            "Get one with: mlxk pull mlx-community/SmolLM2-135M-Instruct (or mlxk convert --from-gguf FILE --into-cache ORG/NAME)"
        } else {
            ""
        };
        return [what, hidden_note, next.to_string()]
            .into_iter()
            .filter(|line| !line.is_empty())
            .collect::<Vec<_>>()
            .join("\n");
    }
    let full_names = args.all || args.verbose;
    let now = Utc::now();
    // Where each model lives, once any is a workspace (mlx-knife's column).
    let sources = models.iter().any(|m| m.workspace.is_some());
    let mut header = vec!["NAME", "ID", "SIZE", "MODIFIED"];
    if sources {
        header.push("SRC");
    }
    header.push("TYPE");
    if full_names {
        header.push("FRAMEWORK");
    }
    if args.health {
        header.push("HEALTH");
        if args.verbose {
            header.extend(["RUNTIME", "REASON"]);
        }
    }
    let rows = models
        .iter()
        .map(|m| {
            let name = match (&m.workspace, &m.path) {
                (Some(_), Some(path)) if !full_names => path
                    .file_name()
                    .map_or_else(|| m.name.clone(), |n| n.to_string_lossy().to_string()),
                _ if full_names => m.name.clone(),
                _ => m
                    .name
                    .strip_prefix(DEFAULT_ORG_PREFIX)
                    .unwrap_or(&m.name)
                    .to_string(),
            };
            let id = match &m.workspace {
                Some(w) => w
                    .content_hash
                    .as_deref()
                    .map(|h| h.trim_start_matches("sha256:")),
                None => m.commit.as_deref(),
            };
            let mut row = vec![
                name,
                id.map_or("-".into(), |c| c.chars().take(7).collect()),
                human::size(m.size_bytes),
                human::age(m.last_modified, now),
            ];
            if sources {
                row.push(source_label(m).into());
            }
            row.push(type_label(m));
            if full_names {
                row.push(m.classification.framework.label().into());
            }
            if args.health {
                let health = match (m.is_healthy(), m.runtime.compatible) {
                    (false, _) => "unhealthy",
                    (true, true) => "healthy",
                    (true, false) => "healthy*",
                };
                row.push(health.into());
                if args.verbose {
                    row.push(if m.runtime.compatible { "yes" } else { "no" }.into());
                    row.push(m.reason().unwrap_or_default());
                }
            }
            row
        })
        .collect();
    let mut text = human::table(&header, rows, &["SIZE"]);
    if args.health
        && !args.verbose
        && models
            .iter()
            .any(|m| m.is_healthy() && !m.runtime.compatible)
    {
        text.push_str("\n* intact, but the engine cannot run it (see --verbose)");
    }
    if !hidden_note.is_empty() {
        text.push('\n');
        text.push_str(&hidden_note);
    }
    text
}

/// `cache`, or a workspace: `ws` clean, `ws*` changed since its hash, `ws?` unknown (no
/// marker or an older hash: `show --recalc-hash`).
fn source_label(model: &ModelInfo) -> &'static str {
    match model.workspace.as_ref().map(|w| w.clean) {
        None => "cache",
        Some(Some(true)) => "ws",
        Some(Some(false)) => "ws*",
        Some(None) => "ws?",
    }
}

fn type_label(model: &ModelInfo) -> String {
    let c = &model.classification;
    let mut label = c.model_type.label().to_string();
    for (cap, suffix) in [
        (Capability::Vision, "+vision"),
        (Capability::Audio, "+audio"),
    ] {
        if c.capabilities.contains(&cap) && !label.starts_with(cap.label()) {
            label.push_str(suffix);
        }
    }
    label
}
