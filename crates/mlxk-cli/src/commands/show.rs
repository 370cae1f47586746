use chrono::Utc;
use clap::Args;
use mlxk_core::health::is_weight_file;
use mlxk_core::{Library, ModelInfo};
use serde_json::{json, Value};

use mlxk_engine::{LoadPlan, LoadPolicy};

use super::WeightArgs;
use crate::human;
use crate::json_api;
use crate::output::{CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The model: name, org/name, substring, or NAME@REVISION (a ref or commit prefix).
    pub model: String,
    /// List the snapshot's files.
    #[arg(long, conflicts_with = "config")]
    pub files: bool,
    /// Print config.json.
    #[arg(long)]
    pub config: bool,
    /// For a workspace: hash its files now and store that as its clean state.
    #[arg(long)]
    pub recalc_hash: bool,
    #[command(flatten)]
    pub weights: WeightArgs,
}

pub fn run(args: &ShowArgs, output: &Output) -> Result<Outcome, CliError> {
    let library = Library::from_env();
    let mut model = library.find(&args.model)?;
    if args.recalc_hash {
        let folder = match (&model.workspace, &model.path) {
            (Some(_), Some(folder)) => folder.clone(),
            _ => {
                return Err(CliError::usage(format!(
                    "{} is a cached model: --recalc-hash is for workspaces",
                    model.name
                )))
            }
        };
        mlxk_core::workspace::recalc_hash(&folder)?;
        model = library.find(&args.model)?;
    }
    let plan = load_plan(&model, &args.weights.policy()?);
    let mut data = json!({
        "model": json_api::model_object(&model, true),
        "workspace_metadata": model.path.as_deref().and_then(mlxk_core::workspace::read_marker),
        "metadata": metadata(&model),
        "path": model.path,
        "refs": model.refs,
        "snapshots": model.snapshots.iter().map(|s| json!({"hash": s.commit, "refs": s.refs})).collect::<Vec<_>>(),
        "health_problems": model.health.problems,
        "runtime": model.runtime,
        "weights": plan.as_ref().map(|plan| json!({
            "layout": plan.layout,
            "compute_dtype": plan.compute_dtype(),
            "memory_bytes": plan.memory_bytes,
            "dense_float32_bytes": plan.dense_float32_bytes,
            "dense_budget_bytes": plan.dense_budget_bytes,
            "reason": plan.reason,
        })),
    });
    if let Some(tools) = tool_support(&model) {
        data["tools"] = json!(tools);
    }
    if args.recalc_hash {
        data["hash_recalculated"] = json!(true);
    }
    if args.files {
        data["files"] = json!(model
            .files
            .iter()
            .map(|f| json!({
                "name": f.name,
                "size": f.size.map_or("missing".into(), human::size),
                "type": file_kind(&f.name),
            }))
            .collect::<Vec<_>>());
    }
    if args.config {
        data["config"] = model.config.clone().unwrap_or(Value::Null);
    }
    let text = if output.json {
        String::new()
    } else if args.recalc_hash {
        format!(
            "{}\nHash recalculated and stored (workspace now marked as clean)",
            render(args, &model, plan.as_ref())
        )
    } else {
        render(args, &model, plan.as_ref())
    };
    Ok(Outcome::new(data, text))
}

fn metadata(model: &ModelInfo) -> Value {
    let c = &model.classification;
    let config = model.config.as_ref();
    let get = |key: &str| {
        config
            .and_then(|c| c.get(key))
            .cloned()
            .unwrap_or(Value::Null)
    };
    json!({
        "model_type": c.architecture,
        "architecture": config
            .and_then(|c| c.get("architectures"))
            .and_then(|a| a.get(0))
            .cloned()
            .unwrap_or(Value::Null),
        "context_length": c.context_length,
        "vocab_size": get("vocab_size"),
        "hidden_size": get("hidden_size"),
        "num_attention_heads": get("num_attention_heads"),
        "num_hidden_layers": get("num_hidden_layers"),
        "quantization": c.quantization.as_ref().map(json_api::quantization),
    })
}

fn file_kind(name: &str) -> &'static str {
    let base = name.rsplit('/').next().unwrap_or(name);
    if base.ends_with(".index.json") {
        "index"
    } else if is_weight_file(base) {
        "weights"
    } else if base.starts_with("tokenizer")
        || base.starts_with("vocab")
        || base == "merges.txt"
        || base.starts_with("special_tokens")
        || base.starts_with("added_tokens")
        || base.starts_with("chat_template")
    {
        "tokenizer"
    } else if base.ends_with(".json") {
        "config"
    } else if base.ends_with(".md") {
        "docs"
    } else {
        "other"
    }
}

/// How `mlxk run` and the server would hold the model here; only for models they can run.
fn load_plan(model: &ModelInfo, policy: &LoadPolicy) -> Option<LoadPlan> {
    if !(model.is_healthy() && model.runtime.compatible) {
        return None;
    }
    mlxk_engine::plan(model.path.as_deref()?, policy).ok()
}

/// How a runnable text model is offered tools (none for embedding models).
fn tool_support(model: &ModelInfo) -> Option<mlxk_engine::tool_use::ToolSupport> {
    let runnable_text = model.runtime.compatible
        && model.classification.model_type != mlxk_core::classify::ModelType::Embedding;
    runnable_text
        .then(|| {
            model
                .path
                .as_deref()
                .map(mlxk_engine::tool_use::ToolSupport::of_folder)
        })
        .flatten()
}

