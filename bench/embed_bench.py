"""Benchmark (not a test): `mlxk serve`'s /v1/embeddings against mlx-embeddings' BERT run in
process (tests/reference/embeddings_reference.py: the sentence-transformers pipeline on the
same MLX), side by side in one run, on all-MiniLM-L6-v2 (float32, CPU):

- throughput: N deterministic sentences of 8-20 words in batches of 32 -- ours one request per
  batch (encoding_format float) to a warm server, the reference the same batches in process;
  the two alternate batch by batch, so that drift in the machine's speed hits both;
- latency of one text: median of R requests (after warm-up), alternating the same way;
- cold start: one text through a fresh `mlxk embed` process against a fresh Python process that
  loads the reference (median of 3);
- the cosine agreement of the two on the bench texts.

The reference runs twice: on the system OpenBLAS our binary links (in this process: the same
BLAS, so the ratio is the engines'), and on the reference BLAS the mlx[cpu] wheel bundles
(a child process: what `pip install mlx-embeddings` gives on Linux), unless --no-bundled.

usage: embed_bench.py --mlxk BIN --model NAME --snapshot DIR [--texts N] [--latency R]
"""

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reference"))
import embeddings_reference  # noqa: E402

BATCH = 32
WORDS = ("the a one every some old new small large quiet bright dark early late river city garden "
         "market teacher child doctor engineer farmer painter lighthouse train ship letter book song "
         "storm morning evening winter summer mountain valley harbour bridge window kitchen library "
         "writes reads builds finds carries watches paints repairs sells follows remembers opens "
         "slowly quickly carefully quietly again today tomorrow yesterday near under behind across "
         "and but while because after before with without about through over into from").split()


def sentences(n: int, seed: int = 0) -> list[str]:
    """n different sentences of 8-20 words, the same every run."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(8, 20))]
        out.append(f"{words[0].capitalize()} {' '.join(words[1:])} (#{i}).")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ours:
    def __init__(self, mlxk: str, model: str):
        self.model = model
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([mlxk, "serve", "--port", str(self.port), "--keep-alive", "0"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.http = httpx.Client(timeout=600)
        for _ in range(300):
            try:
                if self.http.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise SystemExit("mlxk serve did not come up")

    def embed(self, texts: list[str]) -> np.ndarray:
        response = self.http.post(self.base + "/v1/embeddings",
                                  json={"model": self.model, "input": texts, "encoding_format": "float"})
        response.raise_for_status()
        data = sorted(response.json()["data"], key=lambda d: d["index"])
        return np.array([d["embedding"] for d in data], dtype=np.float32)

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)


def batches(texts: list[str]):
    return [texts[i:i + BATCH] for i in range(0, len(texts), BATCH)]


def measure(sides: dict, texts: list[str], latency_runs: int) -> dict:
    """Throughput and one-text latency of each side (name -> embed(texts) -> vectors),
    alternating the sides batch by batch and request by request."""
    for embed in sides.values():  # warm-up: loads the model, first-shape costs
        embed(texts[:BATCH])
        embed(texts[:1])
    seconds = {name: 0.0 for name in sides}
    vectors = {name: [] for name in sides}
    for chunk in batches(texts):
        for name, embed in sides.items():
            started = time.perf_counter()
            vectors[name].append(embed(chunk))
            seconds[name] += time.perf_counter() - started
    latency = {name: [] for name in sides}
    for i in range(latency_runs):
        for name, embed in sides.items():
            started = time.perf_counter()
            embed([texts[i]])
            latency[name].append(time.perf_counter() - started)
    return {name: {"texts_per_s": len(texts) / seconds[name],
                   "latency_s": statistics.median(latency[name]),
                   "vectors": np.concatenate(vectors[name])} for name in sides}


def worker(args) -> None:
    """The reference on the mlx wheel's bundled BLAS, in a process of its own."""
    ref = embeddings_reference.load(args.snapshot, openblas=False)
    texts = json.loads(Path(args.worker).read_text())
    result = measure({"reference": lambda t: ref.embed(t, batch_size=BATCH)}, texts, args.latency)["reference"]
    np.save(args.worker + ".npy", result.pop("vectors"))
    print(json.dumps({**result, "blas": ref.blas}))


