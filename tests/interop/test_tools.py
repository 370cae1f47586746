"""Tool calling and structured output through the real `mlxk serve`, driven by the official
`openai` client: Qwen2.5-Coder-0.5B-Instruct (its template's own Hermes format) calls a tool and
answers from its result, streaming and not; `tool_choice` named, required and none are honoured;
SmolLM2 (no tools in its template: the generic format) still makes a valid call when one is
required, enforced by the grammar; `response_format` answers validate with `jsonschema` on both
models; malformed tools, orphan tool results and unsupported schemas are 400s naming the field.
"""

import json

import httpx
import jsonschema
import pytest

from conftest import ASK, QWEN, SMOL, WEATHER

TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Get the current local time in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"]},
    },
}


@pytest.fixture
def server(model_server):
    return model_server


def arguments_of(call) -> dict:
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, next(t for t in (WEATHER, TIME) if t["function"]["name"] == call.function.name)["function"]["parameters"])
    return arguments


def test_models_say_how_they_take_tools(server):
    models = {m["id"]: m for m in httpx.get(server.base + "/v1/models").json()["data"]}
    assert models[QWEN]["tools"] == {"format": "hermes", "native": True}
    assert models[SMOL]["tools"] == {"format": "hermes", "native": False}


def test_qwen_calls_the_tool_and_answers_from_its_result(server):
    client = server.client()
    first = client.chat.completions.create(model=QWEN, messages=ASK, tools=[WEATHER], temperature=0, max_tokens=64)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert not choice.message.content
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "get_weather" and call.id.startswith("call_")
    assert arguments_of(call)["city"] == "Paris"
    messages = ASK + [
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "The temperature in Paris is 31 degrees Celsius."},
    ]
    # With the tool still offered this 0.5B model calls it again (the transcript in the closing
    # note); the client then says "answer now" with tool_choice none, as agents do.
    again = client.chat.completions.create(model=QWEN, messages=messages, tools=[WEATHER], temperature=0, max_tokens=48)
    print("\nQwen, tool still offered:", again.choices[0].finish_reason, again.choices[0].message)
    final = client.chat.completions.create(
        model=QWEN, messages=messages, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=48)
    answer = final.choices[0].message.content
    print("Qwen round trip:", call.function.name, call.function.arguments, "->", repr(answer))
    assert final.choices[0].finish_reason == "stop" and not final.choices[0].message.tool_calls
    assert "31" in answer and "<tool_call>" not in answer, answer


def test_a_streamed_call_arrives_as_openai_deltas(server):
    stream = server.client().chat.completions.create(
        model=QWEN, messages=ASK, tools=[WEATHER], temperature=0, max_tokens=64, stream=True)
    calls, finish = {}, None
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        assert not delta.content, "no markup leaks into content"
        for part in delta.tool_calls or []:
            entry = calls.setdefault(part.index, {"id": None, "name": "", "arguments": ""})
            entry["id"] = part.id or entry["id"]
            if part.function and part.function.name:
                entry["name"] += part.function.name
            if part.function and part.function.arguments:
                entry["arguments"] += part.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0] and calls[0]["name"] == "get_weather" and calls[0]["id"].startswith("call_")
    jsonschema.validate(json.loads(calls[0]["arguments"]), WEATHER["function"]["parameters"])


def test_tool_choice_named_required_and_none_are_honoured(server):
    client = server.client()
    named = client.chat.completions.create(
        model=QWEN, messages=ASK, tools=[WEATHER, TIME], temperature=0, max_tokens=64,
        tool_choice={"type": "function", "function": {"name": "get_time"}})
    assert [c.function.name for c in named.choices[0].message.tool_calls] == ["get_time"]
    arguments_of(named.choices[0].message.tool_calls[0])
    chat = [{"role": "user", "content": "Say hello."}]
    required = client.chat.completions.create(
        model=QWEN, messages=chat, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=64)
    assert required.choices[0].finish_reason == "tool_calls"
    arguments_of(required.choices[0].message.tool_calls[0])
    none = client.chat.completions.create(
        model=QWEN, messages=ASK, tools=[WEATHER], tool_choice="none", temperature=0, max_tokens=24)
    assert not none.choices[0].message.tool_calls and none.choices[0].message.content
    assert "<tool_call>" not in none.choices[0].message.content


