#!/usr/bin/env bash
# Builds the app's Debian package offline (Tauri's deb bundler: no downloads) and checks it:
# the binary, libmlx with the libraries it needs (as the MLX wheel lays them out), the
# dependencies apt must bring, and that the packaged binary finds libmlx inside the package.
#   scripts/bundle-deb.sh [--release]   (debug by default: it reuses the test build)
# Needs scripts/setup.sh to have run (the MLX wheel in .venv, Node.js).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
profile=debug; flags=(--debug)
[[ "${1:-}" == --release ]] && { profile=release; flags=(); }
TAURI_CLI_VERSION=2.12.5 # the tauri crate's version: the CLI refuses other major.minor pairs

# Tauri embeds ui/dist: build it from the current sources.
[[ -d "$ROOT/ui/node_modules" ]] || (cd "$ROOT/ui" && npm ci --no-audit --no-fund --loglevel=error)
(cd "$ROOT/ui" && npm run --silent build >/dev/null)

mlx_lib="$("$ROOT/.venv/bin/python" -c 'import mlx, os; print(os.path.join(list(mlx.__path__)[0], "lib"))')"
mlx_libs="$(cd "$mlx_lib/../../mlx_cpu.libs" && pwd)"
config="$(mktemp "${TMPDIR:-/tmp}/mlxk-deb-config.XXXXXX.json")"
trap 'rm -f "$config"' EXIT
# libmlx.so finds its BLAS/LAPACK through $ORIGIN/../../mlx_cpu.libs: keep that layout.
"$ROOT/.venv/bin/python" - "$mlx_lib" "$mlx_libs" >"$config" <<'PY'
import json, pathlib, sys
lib, libs = map(pathlib.Path, sys.argv[1:])
files = {"/usr/lib/mlx-knife/mlx/lib/libmlx.so": str(lib / "libmlx.so")}
for f in sorted(libs.iterdir()):
    files[f"/usr/lib/mlx-knife/mlx_cpu.libs/{f.name}"] = str(f)
print(json.dumps({"bundle": {"linux": {"deb": {"files": files, "depends": ["libopenblas0-openmp", "libstdc++6"]}}}}))
PY

rm -rf "$TARGET/$profile/bundle/deb"
(cd "$ROOT/src-tauri" && npx --yes "@tauri-apps/cli@$TAURI_CLI_VERSION" build "${flags[@]}" --bundles deb --config "$config" --ci)
deb="$(ls "$TARGET/$profile/bundle/deb/"*.deb)"
echo "== checking $deb ($(du -h "$deb" | cut -f1))"
contents="$(dpkg-deb --contents "$deb")"
for want in usr/bin/mlxk-app usr/lib/mlx-knife/mlx/lib/libmlx.so 'usr/share/applications/MLX Knife.desktop'; do
  grep -qE "[ /]$want\$" <<<"$contents" || { echo "missing from the package: $want"; exit 1; }
done
depends="$(dpkg-deb --field "$deb" Depends)"
for want in libwebkit2gtk-4.1-0 libgtk-3-0 libopenblas0-openmp; do
  grep -q "$want" <<<"$depends" || { echo "Depends lacks $want: $depends"; exit 1; }
done
unpacked="$(mktemp -d "${TMPDIR:-/tmp}/mlxk-deb.XXXXXX")"
trap 'rm -f "$config"; rm -rf "$unpacked"' EXIT
dpkg-deb -x "$deb" "$unpacked"
resolved="$(ldd "$unpacked/usr/bin/mlxk-app")"
if grep -q 'not found' <<<"$resolved"; then echo "$resolved" | grep 'not found'; exit 1; fi
loaded="$(awk '$1 == "libmlx.so" { print $3 }' <<<"$resolved")"
[[ "$(realpath "$loaded")" == "$unpacked/usr/lib/mlx-knife/mlx/lib/libmlx.so" ]] \
  || { echo "the packaged binary does not load the packaged libmlx: $loaded"; exit 1; }
echo "ok: $deb (Depends: $depends)"