def cold(command: list[str], env: dict | None = None) -> float:
    runs = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=env)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def agreement(a: np.ndarray, b: np.ndarray) -> str:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    cos = (a64 * b64).sum(1) / (np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1))
    return f"min cosine 1 - {1 - cos.min():.1e}, mean 1 - {1 - cos.mean():.1e}, max abs diff {np.abs(a - b).max():.1e}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mlxk")
    parser.add_argument("--model")
    parser.add_argument("--snapshot", required=True)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--latency", type=int, default=30)
    parser.add_argument("--no-bundled", action="store_true", help="skip the reference on the bundled BLAS")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    texts = sentences(args.texts)
    ref = embeddings_reference.load(args.snapshot)  # before anything imports MLX: OpenBLAS first
    tokens = ref.token_counts(texts)
    ours = Ours(args.mlxk, args.model)
    try:
        results = measure({"mlxk serve": ours.embed, "reference": lambda t: ref.embed(t, batch_size=BATCH)},
                          texts, args.latency)
    finally:
        ours.stop()

    bundled = None
    if not args.no_bundled:
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "texts.json")
            Path(path).write_text(json.dumps(texts))
            out = subprocess.run([sys.executable, __file__, "--snapshot", args.snapshot, "--latency",
                                  str(args.latency), "--worker", path], check=True, capture_output=True, text=True)
            bundled = json.loads(out.stdout.strip().splitlines()[-1])
            bundled["vectors"] = np.load(path + ".npy")

    one = texts[0]
    cold_ours = cold([args.mlxk, "embed", args.model, one])
    cold_ref = cold([sys.executable, embeddings_reference.__file__, args.snapshot, one])

    a, b = results["mlxk serve"], results["reference"]
    print(f"{args.model}: {len(texts)} texts of 8-20 words ({min(tokens)}-{max(tokens)} tokens, "
          f"mean {statistics.mean(tokens):.1f}), batches of {BATCH}; float32 on the CPU")
    print(f"reference: mlx-embeddings' BERT in process, on {ref.blas}")
    heads = ["mlxk serve", "reference", "ratio"] + (["ref, bundled BLAS", "ratio"] if bundled else [])
    print(f"{'figure':<38}" + "".join(f"{h:>19}" for h in heads))

    def row(label, x, y, z, higher_is_better, fmt):
        ratio = (lambda u, v: u / v) if higher_is_better else (lambda u, v: v / u)
        cells = [format(x, fmt), format(y, fmt), f"{ratio(x, y):.2f}x"]
        if z is not None:
            cells += [format(z, fmt), f"{ratio(x, z):.2f}x"]
        print(f"{label:<38}" + "".join(f"{c:>19}" for c in cells))

    row("throughput, texts/s", a["texts_per_s"], b["texts_per_s"], bundled and bundled["texts_per_s"], True, ".1f")
    row(f"latency, one text, ms (median of {args.latency})", a["latency_s"] * 1e3, b["latency_s"] * 1e3,
        bundled and bundled["latency_s"] * 1e3, False, ".1f")
    print(f"{'cold start, one text, s (median of 3)':<38}{cold_ours:>19.2f}{cold_ref:>19.2f}{cold_ref / cold_ours:>18.2f}x"
          "   (`mlxk embed` process vs a Python process loading the reference)")
    print("ratio above 1 = mlxk is faster; ours goes through HTTP + JSON, the reference does not")
    print(f"agreement, mlxk vs reference on the {len(texts)} texts: {agreement(a['vectors'], b['vectors'])}")
    if bundled:
        print(f"agreement, mlxk vs reference on bundled BLAS: {agreement(a['vectors'], bundled['vectors'])}")


if __name__ == "__main__":
    main()
