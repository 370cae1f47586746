//! The Push dialog: the offline check of a folder and the dry-run preview against the Hub.

use std::path::PathBuf;

use mlxk_core::hub::push;
use mlxk_core::RepoId;
use tauri::{AppHandle, Runtime, State};
use tauri_plugin_dialog::DialogExt;

use super::blocking;
use crate::error::{CommandError, CommandResult};
use crate::state::AppState;
use crate::views::{FolderCheckView, PushPreview};

/// Checks a folder offline as `mlxk push --check-only` does: its files, and anomalies with
/// their severity. A file or a missing path is a clear error.
#[tauri::command]
#[specta::specta]
pub async fn push_check(folder: String) -> CommandResult<FolderCheckView> {
    blocking(move || {
        let path = PathBuf::from(&folder);
        if path.is_file() {
            return Err(CommandError::new(
                "not_a_folder",
                format!("{folder} is a file: drop the model's folder instead"),
            ));
        }
        if !path.is_dir() {
            return Err(CommandError::new(
                "not_a_folder",
                format!("{folder} is not a folder"),
            ));
        }
        let files = push::scan_folder(&path)?;
        let check = push::check(&path, &files);
        Ok(FolderCheckView::new(folder, &files, check))
    })
    .await
}

/// What pushing `folder` to `repo_id` on `branch` would add, change and keep (reads only).
#[tauri::command]
#[specta::specta]
pub async fn push_preview(
    state: State<'_, AppState>,
    folder: String,
    repo_id: String,
    branch: String,
) -> CommandResult<PushPreview> {
    let repo = push_repo(&repo_id)?;
    let branch = branch_or_main(&branch);
    let path = PathBuf::from(&folder);
    let files = blocking(move || Ok(push::scan_folder(&path)?)).await?;
    let client = super::transfers::hub_client(&state).await?;
    let plan = push::plan(&client, &repo, &branch, &files, false).await?;
    let repo_url = format!("{}/{}", client.endpoint(), repo.as_str());
    Ok(PushPreview::new(
        repo.as_str().to_string(),
        branch,
        repo_url,
        plan,
    ))
}

/// A push's repository: `ORG/NAME`, with its organisation (or user) spelled out.
pub fn push_repo(repo_id: &str) -> CommandResult<RepoId> {
    let repo = RepoId::parse(repo_id.trim())?;
    if repo.org().is_none() {
        return Err(CommandError::new(
            "invalid_name",
            format!("'{repo_id}' has no organisation: a push needs ORG/NAME"),
        ));
    }
    Ok(repo)
}

/// The branch typed, or `main` when left empty.
pub fn branch_or_main(branch: &str) -> String {
    match branch.trim() {
        "" => "main".to_string(),
        b => b.to_string(),
    }
}

/// The system's folder chooser; `None` when cancelled.
#[tauri::command]
#[specta::specta]
pub async fn pick_folder<R: Runtime>(app: AppHandle<R>) -> CommandResult<Option<String>> {
    blocking(move || {
        Ok(app
            .dialog()
            .file()
            .set_title("Choose a model folder to push")
            .blocking_pick_folder()
            .and_then(|p| p.into_path().ok())
            .map(|p| p.display().to_string()))
    })
    .await
}
