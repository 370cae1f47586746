//! Binaries and tests linking this crate find libmlx through an rpath and link OpenBLAS on
//! Linux (see mlx-sys's build.rs), and the crate learns which MLX it was built against.
fn main() {
    for arg in std::env::var("DEP_MLX_LINK_ARGS")
        .unwrap_or_default()
        .split_terminator(';')
    {
        println!("cargo:rustc-link-arg={arg}");
    }
    if let Ok(version) = std::env::var("DEP_MLX_VERSION") {
        println!("cargo:rustc-env=MLXK_MLX_VERSION={version}");
    }
}
