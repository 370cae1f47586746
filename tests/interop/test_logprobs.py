"""OpenAI's `logprobs` / `top_logprobs` through the real `mlxk serve`, against mlx-lm on the
same weights: the chosen tokens' log-probabilities and the likeliest alternatives agree within a
stated tolerance (our engine and mlx-lm both run MLX on the CPU, but not the same kernels: the
server may hold the quantized weights dequantized), streamed and whole."""

import json
import subprocess
import sys

import pytest

from conftest import MODEL_SOURCES, QWEN, ROOT

PROMPT = "Name three colors."
TOKENS = 8
TOP = 3
# Log-probabilities (natural log) of the same tokens under the same weights: measured 3.4e-05.
TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def reference() -> dict:
    snapshot = next((MODEL_SOURCES[QWEN] / "snapshots").iterdir())
    out = subprocess.run(
        [sys.executable, str(ROOT / "tests/reference/mlx_lm_greedy.py"), str(snapshot), PROMPT,
         str(TOKENS), "--logprobs", str(TOP)],
        capture_output=True, text=True, timeout=300, check=True,
    )
    return json.loads(out.stdout)


def ask(model_server, **extra):
    return model_server.client().chat.completions.create(
        model=QWEN, messages=[{"role": "user", "content": PROMPT}], max_tokens=TOKENS,
        temperature=0, logprobs=True, top_logprobs=TOP,
        # mlx-lm applies no repetition penalty; Qwen's generation_config.json asks for one.
        extra_body={"repetition_penalty": 1.0}, **extra,
    )


def test_logprobs_match_mlx_lm(model_server, reference):
    answer = ask(model_server)
    content = answer.choices[0].logprobs.content
    expected = reference["logprobs"]
    assert len(content) == len(expected) == answer.usage.completion_tokens
    assert "".join(t.token for t in content) == answer.choices[0].message.content == reference["text"]
    worst = 0.0
    for ours, theirs in zip(content, expected):
        worst = max(worst, abs(ours.logprob - theirs["logprob"]))
        assert len(ours.top_logprobs) == TOP
        # The chosen token is the likeliest (greedy), and the alternatives come in order.
        assert ours.top_logprobs[0].token == ours.token
        values = [t.logprob for t in ours.top_logprobs]
        assert values == sorted(values, reverse=True)
        for alternative, (_, logprob) in zip(ours.top_logprobs, theirs["top"]):
            worst = max(worst, abs(alternative.logprob - logprob))
        assert bytes(ours.bytes) == ours.token.encode()
    print(f"largest log-probability difference from mlx-lm: {worst:.2e} (tolerance {TOLERANCE})")
    assert worst < TOLERANCE


def test_streamed_logprobs_equal_the_whole_answer(model_server):
    whole = ask(model_server).choices[0].logprobs.content
    streamed = [t for chunk in ask(model_server, stream=True)
                if chunk.choices and chunk.choices[0].logprobs
                for t in chunk.choices[0].logprobs.content]
    assert [(t.token, round(t.logprob, 4)) for t in streamed] == [(t.token, round(t.logprob, 4)) for t in whole]
