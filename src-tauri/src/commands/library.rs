//! The Library window: list, details, health, delete.

use mlxk_core::health::CheckDepth;
use mlxk_core::usage::UsageLog;
use mlxk_core::{remove, Library};

use super::blocking;
use crate::error::{CommandError, CommandResult};
use crate::views::{DeleteOutcomeView, DeletePlanView, LibraryView, ModelDetails, ModelSummary};

/// Every cached model (as `mlxk list --all`), with the total disk use.
#[tauri::command]
#[specta::specta]
pub async fn list_models() -> CommandResult<LibraryView> {
    blocking(|| {
        let library = Library::from_env();
        let usage = UsageLog::for_cache(library.cache());
        let models = ModelSummary::with_usage(&library.list()?, &usage);
        Ok(LibraryView {
            cache_root: library.cache().root().display().to_string(),
            total_bytes: models.iter().map(|m| m.size_bytes).sum(),
            models,
        })
    })
    .await
}

/// What `mlxk show NAME` shows.
#[tauri::command]
#[specta::specta]
pub async fn model_details(name: String) -> CommandResult<ModelDetails> {
    blocking(move || {
        let library = Library::from_env();
        let model = library.find(&name)?;
        Ok(ModelDetails::with_usage(
            &model,
            &UsageLog::for_cache(library.cache()),
        ))
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
        Ok(ModelSummary::with_usage(
            &models,
            &UsageLog::for_cache(library.cache()),
        ))
    })
    .await
}

/// What deleting `name` (or `name@rev`: one snapshot) would remove: for the confirmation.
#[tauri::command]
#[specta::specta]
pub async fn delete_plan(name: String) -> CommandResult<DeletePlanView> {
    blocking(move || {
        let library = Library::from_env();
        let resolved = library.resolve(&name)?;
        Ok(DeletePlanView::from(&remove::plan_removal(
            library.cache(),
            &resolved,
        )?))
    })
    .await
}

/// Deletes `name` after the person confirmed `confirmed_targets` (the plan's targets). The plan
/// is made again; if it no longer names exactly those paths (the cache changed meanwhile),
/// nothing is deleted. Refused while a download holds a lock.
#[tauri::command]
#[specta::specta]
pub async fn delete_model(
    name: String,
    confirmed_targets: Vec<String>,
) -> CommandResult<DeleteOutcomeView> {
    blocking(move || {
        let library = Library::from_env();
        let resolved = library.resolve(&name)?;
        let plan = remove::plan_removal(library.cache(), &resolved)?;
        if DeletePlanView::from(&plan).targets != confirmed_targets {
            return Err(CommandError::new(
                "plan_changed",
                format!("{name} changed since the confirmation; nothing was deleted, look again"),
            ));
        }
        let outcome = remove::execute(library.cache(), &plan, false)?;
        Ok(DeleteOutcomeView::from(&outcome))
    })
    .await
}
