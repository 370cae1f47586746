//! One module per command; each parses nothing itself and calls the core.

pub mod clone;
pub mod convert;
pub mod health;
pub mod list;
pub mod pull;
pub mod push;
pub mod rm;
pub mod run;
pub mod serve;
pub mod show;
pub mod version;

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

/// A client for `HF_ENDPOINT` (or the Hub) with the user's token, if any.
pub fn hub_client() -> Result<mlxk_core::hub::HubClient, CliError> {
    let token = std::env::var("HF_TOKEN")
        .ok()
        .and_then(mlxk_core::hub::HubToken::new);
    mlxk_core::hub::HubClient::new(None, token).map_err(hub_error)
}

pub fn hub_error(error: mlxk_core::hub::HubError) -> CliError {
    use mlxk_core::hub::HubError;
    let hint = match &error {
        HubError::Unauthorized { .. } | HubError::RepoNotFound { .. } => {
            Some("log in with: mlxk login".to_string())
        }
        HubError::Network { .. } => Some("pull again to resume".to_string()),
        _ => None,
    };
    let mut cli = CliError::new(error.kind(), error.to_string());
    cli.hint = hint;
    cli
}
