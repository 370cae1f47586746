"""The real models scripts/setup.sh converts from PyPI packages into the test cache
(target/test-models-hf-home): Qwen2.5-Coder-0.5B-Instruct (qwen2) and Gemma 3 270M (gemma3).

One tensor of each (GGUF type, shape, role) of each model equals gguf-py's dequantization of the
GGUF tensor bit for bit (every type the files hold is proven; every tensor of every type is proven
on small files in test_gguf_convert.py, and converted by the same code), the tokenizers equal
transformers' own GGUF conversion on sample text, and `mlxk health --deep` passes. (mlx-lm's
greedy tokens against our engine's: crates/mlxk-engine/tests/engine/parity_real.rs.)
"""

import os
from pathlib import Path

import pytest

import numpy as np

from conftest import ROOT, FixtureCache
from test_gguf_convert import expected_mlx_values, gguf, mlx_name, mlx_values, quants, transformers_gguf_tokenizer

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
HOME = TARGET / "test-models-hf-home"
MODELS = {
    "qwen2": ("mlxk-test/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M-mlx", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"),
    "gemma3": ("mlxk-test/gemma-3-270m-Q4_K_M-mlx", "gemma-3-270m-q4_k_m.gguf"),
}
TEXTS = [
    "Hello, world! The capital of France is Paris.",
    "def add(a, b):\n    return a + b\n\n\n# 12345 numbers  and   spaces\t tab",
    "Ünïcödé — 日本語のテキスト, emoji 🙂 and <tool_call> tags",
    "<start_of_turn>user\nHi<end_of_turn>\n<|im_start|>assistant\n",
]


def installed(architecture: str) -> tuple[Path, Path]:
    name, gguf_file = MODELS[architecture]
    repo = HOME / "hub" / f"models--{name.replace('/', '--')}"
    gguf_path = ROOT / ".cache" / "real-models" / gguf_file
    assert (repo / "refs" / "main").is_file() and gguf_path.is_file(), "run ./scripts/setup.sh"
    commit = (repo / "refs" / "main").read_text().strip()
    return repo / "snapshots" / commit, gguf_path


def role(name: str) -> str:
    """What the converter does to a tensor beyond re-packing: norms (Gemma's `1 + w`), Q/K rows
    (llama's permutation), the rest."""
    if name.endswith("norm.weight"):
        return "norm"
    if name.endswith(("attn_q.weight", "attn_k.weight")):
        return "qk"
    return "other"


def one_of_each_kind(gguf_path: Path) -> list:
    """The smallest tensor of each (type, number of dimensions, role)."""
    picked = {}
    for t in gguf.GGUFReader(str(gguf_path)).tensors:
        kind = (t.tensor_type, len(t.shape), role(t.name))
        if kind not in picked or t.n_elements < picked[kind].n_elements:
            picked[kind] = t
    return list(picked.values())


@pytest.mark.parametrize("architecture", MODELS)
def test_one_tensor_of_each_kind_equals_the_gguf_reference(architecture):
    folder, gguf_path = installed(architecture)
    picked = one_of_each_kind(gguf_path)
    types = {t.tensor_type.name for t in picked}
    assert {"Q4_K", "Q6_K"} <= types, types
    for t in picked:
        values = quants.dequantize(t.data, t.tensor_type).astype(np.float32)
        values = values.reshape(tuple(int(d) for d in reversed(t.shape)))
        ours, _ = mlx_values(folder, mlx_name(t.name, architecture))
        expected = expected_mlx_values(t.name, values, architecture)
        assert ours.shape == expected.shape, (t.name, ours.shape, expected.shape)
        assert np.array_equal(ours, expected), (
            f"{t.name} ({t.tensor_type.name}): worst difference {np.abs(ours - expected).max()}")


@pytest.mark.parametrize("architecture", MODELS)
def test_tokenizer_equals_transformers_gguf_conversion(architecture):
    from tokenizers import Tokenizer

    folder, gguf_path = installed(architecture)
    ours = Tokenizer.from_file(str(folder / "tokenizer.json"))
    theirs = transformers_gguf_tokenizer(gguf_path)
    for text in TEXTS:
        assert ours.encode(text, add_special_tokens=False).ids == \
            theirs.encode(text, add_special_tokens=False).ids, text


def test_deep_health_passes():
    cache = FixtureCache(HOME)
    for name, _ in MODELS.values():
        health = cache.mlxk("health", name, "--deep")
        assert health["status"] == "success", health