def test_strict_tools_leave_the_model_free_to_answer_or_call_validly(server):
    strict = {"type": "function", "function": {**WEATHER["function"], "strict": True}}
    client = server.client()
    called = client.chat.completions.create(model=QWEN, messages=ASK, tools=[strict], temperature=0, max_tokens=64)
    (call,) = called.choices[0].message.tool_calls
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, {**WEATHER["function"]["parameters"], "additionalProperties": False})
    answered = client.chat.completions.create(
        model=QWEN, messages=[{"role": "user", "content": "Write the word hello."}], tools=[strict], temperature=0, max_tokens=16)
    assert answered.choices[0].message.content and not answered.choices[0].message.tool_calls, answered


def test_a_model_without_tools_in_its_template_makes_a_valid_required_call(server):
    reply = server.client().chat.completions.create(
        model=SMOL, messages=ASK, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=160)
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    assert choice.message.tool_calls[0].function.name == "get_weather"
    arguments_of(choice.message.tool_calls[0])


SCHEMAS = [
    ("Name a color.", {"type": "object", "properties": {"color": {"type": "string", "maxLength": 12}}, "required": ["color"], "additionalProperties": False}),
    ("Is water wet?", {"type": "object", "properties": {"answer": {"type": "boolean"}}, "required": ["answer"]}),
    ("Pick a size.", {"type": "object", "properties": {"size": {"enum": ["small", "medium", "large"]}}, "required": ["size"]}),
    ("How many legs has a cat?", {"type": "object", "properties": {"legs": {"type": "integer", "minimum": 0, "maximum": 10}}, "required": ["legs"]}),
    ("Give a city and its country.", {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}, "country": {"type": "string", "maxLength": 20}}, "required": ["city", "country"], "additionalProperties": False}),
    ("List two fruits.", {"type": "object", "properties": {"fruits": {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 2, "maxItems": 2}}, "required": ["fruits"]}),
    ("Describe a person.", {"type": "object", "properties": {"person": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 16}, "age": {"type": "integer", "minimum": 0, "maximum": 120}}, "required": ["name", "age"], "additionalProperties": False}}, "required": ["person"]}),
    ("Rate Python from 1 to 5.", {"type": "object", "properties": {"rating": {"type": "integer", "enum": [1, 2, 3, 4, 5]}}, "required": ["rating"]}),
    ("What is 2 + 2?", {"type": "object", "properties": {"result": {"type": "number"}}, "required": ["result"]}),
    ("Pick a weekday.", {"type": "object", "properties": {"day": {"enum": ["mon", "tue", "wed", "thu", "fri"]}, "reason": {"type": "string", "maxLength": 20}}, "required": ["day"]}),
]


# Ten more: twenty prompts and schemas, on both models.
MORE_SCHEMAS = [
    ("Name a planet.", {"type": "object", "properties": {"planet": {"enum": ["Mercury", "Venus", "Earth", "Mars", "Jupiter"]}}, "required": ["planet"]}),
    ("Give a title and a year.", {"type": "object", "properties": {"title": {"type": "string", "maxLength": 24}, "year": {"type": "integer", "minimum": 1900, "maximum": 2030}}, "required": ["title", "year"]}),
    ("Three numbers.", {"type": "object", "properties": {"numbers": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 99}, "minItems": 3, "maxItems": 3}}, "required": ["numbers"]}),
    ("A point on a map.", {"type": "object", "properties": {"lat": {"type": "number", "minimum": -90, "maximum": 90}, "lon": {"type": "number", "minimum": -180, "maximum": 180}}, "required": ["lat", "lon"]}),
    ("A yes or no with a reason.", {"type": "object", "properties": {"yes": {"type": "boolean"}, "reason": {"type": "string", "maxLength": 30}}, "required": ["yes", "reason"]}),
    ("A book with its author.", {"type": "object", "properties": {"book": {"type": "object", "properties": {"title": {"type": "string", "maxLength": 20}, "author": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}}, "required": ["name"]}}, "required": ["title", "author"]}}, "required": ["book"]}),
    ("Tag this text: hello world.", {"type": "object", "properties": {"tags": {"type": "array", "items": {"enum": ["greeting", "question", "code", "other"]}, "minItems": 1, "maxItems": 2}}, "required": ["tags"]}),
    ("A temperature reading.", {"type": "object", "properties": {"value": {"type": "number"}, "unit": {"enum": ["C", "F", "K"]}}, "required": ["value", "unit"]}),
    ("An HTTP status.", {"type": "object", "properties": {"code": {"type": "integer", "minimum": 100, "maximum": 599}, "ok": {"type": "boolean"}}, "required": ["code", "ok"]}),
    ("A user name.", {"type": "object", "properties": {"user": {"type": "string", "pattern": "^[a-z]{3,10}$"}}, "required": ["user"]}),
]


