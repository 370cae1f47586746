//! One module per command; each parses nothing itself and calls the core.

pub mod clone;
pub mod convert;
pub mod embed;
pub mod health;
pub mod list;
pub mod login;
pub mod logout;
pub mod ps;
pub mod pull;
pub mod push;
pub mod rm;
pub mod run;
mod run_audio;
mod run_remote;
pub mod serve;
pub mod show;
pub mod stop;
pub mod version;
pub mod whoami;

use std::future::Future;

use clap::Args;
use mlxk_engine::LoadPolicy;

use crate::output::CliError;

/// How weights are laid out on the CPU (shared by `run`, `serve` and `show`).
#[derive(Debug, Clone, Args)]
pub struct WeightArgs {
    /// On the CPU, dequantize a model to dense float32 when it then takes at most this much
    /// memory (e.g. 4GiB; 0 keeps weights quantized). Default: a quarter of RAM, or
    /// $MLXK_DENSE_BUDGET.
    #[arg(long, value_name = "SIZE", value_parser = mlxk_engine::load_plan::parse_budget)]
    pub dense_budget: Option<u64>,
}

impl WeightArgs {
    pub fn policy(&self) -> Result<LoadPolicy, CliError> {
        LoadPolicy::for_this_machine(self.dense_budget).map_err(|e| CliError::usage(e.to_string()))
    }
}

/// A client for `HF_ENDPOINT` (or the Hub) with the user's token, if any: from the keyring,
/// else `HF_TOKEN`, else the token file.
pub fn hub_client() -> Result<mlxk_core::hub::HubClient, CliError> {
    use mlxk_core::hub::{find_token, HubClient, TokenSources};
    let token = find_token(&TokenSources::from_env()).token.map(|t| t.token);
    HubClient::from_env(token).map_err(CliError::from)
}

/// Runs one piece of async work (a Hub call) to completion on a small runtime of its own.
pub fn block_on<F: Future>(work: F) -> Result<F::Output, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new("io_error", format!("cannot start the async runtime: {e}")))?;
    Ok(runtime.block_on(work))
}

/// Says on stderr (outside any JSON envelope) what an interrupted conversion left in the cache:
/// it is not a model, so no list shows it, and it takes space.
pub fn note_stale_staging(cache: &mlxk_core::HubCache) {
    let stale = mlxk_core::staging::stale(cache.root());
    if stale.is_empty() {
        return;
    }
    let names: Vec<String> = stale
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    eprintln!(
        "note: {} folder(s) left in the cache by an interrupted conversion: {}; the next `mlxk convert --into-cache` removes them (or delete them)",
        stale.len(),
        names.join(", ")
    );
}
