//! Test binaries of this crate find libmlx through an rpath, not `LD_LIBRARY_PATH`.
fn main() {
    if let Ok(dir) = std::env::var("DEP_MLX_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
}
