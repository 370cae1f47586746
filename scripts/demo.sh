#!/usr/bin/env bash
# The main job until the server and the app land: show the demo model that scripts/setup.sh
# converted from GGUF into a private HF_HOME (never your own cache), check it, and have mlx-lm
# answer from it to prove the conversion is a working MLX model.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export HF_HOME="$TARGET/demo-hf-home"
unset HF_HUB_CACHE
MLXK="$TARGET/debug/mlxk"
MODEL="mlxk-demo/SmolLM2-135M-Instruct-Q4_1-mlx"
[ -x "$MLXK" ] && [ -d "$HF_HOME/hub" ] || { echo "run ./scripts/setup.sh first" >&2; exit 1; }

run() { printf '\n\033[1m$ mlxk %s\033[0m\n' "$*"; "$MLXK" "$@"; }
echo "Demo cache: HF_HOME=$HF_HOME"
run --version
run list
run show "$MODEL" --files
run health "$MODEL" --deep

SNAPSHOT="$("$MLXK" show "$MODEL" --json | "$ROOT/.venv/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["data"]["path"])')"
printf '\n\033[1m$ mlx_lm generate (the reference runtime) on the converted model\033[0m\n'
"$ROOT/.venv/bin/python" -m mlx_lm generate --model "$SNAPSHOT" --max-tokens 32 \
  --prompt "What is the capital of France?"
echo
echo "Try it yourself:  HF_HOME=$HF_HOME $MLXK list --json"
