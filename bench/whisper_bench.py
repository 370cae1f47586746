"""Benchmark (not a test): `mlxk run MODEL --audio CLIP` against mlx-whisper 0.4.3 in process
(same MLX), side by side in one run, on one clip (bench60.wav: exactly 60 s of 16 kHz speech):

- mlx-whisper, each variant in a fresh Python process: the first `transcribe` call (which loads
  the model) and a second, warm call on the same clip. Variants: its default (fp16=True: float16
  activations, and the float16 weights as stored), fp16=False (float32 activations; the stored
  float16 weights stay float16, as `load_model` never casts them), and "f32 params" (every
  parameter cast to float32, as the parity test runs it: the engine's own arithmetic).
- mlxk: `mlxk run MODEL --audio CLIP --json --verbose` as a whole process (load included), run
  twice (the second with the files in the page cache), and the engine's own transcription time
  (`stats.transcription_time_s` of its JSON); its --verbose lines are printed as they come.
- Both sides decode with their defaults (temperature fallback included); the transcripts' word
  error rate against each other is printed, so it shows when the two did different work.

Prints the real-time factor (RTF = wall seconds / audio seconds; below 1 is faster than real
time) of every row and the ratio of each mlx-whisper row to mlxk's.

usage: whisper_bench.py --mlxk BIN --clip WAV --model NAME=SNAPSHOT [--model ...] [--env-home HF_HOME]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import time
import wave
from pathlib import Path

VARIANTS = ["fp16", "fp16=False", "f32 params"]


def read_clip(path: str):
    import numpy as np  # noqa: PLC0415

    with wave.open(path) as w:
        shape = (w.getframerate(), w.getnchannels(), w.getsampwidth())
        assert shape == (16000, 1, 2), f"{path}: {shape}, not 16 kHz mono 16-bit"
        pcm = w.readframes(w.getnframes())
    return np.frombuffer(pcm, np.int16).astype(np.float32) / 32768.0


def child(snapshot: str, clip: str, variant: str) -> None:
    """One mlx-whisper variant in this (fresh) process: prints {first, warm, text} as JSON."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reference"))
    from mlx_whisper_reference import stand_in_word_timestamp_dependencies  # noqa: PLC0415

    stand_in_word_timestamp_dependencies()
    import mlx.core as mx  # noqa: PLC0415
    import mlx_whisper  # noqa: PLC0415
    from mlx.utils import tree_map  # noqa: PLC0415
    from mlx_whisper.load_models import load_model  # noqa: PLC0415
    from mlx_whisper.transcribe import ModelHolder  # noqa: PLC0415

    audio = read_clip(clip)
    fp16 = variant == "fp16"

    def run():
        if variant == "f32 params" and ModelHolder.model is None:
            model = load_model(snapshot, dtype=mx.float32)
            model.update(tree_map(lambda p: p.astype(mx.float32) if p.dtype == mx.float16 else p,
                                  model.parameters()))
            ModelHolder.model, ModelHolder.model_path = model, snapshot
        return mlx_whisper.transcribe(audio, path_or_hf_repo=snapshot, fp16=fp16, verbose=None)

    start = time.perf_counter()
    result = run()
    first = time.perf_counter() - start
    start = time.perf_counter()
    run()
    warm = time.perf_counter() - start
    print(json.dumps({"first": first, "warm": warm, "text": result["text"]}))


def normalise(text: str) -> str:
    text = text.lower().replace("\u2019", "'").replace("'", "")
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def wer(reference: str, hypothesis: str) -> float:
    import jiwer  # noqa: PLC0415

    return jiwer.wer(normalise(reference), normalise(hypothesis)) if normalise(reference) else float("nan")


def mlx_whisper_variant(snapshot: str, clip: str, variant: str) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", snapshot, clip, variant],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"mlx-whisper ({variant}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def mlxk_run(mlxk: str, name: str, clip: str, env: dict) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([mlxk, "run", name, "--audio", clip, "--json", "--verbose"],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        return {"error": (proc.stderr or proc.stdout).strip()[-500:]}
    data = json.loads(proc.stdout)["data"]
    stats = {key: value for key, value in (data.get("stats") or {}).items()
             if isinstance(value, (int, float))}
    verbose = [line for line in proc.stderr.splitlines() if line.strip()][-4:]
    return {"wall": wall, "text": data.get("text", ""), "stats": stats, "verbose": verbose}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--mlxk", required=True)
    parser.add_argument("--clip", required=True)
    parser.add_argument("--model", action="append", required=True, help="NAME=SNAPSHOT")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"mlx-whisper variants to run, comma-separated (default: {','.join(VARIANTS)})")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = set(variants) - set(VARIANTS)
    if unknown or not variants:
        parser.error(f"--variants: choose from {VARIANTS}")
    seconds = len(read_clip(args.clip)) / 16000
    print(f"clip: {args.clip} ({seconds:.2f} s); RTF = wall seconds / {seconds:.2f}")
    env = dict(os.environ)
    for spec in args.model:
        name, snapshot = spec.split("=", 1)
        print(f"\n== {name}")
        rows = []
        ours = [mlxk_run(args.mlxk, name, args.clip, env) for _ in range(2)]
        for label, run in zip(["mlxk run (first)", "mlxk run (again)"], ours):
            if "error" in run:
                print(f"{label}: failed: {run['error']}")
                continue
            print(f"{label}: {run['wall']:.2f} s wall, RTF {run['wall'] / seconds:.3f}; "
                  f"its stats {run['stats'] or '-'}")
            for line in run["verbose"]:
                print(f"    {line}")
        reference_text = None
        for variant in variants:
            result = mlx_whisper_variant(snapshot, args.clip, variant)
            reference_text = reference_text or result["text"]
            rows.append((f"mlx-whisper {variant} (first, with load)", result["first"]))
            rows.append((f"mlx-whisper {variant} (warm)", result["warm"]))
            print(f"mlx-whisper {variant}: first {result['first']:.2f} s (RTF {result['first'] / seconds:.3f}), "
                  f"warm {result['warm']:.2f} s (RTF {result['warm'] / seconds:.3f})")
        ok = [run for run in ours if "error" not in run]
        if ok:
            best = min(run["wall"] for run in ok)
            engine = min((run["stats"].get("transcription_time_s", float("nan")) for run in ok))
            print(f"\n{name}: RTF of each, and mlx-whisper's time / mlxk's (>1: mlxk is faster)")
            print(f"  {'mlxk run, whole process (load included)':45s} {best:7.2f} s  RTF {best / seconds:.3f}")
            print(f"  {'mlxk run, transcription_time_s (engine)':45s} {engine:7.2f} s  RTF {engine / seconds:.3f}")
            print(f"  {'':45s}{'':21s}  {'vs process':>10s}  {'vs engine':>9s}")
            for label, wall in rows:
                print(f"  {label:45s} {wall:7.2f} s  RTF {wall / seconds:.3f}  "
                      f"{wall / best:10.2f}  {wall / engine:9.2f}")
            print(f"  transcripts: WER of mlxk against mlx-whisper ({variants[0]}): "
                  f"{wer(reference_text, ok[-1]['text']):.3f}")


if __name__ == "__main__":
    main()
