//! Binaries and tests linking this crate find libmlx through an rpath, not `LD_LIBRARY_PATH`,
//! and the crate learns which MLX it was built against.
fn main() {
    if let Ok(dir) = std::env::var("DEP_MLX_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    if let Ok(version) = std::env::var("DEP_MLX_VERSION") {
        println!("cargo:rustc-env=MLXK_MLX_VERSION={version}");
    }
}
