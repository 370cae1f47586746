#!/usr/bin/env bash
# The whole test suite: formatting, lints, Rust unit and CLI tests, and the Python interop
# tests against huggingface_hub. Sets up what it needs first (idempotent).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# One pass over a tree gains nothing from incremental caches, and they took gigabytes of the
# disk a clean CI machine has.
export CARGO_INCREMENTAL=0

"$ROOT/scripts/setup.sh"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo build --workspace --quiet
cargo test --workspace --quiet 2>&1
if [[ "$(uname -s)" == Linux ]]; then
  echo "== keyring (login / whoami / logout against a private Secret Service)"
  "$ROOT/scripts/with-keyring.sh" cargo test -p mlxk-cli --test hub_login --quiet 2>&1
  echo "== the UI in headless Chromium (Tauri IPC mocked)"
  "$ROOT/scripts/ui-test.sh"
  echo "== the menu-bar app end to end (Xvfb, WebDriver, a private Secret Service)"
  "$ROOT/scripts/e2e.sh"
  echo "== the app's Debian package (bundled offline, checked)"
  "$ROOT/scripts/bundle-deb.sh"
fi
echo "== pytest (interop with huggingface_hub, the SDKs, the reference implementations)"
MLXK_BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/debug" "$ROOT/.venv/bin/python" -m pytest tests/interop -q --durations=12
# Last: its instrumented build is a second copy of the dependencies on disk.
echo "== fuzzing (every target in fuzz/, 30 s each; the seed corpus replayed first)"
"$ROOT/scripts/fuzz.sh" 30
