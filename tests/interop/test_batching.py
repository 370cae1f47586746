"""The batched engine through the real `mlxk serve`: eight clients with different prompts and
answer lengths, in flight together (half of them streaming), each get exactly the greedy answer
`mlxk run --temperature 0` gives that prompt alone. Batch parity at the engine level (every
architecture, mlx-lm's tokens, seeded rows, chunked prefill) is in
crates/mlxk-engine/tests/engine/batch.rs."""

import time
from concurrent.futures import ThreadPoolExecutor

from conftest import SMOL

# Different lengths of prompt and of answer, so rows join and leave the batch at different steps.
QUESTIONS = [
    ("Hi.", 8),
    ("What is the capital of France?", 24),
    ("Name three colours.", 12),
    ("Write one sentence about the sea, the wind and the boats that sail between the islands.", 32),
    ("What is two plus two?", 10),
    ("Describe a cat in a few words.", 16),
    ("Give me a short list of fruits that are red, and say which one is the sweetest.", 28),
    ("Say hello in French.", 6),
]


def ask(model_server, index: int) -> dict:
    question, max_tokens = QUESTIONS[index]
    client = model_server.client()
    messages = [{"role": "user", "content": question}]
    sent = time.monotonic()
    if index % 2:
        chunks = client.chat.completions.create(
            model=SMOL, messages=messages, temperature=0, max_tokens=max_tokens, stream=True,
            stream_options={"include_usage": True})
        text, tokens = "", None
        for chunk in chunks:
            if chunk.choices and chunk.choices[0].delta.content:
                text += chunk.choices[0].delta.content
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
    else:
        reply = client.chat.completions.create(
            model=SMOL, messages=messages, temperature=0, max_tokens=max_tokens)
        text, tokens = reply.choices[0].message.content, reply.usage.completion_tokens
    return {"text": text, "tokens": tokens, "sent": sent, "done": time.monotonic()}


def test_eight_clients_together_get_each_their_answer_alone(model_server):
    ask(model_server, 0)  # the model in memory before the clients start together
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        answers = list(pool.map(lambda i: ask(model_server, i), range(len(QUESTIONS))))
    # All were in flight at once: the last was sent before the first was answered.
    assert max(a["sent"] for a in answers) < min(a["done"] for a in answers), answers

    for (question, max_tokens), answer in zip(QUESTIONS, answers):
        alone = model_server.cache.mlxk("run", SMOL, question, "--temperature", "0",
                                        "--max-tokens", str(max_tokens))["data"]
        assert answer["text"] == alone["response"], question
        assert answer["tokens"] == alone["tokens_generated"], question
