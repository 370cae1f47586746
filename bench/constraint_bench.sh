#!/usr/bin/env bash
# Benchmark (not a test): decode tokens/s with and without a json_schema constraint on the demo
# model through one warm `mlxk serve` (release build), side by side, and the time to first token
# with 20 tools offered. MLXK=path/to/mlxk skips the build; RUNS (default 5) answers each.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
[ -e "$TARGET/demo-hf-home/hub/models--mlxk-demo--SmolLM2-135M-Instruct-Q4_1-mlx/refs/main" ] || "$ROOT/scripts/setup.sh"
if [ -z "${MLXK:-}" ]; then
  cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p mlxk-cli
  MLXK="$TARGET/release/mlxk"
fi
exec "$ROOT/.venv/bin/python" "$ROOT/bench/constraint_bench.py" "$MLXK" "$TARGET/demo-hf-home" "${RUNS:-5}"
