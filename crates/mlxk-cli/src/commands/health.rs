use clap::Args;
use mlxk_core::health::CheckDepth;
use mlxk_core::{Library, ModelInfo};
use serde_json::json;

use crate::json_api;
use crate::output::{CliError, Outcome, Output, EXIT_UNHEALTHY};

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The model to check (name, org/name, substring, or NAME@REVISION); all models if omitted.
    pub model: Option<String>,
    /// Also parse every JSON file in full and check each file's content against the hash its
    /// blob is named by (reads every byte: slow on large models).
    #[arg(long)]
    pub deep: bool,
}

pub fn run(args: &HealthArgs, output: &Output) -> Result<Outcome, CliError> {
    let depth = if args.deep {
        CheckDepth::Deep
    } else {
        CheckDepth::Quick
    };
    let library = Library::from_env().with_depth(depth);
    let models = match &args.model {
        Some(name) => vec![library.find(name)?],
        None => {
            super::note_stale_staging(library.cache());
            library.list()?
        }
    };
    let (healthy, unhealthy): (Vec<&ModelInfo>, Vec<&ModelInfo>) =
        models.iter().partition(|m| m.is_healthy());
    let data = json!({
        "healthy": healthy.iter().map(|m| json_api::health_entry(m)).collect::<Vec<_>>(),
        "unhealthy": unhealthy.iter().map(|m| json_api::health_entry(m)).collect::<Vec<_>>(),
        "summary": {
            "total": models.len(),
            "healthy_count": healthy.len(),
            "unhealthy_count": unhealthy.len(),
        },
    });
    let text = if output.json {
        String::new()
    } else {
        render(&models)
    };
    let mut outcome = Outcome::new(data, text);
    if !unhealthy.is_empty() {
        outcome.exit = EXIT_UNHEALTHY;
    }
    Ok(outcome)
}

fn render(models: &[ModelInfo]) -> String {
    if models.is_empty() {
        return "No models in the cache.".into();
    }
    let mut lines = Vec::new();
    for model in models {
        if model.is_healthy() {
            lines.push(format!("ok    {}", model.name));
        } else {
            lines.push(format!("FAIL  {}", model.name));
            for problem in &model.health.problems {
                lines.push(format!("        - {}", problem.message));
            }
        }
    }
    let unhealthy = models.iter().filter(|m| !m.is_healthy()).count();
    lines.push(String::new());
    lines.push(format!(
        "{} models checked: {} healthy, {} unhealthy",
        models.len(),
        models.len() - unhealthy,
        unhealthy
    ));
    lines.join("\n")
}
