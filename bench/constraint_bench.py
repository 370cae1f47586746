"""Benchmark (not a test): what a grammar costs. One warm `mlxk serve` on the demo model
(SmolLM2-135M), the same prompt answered greedily with and without a `json_schema`
constraint, side by side: decode tokens/s (after the first token, from the stream's own
timing, usage's token count), time to first token; and the time to first token with 20 tools
offered against none (every prompt token computed: no prefix cache yet).

Usage: constraint_bench.py MLXK HF_HOME [RUNS]  (bench/constraint_bench.sh sets them up)
"""

import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time

import httpx

MLXK, HOME = sys.argv[1], sys.argv[2]
RUNS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
MODEL = "mlxk-demo/SmolLM2-135M-Instruct-Q4_1-mlx"
PROMPT = [{"role": "user", "content": "Describe a fictional person: name, age, city and three hobbies."}]
SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
        "city": {"type": "string", "maxLength": 24},
        "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 20}, "minItems": 3, "maxItems": 3},
    },
    "required": ["name", "age", "city", "hobbies"],
    "additionalProperties": False,
}
TOOLS = [
    {"type": "function", "function": {"name": f"tool_{i}", "description": f"Does task number {i} for the user, given a city and a date.",
                                      "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "date": {"type": "string"}},
                                                     "required": ["city"]}}}
    for i in range(20)
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def timed(base: str, body: dict) -> tuple[float, float, int]:
    """(time to first token, decode tokens/s after it, completion tokens) of one streamed answer."""
    body = {"model": MODEL, "temperature": 0, "stream": True, "stream_options": {"include_usage": True}, **body}
    start, first, last, tokens = time.perf_counter(), None, None, 0
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=600) as response:
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            choices = chunk.get("choices") or []
            if choices and (choices[0]["delta"].get("content") or choices[0]["delta"].get("tool_calls")):
                now = time.perf_counter()
                first = first or now
                last = now
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else float("nan")
    return first - start, decode, tokens


def main() -> None:
    port = free_port()
    env = {**os.environ, "HF_HOME": HOME}
    server = subprocess.Popen([MLXK, "serve", "--port", str(port), "--model", MODEL, "--keep-alive", "0"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        free = {"messages": PROMPT, "max_tokens": 64}
        constrained = {**free, "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA}}}
        timed(base, free), timed(base, constrained)  # warm-up: the model, the token trie
        rows = {"free": [], "json_schema": []}
        for _ in range(RUNS):
            rows["free"].append(timed(base, free))
            rows["json_schema"].append(timed(base, constrained))
        ttft = {"no tools": [], "20 tools": []}
        for _ in range(RUNS):
            ttft["no tools"].append(timed(base, {"messages": PROMPT, "max_tokens": 1})[0])
            ttft["20 tools"].append(timed(base, {"messages": PROMPT, "max_tokens": 1, "tools": TOOLS})[0])
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)

    median = lambda values: statistics.median(values)  # noqa: E731
    print(f"{MLXK} serve, {MODEL}, greedy, median of {RUNS}")
    print(f"{'':34}{'free':>12}{'json_schema':>14}{'ratio':>9}")
    free_decode, json_decode = median([r[1] for r in rows["free"]]), median([r[1] for r in rows["json_schema"]])
    free_ttft, json_ttft = median([r[0] for r in rows["free"]]), median([r[0] for r in rows["json_schema"]])
    print(f"{'decode tokens/s':34}{free_decode:>12.1f}{json_decode:>14.1f}{json_decode / free_decode:>8.2f}x")
    print(f"{'time to first token, ms':34}{free_ttft * 1000:>12.0f}{json_ttft * 1000:>14.0f}{free_ttft / json_ttft:>8.2f}x")
    print(f"{'completion tokens':34}{median([r[2] for r in rows['free']]):>12.0f}{median([r[2] for r in rows['json_schema']]):>14.0f}")
    print(f"constraint cost on decode: {(1 - json_decode / free_decode) * 100:.1f}% (ratio above 1 = faster)")
    no_tools, tools = median(ttft["no tools"]), median(ttft["20 tools"])
    print(f"time to first token, no tools {no_tools * 1000:.0f} ms, 20 tools {tools * 1000:.0f} ms "
          f"(the tools' prompt computed anew each request: no prefix cache yet)")


if __name__ == "__main__":
    main()
