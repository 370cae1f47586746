#!/usr/bin/env bash
# Long fuzzing runs (not a test: no ratio to print): every target, optimised, SECONDS each
# (default 300). Crash inputs land in fuzz/artifacts; once fixed, add them to fuzz/corpus.
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../scripts/fuzz.sh" "${1:-300}" --release
