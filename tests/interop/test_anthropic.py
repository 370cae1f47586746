"""Anthropic's Messages API through the real `mlxk serve`, driven by the official `anthropic`
SDK on Qwen2.5-Coder-0.5B-Instruct: a whole message's shape and usage, the same request streamed
(the same greedy text), `max_tokens` and a stop sequence as stop reasons, a tool round trip (a
forced call streamed as `input_json_delta` fragments whose input validates, then its
`tool_result` answered in text), `count_tokens` equal to the usage of the same requests, a JSON
schema output format through the SDK's `parse`, and errors as the SDK's exception classes in
Anthropic's shape. Six generations in all: the machine is shared.
"""

import json

import anthropic
import jsonschema
import pydantic
import pytest

from conftest import QWEN

GREEDY = {"temperature": 0}
# Greedy, Qwen counts "1, 2, 3, ..." well past 16 tokens.
COUNTING = {
    "model": QWEN, "max_tokens": 16, "system": "You are terse.", "extra_body": GREEDY,
    "messages": [{"role": "user", "content": "Count from one to ten, as digits separated by commas."}],
}
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]
WEATHER = {
    "name": "get_weather",
    "description": "Get the current weather in a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string", "description": "The city, e.g. Paris", "maxLength": 40}},
        "required": ["city"],
    },
}


def prompt_tokens(usage: anthropic.types.Usage) -> int:
    """The whole prompt: the tokens computed and those the prefix cache held."""
    return usage.input_tokens + usage.cache_read_input_tokens


@pytest.fixture(scope="module")
def client(model_server) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=model_server.base, api_key="unused", max_retries=0, timeout=180)


@pytest.fixture(scope="module")
def counting(client) -> anthropic.types.Message:
    """The whole answer to COUNTING, which several tests compare with."""
    return client.messages.create(**COUNTING)


def test_a_message_has_text_usage_and_stops_at_max_tokens(counting):
    print("\nQwen:", counting)
    assert counting.id.startswith("msg_") and counting.type == "message" and counting.role == "assistant"
    assert counting.model == QWEN
    (block,) = counting.content
    assert block.type == "text" and block.text.startswith("1,")
    assert (counting.stop_reason, counting.stop_sequence) == ("max_tokens", None)
    usage = counting.usage
    # The prefix cache may hold the start of the prompt (an earlier request's system prompt):
    # those tokens are read from it, the rest computed, as Anthropic splits them.
    assert prompt_tokens(usage) > 10 and usage.input_tokens >= 1 and usage.output_tokens == 16
    assert usage.cache_creation_input_tokens == 0


def test_the_stream_says_what_the_whole_message_says(client, counting):
    with client.messages.stream(**COUNTING) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == counting.content[0].text
    assert [b.type for b in final.content] == ["text"] and final.content[0].text == text
    assert (final.stop_reason, prompt_tokens(final.usage), final.usage.output_tokens) == (
        counting.stop_reason, prompt_tokens(counting.usage), counting.usage.output_tokens)
    # The same prompt again: all but its last token came from the prefix cache.
    assert final.usage.cache_read_input_tokens > 0


def test_a_stop_sequence_ends_the_answer_and_is_named(client, counting):
    whole = counting.content[0].text
    stopped = client.messages.create(**COUNTING, stop_sequences=["4"])
    assert (stopped.stop_reason, stopped.stop_sequence) == ("stop_sequence", "4")
    assert stopped.content[0].text == whole[: whole.index("4")]


def test_count_tokens_is_the_usage_of_the_same_request(client, counting):
    counted = client.messages.count_tokens(model=QWEN, system=COUNTING["system"], messages=COUNTING["messages"])
    assert counted.input_tokens == prompt_tokens(counting.usage)


def test_a_forced_tool_call_then_its_result_answered_in_text(client):
    # Streamed: the input arrives as input_json_delta fragments the SDK puts together.
    with client.messages.stream(model=QWEN, max_tokens=32, messages=ASK, tools=[WEATHER],
                                tool_choice={"type": "any"}, extra_body=GREEDY) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use", first
    (call,) = [b for b in first.content if b.type == "tool_use"]
    assert call.id.startswith("toolu_") and call.name == "get_weather"
    jsonschema.validate(call.input, WEATHER["input_schema"])
    assert call.input["city"] == "Paris"
    # The tools count as the model's template renders them.
    counted = client.messages.count_tokens(model=QWEN, messages=ASK, tools=[WEATHER])
    assert counted.input_tokens == prompt_tokens(first.usage)

    messages = ASK + [
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id,
                                      "content": "The temperature in Paris is 31 degrees Celsius."}]},
    ]
    # The client says "answer now" (tool_choice none), as agents do with a small model; this
    # 0.5B model then echoes the call and its result as text before it answers.
    final = client.messages.create(
        model=QWEN, max_tokens=32, messages=messages, tools=[WEATHER], tool_choice={"type": "none"}, extra_body=GREEDY)
    print("\nQwen round trip:", call.input, "->", final.content)
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert [b.type for b in final.content] == ["text"]
    assert "31" in final.content[0].text


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=12)
    age: int


def test_a_json_schema_output_format_is_enforced(client):
    # `parse` sends the model's schema as output_config.format.
    parsed = client.messages.parse(
        model=QWEN, max_tokens=32, extra_body=GREEDY, output_format=Person,
        messages=[{"role": "user", "content": "Invent a person with a name and an age."}])
    text = parsed.content[0].text
    print("\nQwen, structured:", text)
    assert parsed.stop_reason == "end_turn"
    jsonschema.validate(json.loads(text), Person.model_json_schema())
    assert isinstance(parsed.parsed_output, Person)


def test_errors_are_the_sdks_exceptions_in_anthropics_shape(client):
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="claude-sonnet-4-5", max_tokens=8, messages=ASK)
    assert missing.value.body["type"] == "error"
    assert missing.value.body["error"]["type"] == "not_found_error"
    assert "claude-sonnet-4-5" in missing.value.body["error"]["message"]
    cases = [
        ({"tool_choice": {"type": "any"}}, "tool_choice"),
        ({"extra_body": {"temperature": 5}}, "temperature"),
        ({"tools": [{"name": "web_search", "type": "web_search_20250305"}]}, "tools[0].type"),
        ({"output_config": {"format": {"type": "json_schema", "schema": {"$ref": "#/$defs/none"}}}}, "output_config"),
    ]
    for fields, named in cases:
        with pytest.raises(anthropic.BadRequestError) as refused:
            client.messages.create(model=QWEN, max_tokens=8, messages=ASK, **fields)
        assert refused.value.body["error"]["type"] == "invalid_request_error", fields
        assert named in refused.value.body["error"]["message"], refused.value.body
    # A stream is refused the same way, before it starts.
    with pytest.raises(anthropic.BadRequestError):
        with client.messages.stream(model=QWEN, max_tokens=8, messages=ASK, tool_choice={"type": "any"}) as stream:
            stream.get_final_message()
