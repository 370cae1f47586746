#!/usr/bin/env bash
# End to end test of the menu-bar app: the real debug build under Xvfb (with trayer as the
# tray host), driven through WebDriver (tauri-driver + WebKitWebDriver), inside a private
# D-Bus session with an unlocked gnome-keyring (scripts/with-keyring.sh), with a fixture cache
# as HF_HOME plus the demo model (scripts/setup.sh converts it) for the chat against the real
# engine; then a second, short run of the app under a dark GTK theme. The Copy buttons and the
# tray's Copy Base URL items are checked on the real X clipboard, read with xclip. Screenshots
# go to $CARGO_TARGET_DIR/e2e-screenshots (or target/...).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"

command -v xclip >/dev/null || { echo "xclip is missing (apt-get install xclip): the test reads the clipboard with it"; exit 1; }
if [[ "${MLXK_IN_KEYRING_SESSION:-}" != 1 ]]; then
  command -v tauri-driver >/dev/null || cargo install tauri-driver --version '^2' --locked
  # The whole workspace, as setup.sh builds it (the same features, so nothing is rebuilt twice).
  (cd "$ROOT" && cargo build --workspace --quiet)
  exec "$ROOT/scripts/with-keyring.sh" "$0" "$@"
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/mlxk-e2e.XXXXXX")"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"$TARGET/debug/mlxk-fixtures" standard "$work/hf" >/dev/null
demo_model="mlxk-demo/SmolLM2-135M-Instruct-Q4_1-mlx"
demo_repo="$TARGET/demo-hf-home/hub/models--mlxk-demo--SmolLM2-135M-Instruct-Q4_1-mlx"
[[ -d "$demo_repo" ]] || { echo "the demo model is missing ($demo_repo): run ./scripts/setup.sh"; exit 1; }
cp -a "$demo_repo" "$work/hf/hub/"
expected=$(find "$work/hf/hub" -maxdepth 1 -name 'models--*' | wc -l)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$XDG_CONFIG_HOME/io.github.mlx-knife.menubar"
printf '{"host": "127.0.0.1", "port": %s}\n' "$port" >"$XDG_CONFIG_HOME/io.github.mlx-knife.menubar/settings.json"
push_folder="$(ls -d "$work/hf/hub/models--mlx-community--Llama-3.2-1B-Instruct-4bit/snapshots/"*)"

export DISPLAY=:$((90 + RANDOM % 9))
Xvfb "$DISPLAY" -screen 0 1280x800x24 -nolisten tcp >"$work/xvfb.log" 2>&1 & pids+=($!)
sleep 1
trayer --edge top --align right --widthtype pixel --width 120 --height 28 >/dev/null 2>&1 & pids+=($!)
# A local Hub on loopback for Pull, the token's Test and Push: the token typed in Settings
# authenticates e2e-user; e2e-org/pull-me is a public copy of the fixture folder.
token="hf_e2etokene2etokene2etokene2etokenab"
"$TARGET/debug/mlxk-testhub" --root "$work/hub" --port 0 --token "$token=e2e-user" \
  --seed-from "$push_folder=e2e-org/pull-me" >"$work/hub.out" 2>"$work/hub.log" & pids+=($!)
for _ in $(seq 100); do grep -q '^listening on ' "$work/hub.out" && break; sleep 0.1; done
hub_url="$(sed -n 's/^listening on //p' "$work/hub.out")"
[[ -n "$hub_url" ]] || { echo "mlxk-testhub did not start:"; cat "$work/hub.log"; exit 1; }
export HF_HOME="$work/hf" MLXK_REQUIRE_TEST_SENTINEL=1 HF_HUB_CACHE="" HF_TOKEN="" HF_ENDPOINT="$hub_url"
rm -rf "$TARGET/e2e-screenshots"
# One run of the app per appearance: the app inherits tauri-driver's environment, so the dark
# one gets its own driver with GTK_THEME (WebKitGTK then answers prefers-color-scheme: dark).
run_app() {
  local appearance="$1" driver_pid
  shift
  env "$@" tauri-driver --port 4444 --native-port 4445 >"$work/driver-$appearance.log" 2>&1 & driver_pid=$!
  pids+=("$driver_pid")
  for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/4444) 2>/dev/null && break; sleep 0.2; done
  APP="$TARGET/debug/mlxk-app" DRIVER_URL=http://127.0.0.1:4444 SCREENSHOTS="$TARGET/e2e-screenshots" \
    SERVER_PORT="$port" PUSH_FOLDER="$push_folder" EXPECTED_MODELS="$expected" HUB_URL="$hub_url" HUB_TOKEN="$token" \
    DEMO_MODEL="$demo_model" E2E_APPEARANCE="$appearance" \
    node "$ROOT/ui/e2e/app.e2e.mjs" || { echo "--- driver log"; tail -30 "$work/driver-$appearance.log"; exit 1; }
  kill "$driver_pid" 2>/dev/null || true
  wait "$driver_pid" 2>/dev/null || true
}
run_app light
run_app dark GTK_THEME=Adwaita:dark
