//! OpenAI's Responses API on the stand-in engine: the response object, the exact event
//! sequences of streams, incomplete answers, and refusals as 400s naming the field.

use super::*;

const PATH: &str = "/v1/responses";

fn request(input: Value) -> Value {
    json!({"model": MODEL, "input": input})
}

fn weather_tool() -> Value {
    json!([{"type": "function", "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}])
}

/// A streamed response's events, read to the end: each SSE `event:` name must be its data's
/// `type`, and the sequence numbers must count from 0.
async fn events(server: &Server, mut body: Value) -> Vec<Value> {
    body["stream"] = json!(true);
    let response = server
        .client
        .post(server.url(PATH))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let mut events = Vec::new();
    let mut name = None;
    for line in text.lines() {
        if let Some(event) = line.strip_prefix("event: ") {
            name = Some(event.to_string());
        } else if let Some(data) = line.strip_prefix("data: ") {
            let data: Value = serde_json::from_str(data).unwrap();
            assert_eq!(name.take().as_deref(), data["type"].as_str(), "{data}");
            assert_eq!(data["sequence_number"], events.len(), "{data}");
            events.push(data);
        }
    }
    events
}

/// The event types in order, each run of one kind of delta counted once: the stand-in's
/// tokenization is not what these tests are about, the order of the events is.
fn kinds(events: &[Value]) -> Vec<&str> {
    let mut kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    kinds.dedup_by(|a, b| a == b && a.ends_with(".delta"));
    kinds
}

/// The concatenated deltas of one kind.
fn deltas(events: &[Value], kind: &str) -> String {
    events
        .iter()
        .filter(|e| e["type"] == kind)
        .map(|e| e["delta"].as_str().unwrap())
        .collect()
}

/// The output items without their ids (made anew by every response).
fn without_ids(output: &Value) -> Value {
    let mut output = output.clone();
    for item in output.as_array_mut().unwrap() {
        item.as_object_mut().unwrap().remove("id");
    }
    output
}

const MESSAGE_EVENTS: [&str; 7] = [
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
];

#[tokio::test]
async fn a_response_has_openais_shape_usage_and_echoes_its_settings() {
    let server = Server::start().await;
    let mut body = request(json!("hello there world"));
    body["instructions"] = json!("Answer briefly.");
    body["metadata"] = json!({"purpose": "test"});
    body["store"] = json!(true);
    let (status, response) = server.post(PATH, body).await;
    assert_eq!(status, 200, "{response}");
    assert!(response["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(response["object"], "response");
    assert!(response["created_at"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(
        (&response["status"], &response["model"]),
        (&json!("completed"), &json!(MODEL))
    );
    assert_eq!(
        (&response["error"], &response["incomplete_details"]),
        (&Value::Null, &Value::Null)
    );
    let output = response["output"].as_array().unwrap();
    assert_eq!(output.len(), 1, "{response}");
    assert!(output[0]["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(
        without_ids(&response["output"]),
        json!([{"type": "message", "role": "assistant", "status": "completed",
            "content": [{"type": "output_text", "text": "hello there world", "annotations": [], "logprobs": []}]}])
    );
    assert_eq!(
        response["usage"],
        json!({"input_tokens": 3, "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": 3, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 6})
    );
    for (field, value) in [
        ("instructions", json!("Answer briefly.")),
        ("tools", json!([])),
        ("tool_choice", json!("auto")),
        ("parallel_tool_calls", json!(true)),
        ("temperature", Value::Null),
        ("top_p", Value::Null),
        ("max_output_tokens", Value::Null),
        (
            "text",
            json!({"format": {"type": "text"}, "verbosity": "medium"}),
        ),
        ("metadata", json!({"purpose": "test"})),
        // Nothing is kept, whatever the request asked.
        ("store", json!(false)),
        ("previous_response_id", Value::Null),
    ] {
        assert_eq!(response[field], value, "{field}");
    }
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn input_items_become_the_chat_and_function_results_answer_their_calls() {
    let server = Server::start().await;
    let input = json!([
        {"role": "developer", "content": "Be exact."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather in Paris?"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "I will look."}]},
        {"type": "function_call", "call_id": "call_7", "name": "get_weather", "arguments": "{\"city\": \"Paris\"}"},
        {"type": "function_call_output", "call_id": "call_7", "output": "sunny and warm"},
    ]);
    let mut body = request(input);
    body["tools"] = weather_tool();
    let (status, response) = server.post(PATH, body).await;
    assert_eq!(status, 200, "{response}");
    // The stand-in answers the last message: the function's output.
    assert_eq!(
        response["output"][0]["content"][0]["text"],
        "sunny and warm"
    );
    assert_eq!(
        response["tools"][0],
        json!({"type": "function", "name": "get_weather", "description": "The weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            // OpenAI's functions are strict unless they say otherwise.
            "strict": true})
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_text_stream_has_openais_event_sequence_and_ends_with_the_whole_response() {
    let server = Server::start().await;
    let body = request(json!("one two three"));
    let events = events(&server, body.clone()).await;
    let mut expected = vec!["response.created", "response.in_progress"];
    expected.extend(MESSAGE_EVENTS);
    assert_eq!(kinds(&events), expected);
    assert_eq!(events[0]["response"]["status"], "in_progress");
    assert_eq!(events[0]["response"]["output"], json!([]));
    let added = &events[2];
    assert_eq!(added["output_index"], 0);
    assert_eq!(
        without_ids(&json!([added["item"]])),
        json!([{"type": "message", "role": "assistant", "status": "in_progress", "content": []}])
    );
    let item_id = added["item"]["id"].clone();
    assert!(events[3..events.len() - 1]
        .iter()
        .all(|e| e["item_id"] == item_id || e["item"]["id"] == item_id));
    assert_eq!(
        events[3]["part"],
        json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []})
    );
    assert_eq!(
        deltas(&events, "response.output_text.delta"),
        "one two three"
    );
    let done = events
        .iter()
        .find(|e| e["type"] == "response.output_text.done")
        .unwrap();
    assert_eq!(done["text"], "one two three");
    // The last event carries the whole response, as a request without `stream` gets it.
    let completed = &events.last().unwrap()["response"];
    let (_, whole) = server.post(PATH, body).await;
    assert_eq!(completed["status"], "completed");
    assert_eq!(completed["output"][0]["id"], item_id);
    assert_eq!(
        without_ids(&completed["output"]),
        without_ids(&whole["output"])
    );
    assert_eq!(completed["usage"], whole["usage"]);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn reasoning_streams_as_a_reasoning_item_before_the_message() {
    let server = Server::start().await;
    let body = request(json!("<think> weighing it up </think> the answer"));
    let events = events(&server, body.clone()).await;
    let mut expected = vec![
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.content_part.done",
        "response.output_item.done",
    ];
    expected.extend(MESSAGE_EVENTS);
    assert_eq!(kinds(&events), expected);
    assert_eq!(events[2]["item"]["type"], "reasoning");
    assert!(events[2]["item"]["id"].as_str().unwrap().starts_with("rs_"));
    assert_eq!(
        events[3]["part"],
        json!({"type": "reasoning_text", "text": ""})
    );
    let reasoning = deltas(&events, "response.reasoning_text.delta");
    assert_eq!(reasoning.trim(), "weighing it up");
    let text = deltas(&events, "response.output_text.delta");
    assert_eq!(text.trim(), "the answer");
    let message_added = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.added")
        .nth(1)
        .unwrap();
    assert_eq!(message_added["output_index"], 1);
    let (_, whole) = server.post(PATH, body).await;
    assert_eq!(
        without_ids(&whole["output"]),
        json!([
            {"type": "reasoning", "summary": [], "status": "completed",
                "content": [{"type": "reasoning_text", "text": reasoning}]},
            {"type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]},
        ])
    );
    let completed = &events.last().unwrap()["response"];
    assert_eq!(
        without_ids(&completed["output"]),
        without_ids(&whole["output"])
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_call_streams_as_a_function_call_item_whose_argument_deltas_concatenate() {
    let server = Server::start().await;
    let mut body = request(json!("let me look CALL"));
    body["tools"] = weather_tool();
    let events = events(&server, body.clone()).await;
    let mut expected = vec!["response.created", "response.in_progress"];
    expected.extend(&MESSAGE_EVENTS[..6]);
    expected.extend([
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]);
    assert_eq!(kinds(&events), expected);
    let call_added = events
        .iter()
        .filter(|e| e["type"] == "response.output_item.added")
        .nth(1)
        .unwrap();
    assert_eq!(call_added["output_index"], 1);
    let item = &call_added["item"];
    assert!(item["id"].as_str().unwrap().starts_with("fc_"));
    assert_eq!(
        (
            &item["type"],
            &item["call_id"],
            &item["name"],
            &item["arguments"],
            &item["status"]
        ),
        (
            &json!("function_call"),
            &json!("call_0"),
            &json!("get_weather"),
            &json!(""),
            &json!("in_progress")
        )
    );
    let arguments = deltas(&events, "response.function_call_arguments.delta");
    assert_eq!(arguments, "{\"city\": \"Paris\"}");
    assert_eq!(
        events
            .iter()
            .filter(|e| e["type"] == "response.function_call_arguments.delta")
            .count(),
        2
    );
    let done = events
        .iter()
        .find(|e| e["type"] == "response.function_call_arguments.done")
        .unwrap();
    assert_eq!(
        (&done["name"], &done["arguments"], &done["item_id"]),
        (&json!("get_weather"), &json!(arguments), &item["id"])
    );
    let (_, whole) = server.post(PATH, body).await;
    assert_eq!(
        without_ids(&whole["output"]),
        json!([
            {"type": "message", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": "let me look CALL", "annotations": [], "logprobs": []}]},
            {"type": "function_call", "call_id": "call_0", "name": "get_weather",
                "arguments": "{\"city\": \"Paris\"}", "status": "completed"},
        ])
    );
    let completed = &events.last().unwrap()["response"];
    assert_eq!(
        without_ids(&completed["output"]),
        without_ids(&whole["output"])
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn max_output_tokens_makes_the_response_incomplete() {
    let server = Server::start().await;
    let mut body = request(json!("one two three four five"));
    body["max_output_tokens"] = json!(2);
    let (status, response) = server.post(PATH, body.clone()).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["status"], "incomplete");
    assert_eq!(
        response["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(response["output"][0]["status"], "incomplete");
    assert_eq!(response["output"][0]["content"][0]["text"], "one two");
    assert_eq!(response["usage"]["output_tokens"], 2);
    assert_eq!(response["max_output_tokens"], 2);
    let events = events(&server, body).await;
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.incomplete");
    assert_eq!(last["response"]["status"], "incomplete");
    let item_done = &events[events.len() - 2];
    assert_eq!(
        (&item_done["type"], &item_done["item"]["status"]),
        (&json!("response.output_item.done"), &json!("incomplete"))
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn an_engine_failure_fails_the_response_or_its_stream() {
    let server = Server::start().await;
    let body = request(json!("FAIL now"));
    let (status, response) = server.post(PATH, body.clone()).await;
    assert_eq!(status, 500, "{response}");
    assert_eq!(response["error"]["type"], "server_error");
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    assert_eq!(server.post(PATH, streamed).await.0, 500, "a failed start");
    let events = events(&server, request(json!("one two BREAK"))).await;
    let kinds = kinds(&events);
    assert_eq!(kinds[..2], ["response.created", "response.in_progress"]);
    assert_eq!(kinds.last(), Some(&"response.failed"), "{kinds:?}");
    let failed = &events.last().unwrap()["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["error"]["code"], "server_error");
    assert!(failed["error"]["message"]
        .as_str()
        .unwrap()
        .contains("the fake engine failed"));
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn malformed_or_unsupported_requests_are_400s_naming_the_field() {
    let server = Server::start().await;
    let with = |field: &str, value: Value| {
        let mut body = request(json!("hello"));
        body[field] = value;
        body
    };
    let cases = [
        (request(json!("")), "input"),
        (request(json!(42)), "input"),
        (
            request(json!([{"type": "image_generation_call", "id": "ig_1"}])),
            "input",
        ),
        (
            request(json!([{"type": "function_call_output", "call_id": "call_9", "output": "x"}])),
            "input",
        ),
        (
            request(json!([{"role": "critic", "content": "hm"}])),
            "input",
        ),
        (
            request(
                json!([{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]),
            ),
            "input",
        ),
        (with("tools", json!([{"type": "web_search"}])), "tools"),
        (
            with("tools", json!([{"type": "function", "name": "bad name!"}])),
            "tools",
        ),
        (
            with(
                "tools",
                json!([{"type": "function", "name": "f", "parameters": [1]}]),
            ),
            "tools",
        ),
        (with("tool_choice", json!("required")), "tool_choice"),
        (
            with("tool_choice", json!({"type": "file_search"})),
            "tool_choice",
        ),
        (
            with("previous_response_id", json!("resp_123")),
            "previous_response_id",
        ),
        (with("background", json!(true)), "background"),
        (with("conversation", json!("conv_1")), "conversation"),
        (
            with("include", json!(["message.output_text.logprobs"])),
            "include",
        ),
        (with("truncation", json!("auto")), "truncation"),
        (with("top_logprobs", json!(3)), "top_logprobs"),
        (with("temperature", json!(3.0)), "temperature"),
        (with("top_p", json!(1.5)), "top_p"),
        (with("max_output_tokens", json!(0)), "max_output_tokens"),
        (with("reasoning", json!({"effort": "extreme"})), "reasoning"),
        (with("text", json!({"format": {"type": "yaml"}})), "text"),
        (
            with(
                "text",
                json!({"format": {"type": "json_schema", "name": "x"}}),
            ),
            "text",
        ),
        // A schema the engine cannot enforce is refused before anything is queued.
        (
            with(
                "text",
                json!({"format": {"type": "json_schema", "name": "x",
                "schema": {"type": "object", "properties": {"a": {"$ref": "https://example.com/remote.json"}}}}}),
            ),
            "text",
        ),
    ];
    for (body, field) in cases {
        let (status, response) = server.post(PATH, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {response}");
        assert_eq!(
            response["error"]["type"], "invalid_request_error",
            "{response}"
        );
        assert_eq!(response["error"]["param"], field, "{body} -> {response}");
    }
    // A parameter OpenAI does not have either: named in the message.
    let (status, response) = server.post(PATH, with("frobnicate", json!(1))).await;
    assert_eq!(status, 400);
    assert!(response["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'frobnicate'"));
    // Nothing reached the engine.
    assert!(server.record.lock().unwrap().ended.is_empty());
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn accepted_settings_without_effect_do_not_refuse_the_request() {
    let server = Server::start().await;
    let mut body = request(json!("fine"));
    for (field, value) in [
        ("store", json!(false)),
        ("truncation", json!("disabled")),
        ("include", json!(["reasoning.encrypted_content"])),
        ("user", json!("someone")),
        ("service_tier", json!("auto")),
        ("reasoning", json!({"effort": "low", "summary": "auto"})),
        ("text", json!({"format": {"type": "json_object"}})),
        ("parallel_tool_calls", json!(false)),
        ("tool_choice", json!("none")),
        ("tools", weather_tool()),
    ] {
        body[field] = value;
    }
    let (status, response) = server.post(PATH, body).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(
        response["reasoning"],
        json!({"effort": "low", "summary": "auto"})
    );
    assert_eq!(response["parallel_tool_calls"], false);
    assert_eq!(response["tool_choice"], "none");
    assert_eq!(response["text"]["format"], json!({"type": "json_object"}));
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn an_unknown_model_is_a_404() {
    let server = Server::start().await;
    let mut body = request(json!("hello"));
    body["model"] = json!("nobody/no-such-model");
    let (status, response) = server.post(PATH, body.clone()).await;
    assert_eq!(status, 404, "{response}");
    assert_eq!(error_code(&response), "model_not_found");
    assert_eq!(response["error"]["param"], "model");
    body["stream"] = json!(true);
    let (status, _) = server.post(PATH, body).await;
    assert_eq!(status, 404);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_client_that_leaves_a_stream_cancels_its_generation() {
    let server = Server::start().await;
    let mut body = request(json!(format!("SLOW {}", "w ".repeat(200))));
    body["stream"] = json!(true);
    let response = server
        .client
        .post(server.url(PATH))
        .json(&body)
        .send()
        .await
        .unwrap();
    let ended = server.leave(response).await;
    assert_eq!(ended, vec![FinishReason::Cancelled]);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}
