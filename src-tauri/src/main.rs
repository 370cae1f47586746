// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

fn main() {
    // The embedded server runs MLX: its BLAS threads must not spin against the webview and
    // the rest of the desktop (re-execs once on Linux; a no-op elsewhere).
    mlx_sys::prefer_passive_openmp();
    mlxk_app::run();
}