fn render(args: &ShowArgs, model: &ModelInfo, plan: Option<&LoadPlan>) -> String {
    let mut lines = summary_lines(model);
    for problem in &model.health.problems {
        lines.push(format!("               - {}", problem.message));
    }
    if let Some(reason) = model.runtime.reason.as_ref().filter(|_| model.is_healthy()) {
        lines.push(format!("Runtime:       {reason}"));
    }
    if let Some(workspace) = &model.workspace {
        lines.extend(workspace_lines(workspace));
    }
    if let Some(plan) = plan {
        lines.push(format!(
            "Weights:       {} in memory, {} compute; {}",
            human::size(plan.memory_bytes),
            plan.compute_dtype(),
            plan.reason
        ));
    }
    if let Some(tools) = tool_support(model) {
        lines.push(match tools.native {
            true => format!(
                "Tools:         {} (the chat template's own format)",
                tools.format.label()
            ),
            false => "Tools:         generic format (the chat template has no tool support)".into(),
        });
    }
    if model.snapshots.len() > 1 {
        lines.extend(snapshot_lines(model));
    }
    if args.files {
        lines.push(String::new());
        lines.push(files_table(model));
    }
    if args.config {
        lines.push(String::new());
        lines.push(match &model.config {
            Some(config) => serde_json::to_string_pretty(config).expect("JSON values serialise"),
            None => "(no valid config.json)".into(),
        });
    }
    lines.join("\n")
}

/// `Model:` to `Health:`, one field a line.
fn summary_lines(model: &ModelInfo) -> Vec<String> {
    let c = &model.classification;
    let commit = model.commit.as_deref().unwrap_or("-");
    let quantization = match &c.quantization {
        Some(q) => match (q.bits, q.group_size) {
            (Some(bits), Some(group)) => format!("{bits}-bit (group size {group})"),
            (Some(bits), None) => format!("{bits}-bit"),
            _ => "declared".to_string(),
        },
        None => "none".to_string(),
    };
    let health = match (model.is_healthy(), model.runtime.compatible) {
        (true, true) => "healthy",
        (true, false) => "healthy (files OK, the engine cannot run it)",
        (false, _) => "unhealthy",
    };
    let capabilities: Vec<&str> = c.capabilities.iter().map(|cap| cap.label()).collect();
    vec![
        format!("Model:         {}", model.name),
        format!("Snapshot:      {commit}{}", refs_suffix(&model.refs)),
        format!("Framework:     {}", c.framework.label()),
        format!("Type:          {}", c.model_type.label()),
        format!("Capabilities:  {}", capabilities.join(", ")),
        format!(
            "Architecture:  {}",
            c.architecture.as_deref().unwrap_or("-")
        ),
        format!(
            "Context:       {}",
            c.context_length
                .map_or("-".into(), |n| format!("{n} tokens"))
        ),
        format!("Quantization:  {quantization}"),
        format!(
            "Size:          {} in {} files",
            human::size(model.size_bytes),
            model.files.len()
        ),
        format!("Modified:      {}", modified(model)),
        format!("Health:        {health}"),
    ]
}

/// Where a workspace came from and whether it changed since its hash.
fn workspace_lines(workspace: &mlxk_core::model::WorkspaceState) -> Vec<String> {
    let origin = match (&workspace.origin, workspace.managed) {
        (Some(origin), _) => format!("managed, from {origin}"),
        (None, true) => "managed".to_string(),
        (None, false) => "unmanaged (no .mlxk_workspace.json)".to_string(),
    };
    let clean = match workspace.clean {
        Some(true) => "yes",
        Some(false) => "no: changed since its hash (--recalc-hash re-pins it)",
        None if workspace.managed => "unknown: an older hash (--recalc-hash upgrades it)",
        None => "unknown",
    };
    vec![
        format!("Workspace:     {origin}"),
        format!("Clean:         {clean}"),
        format!(
            "Content Hash:  {}",
            workspace.content_hash.as_deref().unwrap_or("-")
        ),
    ]
}

/// ` (main, v1.0)`, or nothing without refs.
fn refs_suffix(refs: &[String]) -> String {
    if refs.is_empty() {
        String::new()
    } else {
        format!(" ({})", refs.join(", "))
    }
}

/// Every snapshot, the one shown marked `*`.
fn snapshot_lines(model: &ModelInfo) -> Vec<String> {
    let mut lines = vec!["Snapshots:".to_string()];
    for s in &model.snapshots {
        let marker = if Some(&s.commit) == model.commit.as_ref() {
            "*"
        } else {
            " "
        };
        lines.push(format!("  {marker} {}{}", s.commit, refs_suffix(&s.refs)));
    }
    lines
}

fn files_table(model: &ModelInfo) -> String {
    let rows = model
        .files
        .iter()
        .map(|f| {
            vec![
                f.name.clone(),
                f.size.map_or("missing".into(), human::size),
                file_kind(&f.name).to_string(),
            ]
        })
        .collect();
    human::table(&["FILE", "SIZE", "TYPE"], rows, &["SIZE"])
}

/// The UTC time, plus "(2h ago)" while that reads better than the date.
fn modified(model: &ModelInfo) -> String {
    let exact = model
        .last_modified
        .format("%Y-%m-%d %H:%M:%S UTC")
        .to_string();
    let age = human::age(model.last_modified, Utc::now());
    if exact.starts_with(&age) {
        exact
    } else {
        format!("{exact} ({age})")
    }
}
