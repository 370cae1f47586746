//! One module per command; each parses nothing itself and calls the core.

pub mod convert;
pub mod health;
pub mod list;
pub mod login;
pub mod logout;
pub mod rm;
pub mod run;
pub mod serve;
pub mod show;
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

/// Runs one piece of async work (a Hub call) to completion on a small runtime of its own.
pub fn block_on<F: Future>(work: F) -> Result<F::Output, CliError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::new("io_error", format!("cannot start the async runtime: {e}")))?;
    Ok(runtime.block_on(work))
}
