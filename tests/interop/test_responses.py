"""OpenAI's Responses API through the real `mlxk serve`, driven by the official `openai` client on
Qwen2.5-Coder-0.5B-Instruct: a whole response with usage, the SDK's stream helper (its text is the
greedy whole answer's, its last event the whole response), a streamed function call whose
`function_call` item goes back with a `function_call_output` (the same prompt, and so the same
greedy text, as on chat completions), `text.format` answers that validate, the SDK's `parse` with
a Pydantic model, and errors as the SDK's own exceptions naming the field.
"""

import json

import jsonschema
import openai
import pydantic
import pytest

import conftest
from conftest import ASK, QWEN

# The Responses API's flat function tool.
WEATHER = {"type": "function", **conftest.WEATHER["function"]}
SHORT = "What is the capital of France? Answer with one word."


@pytest.fixture
def client(model_server):
    return model_server.client()


def test_a_response_has_text_and_usage(client):
    response = client.responses.create(
        model=QWEN, instructions="You are terse.", input=SHORT, temperature=0, max_output_tokens=16)
    assert response.id.startswith("resp_") and response.object == "response"
    assert response.status == "completed", response
    assert response.model == QWEN and response.instructions == "You are terse."
    (message,) = response.output
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert "Paris" in response.output_text, response.output_text
    usage = response.usage
    assert usage.input_tokens > 10 and 0 < usage.output_tokens <= 16
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert 0 <= usage.input_tokens_details.cached_tokens < usage.input_tokens


def test_a_stream_gives_the_greedy_text_and_ends_with_the_whole_response(client):
    whole = client.responses.create(model=QWEN, input=SHORT, temperature=0, max_output_tokens=16)
    with client.responses.stream(model=QWEN, input=SHORT, temperature=0, max_output_tokens=16) as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    streamed = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert streamed == whole.output_text and streamed
    assert final.output_text == streamed and final.status == "completed"
    assert final.usage.output_tokens == whole.usage.output_tokens


def test_a_streamed_function_call_round_trip(client):
    with client.responses.stream(
        model=QWEN, input=ASK, tools=[WEATHER], tool_choice="required", temperature=0, max_output_tokens=32,
    ) as stream:
        events = list(stream)
        first = stream.get_final_response()
    calls = [item for item in first.output if item.type == "function_call"]
    assert [c.name for c in calls] == ["get_weather"], first.output
    (call,) = calls
    assert call.id.startswith("fc_") and call.call_id.startswith("call_") and call.status == "completed"
    deltas = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert done.name == "get_weather" and done.arguments == deltas == call.arguments
    arguments = json.loads(call.arguments)
    jsonschema.validate(arguments, {**WEATHER["parameters"], "additionalProperties": False})
    assert arguments["city"] == "Paris"
    # As OpenAI's guide does it: the output items go back into the input, then the result.
    result = "The temperature in Paris is 31 degrees Celsius."
    history = ASK + first.output + [{"type": "function_call_output", "call_id": call.call_id, "output": result}]
    # With the tool still offered this 0.5B model calls it again (as on chat completions); the
    # client then says "answer now" with tool_choice none, as agents do.
    final = client.responses.create(
        model=QWEN, input=history, tools=[WEATHER], tool_choice="none", temperature=0, max_output_tokens=16)
    assert [item.type for item in final.output] == ["message"], final.output
    print("\nQwen round trip:", call.arguments, "->", repr(final.output_text))
    # The same conversation through chat completions reads the same prompt and, greedy, writes
    # the same text: the items became the same messages.
    chat = client.chat.completions.create(
        model=QWEN, temperature=0, max_tokens=16, tool_choice="none",
        tools=[{"type": "function", "function": {k: v for k, v in WEATHER.items() if k != "type"}}],
        messages=ASK + [
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": call.call_id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}]},
            {"role": "tool", "tool_call_id": call.call_id, "content": result},
        ])
    assert final.usage.input_tokens == chat.usage.prompt_tokens
    assert final.output_text == chat.choices[0].message.content and final.output_text


COLOR = {"type": "object", "properties": {"color": {"type": "string", "maxLength": 12}}, "required": ["color"], "additionalProperties": False}


def test_text_format_json_schema_answers_validate(client):
    response = client.responses.create(
        model=QWEN, input="Name a color. Answer in JSON.", temperature=0, max_output_tokens=32,
        text={"format": {"type": "json_schema", "name": "color", "schema": COLOR, "strict": True}})
    assert response.status == "completed", response
    jsonschema.validate(json.loads(response.output_text), COLOR)
    assert response.text.format.type == "json_schema"


class City(pydantic.BaseModel):
    name: str = pydantic.Field(max_length=20)
    country: str = pydantic.Field(max_length=20)


def test_the_sdks_parse_reads_a_pydantic_model(client):
    parsed = client.responses.parse(
        model=QWEN, input="Give the capital city of France and its country.", temperature=0,
        max_output_tokens=32, text_format=City)
    city = parsed.output_parsed
    assert isinstance(city, City) and city.name, parsed.output_text


def test_errors_are_the_sdks_exceptions_naming_the_field(client):
    with pytest.raises(openai.NotFoundError) as missing:
        client.responses.create(model="nobody/no-such-model", input="hi", max_output_tokens=8)
    assert missing.value.body["param"] == "model"
    for field, extra in [
        ("previous_response_id", {"previous_response_id": "resp_123"}),
        ("tools", {"tools": [{"type": "web_search"}]}),
        ("input", {"input": [{"type": "function_call_output", "call_id": "call_9", "output": "21"}]}),
        ("text", {"text": {"format": {"type": "json_schema", "name": "x"}}}),
    ]:
        with pytest.raises(openai.BadRequestError) as refused:
            client.responses.create(**{"model": QWEN, "input": "hi", "max_output_tokens": 8, **extra})
        assert refused.value.body["param"] == field, refused.value.body
    # Refused before a stream starts: an error, not a 200 whose stream fails.
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=QWEN, input="hi", stream=True, background=True)
