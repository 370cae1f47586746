#!/usr/bin/env bash
# Benchmark (not a test): a ten-turn chat with a ~1,500-token system prompt through `mlxk serve`
# (release), the prefix cache off and on, side by side in one run; prints the time to the first
# token per turn and the ratios (bench/prefix_cache_bench.py). MODEL (default: the demo
# SmolLM2), TURNS, SYSTEM_TOKENS; MLXK=path/to/mlxk uses that binary instead of the release one.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export HF_HOME="$TARGET/demo-hf-home"
unset HF_HUB_CACHE
MODEL="${MODEL:-mlxk-demo/SmolLM2-135M-Instruct-Q4_1-mlx}"
[ -d "$HF_HOME/hub" ] || "$ROOT/scripts/setup.sh"
if [ -z "${MLXK:-}" ]; then
  cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p mlxk-cli
  MLXK="$TARGET/release/mlxk"
fi
"$MLXK" --version
"$ROOT/.venv/bin/python" "$ROOT/bench/prefix_cache_bench.py" --mlxk "$MLXK" --model "$MODEL" \
  --turns "${TURNS:-10}" --system-tokens "${SYSTEM_TOKENS:-1500}"
