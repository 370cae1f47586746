//! Builds mlx-c against the official MLX wheel and generates the bindings.
//!
//! - MLX: the `mlx-cpu` (Linux) or `mlx-metal` (macOS) wheel, version 0.32.2 exactly (what mlx-c
//!   0.7.0 is written for), found at `$MLX_DIR` or in the project's `.venv`.
//! - mlx-c: the sources inside the unmodified crates.io `mlx-sys` 0.7.0 package, found at
//!   `$MLX_C_DIR` or in cargo's registry (`scripts/setup.sh` has cargo fetch it).
//! - Dependents get `DEP_MLX_LIB_DIR` (the folder holding libmlx) to set their rpath, so that
//!   binaries run without `LD_LIBRARY_PATH`.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

const MLX_VERSION: &str = "0.32.2";
const UPSTREAM: &str = "mlx-sys-0.7.0";
const SETUP_HINT: &str = "run ./scripts/setup.sh from the repository root";

fn main() {
    for var in ["MLX_DIR", "MLX_C_DIR", "CARGO_HOME"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed=compat");
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap();
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap();

    let mlx = find_mlx(&manifest);
    let mlx_c = find_mlx_c(&out);
    let compat = manifest.join("compat");
    // mlx-c gates its 16-bit float functions on aarch64; elsewhere a compat header opens them.
    let half_compat = (target_arch != "aarch64").then(|| compat.join("mlxk_half_compat.h"));

    compile_mlx_c(&mlx, &mlx_c, &compat, half_compat.as_deref(), &target_os);

    let lib_dir = mlx.join("lib");
    println!("cargo:rustc-link-search=native={}", lib_dir.display());
    println!("cargo:rustc-link-lib=dylib=mlx");
    // Link arguments only reach this crate's own targets, so they are also published as
    // DEP_MLX_LINK_ARGS (`;`-separated) for every crate that links MLX into a binary or test.
    let mut link_args = vec![format!("-Wl,-rpath,{}", lib_dir.display())];
    link_args.extend(fast_blas_link_args(&target_os));
    for arg in &link_args {
        println!("cargo:rustc-link-arg={arg}");
    }
    println!("cargo:link_args={}", link_args.join(";"));
    println!("cargo:lib_dir={}", lib_dir.display());
    println!("cargo:include={}", mlx.join("include").display());
    println!("cargo:version={MLX_VERSION}");

    generate_bindings(&mlx_c, half_compat.as_deref(), &out);
}

/// The wheel's `mlx` folder (holding `include/`, `lib/` and `share/cmake/MLX`).
fn find_mlx(manifest: &Path) -> PathBuf {
    let candidates: Vec<PathBuf> = match env::var_os("MLX_DIR") {
        Some(dir) => vec![PathBuf::from(dir)],
        None => {
            let venv = manifest.join("../../.venv/lib");
            fs::read_dir(&venv)
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("site-packages/mlx"))
                .collect()
        }
    };
    let Some(mlx) = candidates
        .into_iter()
        .find(|p| p.join("include/mlx/version.h").is_file())
    else {
        panic!(
            "\n\nMLX {MLX_VERSION} was not found (looked in $MLX_DIR, then .venv/lib/python*/site-packages/mlx).\n\
             To install it, {SETUP_HINT}; it runs: .venv/bin/pip install 'mlx[cpu]=={MLX_VERSION}' \
             (on macOS: mlx-metal=={MLX_VERSION}).\n\n"
        );
    };
    let version_h = fs::read_to_string(mlx.join("include/mlx/version.h")).unwrap_or_default();
    let part = |name: &str| {
        version_h
            .lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix(&format!("#define MLX_VERSION_{name} "))
            })
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let found = format!("{}.{}.{}", part("MAJOR"), part("MINOR"), part("PATCH"));
    if found != MLX_VERSION {
        panic!(
            "\n\nMLX {found} found at {}, but mlx-c 0.7.0 needs exactly MLX {MLX_VERSION}.\n{SETUP_HINT}.\n\n",
            mlx.display()
        );
    }
    let mlx = fs::canonicalize(&mlx).unwrap_or(mlx);
    if !mlx.join("lib").is_dir() {
        panic!(
            "\n\n{} has no lib/ folder: a broken MLX wheel? {SETUP_HINT}.\n\n",
            mlx.display()
        );
    }
    mlx
}

/// mlx-c's source tree inside the unmodified mlx-sys 0.7.0 package.
fn find_mlx_c(out: &Path) -> PathBuf {
    if let Some(dir) = env::var_os("MLX_C_DIR") {
        return PathBuf::from(dir);
    }
    let cargo_home = env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME is set");
    let registry = cargo_home.join("registry");
    let in_registry = |kind: &str, name: &str| {
        fs::read_dir(registry.join(kind))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .map(|e| e.path().join(name))
            .find(|p| p.exists())
    };
    if let Some(src) = in_registry("src", UPSTREAM) {
        return src.join("src/mlx-c");
    }
    if let Some(archive) = in_registry("cache", &format!("{UPSTREAM}.crate")) {
        let unpacked = out.join("upstream");
        if !unpacked.join(UPSTREAM).is_dir() {
            let file = fs::File::open(&archive).expect("open the mlx-sys package");
            tar::Archive::new(flate2::read::GzDecoder::new(file))
                .unpack(&unpacked)
                .expect("unpack the mlx-sys package");
        }
        return unpacked.join(UPSTREAM).join("src/mlx-c");
    }
    panic!(
        "\n\nmlx-c's sources were not found: cargo has not downloaded the crates.io package {UPSTREAM}.\n\
         {SETUP_HINT}; it runs: cargo fetch --manifest-path crates/mlx-sys/upstream/Cargo.toml\n\n"
    );
}

