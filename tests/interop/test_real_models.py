"""The real models scripts/setup.sh converts from PyPI packages into the test cache
(target/test-models-hf-home): Qwen2.5-Coder-0.5B-Instruct (qwen2) and Gemma 3 270M (gemma3).

One tensor of each (GGUF type, shape, role) of each model equals gguf-py's dequantization of the
GGUF tensor bit for bit (every type the files hold is proven; every tensor of every type is proven
on small files in test_gguf_convert.py, and converted by the same code), the tokenizers equal
transformers' own GGUF conversion on sample text, and `mlxk health --deep` passes. (mlx-lm's
greedy tokens against our engine's: crates/mlxk-engine/tests/engine/parity_real.rs.)
"""

import os
import struct
from pathlib import Path
from typing import NamedTuple

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


class TensorInfo(NamedTuple):
    name: str
    shape: tuple[int, ...]  # rows first, as numpy holds it
    kind: "gguf.GGMLQuantizationType"
    data: np.ndarray  # the tensor's bytes, one row of blocks per row


# Byte sizes of GGUF metadata value types (8: string, 9: array).
SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def gguf_tensor_directory(path: Path) -> list[TensorInfo]:
    """The tensors of a GGUF file, read from its header (gguf-py's GGUFReader takes ~14 s on
    Gemma's 262k-token vocabulary; the values still come from gguf.quants.dequantize)."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    pos = 0

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from("<" + fmt, raw, pos)
        pos += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    def string() -> str:
        nonlocal pos
        n = take("Q")
        pos += n
        return bytes(raw[pos - n:pos]).decode()

    def skip_value(kind: int) -> None:
        nonlocal pos
        if kind == 8:
            n = take("Q")
            pos += n
        elif kind == 9:
            item, count = take("IQ")
            if item in SCALAR_SIZES:
                pos += SCALAR_SIZES[item] * count
            else:
                for _ in range(count):
                    skip_value(item)
        else:
            pos += SCALAR_SIZES[kind]

    magic, _version, n_tensors, n_kv = take("4sIQQ")
    assert magic == b"GGUF", path
    alignment = 32
    for _ in range(n_kv):
        key, kind = string(), take("I")
        if key == "general.alignment":
            alignment = take("I")
        else:
            skip_value(kind)
    infos = []
    for _ in range(n_tensors):
        name = string()
        dims = take("I")
        shape = tuple(reversed(take(f"{dims}Q"))) if dims > 1 else (take("Q"),)
        kind, offset = take("IQ")
        infos.append((name, shape, gguf.GGMLQuantizationType(kind), offset))
    data_start = -(-pos // alignment) * alignment
    tensors = []
    for name, shape, kind, offset in infos:
        block_values, block_bytes = gguf.GGML_QUANT_SIZES[kind]
        row_bytes = shape[-1] // block_values * block_bytes
        rows = int(np.prod(shape[:-1], dtype=np.int64))
        start = data_start + offset
        data = raw[start:start + rows * row_bytes].reshape(rows, row_bytes)
        tensors.append(TensorInfo(name, shape, kind, data))
    return tensors


def one_of_each_kind(gguf_path: Path) -> list[TensorInfo]:
    """The smallest tensor of each (type, number of dimensions, role)."""
    picked = {}
    for t in gguf_tensor_directory(gguf_path):
        kind = (t.kind, len(t.shape), role(t.name))
        size = int(np.prod(t.shape))
        if kind not in picked or size < int(np.prod(picked[kind].shape)):
            picked[kind] = t
    return list(picked.values())


@pytest.mark.parametrize("architecture", MODELS)
def test_one_tensor_of_each_kind_equals_the_gguf_reference(architecture):
    folder, gguf_path = installed(architecture)
    picked = one_of_each_kind(gguf_path)
    types = {t.kind.name for t in picked}
    assert {"Q4_K", "Q6_K"} <= types, types
    for t in picked:
        values = quants.dequantize(t.data, t.kind).astype(np.float32).reshape(t.shape)
        ours, _ = mlx_values(folder, mlx_name(t.name, architecture))
        expected = expected_mlx_values(t.name, values, architecture)
        assert ours.shape == expected.shape, (t.name, ours.shape, expected.shape)
        assert np.array_equal(ours, expected), (
            f"{t.name} ({t.kind.name}): worst difference {np.abs(ours - expected).max()}")


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
