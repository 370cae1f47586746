"""The prefix cache through the real `mlxk serve` on Qwen: a conversation's next turn reuses the
keys and values of the turn before (its prompt and answer), which the usage reports as cached
prompt tokens, in OpenAI's and Anthropic's shapes; and the reused tokens change no answer (the
same request answered from a cache cut at another place gives the same greedy text).
Exactness against cold runs, sliding windows included, is tested on tiny models in the engine's
tests (crates/mlxk-engine/tests/engine/prefix_cache.rs)."""

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import QWEN

SYSTEM = ("You are a terse assistant for a hardware shop. You answer in one short sentence, "
          "you never invent prices, and you name the aisle when you know it.")
FIRST = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Where are the hammers?"}]


def chat(model_server, messages):
    answer = model_server.client().chat.completions.create(
        model=QWEN, messages=messages, max_tokens=12, temperature=0)
    return answer.choices[0].message.content, answer.usage


def prefix_metrics(model_server) -> dict:
    text = httpx.get(model_server.base + "/metrics", timeout=30).text
    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name.startswith("mlxk_prefix_cache")}


def test_the_next_turn_reuses_the_last_and_reports_it(model_server):
    before = prefix_metrics(model_server)
    text, first = chat(model_server, FIRST)
    second_turn = FIRST + [{"role": "assistant", "content": text},
                           {"role": "user", "content": "And the nails?"}]
    again, second = chat(model_server, second_turn)
    cached = second.prompt_tokens_details.cached_tokens
    # At least the whole first prompt came from the cache; never the whole second prompt.
    assert first.prompt_tokens <= cached < second.prompt_tokens, (first, second)

    # The same turn again: now cut at its own last prompt token, a different place; the same
    # greedy answer.
    repeated, third = chat(model_server, second_turn)
    assert third.prompt_tokens_details.cached_tokens == second.prompt_tokens - 1
    assert repeated == again

    # Anthropic's split: the tokens computed and those read from the cache.
    response = httpx.post(model_server.base + "/v1/messages", timeout=120, json={
        "model": QWEN, "max_tokens": 12, "temperature": 0, "system": SYSTEM,
        "messages": second_turn[1:]})
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    assert usage["cache_read_input_tokens"] > 0
    assert usage["input_tokens"] + usage["cache_read_input_tokens"] == second.prompt_tokens

    # The metrics count the hits (three at least: the second turn, its repeat, Anthropic's)
    # and the reused tokens, and the bytes held.
    after = prefix_metrics(model_server)
    assert after["mlxk_prefix_cache_hits_total"] - before["mlxk_prefix_cache_hits_total"] >= 3
    reused = after["mlxk_prefix_cache_reused_tokens_total"] - before["mlxk_prefix_cache_reused_tokens_total"]
    assert reused >= cached + third.prompt_tokens_details.cached_tokens + usage["cache_read_input_tokens"]
    assert after["mlxk_prefix_cache_bytes"] > 0
