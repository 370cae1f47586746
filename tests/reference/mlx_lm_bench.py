"""mlx-lm's own numbers for one generation: usage: mlx_lm_bench.py MODEL_DIR PROMPT MAX_TOKENS.

The prompt is used raw (no chat template), so that decoding runs the full MAX_TOKENS.
Prints JSON: prompt tokens, prompt tok/s, time to first token, decode tok/s, peak memory.
"""

import json
import sys
import time

import mlx.core as mx
from mlx_lm import load, stream_generate


def main() -> None:
    model_dir, prompt, max_tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
    model, tokenizer = load(model_dir)
    ids = tokenizer.encode(prompt)
    mx.reset_peak_memory()
    started = time.perf_counter()
    first = None
    last = None
    for response in stream_generate(model, tokenizer, ids, max_tokens=max_tokens):
        if first is None:
            first = time.perf_counter() - started
        last = response
    print(json.dumps({
        "prompt_tokens": last.prompt_tokens,
        "prompt_tokens_per_second": last.prompt_tps,
        "time_to_first_token_s": first,
        "generation_tokens": last.generation_tokens,
        "decode_tokens_per_second": last.generation_tps,
        "peak_memory_bytes": int(mx.get_peak_memory()),
    }))


if __name__ == "__main__":
    main()
