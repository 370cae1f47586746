#!/usr/bin/env bash
# Benchmark (not a test): our engine (`mlxk run`, release build) and mlx-lm's own generate on
# the demo model, side by side in one run: prompt tok/s for a short and a ~500-token prompt,
# decode tok/s over 128 tokens, time to first token, peak memory. Prints the ratios
# (above 1 = we are faster / use less memory). Median of RUNS (default 3) runs each.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
RUNS="${RUNS:-3}"
export HF_HOME="$TARGET/demo-hf-home"
unset HF_HUB_CACHE
MODEL="mlxk-demo/SmolLM2-135M-Instruct-Q4_1-mlx"
[ -d "$HF_HOME/hub" ] || "$ROOT/scripts/setup.sh"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p mlxk-cli
MLXK="$TARGET/release/mlxk"
PY="$ROOT/.venv/bin/python"
SNAPSHOT="$("$MLXK" show "$MODEL" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["data"]["path"])')"

SHORT="Once upon a time, in a small village by the sea, there lived an old fisherman who"
PARAGRAPH="The history of the lighthouse on the northern cape is long and full of storms. Keepers came and went, each leaving notes in the logbook about the weather, the ships that passed and the lamps they tended through the night. "
LONG="$(for _ in $(seq 1 11); do printf '%s' "$PARAGRAPH"; done)In the end, the last keeper wrote"

"$PY" - "$MLXK" "$SNAPSHOT" "$MODEL" "$RUNS" "$SHORT" "$LONG" "$ROOT/tests/reference/mlx_lm_bench.py" <<'PY'
import json, statistics, subprocess, sys

mlxk, snapshot, model, runs, short, long_prompt, reference = sys.argv[1:8]
runs = int(runs)
KEYS = ["prompt_tokens_per_second", "time_to_first_token_s", "decode_tokens_per_second", "peak_memory_bytes"]

def ours(prompt):
    out = subprocess.run([mlxk, "run", model, prompt, "--no-chat-template", "--temperature", "0",
                          "--max-tokens", "128", "--json"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)["data"]
    return {**data["stats"], "prompt_tokens": data["prompt_tokens"], "tokens": data["tokens_generated"]}

def theirs(prompt):
    out = subprocess.run([sys.executable, reference, snapshot, prompt, "128"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    return {**data, "tokens": data["generation_tokens"]}

def medians(prompt):
    """Alternates the two tools run by run, so that drift in the machine's speed hits both."""
    ours(prompt), theirs(prompt)  # warm-up: file cache, lazy loading
    a, b = [], []
    for _ in range(runs):
        a.append(ours(prompt))
        b.append(theirs(prompt))
    pick = lambda samples: {k: statistics.median(s[k] for s in samples) for k in KEYS + ["prompt_tokens", "tokens"]}
    return pick(a), pick(b)

print(f"demo model: {model} (median of {runs} runs, greedy, 128 new tokens)")
print(f"{'prompt':<8} {'figure':<24} {'mlxk':>10} {'mlx-lm':>10} {'ratio':>7}")
for label, prompt in (("short", short), ("~500", long_prompt)):
    a, b = medians(prompt)
    assert a["prompt_tokens"] == b["prompt_tokens"], (a["prompt_tokens"], b["prompt_tokens"])
    rows = [
        ("prompt tok/s", a["prompt_tokens_per_second"], b["prompt_tokens_per_second"], True),
        ("time to first token s", a["time_to_first_token_s"], b["time_to_first_token_s"], False),
        ("decode tok/s", a["decode_tokens_per_second"], b["decode_tokens_per_second"], True),
        ("peak memory MB", a["peak_memory_bytes"] / 1e6, b["peak_memory_bytes"] / 1e6, False),
    ]
    print(f"{label:<8} {'prompt tokens':<24} {a['prompt_tokens']:>10.0f} {b['prompt_tokens']:>10.0f}")
    for name, x, y, higher_is_better in rows:
        ratio = x / y if higher_is_better else y / x
        print(f"{label:<8} {name:<24} {x:>10.2f} {y:>10.2f} {ratio:>6.2f}x")
PY
