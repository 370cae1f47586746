use mlxk_core::system::SystemInfo;
use serde_json::json;

use crate::json_api::JSON_API_VERSION;
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
    // The JSON schema (0.2.4) has no place for the BLAS; the human line names it.
    let text = format!(
        "mlxk {version} (MLX {}, {device}, BLAS: {})",
        runtime.mlx_version, runtime.blas.name
    );
    Ok(Outcome::new(data, text))
}
