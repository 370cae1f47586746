//! The Library window: list, details, health, delete.

use std::path::PathBuf;

use mlxk_core::health::CheckDepth;
use mlxk_core::model::WorkspaceState;
use mlxk_core::{remove, workspace, CoreError, Library};

use super::blocking;
use crate::error::{CommandError, CommandResult};
use crate::views::{DeleteOutcomeView, DeletePlanView, LibraryView, ModelDetails, ModelSummary};

/// Every cached model (as `mlxk list --all`) and every workspace of `$MLXK_WORKSPACE_HOME`,
/// with the total disk use; a model still downloading says so.
#[tauri::command]
#[specta::specta]
pub async fn list_models() -> CommandResult<LibraryView> {
    blocking(|| {
        let library = Library::from_env();
        let models = ModelSummary::rows(&library.list()?, &library);
        Ok(LibraryView {
            cache_root: library.cache().root().display().to_string(),
            workspace_home: library.workspace_home().map(|h| h.display().to_string()),
            total_bytes: models.iter().map(|m| m.size_bytes).sum(),
            models,
        })
    })
    .await
}

/// What `mlxk show NAME` shows (a workspace by its path or folder name).
#[tauri::command]
#[specta::specta]
pub async fn model_details(name: String) -> CommandResult<ModelDetails> {
    blocking(move || {
        let library = Library::from_env();
        let model = library.find(&name)?;
        Ok(ModelDetails::of(&model, &library))
    })
    .await
}

/// Re-checks one model (or all); `deep` also verifies every file against its hash.
#[tauri::command]
#[specta::specta]
pub async fn check_health(name: Option<String>, deep: bool) -> CommandResult<Vec<ModelSummary>> {
    blocking(move || {
        let depth = if deep {
            CheckDepth::Deep
        } else {
            CheckDepth::Quick
        };
        let library = Library::from_env().with_depth(depth);
        let models = match name {
            Some(name) => vec![library.find(&name)?],
            None => library.list()?,
        };
        Ok(ModelSummary::rows(&models, &library))
    })
    .await
}

/// What a delete removes: a cached model (or one snapshot), or a workspace folder of the
/// workspace home.
enum Deletion {
    Cache(remove::RemovalPlan),
    Workspace(remove::WorkspaceRemovalPlan),
}

impl Deletion {
    /// Plans deleting `name`: a path (as the list names a workspace) or the exact folder name
    /// of a workspace in the workspace home deletes that folder and nothing else; any other
    /// folder is refused. Otherwise `name` (or `name@rev`) is a cached model.
    fn plan(library: &Library, name: &str) -> CommandResult<Deletion> {
        match workspace_folder(library, name)? {
            Some((home, folder)) => Ok(Deletion::Workspace(remove::plan_workspace_removal(
                &home, &folder,
            )?)),
            None => {
                let resolved = library.resolve(name)?;
                Ok(Deletion::Cache(remove::plan_removal(
                    library.cache(),
                    &resolved,
                )?))
            }
        }
    }

    fn view(&self) -> DeletePlanView {
        match self {
            Deletion::Cache(plan) => DeletePlanView::from(plan),
            Deletion::Workspace(plan) => {
                DeletePlanView::workspace(plan, &WorkspaceState::read(&plan.folder))
            }
        }
    }
}

/// The workspace home and the workspace folder `name` names, if it names one.
fn workspace_folder(library: &Library, name: &str) -> CommandResult<Option<(PathBuf, PathBuf)>> {
    let home = library.workspace_home();
    if workspace::looks_like_path(name) {
        let Some(home) = home else {
            return Err(CoreError::UnsafeDeletion(format!(
                "{name} is a folder, and the app deletes only the workspaces of $MLXK_WORKSPACE_HOME (not set); delete other folders yourself"
            ))
            .into());
        };
        return Ok(Some((home.to_path_buf(), PathBuf::from(name))));
    }
    Ok(home.and_then(|home| {
        workspace::named_in_home(home, name).map(|folder| (home.to_path_buf(), folder))
    }))
}

/// What deleting `name` (or `name@rev`: one snapshot; or a workspace's path) would remove:
/// for the confirmation.
#[tauri::command]
#[specta::specta]
pub async fn delete_plan(name: String) -> CommandResult<DeletePlanView> {
    blocking(move || Ok(Deletion::plan(&Library::from_env(), &name)?.view())).await
}

/// Deletes `name` after the person confirmed `confirmed_targets` (the plan's targets). The plan
/// is made again; if it no longer names exactly those paths (the cache or the workspace home
/// changed meanwhile), nothing is deleted. Refused while a download holds a lock.
#[tauri::command]
#[specta::specta]
pub async fn delete_model(
    name: String,
    confirmed_targets: Vec<String>,
) -> CommandResult<DeleteOutcomeView> {
    blocking(move || {
        let library = Library::from_env();
        let deletion = Deletion::plan(&library, &name)?;
        if deletion.view().targets != confirmed_targets {
            return Err(CommandError::new(
                "plan_changed",
                format!("{name} changed since the confirmation; nothing was deleted, look again"),
            ));
        }
        match deletion {
            Deletion::Cache(plan) => {
                let outcome = remove::execute(library.cache(), &plan, false)?;
                Ok(DeleteOutcomeView::from(&outcome))
            }
            Deletion::Workspace(plan) => {
                remove::execute_workspace_removal(&plan)?;
                Ok(DeleteOutcomeView::from(&plan))
            }
        }
    })
    .await
}
