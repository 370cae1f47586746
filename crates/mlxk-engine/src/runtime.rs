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
    /// Which BLAS MLX's CPU matrix products reach in this process.
    pub blas: Blas,
}

/// The BLAS library that serves MLX's `cblas_sgemm`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Blas {
    /// A short name: `openblas`, `bundled reference BLAS`, `Accelerate`, or the file name.
    pub name: String,
    /// The library file, when the loader can tell.
    pub path: Option<String>,
}

impl Blas {
    pub fn detect() -> Self {
        let path = mlx_sys::blas_provider();
        let file = path
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|f| f.to_string_lossy().to_lowercase());
        let name = match file.as_deref() {
            Some(f) if f.contains("openblas") => "openblas".to_string(),
            // The wheel's bundled netlib BLAS (auditwheel renames it libblas-<hash>.so).
            Some(f) if f.starts_with("libblas") => "bundled reference BLAS".to_string(),
            Some(f) => f.to_string(),
            None if cfg!(target_os = "macos") => "Accelerate".to_string(),
            None => "unknown".to_string(),
        };
        Blas {
            name,
            path: path.map(|p| p.display().to_string()),
        }
    }

    pub fn is_openblas(&self) -> bool {
        self.name == "openblas"
    }
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
            blas: Blas::detect(),
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

    /// The build links OpenBLAS on Linux so that libmlx's `cblas_sgemm` binds to it rather than
    /// to the wheel's bundled reference BLAS (see mlx-sys's build.rs).
    #[test]
    #[cfg(target_os = "linux")]
    fn mlx_matrix_products_reach_openblas() {
        let blas = Blas::detect();
        assert!(blas.is_openblas(), "cblas_sgemm comes from {blas:?}");
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        assert!(
            maps.contains("libopenblas"),
            "OpenBLAS is mapped into the process"
        );
    }
}
