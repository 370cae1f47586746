"""Benchmark (not a test) for the batched engine (issue 17): `mlxk serve` from HEAD ("ours"),
the server before the batch ("before") and `mlx_lm.server` ("mlx_lm"), on the same model,
greedy, side by side in one run. Each server runs alone (the others stopped), so that the
measured one has the CPU to itself. Measures:

1. aggregate tokens/s of 1, 4 and 8 concurrent streaming raw completions (distinct prompts);
2. an agent-shaped chat session: a long system prompt and turns that each resend the whole
   history; time to the first token per turn (ours also with the prefix cache off);
3. the longest gap between two tokens of a running stream while a long prompt arrives,
   against the usual gap before it;
4. ours' peak resident memory after the session and after filling a small prefix cache.

Prints a table per measurement and a summary (Markdown) with the ratios and the goals.
Usage: batch_bench.py --ours PATH --before PATH --python PATH --model NAME --snapshot DIR
[--servers "ours before mlx_lm"] [--clients "1 4 8"] [--tokens N] [--turns N]
[--system-tokens N] [--quick] (HF_HOME names the cache that holds the model).
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from itertools import count

import httpx

from prefix_cache_bench import PARAGRAPH, QUESTIONS, free_port

# Tokens of one PARAGRAPH and of one filler line, by SmolLM2's tokenizer.
PARAGRAPH_TOKENS = 44
LINE_TOKENS = 13
WORDS = ["anchor", "basket", "candle", "drawer", "engine", "feather", "garden", "harbor",
         "island", "jacket", "kettle", "ladder", "marble", "needle", "orchard", "pillow",
         "quarry", "ribbon", "saddle", "tunnel", "violin", "wagon", "yarn", "zipper"]
STORY = "Once upon a time, in a small village by the sea, there lived an old fisherman who"

# Sizes of the full run and of the smoke run (QUICK=1).
FULL = {"clients": "1 4 8", "tokens": 128, "turns": 10, "system_tokens": 1500, "answer_tokens": 32,
        "stream_tokens": 200, "arrive_after": 30, "newcomer_tokens": 2000,
        "fill_prompts": 20, "fill_tokens": 600, "fill_cap": "64MiB"}
QUICK = {"clients": "1 2", "tokens": 24, "turns": 3, "system_tokens": 300, "answer_tokens": 16,
         "stream_tokens": 60, "arrive_after": 10, "newcomer_tokens": 300,
         "fill_prompts": 4, "fill_tokens": 400, "fill_cap": "48MiB"}
SIZE_UNITS = {"KiB": 2**10, "MiB": 2**20, "GiB": 2**30}


def filler(label: str, tokens: int) -> str:
    """About `tokens` tokens of numbered lines after `label` (distinct labels: no shared prefix)."""
    lines = [f"{label}."]
    for i in range(max(1, tokens // LINE_TOKENS)):
        lines.append(f"Line {i}: the {WORDS[i % len(WORDS)]} sits next to the "
                     f"{WORDS[(i * 7 + 3) % len(WORDS)]}.")
    return " ".join(lines)


class Server:
    """One server process on a free port; `model` is the name requests give."""

    def __init__(self, label: str, argv: list[str], model: str, logdir: str):
        self.label, self.model = label, model
        port = free_port()
        self.base = f"http://127.0.0.1:{port}"
        self.log_path = os.path.join(logdir, f"{label}.log")
        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen(argv + ["--port", str(port)], stdout=log,
                                            stderr=subprocess.STDOUT)
        self._wait_up()

    def _wait_up(self) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.label} exited ({self.process.returncode}); see {self.log_path}")
            try:
                if httpx.get(self.base + "/v1/models", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"{self.label} did not come up; see {self.log_path}")

    def memory(self, field: str) -> int:
        """A byte count from /proc/PID/status: VmRSS (now) or VmHWM (the peak so far)."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
        raise RuntimeError(f"no {field} for {self.label}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.stop()


def stream(server: Server, path: str, body: dict, on_chunk=None) -> dict:
    """One streamed request: when it was sent, the arrival time of every chunk with text, the
    text, the completion tokens (usage, else the chunks), the finish reason and the usage."""
    body = dict(body, model=server.model, temperature=0, stream=True,
                stream_options={"include_usage": True})
    sent = time.perf_counter()
    times, pieces, usage, finish = [], [], None, None
    with httpx.stream("POST", server.base + path, json=body, timeout=900) as response:
        if response.status_code != 200:
            response.read()
            raise RuntimeError(f"{server.label} {path}: {response.status_code} {response.text[:300]}")
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                piece = choice.get("text") if "text" in choice else (choice.get("delta") or {}).get("content")
                if piece:
                    times.append(time.perf_counter())
                    pieces.append(piece)
                    if on_chunk:
                        on_chunk(len(times))
                finish = choice.get("finish_reason") or finish
    tokens = usage["completion_tokens"] if usage else len(times)
    return {"sent": sent, "times": times, "text": "".join(pieces), "tokens": tokens, "finish": finish,
            "usage": usage, "end": time.perf_counter()}


def complete(server: Server, prompt: str, max_tokens: int, on_chunk=None) -> dict:
    return stream(server, "/v1/completions", {"prompt": prompt, "max_tokens": max_tokens}, on_chunk)


def concurrently(calls: list) -> list:
    """Runs the calls in threads released together; their results, or the first error raised."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i):
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as error:  # noqa: BLE001 - handed to the caller below
            results[i] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for result in results:
        if isinstance(result, Exception):
            raise result
    return results


def throughput(server: Server, clients: int, tokens: int, numbers) -> dict:
    """Aggregate tokens/s of `clients` concurrent streams: all their tokens over the time from
    the first request sent to the last token received."""
    prompts = [f"Story {next(numbers)}. {STORY}" for _ in range(clients)]
    runs = concurrently([lambda p=p: complete(server, p, tokens) for p in prompts])
    wall = max(r["times"][-1] for r in runs) - min(r["sent"] for r in runs)
    total = sum(r["tokens"] for r in runs)
    return {"tok_s": total / wall, "tokens": total, "wall": wall,
            "short": sum(r["tokens"] < tokens for r in runs)}


def session(server: Server, turns: int, system: str, answer_tokens: int) -> list[dict]:
    """A chat whose every turn resends the whole history plus a new question; per turn the
    prompt tokens, the cached ones (when the server says) and the time to the first token."""
    messages = [{"role": "system", "content": system}]
    rows = []
    for turn in range(turns):
        messages.append({"role": "user", "content": QUESTIONS[turn % len(QUESTIONS)]})
        run = stream(server, "/v1/chat/completions", {"messages": messages, "max_tokens": answer_tokens})
        messages.append({"role": "assistant", "content": run["text"]})
        usage = run["usage"] or {}
        first = run["times"][0] if run["times"] else run["end"]
        rows.append({"prompt": usage.get("prompt_tokens"),
                     "cached": (usage.get("prompt_tokens_details") or {}).get("cached_tokens"),
                     "ttft": first - run["sent"], "tokens": run["tokens"]})
    return rows


def stall(server: Server, stream_tokens: int, arrive_after: int, newcomer_tokens: int, numbers) -> dict:
    """One client streams a long answer; after `arrive_after` chunks a second client sends a
    long prompt (8 tokens asked). The usual gap between the first stream's tokens (the median
    before the arrival) and the longest one after it."""
    arrived = threading.Event()
    newcomer: dict = {}

    def on_chunk(n):
        if n == arrive_after:
            arrived.set()

    def arrive():
        if arrived.wait(timeout=900):
            newcomer["at"] = time.perf_counter()
            newcomer["run"] = complete(server, filler(f"Report {next(numbers)}", newcomer_tokens), 8)

    thread = threading.Thread(target=arrive)
    thread.start()
    try:
        first = complete(server, f"Story {next(numbers)}. {STORY}", stream_tokens, on_chunk)
    finally:
        arrived.set()
        thread.join()
    at, times = newcomer["at"], first["times"]
    gaps = [(b - a, b) for a, b in zip(times, times[1:])]
    before = [gap for gap, end in gaps[1:] if end <= at]
    after = [gap for gap, end in gaps if end > at]
    run = newcomer["run"]
    newcomer_first = run["times"][0] if run["times"] else run["end"]
    usual = statistics.median(before) if before else float("nan")
    longest = max(after) if after else float("nan")
    return {"usual": usual, "longest": longest, "ratio": longest / usual,
            "chunks": len(times), "newcomer_prompt": (run["usage"] or {}).get("prompt_tokens"),
            "newcomer_ttft": newcomer_first - at,
            # The newcomer's prefill overlapped the stream only if the stream outlived it.
            "overlapped": times[-1] > newcomer_first}


def fill(server: Server, prompts: int, tokens: int, numbers) -> dict:
    """Distinct long prompts one after another (one token each), to fill the prefix cache: the
    peak memory after the first (its prefill's working memory included) and after all; then
    the last prompt again, whose cached tokens show that the cache holds prompts at all."""
    texts = [filler(f"Document {next(numbers)}", tokens) for _ in range(prompts)]
    lengths = [complete(server, texts[0], 1)["usage"]["prompt_tokens"]]
    peak_one = server.memory("VmHWM")
    lengths += [complete(server, text, 1)["usage"]["prompt_tokens"] for text in texts[1:]]
    peak = server.memory("VmHWM")
    again = complete(server, texts[-1], 1)["usage"]
    return {"prompt_tokens": lengths, "peak_one": peak_one, "peak": peak,
            "cached_again": (again.get("prompt_tokens_details") or {}).get("cached_tokens")}


def warm_up(server: Server, clients: int, numbers) -> int:
    """Loads the model (a tiny request), then its resident memory; then a short concurrent
    round, so that the first measured round pays no first-time costs."""
    complete(server, f"Hello {next(numbers)}", 2)
    baseline = server.memory("VmRSS")
    concurrently([lambda: complete(server, f"Story {next(numbers)}. {STORY}", 8)] * clients)
    return baseline


def measure(server: Server, sizes: dict, clients: list[int], system: str, numbers) -> dict:
    """Everything for one server: the session first (so that the peak memory after it is the
    session's), then the throughput rounds, then the stall."""
    out = {"baseline": warm_up(server, max(clients), numbers)}
    out["session"] = session(server, sizes["turns"], system, sizes["answer_tokens"])
    out["peak_session"] = server.memory("VmHWM")
    print(f"  {server.label}: session TTFT " + " ".join(f"{r['ttft']:.2f}" for r in out["session"]), flush=True)
    out["throughput"] = {}
    for n in clients:
        out["throughput"][n] = result = throughput(server, n, sizes["tokens"], numbers)
        print(f"  {server.label}: {n} clients {result['tok_s']:.1f} tok/s", flush=True)
    out["stall"] = stall(server, sizes["stream_tokens"], sizes["arrive_after"], sizes["newcomer_tokens"], numbers)
    print(f"  {server.label}: stall usual {out['stall']['usual'] * 1000:.0f} ms, "
          f"longest {out['stall']['longest'] * 1000:.0f} ms", flush=True)
    out["peak"] = server.memory("VmHWM")
    return out


def ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "n/a"


def mean_later_ttft(result) -> float | None:
    """Mean time to first token of turns 2.. (turn 1 has nothing cached anywhere)."""
    if not result:
        return None
    rows = result["session"][1:] or result["session"]
    return statistics.mean(r["ttft"] for r in rows)


def mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def main() -> None:
    parser = argparse.ArgumentParser()
    for flag in ("--ours", "--before", "--python", "--model", "--snapshot"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--servers", default="ours before mlx_lm")
    parser.add_argument("--quick", action="store_true")
    for name in FULL:
        parser.add_argument("--" + name.replace("_", "-"), type=type(FULL[name]))
    args = parser.parse_args()
    sizes = {name: getattr(args, name) if getattr(args, name) is not None else default
             for name, default in (QUICK if args.quick else FULL).items()}
    clients = [int(n) for n in sizes["clients"].split()]
    servers = args.servers.split()
    system = PARAGRAPH * max(1, sizes["system_tokens"] // PARAGRAPH_TOKENS)
    cap_text = sizes["fill_cap"]
    cap = int(cap_text[:-3]) * SIZE_UNITS[cap_text[-3:]]
    weights = sum(os.path.getsize(os.path.join(args.snapshot, f))
                  for f in os.listdir(args.snapshot) if f.endswith(".safetensors"))
    numbers = count(1)
    logdir = tempfile.mkdtemp(prefix="batch-bench-")
    print(f"model {args.model} ({mb(weights)} of weights), greedy; sizes {sizes}; server logs in {logdir}",
          flush=True)

    ours_cmd = [args.ours, "serve", "--keep-alive", "0"]
    argv = {"ours": ours_cmd, "before": [args.before, "serve", "--keep-alive", "0"],
            "mlx_lm": [args.python, "-m", "mlx_lm", "server", "--model", args.snapshot]}
    results: dict = {}
    for label in servers:
        name = args.snapshot if label == "mlx_lm" else args.model
        print(f"{label}: {' '.join(argv[label])}", flush=True)
        with Server(label, argv[label], name, logdir) as server:
            results[label] = measure(server, sizes, clients, system, numbers)
        if label == "ours":
            print("ours-cache-off: the session with --prompt-cache-size 0", flush=True)
            with Server("ours-cache-off", ours_cmd + ["--prompt-cache-size", "0"], name, logdir) as server:
                complete(server, f"Hello {next(numbers)}", 2)
                results["ours-cache-off"] = {"session": session(server, sizes["turns"], system,
                                                                sizes["answer_tokens"])}
            print(f"ours-fill: {sizes['fill_prompts']} prompts of ~{sizes['fill_tokens']} tokens, "
                  f"--prompt-cache-size {cap_text}", flush=True)
            with Server("ours-fill", ours_cmd + ["--prompt-cache-size", cap_text], name, logdir) as server:
                complete(server, f"Hello {next(numbers)}", 2)
                baseline = server.memory("VmRSS")
                results["ours-fill"] = dict(fill(server, sizes["fill_prompts"], sizes["fill_tokens"], numbers),
                                            baseline=baseline)

    report(results, servers, clients, sizes, cap, cap_text, weights)


def report(results: dict, servers: list[str], clients: list[int], sizes: dict, cap: int,
           cap_text: str, weights: int) -> None:
    ours, before, theirs = results.get("ours"), results.get("before"), results.get("mlx_lm")
    main_servers = [s for s in ("ours", "before", "mlx_lm") if s in results]

    def tok_s(result, n):
        return result["throughput"][n]["tok_s"] if result and n in result["throughput"] else None

    print(f"\n1. aggregate tokens/s, {sizes['tokens']} tokens a stream (short: streams that ended early)")
    print(f"{'clients':>7} " + " ".join(f"{s:>16}" for s in main_servers))
    for n in clients:
        cells = [f"{results[s]['throughput'][n]['tok_s']:>9.1f} (short {results[s]['throughput'][n]['short']})"
                 for s in main_servers]
        print(f"{n:>7} " + " ".join(f"{c:>16}" for c in cells))

    print(f"\n2. agent session: system prompt ~{sizes['system_tokens']} tokens, {sizes['turns']} turns, "
          f"answers of at most {sizes['answer_tokens']} tokens; time to first token (s), cached tokens")
    labels = [s for s in ("ours", "ours-cache-off", "before", "mlx_lm") if s in results]
    print(f"{'turn':>4} {'prompt':>7} " + " ".join(f"{s:>20}" for s in labels))
    for turn in range(sizes["turns"]):
        rows = [results[s]["session"][turn] for s in labels]
        cells = [f"{r['ttft']:.3f} ({r['cached'] if r['cached'] is not None else '?'})" for r in rows]
        print(f"{turn + 1:>4} {rows[0]['prompt'] or '?':>7} " + " ".join(f"{c:>20}" for c in cells))
    later = {s: mean_later_ttft(results.get(s)) for s in labels}
    print("mean of turns 2..: " + ", ".join(f"{s} {v:.3f} s" for s, v in later.items()))

    print(f"\n3. a running stream while a ~{sizes['newcomer_tokens']}-token prompt arrives "
          f"(after {sizes['arrive_after']} of {sizes['stream_tokens']} tokens)")
    print(f"{'server':<8} {'usual ms':>9} {'longest ms':>11} {'ratio':>7} {'newcomer prompt':>16} "
          f"{'its TTFT s':>11} overlapped")
    for s in main_servers:
        st = results[s]["stall"]
        print(f"{s:<8} {st['usual'] * 1000:>9.1f} {st['longest'] * 1000:>11.1f} {st['ratio']:>6.1f}x "
              f"{st['newcomer_prompt'] or '?':>16} {st['newcomer_ttft']:>11.2f} "
              f"{'yes' if st['overlapped'] else 'NO: the stream ended first'}")

    fill_result = results.get("ours-fill")
    print("\n4. memory (peak = VmHWM; baseline = VmRSS after the model's first tiny request)")
    for s in main_servers:
        r = results[s]
        print(f"{s:<8} baseline {mb(r['baseline'])}, peak after the session {mb(r['peak_session'])}, "
              f"peak after everything {mb(r['peak'])}")
    fill_ok = growth_ok = None
    if fill_result:
        bound = cap + weights + fill_result["baseline"]
        fill_ok = fill_result["peak"] <= bound
        growth = fill_result["peak"] - fill_result["peak_one"]
        growth_ok = growth <= cap
        print(f"ours, prefix cache {cap_text} filled by {len(fill_result['prompt_tokens'])} prompts of "
              f"{statistics.mean(fill_result['prompt_tokens']):.0f} tokens: baseline {mb(fill_result['baseline'])}, "
              f"peak after the first prompt {mb(fill_result['peak_one'])}, after all {mb(fill_result['peak'])}")
        print(f"  the last prompt sent again: {fill_result['cached_again']} of {fill_result['prompt_tokens'][-1]} "
              f"tokens cached{'' if fill_result['cached_again'] else ' (NOTHING: is the cap smaller than one prompt?)'}")
        print(f"  peak <= cap {mb(cap)} + weights on disk {mb(weights)} + baseline = {mb(bound)}: "
              f"{'yes' if fill_ok else 'NO'}")
        print(f"  growth after the first prompt {mb(growth)} <= cap: {'yes' if growth_ok else 'NO'} "
              f"(the first prompt's peak holds the prefill's working memory, which later prompts reuse)")

    # The summary, as a Markdown table for a closing note.
    rows = []
    if ours and 1 in ours["throughput"]:
        for n in clients[1:]:
            rows.append((f"ours aggregate tok/s, {n} clients / 1 client",
                         ratio(tok_s(ours, n), tok_s(ours, 1)), ">= 2x" if n == 4 else ""))
    for n in clients:
        rows.append((f"ours / mlx_lm aggregate tok/s, {n} client(s)", ratio(tok_s(ours, n), tok_s(theirs, n)),
                     ">= 1.5x" if n >= 4 else ""))
    for n in clients:
        rows.append((f"ours / before aggregate tok/s, {n} client(s)", ratio(tok_s(ours, n), tok_s(before, n)), ""))
    rows.append(("session TTFT turns 2.., ours / ours cache off",
                 ratio(later.get("ours"), later.get("ours-cache-off")), "<= 0.2x"))
    rows.append(("session TTFT turns 2.., ours / mlx_lm", ratio(later.get("ours"), later.get("mlx_lm")), "<= 1x"))
    rows.append(("session TTFT turns 2.., ours / before", ratio(later.get("ours"), later.get("before")), ""))
    for s in main_servers:
        st = results[s]["stall"]
        rows.append((f"longest / usual token gap while a prompt arrives, {s}", f"{st['ratio']:.1f}x",
                     "<= 3x" if s == "ours" else ""))
    if ours:
        rows.append(("ours peak RSS after the session", mb(ours["peak_session"]), ""))
    if fill_result:
        rows.append((f"ours peak RSS, prefix cache {cap_text} filled", mb(fill_result["peak"]),
                     f"<= cap + weights + baseline = {mb(cap + weights + fill_result['baseline'])}: "
                     f"{'yes' if fill_ok else 'NO'}"))
        rows.append(("ours peak RSS growth from the first fill prompt to the last",
                     mb(fill_result["peak"] - fill_result["peak_one"]),
                     f"<= cap {mb(cap)}: {'yes' if growth_ok else 'NO'}"))
    print(f"\nsummary ({', '.join(servers)}; {os.cpu_count()} CPUs)\n")
    print("| figure | value | goal |")
    print("|---|---|---|")
    for figure, value, goal in rows:
        print(f"| {figure} | {value} | {goal} |")


if __name__ == "__main__":
    # A SIGTERM (the shell script's cleanup) unwinds, so that every server started is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
