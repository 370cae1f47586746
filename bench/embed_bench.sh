#!/usr/bin/env bash
# Benchmark (not a test): `mlxk serve`'s /v1/embeddings (release) against mlx-embeddings' BERT in
# process (tests/reference/embeddings_reference.py, same MLX), side by side in one run, on
# all-MiniLM-L6-v2: throughput of 1,000 short texts in batches of 32, latency of one text (median
# of 30), cold start of one text, and how closely the vectors agree. The reference runs on the
# OpenBLAS our binary links and on the BLAS the mlx wheel bundles. Prints the ratios.
# MLXK=path/to/mlxk uses that binary instead of building the release one; TEXTS, LATENCY_RUNS.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export HF_HOME="$TARGET/demo-hf-home"
unset HF_HUB_CACHE
MODEL="mlxk-demo/all-MiniLM-L6-v2"
[ -d "$HF_HOME/hub/models--mlxk-demo--all-MiniLM-L6-v2" ] || "$ROOT/scripts/setup.sh"
if [ -z "${MLXK:-}" ]; then
  cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p mlxk-cli
  MLXK="$TARGET/release/mlxk"
fi
PY="$ROOT/.venv/bin/python"
SNAPSHOT="$("$MLXK" show "$MODEL" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["data"]["path"])')"
"$MLXK" --version
"$PY" "$ROOT/bench/embed_bench.py" --mlxk "$MLXK" --model "$MODEL" --snapshot "$SNAPSHOT" \
  --texts "${TEXTS:-1000}" --latency "${LATENCY_RUNS:-30}"
