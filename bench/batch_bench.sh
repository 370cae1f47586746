#!/usr/bin/env bash
# Benchmark (not a test) for the batched engine (issue 17): `mlxk serve` from HEAD ("ours"), our
# server before the batch ("before") and mlx_lm.server ("mlx_lm") on the demo model, greedy, each
# server alone in turn, side by side in one run (bench/batch_bench.py): aggregate tokens/s of
# 1, 4 and 8 concurrent streams; the time to first token of a ten-turn agent session with a
# ~1,500-token system prompt (ours also with the prefix cache off); the longest gap between two
# tokens of a stream while a 2,000-token prompt arrives; ours' peak memory after the session and
# with a small prefix cache filled. Prints the tables and a summary of the ratios (Markdown).
#
# MLXK=path uses that binary for ours (else the release build of this tree). MLXK_BEFORE=path
# uses that binary for before; else BASE (default f6ccade) is built once in a git worktree under
# $TARGET/bench-before and its binary kept. SERVERS (default "ours before mlx_lm"), CLIENTS
# (default "1 4 8"), TOKENS, TURNS, SYSTEM_TOKENS; QUICK=1 takes tiny sizes (a smoke run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export HF_HOME="$TARGET/demo-hf-home"
unset HF_HUB_CACHE
MODEL="mlxk-demo/SmolLM2-135M-Instruct-Q4_1-mlx"
SERVERS="${SERVERS:-ours before mlx_lm}"
PY="$ROOT/.venv/bin/python"
[ -d "$HF_HOME/hub" ] || "$ROOT/scripts/setup.sh"
if [ -z "${MLXK:-}" ]; then
  cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p mlxk-cli
  MLXK="$TARGET/release/mlxk"
fi

BEFORE="${MLXK_BEFORE:-}"
if [ -z "$BEFORE" ] && [[ " $SERVERS " == *" before "* ]]; then
  COMMIT="$(git -C "$ROOT" rev-parse --verify "${BASE:-f6ccade}^{commit}")"
  BEFORE="$TARGET/bench-before-target/mlxk-$COMMIT"
  if [ ! -x "$BEFORE" ]; then
    WORKTREE="$TARGET/bench-before"
    if [ -d "$WORKTREE" ]; then
      git -C "$WORKTREE" checkout --quiet --detach "$COMMIT"
    else
      git -C "$ROOT" worktree add --detach "$WORKTREE" "$COMMIT"
    fi
    CARGO_TARGET_DIR="$TARGET/bench-before-target" \
      cargo build --release --manifest-path "$WORKTREE/Cargo.toml" -p mlxk-cli
    cp "$TARGET/bench-before-target/release/mlxk" "$BEFORE"
  fi
fi

SNAPSHOT="$("$MLXK" show "$MODEL" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["data"]["path"])')"
ARGS=(--ours "$MLXK" --before "${BEFORE:-none}" --python "$PY" --model "$MODEL" --snapshot "$SNAPSHOT"
      --servers "$SERVERS")
[ "${QUICK:-0}" = 1 ] && ARGS+=(--quick)
[ -n "${CLIENTS:-}" ] && ARGS+=(--clients "$CLIENTS")
[ -n "${TOKENS:-}" ] && ARGS+=(--tokens "$TOKENS")
[ -n "${TURNS:-}" ] && ARGS+=(--turns "$TURNS")
[ -n "${SYSTEM_TOKENS:-}" ] && ARGS+=(--system-tokens "$SYSTEM_TOKENS")
"$MLXK" --version
"$PY" "$ROOT/bench/batch_bench.py" "${ARGS[@]}" & BENCH=$!
# The script stops the servers it started when it ends, also on a SIGTERM from here.
trap 'kill $BENCH 2>/dev/null || true; wait 2>/dev/null' EXIT
wait $BENCH
