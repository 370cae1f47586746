"""Several models in memory through the real `mlxk serve`: requests for Qwen and SmolLM2
alternate without reloading either (the server's log shows no load between them), and both
are listed in memory by Ollama's `/api/ps` and marked loaded by `/v1/models`. Eviction under
the count and the memory budget, waiting for a place and per-model keep-alive are tested on
the stand-in engine (crates/mlxk-server/tests/http/residency.rs)."""

import re

import httpx

from conftest import QWEN, SMOL


def loads_of(model_server, model: str) -> int:
    """How many times the server's log says `model` was loaded."""
    return len(re.findall(rf"model loaded.*model={re.escape(model)}\b", model_server.stderr()))


def ask(model_server, model: str, content: str) -> str:
    answer = model_server.client().chat.completions.create(
        model=model, messages=[{"role": "user", "content": content}], max_tokens=8, temperature=0)
    assert answer.model == model
    return answer.choices[0].message.content


def test_two_models_alternate_without_reloading(model_server):
    # Both in memory first (either may have been let go by an earlier test).
    first = {model: ask(model_server, model, "Say hello.") for model in (QWEN, SMOL)}
    loads = {model: loads_of(model_server, model) for model in (QWEN, SMOL)}
    assert all(count >= 1 for count in loads.values()), model_server.stderr()[-2000:]

    for model in (QWEN, SMOL, QWEN, SMOL):
        # Greedy: the same question gives the same answer on each turn.
        assert ask(model_server, model, "Say hello.") == first[model]
    assert {model: loads_of(model_server, model) for model in (QWEN, SMOL)} == loads

    ps = httpx.get(model_server.base + "/api/ps", timeout=30).json()
    names = [m["name"] for m in ps["models"]]
    assert QWEN in names and SMOL in names, ps
    for model in ps["models"]:
        assert model["size"] > 0 and model["loaded_at"], model
    listed = httpx.get(model_server.base + "/v1/models", timeout=60).json()["data"]
    loaded = {m["id"] for m in listed if m["loaded"]}
    assert {QWEN, SMOL} <= loaded, loaded
