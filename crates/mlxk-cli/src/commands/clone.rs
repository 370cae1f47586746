use std::path::PathBuf;

use clap::Args;
use mlxk_core::hub::pull::PullRequest;
use mlxk_core::snapshot::Selection;
use mlxk_core::workspace::{self, clone_snapshot, CopyMode};
use mlxk_core::{HubCache, Library, ModelInfo, ModelSpec, RepoId};
use serde_json::json;

use crate::human;
use crate::output::{CliError, Outcome, Output};

#[derive(Debug, Args)]
pub struct CloneArgs {
    /// The model: a cached name, or ORG/NAME on the Hub, optionally @REVISION.
    pub model: String,
    /// The workspace folder to create (new, or empty). A bare name is a folder of
    /// $MLXK_WORKSPACE_HOME; without one, the model's name there.
    pub target: Option<PathBuf>,
}

pub fn run(args: &CloneArgs, _output: &Output) -> Result<Outcome, CliError> {
    let target = target_folder(args)?;
    // The cache alone: a workspace of the same name is not a source.
    let library = Library::new(HubCache::from_env());
    let (snapshot, repo, commit, pulled) = match cached(&library, &args.model)? {
        Some(found) => found,
        None if mlxk_core::hub::offline_from_env() => {
            return Err(CliError::new(
                "model_not_found",
                format!(
                    "{} is not (completely) in the cache, and HF_HUB_OFFLINE is set: nothing is downloaded",
                    args.model
                ),
            ))
        }
        None => fetch(&args.model)?,
    };
    let outcome = clone_snapshot(&snapshot, &target, &repo, &commit)?;
    let info: ModelInfo = mlxk_core::model::inspect_folder(&target, Default::default());
    let healthy = info.is_healthy();
    let how = match outcome.mode {
        CopyMode::Reflink => "reflinked",
        CopyMode::Copy => "copied",
    };
    let message = format!(
        "{repo}@{} {} into {} ({} files, {}{})",
        &commit[..commit.len().min(12)],
        how,
        outcome.target.display(),
        outcome.files,
        human::size(outcome.bytes),
        if pulled {
            ", pulled from the Hub first"
        } else {
            ""
        }
    );
    let data = json!({
        "model": repo,
        "clone_status": "success",
        "message": message,
        "target_dir": info.path,
        "health_check": true,
        "health": if healthy { "healthy" } else { "unhealthy" },
        "health_reason": info.health.reason(),
        "source_revision": commit,
        "copy_mode": outcome.mode,
        "content_hash": outcome.metadata.content_hash,
    });
    let text = if healthy {
        format!("Cloned {message}")
    } else {
        format!("Cloned {message}\nwarning: {}", info.health.reason())
    };
    Ok(Outcome::new(data, text))
}

/// Where the workspace goes: the target as given when it is a path, a bare name inside
/// `$MLXK_WORKSPACE_HOME`, and without a target the model's own name there (as mlx-knife).
fn target_folder(args: &CloneArgs) -> Result<PathBuf, CliError> {
    let home = workspace::workspace_home();
    let Some(target) = &args.target else {
        let Some(home) = home else {
            return Err(CliError::usage(format!(
                "a target folder is needed (or set MLXK_WORKSPACE_HOME to clone into it): mlxk clone {} ./my-model",
                args.model
            )));
        };
        let name = args.model.split('@').next().unwrap_or(&args.model);
        let name = name.rsplit('/').next().unwrap_or(name);
        let folder = home.join(name);
        if folder.exists() {
            return Err(CliError::new(
                "folder_not_empty",
                format!("{name} already exists in {}", home.display()),
            ));
        }
        return Ok(folder);
    };
    Ok(workspace::place(target))
}

/// The model's snapshot in the cache, when it is there and healthy.
#[allow(clippy::type_complexity)]
fn cached(
    library: &Library,
    text: &str,
) -> Result<Option<(PathBuf, String, String, bool)>, CliError> {
    let resolved = match library.resolve(text) {
        Ok(resolved) => resolved,
        Err(mlxk_core::CoreError::ModelNotFound(_)) => return Ok(None),
        Err(mlxk_core::CoreError::RevisionNotFound { .. }) => return Ok(None),
        Err(other) => return Err(other.into()),
    };
    let info = library.find(text)?;
    match (&resolved.selection, info.is_healthy()) {
        (Selection::Found(entry), true) => Ok(Some((
            entry.path.clone(),
            resolved.repo.repo_id.to_string(),
            entry.commit.clone(),
            false,
        ))),
        _ => Ok(None),
    }
}

/// Pulls the model (completing a partial download) and returns its snapshot.
fn fetch(text: &str) -> Result<(PathBuf, String, String, bool), CliError> {
    let spec = ModelSpec::parse(text)?;
    let repo = RepoId::parse(&spec.pattern)?;
    if repo.org().is_none() {
        return Err(CliError::new(
            "model_not_found",
            format!("'{text}' is not in the cache; to fetch it from the Hub, name it ORG/NAME"),
        ));
    }
    let request = PullRequest {
        repo,
        revision: spec.revision,
        all_files: false,
    };
    let outcome = super::pull::pull_into_cache(&request, &|_| {})?;
    Ok((outcome.snapshot, outcome.repo, outcome.commit, true))
}
