//! Tauri's code generation, and (as for `mlxk`) libmlx found through an rpath and OpenBLAS
//! linked on Linux: the app runs the server, and so MLX, in-process.
fn main() {
    // Installed from the .deb, libmlx sits in /usr/lib/mlx-knife (scripts/bundle-deb.sh); this
    // entry comes first and is simply absent in a development build, which then finds the
    // wheel's copy through mlx-sys's rpath.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../lib/mlx-knife/mlx/lib");
    }
    for arg in std::env::var("DEP_MLX_LINK_ARGS")
        .unwrap_or_default()
        .split_terminator(';')
    {
        println!("cargo:rustc-link-arg={arg}");
    }
    tauri_build::build();
}
