#!/usr/bin/env bash
# The main job until the server and the app land: build the demo model cache in a private
# HF_HOME (never your own cache) and show what mlxk sees in it.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export HF_HOME="$TARGET/demo-hf-home"
unset HF_HUB_CACHE

cargo build --quiet --manifest-path "$ROOT/Cargo.toml" --workspace
[ -d "$HF_HOME/hub" ] || "$TARGET/debug/mlxk-fixtures" standard "$HF_HOME" >/dev/null
MLXK="$TARGET/debug/mlxk"

run() { printf '\n\033[1m$ mlxk %s\033[0m\n' "$*"; "$MLXK" "$@" || true; }
echo "Demo cache: HF_HOME=$HF_HOME"
run list
run list --all --health
run show Qwen2.5-0.5B-Instruct-4bit --files
run health
echo
echo "Try it yourself:  HF_HOME=$HF_HOME $MLXK list --all --json"
