"""`GET /metrics` of the real `mlxk serve`, read by the Prometheus project's own Python parser:
after one short chat answer by Qwen2.5-Coder-0.5B-Instruct, the generated-token counter grew by
exactly the answer's `completion_tokens`, the prompt-token counter by its `prompt_tokens`, the
request counter and the time-to-first-token histogram by one, and the loaded model's memory is a
gauge. Nothing of the conversation appears in the scrape.
"""

import httpx
from prometheus_client.parser import text_string_to_metric_families

from conftest import QWEN

QUESTION = "Name a colour of the rainbow."


def scrape(base: str) -> tuple[str, dict]:
    """The scrape's text and its samples as {(name, labels as a sorted tuple): value}."""
    response = httpx.get(base + "/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return response.text, samples


def test_a_chat_answer_grows_the_counters_by_its_usage(model_server):
    chat = (("api", "openai_chat"),)
    _, before = scrape(model_server.base)

    client = model_server.client()
    answer = client.chat.completions.create(
        model=QWEN, messages=[{"role": "user", "content": QUESTION}], max_tokens=8, temperature=0,
    )
    text, after = scrape(model_server.base)

    def grew(name: str, labels: tuple = chat) -> float:
        return after.get((name, labels), 0) - before.get((name, labels), 0)

    assert answer.usage.completion_tokens > 0
    assert grew("mlxk_generated_tokens_total") == answer.usage.completion_tokens
    assert grew("mlxk_prompt_tokens_total") == answer.usage.prompt_tokens
    assert grew("mlxk_requests_total", (("api", "openai_chat"), ("status", "200"))) == 1
    assert grew("mlxk_time_to_first_token_seconds_count") == 1
    # A gap between each two text events: at most one fewer than the tokens.
    assert 1 <= grew("mlxk_inter_token_seconds_count") <= answer.usage.completion_tokens - 1
    assert after[("mlxk_model_memory_bytes", (("model", QWEN),))] > 0
    assert after[("mlxk_queue_active", ())] == 0
    assert QUESTION not in text
    assert answer.choices[0].message.content not in text
