//! One module per command; each parses nothing itself and calls the core.

pub mod convert;
pub mod health;
pub mod list;
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
