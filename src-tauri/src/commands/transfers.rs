//! Pulls (Library window) and pushes (Push dialog) in the background, with progress events and
//! Cancel.

use std::path::PathBuf;

use mlxk_core::hub::pull::{PullNameError, PullRequest};
use mlxk_core::hub::push::{self, PushRequest};
use mlxk_core::hub::{find_token, HubClient};
use mlxk_core::HubCache;
use tauri::State;

use super::blocking;
use crate::error::{CommandError, CommandResult};
use crate::state::AppState;
use crate::transfers::{pull_target, TransferId, TransferKind, TransferView};

/// Starts pulling `name` (`ORG/NAME[@REVISION]`) into the cache; progress arrives as
/// `TransferChanged` events. A second pull of the same repository joins the running one.
#[tauri::command]
#[specta::specta]
pub async fn pull_start(state: State<'_, AppState>, name: String) -> CommandResult<TransferId> {
    let request = pull_request(&name)?;
    if let Some(id) = state
        .transfers
        .running(TransferKind::Pull, &pull_target(&request))
    {
        return Ok(id);
    }
    let client = hub_client(&state).await?;
    Ok(state
        .transfers
        .start_pull(client, HubCache::from_env(), request))
}

/// What `mlxk pull` accepts: a Hub repository id with its organisation.
pub fn pull_request(name: &str) -> CommandResult<PullRequest> {
    PullRequest::from_name(name.trim(), false).map_err(|e| match e {
        PullNameError::Invalid(e) => e.into(),
        other => CommandError::new("invalid_name", other.to_string()),
    })
}

/// Pushes `folder` to `repo_id` (created if missing, private unless `make_public`); progress
/// arrives as `TransferChanged` events and the finished transfer carries the link.
#[tauri::command]
#[specta::specta]
pub async fn push_start(
    state: State<'_, AppState>,
    folder: String,
    repo_id: String,
    branch: String,
    message: String,
    make_public: bool,
) -> CommandResult<TransferId> {
    let repo = super::push::push_repo(&repo_id)?;
    let branch = super::push::branch_or_main(&branch);
    let message = match message.trim() {
        "" => "Upload with MLX Knife".to_string(),
        m => m.to_string(),
    };
    let client = hub_client(&state).await?;
    if !client.has_token() {
        return Err(CommandError::new(
            "unauthorized",
            "pushing needs a Hugging Face token: set it in Settings",
        ));
    }
    let path = PathBuf::from(&folder);
    let scan = path.clone();
    let files = blocking(move || {
        let files = push::scan_folder(&scan)?;
        refuse_unhealthy(&scan, &push::check(&scan, &files))?;
        Ok(files)
    })
    .await?;
    let plan = push::plan(&client, &repo, &branch, &files, false).await?;
    let request = PushRequest {
        repo,
        branch,
        message,
        create: true,
        public: make_public,
    };
    Ok(state
        .transfers
        .start_push(client, path, request, files, plan))
}

/// As `mlxk push` without `--force`: a folder whose check found errors is not pushed.
fn refuse_unhealthy(folder: &std::path::Path, check: &push::FolderCheck) -> CommandResult<()> {
    if check.healthy {
        return Ok(());
    }
    let errors: Vec<&str> = check
        .anomalies
        .iter()
        .filter(|a| a.severity == push::Severity::Error)
        .map(|a| a.message.as_str())
        .collect();
    Err(CommandError::new(
        "folder_unhealthy",
        format!(
            "{} is not a healthy model folder ({}): fix it first, or push it with `mlxk push --force`",
            folder.display(),
            errors.join("; ")
        ),
    ))
}

/// Asks a running pull or push to stop; false when it had already ended.
#[tauri::command]
#[specta::specta]
pub fn transfer_cancel(state: State<'_, AppState>, id: TransferId) -> bool {
    state.transfers.cancel(id)
}

/// Every pull and push of this session (for a window opened meanwhile).
#[tauri::command]
#[specta::specta]
pub fn transfers_list(state: State<'_, AppState>) -> Vec<TransferView> {
    state.transfers.list()
}

/// Opens a Hub link (a pushed repository) in the default browser.
#[tauri::command]
#[specta::specta]
pub fn open_link(url: String) -> CommandResult<()> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(CommandError::new(
            "invalid_link",
            format!("'{url}' is not a web link"),
        ));
    }
    tauri_plugin_opener::open_url(&url, None::<&str>)
        .map_err(|e| CommandError::new("open_failed", format!("cannot open {url}: {e}")))
}

/// A Hub client with the user's token (keyring, HF_TOKEN, token file), off the main thread.
pub(crate) async fn hub_client(state: &AppState) -> CommandResult<HubClient> {
    let sources = state.token_sources();
    blocking(move || {
        let token = find_token(&sources).token.map(|t| t.token);
        Ok(HubClient::from_env(token)?)
    })
    .await
}
