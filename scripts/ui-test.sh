#!/usr/bin/env bash
# The UI's own logic in headless Chromium, with Tauri's IPC mocked (no Rust app, no display):
# ui/tests/*.test.mjs on the built pages in ui/dist, driven by playwright-core through the
# system Chromium (Debian's `chromium`; set CHROMIUM to use another binary). A complement to
# scripts/e2e.sh, which runs the real app. Idempotent: installs only what is missing.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
UI="$ROOT/ui"

log() { printf '\033[1;34m[ui-test]\033[0m %s\n' "$*" >&2; }

export CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$CHROMIUM" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    log "apt: installing chromium"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
  else
    echo "no Chromium at $CHROMIUM: install Chromium and set CHROMIUM to its binary" >&2
    exit 1
  fi
fi

# npm writes node_modules/.package-lock.json on every install: older than the lockfile (or
# missing) means the packages are not the locked ones.
if [ ! -f "$UI/node_modules/.package-lock.json" ] || [ "$UI/package-lock.json" -nt "$UI/node_modules/.package-lock.json" ]; then
  log "npm: installing the UI's packages (npm ci)"
  (cd "$UI" && npm ci --no-audit --no-fund --loglevel=error)
  # setup.sh's stamp, so that it does not install them again.
  sha256sum "$UI/package-lock.json" | cut -d' ' -f1 >"$UI/node_modules/.package-lock.sha256"
fi

log "npm: building the UI"
(cd "$UI" && npm run --silent build >/dev/null)

log "node --test ui/tests"
cd "$ROOT"
node --test --test-reporter=spec ui/tests/*.test.mjs
