//! Test binaries of this crate find libmlx through an rpath and link OpenBLAS on Linux
//! (see mlx-sys's build.rs).
fn main() {
    for arg in std::env::var("DEP_MLX_LINK_ARGS")
        .unwrap_or_default()
        .split_terminator(';')
    {
        println!("cargo:rustc-link-arg={arg}");
    }
}
