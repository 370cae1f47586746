//! Raw bindings to mlx-c (bindgen), built against the official MLX wheel.
//!
//! This crate stands in for crates.io `mlx-sys` 0.7.0 (wired in with `[patch.crates-io]`) and
//! exposes the same items, so the unmodified `mlx-rs` builds on top of it on Linux and macOS.
//! See `build.rs` for how mlx-c and MLX are found.
#![allow(non_upper_case_globals)]
#![allow(non_camel_case_types)]
#![allow(non_snake_case)]
#![allow(clippy::all)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// mlx-rs seeds its random generator with macOS's `mach_approximate_time()` (through the
/// `mach-sys` crate), which does not exist elsewhere. This is the same clock on other systems:
/// a monotonic count of nanoseconds.
#[cfg(not(target_os = "macos"))]
#[no_mangle]
pub extern "C" fn mach_approximate_time() -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    // Never 0, and distinct per call site in time: good enough for a seed, which is all it is.
    start.elapsed().as_nanos() as u64 + 1
}

/// The shared library that provides `cblas_sgemm` to this process, the matrix product MLX's
/// CPU backend calls: the symbol a dynamic linker binds for libmlx, resolved the same way
/// (global scope, load order). `None` when no loaded library exports it (as on macOS, where
/// MLX calls Accelerate through a private path).
#[cfg(unix)]
pub fn blas_provider() -> Option<std::path::PathBuf> {
    use std::ffi::CStr;
    // SAFETY: dlsym/dladdr only read the loader's tables; the name is a valid C string and
    // `info` is written by dladdr before we read it (checked by its return value).
    unsafe {
        let symbol = libc::dlsym(libc::RTLD_DEFAULT, c"cblas_sgemm".as_ptr());
        if symbol.is_null() {
            return None;
        }
        let mut info: libc::Dl_info = std::mem::zeroed();
        if libc::dladdr(symbol, &mut info) == 0 || info.dli_fname.is_null() {
            return None;
        }
        let name = CStr::from_ptr(info.dli_fname)
            .to_string_lossy()
            .into_owned();
        Some(std::fs::canonicalize(&name).unwrap_or_else(|_| name.into()))
    }
}

#[cfg(not(unix))]
pub fn blas_provider() -> Option<std::path::PathBuf> {
    None
}

/// Makes this process wait passively in OpenMP, re-executing it once if needed; call it first
/// thing in `main`.
///
/// OpenBLAS (the OpenMP build linked on Linux) runs its matrix products on OpenMP threads that by
/// default spin after each parallel region. On an idle machine that is harmless; on a busy one
/// (a build, a browser) the spinning threads fight MLX's own thread for the cores and decoding
/// collapses (measured here: 0.4 tok/s instead of 18). libgomp reads `OMP_WAIT_POLICY` once,
/// while it loads, before `main` runs, so the only way to change it from inside is to set it
/// and exec the same binary again. A value the user set is kept. Elsewhere this does nothing.
pub fn prefer_passive_openmp() {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("OMP_WAIT_POLICY").is_some() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let arg0 = args.next().unwrap_or_else(|| exe.clone().into_os_string());
        // exec only returns if it failed; then carry on with the default policy.
        let _ = std::process::Command::new(&exe)
            .arg0(arg0)
            .args(args)
            .env("OMP_WAIT_POLICY", "PASSIVE")
            .exec();
    }
}
