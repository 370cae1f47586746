#!/usr/bin/env bash
# The main job, on the demo model that scripts/setup.sh converted from GGUF into a private
# HF_HOME (never your own cache). With a display (DISPLAY or WAYLAND_DISPLAY, or on macOS): the
# menu-bar app over that cache. Without one, or with MLXK_DEMO=serve: shows the model, then
# `mlxk serve` on 127.0.0.1:8000 until Ctrl-C.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export HF_HOME="$TARGET/demo-hf-home"
unset HF_HUB_CACHE
MLXK="$TARGET/debug/mlxk"
MODEL="mlxk-demo/SmolLM2-135M-Instruct-Q4_1-mlx"
PORT="${PORT:-8000}"
[ -x "$MLXK" ] && [ -d "$HF_HOME/hub" ] || { echo "run ./scripts/setup.sh first" >&2; exit 1; }

APP="$TARGET/debug/mlxk-app"
if [[ "${MLXK_DEMO:-}" != serve && -x "$APP" ]] \
  && [[ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" || "$(uname -s)" == Darwin ]]; then
  echo "Demo cache: HF_HOME=$HF_HOME"
  echo "Starting the menu-bar app (the Library opens; Start Server in it or in the tray menu)."
  exec "$APP"
fi

run() { printf '\n\033[1m$ mlxk %s\033[0m\n' "$*"; "$MLXK" "$@"; }
echo "Demo cache: HF_HOME=$HF_HOME"
run --version
run list --health
run health "$MODEL"
cat <<MSG

Try it from another terminal:
  curl -s http://127.0.0.1:$PORT/v1/chat/completions -H 'content-type: application/json' \\
    -d '{"model": "$MODEL", "messages": [{"role": "user", "content": "What is the capital of France?"}]}'
MSG
printf '\n\033[1m$ mlxk serve --port %s\033[0m\n' "$PORT"
exec "$MLXK" serve --port "$PORT"
