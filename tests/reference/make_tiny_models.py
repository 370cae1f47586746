"""Tiny random-weight models for every architecture the engine supports, made by mlx-lm itself,
with mlx-lm's greedy tokens and last-position log-probabilities as the reference.

Usage: make_tiny_models.py OUT_DIR
For each case it writes OUT_DIR/<case>/ (config.json + model.safetensors) and
OUT_DIR/<case>/reference.json: {"prompt": [...], "tokens": [...], "logprobs": [...]}.
"""

import json
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten
from mlx_lm.generate import generate_step
from mlx_lm.sample_utils import make_logits_processors, make_sampler
from mlx_lm.utils import _get_classes

VOCAB = 256
PROMPT = [1, 17, 42, 99, 7, 7, 200, 13, 5, 250, 64, 3]
MAX_TOKENS = 12
# Seeded sampling with every filter and the repetition penalty: our draws must be mlx-lm's.
SAMPLING = {"seed": 42, "temperature": 0.5, "top_p": 0.9, "min_p": 0.0625, "top_k": 20, "repetition_penalty": 1.25}
SAMPLED_CASES = {"llama", "qwen3-4bit", "gemma2", "phi3-4bit"}

BASE = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "intermediate_size": 128,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-5,
    "vocab_size": VOCAB,
    "max_position_embeddings": 512,
    "rope_theta": 10000.0,
}

CASES = {
    "llama": {**BASE, "model_type": "llama", "tie_word_embeddings": False},
    "llama-rope-llama3": {
        **BASE,
        "model_type": "llama",
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 32.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    },
    "mistral": {**BASE, "model_type": "mistral", "tie_word_embeddings": False},
    "qwen2": {**BASE, "model_type": "qwen2", "tie_word_embeddings": True},
    "qwen3": {**BASE, "model_type": "qwen3", "head_dim": 32, "tie_word_embeddings": True},
    "phi3": {**BASE, "model_type": "phi3", "partial_rotary_factor": 0.5},
    "gemma2": {**BASE, "model_type": "gemma2", "head_dim": 16, "query_pre_attn_scalar": 16.0},
    # A window of 8 and every second layer global: the prompt and the decoding both outgrow it.
    "gemma3_text": {
        **BASE,
        "model_type": "gemma3_text",
        "head_dim": 16,
        "query_pre_attn_scalar": 16.0,
        "sliding_window": 8,
        "sliding_window_pattern": 2,
        "rope_local_base_freq": 10000.0,
    },
}


# Extra weight formats, on llama: (suffix, bits, group size, dtype).
VARIANTS = [
    ("-8bit-g64", 8, 64, None),
    ("-3bit-g32", 3, 32, None),
    # GGUF Q5_0/Q5_1/Q5_K convert to 5 bits, g32 (mlxk convert --from-gguf).
    ("-5bit-g32", 5, 32, None),
    ("-bf16", None, None, mx.bfloat16),
    ("-4bit-f16", 4, 32, mx.float16),
    ("-sharded", 4, 32, None),
]


def greedy(model) -> dict:
    """mlx-lm's greedy tokens and its first-step log-probabilities."""
    tokens, first_logprobs = [], None
    for token, logprobs in generate_step(mx.array(PROMPT), model, max_tokens=MAX_TOKENS):
        tokens.append(int(token))
        if first_logprobs is None:
            first_logprobs = logprobs.tolist()
    return {"tokens": tokens, "logprobs": first_logprobs}


def make(case: str, config: dict, quantize, out: Path, suffix: str = "", dtype=None) -> None:
    mx.random.seed(sum(map(ord, case + suffix)) + (7 if quantize else 0))
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    # mlx's init leaves the residual stream dominated by the embedding, so that a tied model
    # just repeats its input; larger projections make the layers matter.
    params = dict(tree_flatten(model.parameters()))
    params = {k: v * 3.0 if k.endswith("proj.weight") else v for k, v in params.items()}
    model.load_weights(list(params.items()))
    config = dict(config)
    if dtype is not None:
        model.set_dtype(dtype)
    if quantize:
        group_size, bits = quantize
        nn.quantize(model, group_size=group_size, bits=bits)
        config["quantization"] = {"group_size": group_size, "bits": bits}
    mx.eval(model.parameters())
    folder = out / (case + (suffix or ("-4bit" if quantize else "")))
    folder.mkdir(parents=True, exist_ok=True)
    weights = dict(tree_flatten(model.parameters()))
    if suffix == "-sharded":
        # Two shards and an index, as large models are published.
        names = sorted(weights)
        shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
        for file, keys in shards.items():
            mx.save_safetensors(str(folder / file), {k: weights[k] for k in keys})
        index = {"metadata": {}, "weight_map": {k: f for f, keys in shards.items() for k in keys}}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    else:
        mx.save_safetensors(str(folder / "model.safetensors"), weights)
    (folder / "config.json").write_text(json.dumps(config, indent=2))

    tokens, first_logprobs = greedy(model).values()
    reference = {"prompt": PROMPT, "tokens": tokens, "logprobs": first_logprobs}
    if dtype is not None:
        # What our CPU policy computes: the same weights with every floating parameter
        # (quantization scales and biases included) upcast to float32, run by mlx-lm.
        model.set_dtype(mx.float32)
        reference["float32"] = greedy(model)
        # Back to the stored dtype for the sampled reference below.
        model.set_dtype(dtype)
    if folder.name in SAMPLED_CASES:
        mx.random.seed(SAMPLING["seed"])
        sampler = make_sampler(
            temp=SAMPLING["temperature"], top_p=SAMPLING["top_p"], min_p=SAMPLING["min_p"], top_k=SAMPLING["top_k"]
        )
        processors = make_logits_processors(repetition_penalty=SAMPLING["repetition_penalty"])
        steps = generate_step(mx.array(PROMPT), model, max_tokens=MAX_TOKENS, sampler=sampler, logits_processors=processors)
        reference["sampling"] = SAMPLING
        reference["sampled_tokens"] = [int(token) for token, _ in steps]
    (folder / "reference.json").write_text(json.dumps(reference))


def main() -> None:
    out = Path(sys.argv[1])
    for case, config in CASES.items():
        for quantize in (None, (32, 4)):
            make(case, config, quantize, out)
            print(case, "4-bit" if quantize else "float32")
    for suffix, bits, group_size, dtype in VARIANTS:
        make("llama", CASES["llama"], (group_size, bits) if bits else None, out, suffix, dtype)
        print("llama" + suffix)


if __name__ == "__main__":
    main()
