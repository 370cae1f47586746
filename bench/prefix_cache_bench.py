"""Benchmark (not a test): a chat session with a long system prompt through `mlxk serve`, once
with the prefix cache off (`--prompt-cache-size 0`) and once with it on, side by side in one
run. Every turn resends the whole conversation, as chat and agent clients do. Prints, per turn,
the prompt tokens, the cached ones and the time to the first token of each server, and the
ratio. Usage: prefix_cache_bench.py --mlxk PATH --model NAME [--turns 10] [--system-tokens 1500]
(HF_HOME names the cache that holds the model).
"""

import argparse
import json
import os
import signal
import socket
import subprocess
import time

import httpx

PARAGRAPH = ("You are the assistant of a hardware shop. You answer questions about tools, "
             "fasteners, paint and garden supplies, name the aisle when you know it, never "
             "invent prices, and keep every answer to one short sentence. ")
QUESTIONS = ["Where are the hammers?", "And the nails?", "Do you sell paint brushes?",
             "What about garden hoses?", "Which aisle has screws?", "Do you cut keys?",
             "Where is the sandpaper?", "Do you have ladders?", "Where are the light bulbs?",
             "Do you sell rope?", "Where is the glue?", "Any wheelbarrows?"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session(mlxk: str, model: str, cache_size: str, turns: int, system: str) -> list[dict]:
    port = free_port()
    server = subprocess.Popen([mlxk, "serve", "--port", str(port), "--prompt-cache-size", cache_size],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        messages = [{"role": "system", "content": system}]
        rows = []
        for turn in range(turns):
            messages.append({"role": "user", "content": QUESTIONS[turn % len(QUESTIONS)]})
            started = time.perf_counter()
            first, text, usage = None, "", None
            body = {"model": model, "messages": messages, "max_tokens": 24, "temperature": 0,
                    "stream": True, "stream_options": {"include_usage": True}}
            with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=600) as r:
                for line in r.iter_lines():
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    chunk = json.loads(line[6:])
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices", []):
                        piece = choice["delta"].get("content")
                        if piece:
                            first = first or time.perf_counter() - started
                            text += piece
            messages.append({"role": "assistant", "content": text})
            rows.append({"prompt": usage["prompt_tokens"],
                         "cached": usage["prompt_tokens_details"]["cached_tokens"],
                         "first_token_s": first or time.perf_counter() - started})
        return rows
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mlxk", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--turns", type=int, default=10)
    parser.add_argument("--system-tokens", type=int, default=1500)
    args = parser.parse_args()
    # About 30 tokens a paragraph.
    system = PARAGRAPH * max(1, args.system_tokens // 30)
    print(f"HF_HOME={os.environ.get('HF_HOME')} model={args.model}")
    off = session(args.mlxk, args.model, "0", args.turns, system)
    on = session(args.mlxk, args.model, "1GiB", args.turns, system)
    print(f"{'turn':>4} {'prompt':>7} {'cached':>7} {'off: first token s':>19} {'on: first token s':>18} {'ratio':>6}")
    for turn, (a, b) in enumerate(zip(off, on), 1):
        ratio = a["first_token_s"] / max(b["first_token_s"], 1e-6)
        print(f"{turn:>4} {b['prompt']:>7} {b['cached']:>7} {a['first_token_s']:>19.2f} "
              f"{b['first_token_s']:>18.2f} {ratio:>5.1f}x")
    total_off = sum(r["first_token_s"] for r in off)
    total_on = sum(r["first_token_s"] for r in on)
    print(f"all turns: {total_off:.1f} s without the prefix cache, {total_on:.1f} s with it "
          f"({total_off / max(total_on, 1e-6):.1f}x)")


if __name__ == "__main__":
    main()
