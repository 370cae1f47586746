#!/usr/bin/env bash
# Benchmark (not a test): `mlxk serve` (release) against `mlx_lm.server` (same MLX, same demo
# model), side by side in one run: time to first token, streamed tokens/s for one client,
# aggregate tokens/s for 4 concurrent clients, plus our engine's in-process decode speed
# (`mlxk run`) for reference. Greedy, raw completions of 128 tokens; time to first token, one
# client and the engine are the median of 3 runs. Prints the ratios.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
export HF_HOME="$TARGET/demo-hf-home"
unset HF_HUB_CACHE
MODEL="mlxk-demo/SmolLM2-135M-Instruct-Q4_1-mlx"
[ -d "$HF_HOME/hub" ] || "$ROOT/scripts/setup.sh"
cargo build --release --quiet --manifest-path "$ROOT/Cargo.toml" -p mlxk-cli
MLXK="$TARGET/release/mlxk"
PY="$ROOT/.venv/bin/python"
SNAPSHOT="$("$MLXK" show "$MODEL" --json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["data"]["path"])')"
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
OURS_PORT=$(free_port); THEIRS_PORT=$(free_port)
"$MLXK" serve --port "$OURS_PORT" --keep-alive 0 2>/dev/null & OURS=$!
"$PY" -m mlx_lm server --model "$SNAPSHOT" --port "$THEIRS_PORT" 2>/dev/null & THEIRS=$!
trap 'kill $OURS $THEIRS 2>/dev/null || true; wait 2>/dev/null' EXIT

"$PY" - "$MLXK" "$MODEL" "$SNAPSHOT" "$OURS_PORT" "$THEIRS_PORT" <<'PY'
import json, statistics, subprocess, sys, threading, time
import httpx

mlxk, model, snapshot, ours_port, theirs_port = sys.argv[1:6]
PROMPT = "Once upon a time, in a small village by the sea, there lived an old fisherman who"
TOKENS = 128
RUNS = 3

def wait(base):
    for _ in range(600):
        try:
            if httpx.get(base + "/v1/models", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{base} did not come up")

COUNTER = iter(range(10**6))

def stream(base, name):
    """One streamed completion: (time to first token, tokens, seconds from first to last token).
    Every request starts differently, so that no server can reuse a cached prompt."""
    begun = time.perf_counter()
    first = last = None
    chunks = 0
    prompt = f"Story number {next(COUNTER)}. {PROMPT}"
    body = {"model": name, "prompt": prompt, "max_tokens": TOKENS, "temperature": 0, "stream": True}
    with httpx.stream("POST", base + "/v1/completions", json=body, timeout=600) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if data.get("choices") and data["choices"][0].get("text"):
                now = time.perf_counter()
                first = first or now
                last = now
                chunks += 1
    return first - begun, chunks, last - first

def measure(base, name):
    stream(base, name)  # warm-up: loads the model
    singles = [stream(base, name) for _ in range(RUNS)]
    ttft = statistics.median(s[0] for s in singles)
    one = statistics.median((s[1] - 1) / s[2] for s in singles)
    results = []
    def worker():
        results.append(stream(base, name))
    threads = [threading.Thread(target=worker) for _ in range(4)]
    begun = time.perf_counter()
    for t in threads: t.start()
    for t in threads: t.join()
    wall = time.perf_counter() - begun
    return {"ttft": ttft, "one": one, "four": sum(r[1] for r in results) / wall}

ours_base, theirs_base = f"http://127.0.0.1:{ours_port}", f"http://127.0.0.1:{theirs_port}"
wait(ours_base); wait(theirs_base)
a = measure(ours_base, model)
b = measure(theirs_base, snapshot)
def engine_decode():
    run = subprocess.run([mlxk, "run", model, f"Story number {next(COUNTER)}. {PROMPT}", "--no-chat-template",
                          "--temperature", "0", "--max-tokens", str(TOKENS), "--json"],
                         capture_output=True, text=True, check=True)
    return json.loads(run.stdout)["data"]["stats"]["decode_tokens_per_second"]
engine = statistics.median(engine_decode() for _ in range(RUNS))
print(f"demo model, greedy raw completions of {TOKENS} tokens (one client and engine: median of {RUNS})")
print(f"{'figure':<34} {'mlxk serve':>11} {'mlx_lm.server':>14} {'ratio':>7}")
print(f"{'time to first token (s)':<34} {a['ttft']:>11.2f} {b['ttft']:>14.2f} {b['ttft'] / a['ttft']:>6.2f}x")
print(f"{'streamed tok/s, one client':<34} {a['one']:>11.2f} {b['one']:>14.2f} {a['one'] / b['one']:>6.2f}x")
print(f"{'aggregate tok/s, 4 clients':<34} {a['four']:>11.2f} {b['four']:>14.2f} {a['four'] / b['four']:>6.2f}x")
print(f"{'engine in-process decode tok/s':<34} {engine:>11.2f}   (one-client stream = {a['one'] / engine:.0%} of it)")
PY