@pytest.mark.parametrize("model", [SMOL, QWEN])
def test_json_schema_answers_validate(server, model):
    client = server.client()
    for prompt, schema in SCHEMAS + MORE_SCHEMAS:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": prompt + " Answer in JSON."}], temperature=0, max_tokens=96,
            response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}})
        text = reply.choices[0].message.content
        assert reply.choices[0].finish_reason == "stop", (prompt, text)
        jsonschema.validate(json.loads(text), schema)
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Describe Paris in JSON."}], temperature=0, max_tokens=64,
        response_format={"type": "json_object"})
    if reply.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(reply.choices[0].message.content), dict)


def test_mlxk_run_answers_to_a_json_schema(server, tmp_path):
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}, "population": {"type": "integer", "minimum": 0, "maximum": 100000000}},
              "required": ["city", "population"], "additionalProperties": False}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    ran = server.cache.mlxk("run", SMOL, "The biggest city in France, as JSON.", "--json-schema", str(tmp_path / "schema.json"),
                            "--temperature", "0", "--max-tokens", "96")["data"]
    jsonschema.validate(json.loads(ran["response"]), schema)
    ran = server.cache.mlxk("run", SMOL, "Describe Paris.", "--json-object", "--temperature", "0", "--max-tokens", "48")["data"]
    assert ran["response"].lstrip().startswith("{"), ran
    (tmp_path / "broken.json").write_text("[1, 2]")
    refused = server.cache.mlxk("run", SMOL, "x", "--json-schema", str(tmp_path / "broken.json"), expect=2)
    assert "not a JSON Schema object" in refused["error"]["message"]


def bad(server, body: dict) -> tuple[str, str]:
    response = httpx.post(server.base + "/v1/chat/completions", json={"model": SMOL, "messages": ASK, **body}, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    return error["param"], error["message"]


def test_malformed_tools_and_results_are_400s_naming_the_field(server):
    assert bad(server, {"tools": {"type": "function"}})[1].startswith("invalid request body: tools")
    param, message = bad(server, {"tools": [{"type": "function", "function": {"description": "no name"}}]})
    assert "tools" in message and "name" in message
    param, message = bad(server, {"tools": [{"type": "function", "function": {"name": "f", "parameters": "object"}}]})
    assert (param, "tools[0].function.parameters") == ("tools", message.split(" ")[0])
    param, message = bad(server, {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}})
    assert param == "tool_choice" and "nope" in message
    param, message = bad(server, {"messages": ASK + [{"role": "tool", "tool_call_id": "call_x", "content": "21"}]})
    assert param == "messages" and "call_x" in message
    param, message = bad(server, {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}})
    assert param == "response_format"
    remote = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"$ref": "https://example.com/remote.json"}}}}}
    param, message = bad(server, {"response_format": remote})
    assert param == "response_format" and "example.com" in message, message
    # Refused before the stream starts: a 400, not an error inside a 200 stream.
    param, message = bad(server, {"response_format": remote, "stream": True})
    assert param == "response_format"
    unique = {"type": "object", "properties": {"tags": {"type": "array", "uniqueItems": True}}}
    param, message = bad(server, {"tools": [{"type": "function", "function": {"name": "tag", "parameters": unique}}], "tool_choice": "required"})
    assert param == "tools" and "uniqueItems" in message, message
