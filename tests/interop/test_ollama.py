"""Ollama's API on the real `mlxk serve`, driven by the official `ollama` Python client: the
models listed and shown (capabilities, details, model_info), chat and generate whole and
streamed (the streamed text is the whole greedy text), names as `name:latest`, a tool call
whose arguments come as an object that validates, a `format` JSON schema the answer matches,
and errors as `ResponseError`s with Ollama's statuses (an unknown model is a 404).
"""

import json

import jsonschema
import ollama
import pytest

from conftest import ASK, QWEN, SMOL, WEATHER

GREEDY = {"temperature": 0, "num_predict": 24}


@pytest.fixture
def client(model_server) -> ollama.Client:
    return ollama.Client(host=model_server.base, timeout=120)


def test_models_are_listed_and_shown_with_their_capabilities(client):
    listed = {m.model: m for m in client.list().models}
    assert {QWEN, SMOL} <= set(listed), listed
    qwen = listed[QWEN]
    assert qwen.size > 100_000_000 and qwen.modified_at is not None and len(qwen.digest) == 40
    assert (qwen.details.format, qwen.details.family) == ("mlx", "qwen2")
    assert qwen.details.parameter_size.endswith("M"), qwen.details
    assert listed[SMOL].details.family == "llama"

    shown = client.show(QWEN)
    assert {"completion", "tools"} <= set(shown.capabilities), shown.capabilities
    assert "embedding" not in shown.capabilities and "thinking" not in shown.capabilities
    assert shown.modelinfo["general.architecture"] == "qwen2"
    assert shown.modelinfo["qwen2.context_length"] >= 2048
    assert shown.details == qwen.details
    assert f"FROM {QWEN}" in shown.modelfile
    # SmolLM2's template has no tools: the generic format offers them all the same.
    assert {"completion", "tools"} <= set(client.show(SMOL).capabilities)


def test_a_streamed_chat_says_what_the_whole_greedy_answer_says(client):
    messages = [{"role": "user", "content": "Name three colours of the rainbow."}]
    whole = client.chat(model=QWEN, messages=messages, options=GREEDY, stream=False)
    assert whole.message.role == "assistant" and whole.message.content
    assert whole.done and whole.done_reason in ("stop", "length")
    assert 0 < whole.eval_count <= 24 and whole.prompt_eval_count > 5
    assert whole.total_duration >= whole.prompt_eval_duration + whole.eval_duration > 0

    parts = list(client.chat(model=f"{QWEN}:latest", messages=messages, options=GREEDY, stream=True))
    *text, last = parts
    assert all(not p.done for p in text) and last.done
    assert last.done_reason == whole.done_reason and last.eval_count == whole.eval_count
    assert last.model == f"{QWEN}:latest"
    assert "".join(p.message.content for p in parts) == whole.message.content


def test_qwen_calls_the_tool_with_arguments_as_an_object_and_answers_from_its_result(client):
    first = client.chat(model=QWEN, messages=ASK, tools=[WEATHER],
                        options={"temperature": 0, "num_predict": 40})
    (call,) = first.message.tool_calls
    assert call.function.name == "get_weather"
    assert isinstance(call.function.arguments, dict)
    jsonschema.validate(call.function.arguments, WEATHER["function"]["parameters"])
    assert call.function.arguments["city"] == "Paris"
    # The result goes back as Ollama's clients send it: the call as it came, the tool's name.
    # (Asked nothing more, this 0.5B model repeats the call as text: the client asks again.)
    history = ASK + [first.message,
                     {"role": "tool", "tool_name": "get_weather",
                      "content": "The temperature in Paris is 31 degrees Celsius."},
                     {"role": "user", "content": "So, how warm is it?"}]
    final = client.chat(model=QWEN, messages=history, options={"temperature": 0, "num_predict": 16})
    print("\nQwen over Ollama's API:", call.function.arguments, "->", repr(final.message.content))
    assert "31" in final.message.content and "<tool_call>" not in final.message.content


def test_a_format_schema_is_what_the_answer_matches(client):
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 20},
            "temperature": {"type": "integer", "minimum": -50, "maximum": 60},
        },
        "required": ["city", "temperature"],
        "additionalProperties": False,
    }
    answer = client.chat(
        model=QWEN, format=schema, options={"temperature": 0, "num_predict": 24},
        messages=[{"role": "user", "content": "Give the weather in Rome as JSON."}])
    jsonschema.validate(json.loads(answer.message.content), schema)


def test_errors_are_response_errors_with_ollamas_statuses(client):
    with pytest.raises(ollama.ResponseError) as missing:
        client.chat(model="nobody/no-such-model", messages=ASK)
    assert missing.value.status_code == 404 and "cannot pull" in missing.value.error
    with pytest.raises(ollama.ResponseError) as streamed:
        list(client.chat(model="nobody/no-such-model", messages=ASK, stream=True))
    assert streamed.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as shown:
        client.show("nobody/no-such-model")
    assert shown.value.status_code == 404
    with pytest.raises(ollama.ResponseError) as hot:
        client.chat(model=QWEN, messages=ASK, options={"temperature": 5})
    assert hot.value.status_code == 400 and "options.temperature" in hot.value.error
    with pytest.raises(ollama.ResponseError) as suffix:
        client.generate(model=QWEN, prompt="def f(", suffix="return 1")
    assert suffix.value.status_code == 400 and "'suffix'" in suffix.value.error


def test_generate_answers_a_prompt_whole_streamed_and_as_json(client):
    prompt = "Write one short sentence about the sea."
    whole = client.generate(model=SMOL, prompt=prompt, system="Answer briefly.", options=GREEDY)
    assert whole.response and whole.done and 0 < whole.eval_count <= 24
    streamed = list(client.generate(model=SMOL, prompt=prompt, system="Answer briefly.",
                                    options=GREEDY, stream=True))
    assert "".join(p.response for p in streamed) == whole.response
    assert streamed[-1].done and streamed[-1].eval_count == whole.eval_count
    # num_predict bounds the answer: done_reason says so.
    short = client.generate(model=SMOL, prompt=prompt, options={"temperature": 0, "num_predict": 3})
    assert (short.done_reason, short.eval_count) == ("length", 3)
    anything = client.generate(model=SMOL, prompt="A JSON object about a cat.", format="json",
                               options={"temperature": 0, "num_predict": 24})
    assert anything.response.lstrip().startswith("{"), anything.response
