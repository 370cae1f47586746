use mlxk_core::system::SystemInfo;
use serde_json::json;

use crate::api::JSON_API_VERSION;
use crate::output::{CliError, Outcome, Output};

pub fn run(_output: &Output) -> Result<Outcome, CliError> {
    let version = env!("CARGO_PKG_VERSION");
    let data = json!({
        "cli_version": version,
        "json_api_spec_version": JSON_API_VERSION,
        "system": {"memory_total_bytes": SystemInfo::read().memory_total_bytes},
    });
    let runtime = mlxk_engine::RuntimeInfo::detect();
    let device = match runtime.default_device {
        mlxk_engine::DeviceKind::Gpu => "gpu",
        mlxk_engine::DeviceKind::Cpu => "cpu",
    };
    let text = format!("mlxk {version} (MLX {}, {device})", runtime.mlx_version);
    Ok(Outcome::new(data, text))
}
