//! Tauri's code generation, and (as for `mlxk`) libmlx found through an rpath and OpenBLAS
//! linked on Linux: the app runs the server, and so MLX, in-process.
fn main() {
    for arg in std::env::var("DEP_MLX_LINK_ARGS")
        .unwrap_or_default()
        .split_terminator(';')
    {
        println!("cargo:rustc-link-arg={arg}");
    }
    tauri_build::build();
}