/// The mlx-c sources its CMakeLists.txt builds (it comments some out).
fn mlx_c_sources(mlx_c: &Path) -> Vec<PathBuf> {
    let cmake = fs::read_to_string(mlx_c.join("CMakeLists.txt")).expect("mlx-c's CMakeLists.txt");
    let sources: Vec<PathBuf> = cmake
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("${CMAKE_CURRENT_LIST_DIR}/"))
        .map(|l| l.trim_end_matches(')'))
        .filter(|l| l.ends_with(".cpp"))
        .map(|l| mlx_c.join(l))
        .collect();
    assert!(
        sources.len() > 10,
        "unexpected mlx-c CMakeLists.txt: found {} sources",
        sources.len()
    );
    sources
}

/// The Linux wheel's libmlx calls `cblas_sgemm` from a bundled reference (netlib) BLAS that is
/// 6-80x slower than OpenBLAS. Every binary linking MLX also links OpenBLAS, kept although no
/// Rust code calls it (`--no-as-needed`): as a direct dependency it comes before libmlx's own
/// BLAS in the global symbol scope, so libmlx's BLAS calls resolve to OpenBLAS. macOS MLX uses
/// Accelerate. `MLXK_NO_OPENBLAS=1` builds without it (to compare).
///
/// The OpenMP build of OpenBLAS, by its own directory (an rpath, so the system's BLAS choice
/// does not matter): the pthread build deadlocks now and then at process exit (its shutdown
/// races a worker going to sleep, seen with 0.3.21), the serial one is ~20% slower here.
fn fast_blas_link_args(target_os: &str) -> Vec<String> {
    println!("cargo:rerun-if-env-changed=MLXK_NO_OPENBLAS");
    println!("cargo:rerun-if-env-changed=MLXK_OPENBLAS_DIR");
    if target_os != "linux" || env::var("MLXK_NO_OPENBLAS").is_ok_and(|v| v == "1") {
        return Vec::new();
    }
    let triple = format!(
        "{}-linux-gnu",
        env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default()
    );
    let candidates: Vec<PathBuf> = match env::var("MLXK_OPENBLAS_DIR") {
        Ok(dir) => vec![dir.into()],
        Err(_) => vec![
            Path::new("/usr/lib").join(&triple).join("openblas-openmp"),
            "/usr/lib64/openblas-openmp".into(),
        ],
    };
    let Some(dir) = candidates
        .iter()
        .find(|dir| dir.join("libopenblas.so.0").exists())
    else {
        panic!(
            "OpenBLAS (OpenMP build) not found in {candidates:?}: install it (./scripts/setup.sh \
             does: apt install libopenblas0-openmp), point MLXK_OPENBLAS_DIR at a folder holding \
             libopenblas.so.0, or build with MLXK_NO_OPENBLAS=1 to keep MLX's slow bundled BLAS"
        );
    };
    vec![
        format!("-Wl,-rpath,{}", dir.display()),
        format!("-L{}", dir.display()),
        "-Wl,--push-state,--no-as-needed,-l:libopenblas.so.0,--pop-state".to_string(),
    ]
}

fn compile_mlx_c(
    mlx: &Path,
    mlx_c: &Path,
    compat: &Path,
    half_compat: Option<&Path>,
    target_os: &str,
) {
    let sources = mlx_c_sources(mlx_c);
    for source in &sources {
        println!("cargo:rerun-if-changed={}", source.display());
    }
    let mut build = cc::Build::new();
    build
        .cpp(true)
        .std("c++20")
        .include(mlx_c)
        .include(mlx.join("include"))
        .files(&sources)
        .warnings(false)
        .flag("-include")
        .flag(compat.join("mlxk_format_compat.h").to_str().unwrap());
    if let Some(header) = half_compat {
        build.flag("-include").flag(header.to_str().unwrap());
    }
    if target_os == "macos" {
        // What the mlx-metal wheel's MLXConfig.cmake asks of code that includes MLX's headers.
        build
            .define("ACCELERATE_NEW_LAPACK", None)
            .define("_METAL_", None)
            .include(mlx.join("include/metal_cpp"));
    }
    build.compile("mlxc");
}

fn generate_bindings(mlx_c: &Path, half_compat: Option<&Path>, out: &Path) {
    let mut headers: Vec<PathBuf> = fs::read_dir(mlx_c.join("mlx/c"))
        .expect("mlx-c headers")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "h"))
        .collect();
    headers.sort();
    // The same options as mlx-sys 0.7.0, so the generated items are the ones mlx-rs expects.
    let mut builder = bindgen::Builder::default()
        .rust_target("1.73.0".parse().expect("rust target"))
        .clang_arg(format!("-I{}", mlx_c.display()))
        .blocklist_function("malloc")
        .blocklist_function("realloc");
    if let Some(header) = half_compat {
        // On macOS bindgen turns __fp16 into a u16 newtype and __bf16 into u16; mlx-rs relies
        // on exactly that, so the same shapes are declared here.
        builder = builder
            .clang_arg("-include")
            .clang_arg(header.to_str().unwrap())
            .blocklist_type("float16_t")
            .blocklist_type("bfloat16_t")
            .raw_line("#[repr(transparent)]")
            .raw_line("#[derive(Debug, Default, Copy, Clone, Hash, PartialEq, Eq)]")
            .raw_line("pub struct float16_t(pub u16);")
            .raw_line("pub type bfloat16_t = u16;");
    }
    for header in &headers {
        builder = builder.header(header.to_string_lossy());
    }
    builder
        .generate()
        .expect("generating mlx-c bindings")
        .write_to_file(out.join("bindings.rs"))
        .expect("writing bindings.rs");
}
