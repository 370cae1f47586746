#!/usr/bin/env bash
# Installs the coding agents the interop tests drive against `mlxk serve` (tests/interop/
# test_agents.py): Claude Code (Anthropic's Messages API) and Codex (OpenAI's Responses API).
# Both come from the npm registry alone: each wrapper package pulls its native binary as an
# optional per-platform dependency (claude's postinstall links it over bin/claude.exe; codex's
# bin/codex.js execs it from vendor/), nothing is downloaded from elsewhere. Pinned versions,
# installed into .cache/agents (never globally), npm's own cache reused; a stamp skips the work
# when these versions are already there. Called by scripts/setup.sh; safe to run on its own.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AGENTS="$ROOT/.cache/agents"
PACKAGES=("@anthropic-ai/claude-code@2.1.332" "@openai/codex@0.171.0")

log() { printf '\033[1;34m[agents]\033[0m %s\n' "$*" >&2; }

stamp="$AGENTS/.installed"
want="${PACKAGES[*]}"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && [ -x "$AGENTS/node_modules/.bin/claude" ] \
  && [ -x "$AGENTS/node_modules/.bin/codex" ]; then
  log "claude-code and codex up to date"
  exit 0
fi
command -v npm >/dev/null || { echo "npm not found: install Node.js with npm" >&2; exit 1; }
log "npm: installing ${PACKAGES[*]} into $AGENTS"
mkdir -p "$AGENTS"
# A package.json of its own, so npm never climbs to another project's; --no-save keeps it empty.
[ -f "$AGENTS/package.json" ] || echo '{"name": "mlxk-test-agents", "private": true}' >"$AGENTS/package.json"
# engine-strict off: claude-code's wrapper asks for Node 22, but only its postinstall runs on
# Node (any recent one); the CLI itself is the native binary.
(cd "$AGENTS" && npm install --no-save --no-audit --no-fund --loglevel=error --engine-strict=false \
  "${PACKAGES[@]}" >/dev/null)
# Both must start: a missing platform package would leave a stub that only prints a message.
"$AGENTS/node_modules/.bin/claude" --version >/dev/null
"$AGENTS/node_modules/.bin/codex" --version >/dev/null
echo "$want" >"$stamp"
