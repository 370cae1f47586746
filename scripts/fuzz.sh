#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets) for a bounded time: SECONDS each (default 30).
# `--release` builds optimised targets (slower to build, many more executions per second): what
# bench/fuzz.sh uses for long runs; the test command uses the quicker debug build.
# cargo-fuzz on stable Rust (`--sanitizer none`: coverage-guided libFuzzer, no ASan). The seed
# corpus in fuzz/corpus/TARGET is replayed first (the regression inputs, crashes found earlier
# included); new inputs go to a scratch folder, so the repository stays clean. Writes a summary
# line per target (executions, corpus size) to target/fuzz-summary.txt.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SECONDS_EACH="${1:-30}"
PROFILE=(--dev)
[[ "${2:-}" == "--release" ]] && PROFILE=(--release)
cd "$ROOT/fuzz"

CARGO_FUZZ_VERSION=0.13.2
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  echo "[fuzz] installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
  cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi
# libmlx (the engine links it) comes from the project's virtualenv, as for every MLX binary.
MLX_LIB="$(ls -d "$ROOT"/.venv/lib/python3*/site-packages/mlx/lib | head -1)"
export LD_LIBRARY_PATH="$MLX_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/fuzz"

echo "[fuzz] building the targets" >&2
cargo fuzz build --sanitizer none "${PROFILE[@]}" --debug-assertions >/dev/null
SUMMARY="$CARGO_TARGET_DIR/../fuzz-summary.txt"
: >"$SUMMARY"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
status=0
for target in $(cargo fuzz list); do
  mkdir -p "$scratch/$target"
  log="$scratch/$target.log"
  # -timeout: one input taking longer is a finding (a hang); -rss_limit_mb: so is a balloon.
  if cargo fuzz run --sanitizer none "${PROFILE[@]}" --debug-assertions "$target" \
      "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=4096 \
      -artifact_prefix="$ROOT/fuzz/artifacts/$target-" >"$log" 2>&1; then
    result="ok"
  else
    result="FAILED (input kept in fuzz/artifacts; add it to fuzz/corpus/$target once fixed)"
    status=1
    tail -40 "$log" >&2
  fi
  runs="$(grep -o 'Done [0-9]* runs' "$log" | tail -1 | grep -o '[0-9]*' || echo '?')"
  line="$target: $result, $runs executions in ${SECONDS_EACH}s, corpus $(ls "$scratch/$target" | wc -l) new inputs"
  echo "[fuzz] $line" >&2
  echo "$line" >>"$SUMMARY"
done
exit $status
