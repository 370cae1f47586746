//! Which MLX this build runs on, and on what device.

use mlx_rs::{Device, DeviceType};
use serde::Serialize;

/// The MLX version the engine was built and linked against (from the `mlx-sys` build).
pub const MLX_VERSION: &str = env!("MLXK_MLX_VERSION");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    Cpu,
    Gpu,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuntimeInfo {
    pub mlx_version: &'static str,
    /// Where MLX runs arrays by default: the GPU (Metal) on macOS, the CPU elsewhere.
    pub default_device: DeviceKind,
}

impl RuntimeInfo {
    pub fn detect() -> Self {
        let default_device = match Device::default().get_type() {
            Ok(DeviceType::Gpu) => DeviceKind::Gpu,
            _ => DeviceKind::Cpu,
        };
        RuntimeInfo {
            mlx_version: MLX_VERSION,
            default_device,
        }
    }
}

/// Hands MLX's pooled buffers back to the system (after unloading a model).
pub fn clear_memory_cache() -> crate::Result<()> {
    Ok(mlx_rs::memory::clear_cache()?)
}

/// The most memory MLX has held at once in this process, in bytes.
pub fn peak_memory_bytes() -> usize {
    mlx_rs::memory::peak_memory().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_linked_mlx_and_its_device() {
        let info = RuntimeInfo::detect();
        assert_eq!(info.mlx_version, "0.32.2");
        let expected = if cfg!(target_os = "macos") {
            DeviceKind::Gpu
        } else {
            DeviceKind::Cpu
        };
        assert_eq!(info.default_device, expected);
    }
}
