#!/usr/bin/env bash
# Benchmark (not a test): `mlxk run MODEL --audio` (release) against mlx-whisper 0.4.3 in process
# (same MLX), side by side in one run, on bench60.wav (exactly 60 s of 16 kHz speech, built by
# scripts/speech-clips.sh), for Whisper tiny.en and base: mlx-whisper's default (fp16),
# fp16=False and float32 parameters, each first call (with load) and warm call, against mlxk's
# whole-process wall time; prints the real-time factors and the ratios (bench/whisper_bench.py).
# MLXK=path/to/mlxk uses that binary instead of building the release one; CLIP=path/to.wav
# (16 kHz mono 16-bit) another clip; MODELS="tiny.en base" the models; VARIANTS="fp16,fp16=False"
# a subset of mlx-whisper's variants (each costs two transcriptions).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export HF_HOME="$TARGET/test-models-hf-home"
unset HF_HUB_CACHE
CLIP="${CLIP:-$ROOT/.cache/speech/bench60.wav}"
[ -d "$HF_HOME/hub/models--mlxk-test--whisper-base-mlx" ] || "$ROOT/scripts/setup.sh"
[ -f "$CLIP" ] || "$ROOT/scripts/speech-clips.sh"
if [ -z "${MLXK:-}" ]; then
  cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p mlxk-cli
  MLXK="$TARGET/release/mlxk"
fi
PY="$ROOT/.venv/bin/python"
"$MLXK" --version
models=()
for model in ${MODELS:-tiny.en base}; do
  name="mlxk-test/whisper-$model-mlx"
  snapshot="$("$MLXK" show "$name" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["data"]["path"])')"
  models+=(--model "$name=$snapshot")
done
"$PY" "$ROOT/bench/whisper_bench.py" --mlxk "$MLXK" --clip "$CLIP" "${models[@]}" \
  ${VARIANTS:+--variants "$VARIANTS"}
