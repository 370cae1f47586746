//! Anthropic's Messages API on the stand-in engine: the message shape, the exact event
//! sequences of streams, stop reasons, tools, refusals in Anthropic's error shape, the key and
//! token counting.

use super::*;

fn message(content: &str) -> Value {
    json!({"model": MODEL, "max_tokens": 64, "messages": [{"role": "user", "content": content}]})
}

fn weather_tools() -> Value {
    json!([{"name": "get_weather", "description": "The weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"]}}])
}

/// The events of a streamed message, read to its end: each `event:` name with its `data:`.
async fn events(server: &Server, mut body: Value) -> Vec<(String, Value)> {
    body["stream"] = json!(true);
    let response = server
        .client
        .post(server.url("/v1/messages"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "text/event-stream"
    );
    let text = response.text().await.unwrap();
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let name = e.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
            let data = e.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
            let data: Value = serde_json::from_str(data).unwrap();
            // Every data names its event, as Anthropic's do.
            assert_eq!(data["type"], name, "{e}");
            (name.to_string(), data)
        })
        .collect()
}

/// The sequence of event names, each run of deltas written once (how a text is cut into
/// deltas is the engine's business).
fn sequence(events: &[(String, Value)]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (name, data) in events {
        let shown = match name.as_str() {
            "content_block_start" => format!("start {}", data["content_block"]["type"]),
            "content_block_delta" => format!("delta {}", data["delta"]["type"]),
            "content_block_stop" => "stop".to_string(),
            other => other.to_string(),
        };
        if names.last() != Some(&shown) || !shown.starts_with("delta") {
            names.push(shown);
        }
    }
    names
}

/// The concatenated deltas of block `index`, by the delta's field.
fn block_text(events: &[(String, Value)], index: usize, field: &str) -> String {
    events
        .iter()
        .filter(|(name, data)| name == "content_block_delta" && data["index"] == index)
        .map(|(_, data)| data["delta"][field].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_message_has_anthropics_shape_and_counts() {
    let server = Server::start().await;
    let mut request = message("hello there world");
    // Cloud-only fields are accepted.
    request["metadata"] = json!({"user_id": "u-1"});
    request["system"] = json!([{"type": "text", "text": "be brief",
        "cache_control": {"type": "ephemeral"}}]);
    let (status, body) = server.post("/v1/messages", request).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id"].as_str().unwrap().starts_with("msg_"), "{body}");
    let mut rest = body.clone();
    rest.as_object_mut().unwrap().remove("id");
    assert_eq!(
        rest,
        json!({
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [{"type": "text", "text": "hello there world"}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 3, "output_tokens": 3,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
        })
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn stop_reasons_say_max_tokens_stop_sequence_and_tool_use() {
    let server = Server::start().await;
    let mut request = message("one two three four five");
    request["max_tokens"] = json!(2);
    let (_, body) = server.post("/v1/messages", request).await;
    assert_eq!(body["content"][0]["text"], "one two");
    assert_eq!(
        (&body["stop_reason"], &body["stop_sequence"]),
        (&json!("max_tokens"), &json!(null))
    );

    let mut request = message("one two three four five");
    request["stop_sequences"] = json!([" three"]);
    let (_, body) = server.post("/v1/messages", request.clone()).await;
    assert_eq!(body["content"][0]["text"], "one two");
    assert_eq!(
        (&body["stop_reason"], &body["stop_sequence"]),
        (&json!("stop_sequence"), &json!(" three"))
    );
    let streamed = events(&server, request).await;
    let (_, delta) = streamed
        .iter()
        .find(|(name, _)| name == "message_delta")
        .unwrap();
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "stop_sequence", "stop_sequence": " three"})
    );
    // The one the text ended at, not the first listed; none when the turn simply ended.
    let mut request = message("one two three four five");
    request["stop_sequences"] = json!(["seven", " fo"]);
    let (_, body) = server.post("/v1/messages", request).await;
    assert_eq!(
        (&body["stop_reason"], &body["stop_sequence"]),
        (&json!("stop_sequence"), &json!(" fo"))
    );
    let mut request = message("one two");
    request["stop_sequences"] = json!(["seven"]);
    let (_, body) = server.post("/v1/messages", request).await;
    assert_eq!(
        (&body["stop_reason"], &body["stop_sequence"]),
        (&json!("end_turn"), &json!(null))
    );

    let mut request = message("let me look CALL");
    request["tools"] = weather_tools();
    let (status, body) = server.post("/v1/messages", request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(
        body["content"][0],
        json!({"type": "text", "text": "let me look CALL"})
    );
    let call = &body["content"][1];
    assert!(call["id"].as_str().unwrap().starts_with("toolu_"), "{call}");
    assert_eq!(
        (&call["type"], &call["name"], &call["input"]),
        (
            &json!("tool_use"),
            &json!("get_weather"),
            &json!({"city": "Paris"})
        )
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_tool_result_goes_back_to_the_model_as_the_tools_message() {
    let server = Server::start().await;
    let mut request = message("weather please CALL");
    request["tools"] = weather_tools();
    let (_, first) = server.post("/v1/messages", request.clone()).await;
    let call = first["content"][1].clone();
    request["messages"] = json!([
        {"role": "user", "content": "weather please CALL"},
        {"role": "assistant", "content": first["content"]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call["id"],
            "content": [{"type": "text", "text": "sunny and warm"}]}]},
    ]);
    let (status, body) = server.post("/v1/messages", request.clone()).await;
    assert_eq!(status, 200, "{body}");
    // The stand-in says the last message: the tool's result.
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "sunny and warm"}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    // A failed tool's result is marked.
    request["messages"][2]["content"] = json!([{"type": "tool_result",
        "tool_use_id": call["id"], "content": "no such city", "is_error": true}]);
    let (_, body) = server.post("/v1/messages", request).await;
    assert_eq!(body["content"][0]["text"], "Error: no such city");
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_text_stream_has_anthropics_event_sequence() {
    let server = Server::start().await;
    let streamed = events(&server, message("a b c")).await;
    assert_eq!(
        sequence(&streamed),
        [
            "message_start",
            "ping",
            "start \"text\"",
            "delta \"text_delta\"",
            "stop",
            "message_delta",
            "message_stop"
        ]
    );
    let start = &streamed[0].1["message"];
    assert!(start["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(
        (
            &start["role"],
            &start["model"],
            &start["content"],
            &start["stop_reason"]
        ),
        (&json!("assistant"), &json!(MODEL), &json!([]), &json!(null))
    );
    assert_eq!(
        streamed[2].1["content_block"],
        json!({"type": "text", "text": ""})
    );
    assert_eq!(block_text(&streamed, 0, "text"), "a b c");
    let (_, delta) = &streamed[streamed.len() - 2];
    assert_eq!(
        delta,
        &json!({"type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"input_tokens": 3, "output_tokens": 3,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}})
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn reasoning_streams_as_a_thinking_block_before_the_text() {
    let server = Server::start().await;
    let request = message("<think> hmm let me see </think> the answer");
    let streamed = events(&server, request.clone()).await;
    assert_eq!(
        sequence(&streamed),
        [
            "message_start",
            "ping",
            "start \"thinking\"",
            "delta \"thinking_delta\"",
            "stop",
            "start \"text\"",
            "delta \"text_delta\"",
            "stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(
        streamed[2].1["content_block"],
        json!({"type": "thinking", "thinking": "", "signature": ""})
    );
    assert_eq!(
        block_text(&streamed, 0, "thinking").trim(),
        "hmm let me see"
    );
    assert_eq!(block_text(&streamed, 1, "text").trim(), "the answer");

    let (_, body) = server.post("/v1/messages", request.clone()).await;
    assert_eq!(body["content"][0]["type"], "thinking");
    assert_eq!(
        body["content"][0]["thinking"].as_str().unwrap().trim(),
        "hmm let me see"
    );
    assert_eq!(body["content"][0]["signature"], "");
    assert_eq!(
        body["content"][1]["text"].as_str().unwrap().trim(),
        "the answer"
    );

    // Thinking off: the reasoning is not shown.
    let mut hidden = request;
    hidden["thinking"] = json!({"type": "disabled"});
    let (_, body) = server.post("/v1/messages", hidden.clone()).await;
    assert_eq!(body["content"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["content"][0]["type"], "text");
    let streamed = events(&server, hidden).await;
    assert!(!sequence(&streamed).contains(&"start \"thinking\"".to_string()));
    assert_eq!(block_text(&streamed, 0, "text").trim(), "the answer");
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_tool_call_streams_as_a_tool_use_block_after_the_text() {
    let server = Server::start().await;
    let mut request = message("let me look CALL");
    request["tools"] = weather_tools();
    request["tool_choice"] = json!({"type": "auto", "disable_parallel_tool_use": true});
    let streamed = events(&server, request).await;
    assert_eq!(
        sequence(&streamed),
        [
            "message_start",
            "ping",
            "start \"text\"",
            "delta \"text_delta\"",
            "stop",
            "start \"tool_use\"",
            "delta \"input_json_delta\"",
            "stop",
            "message_delta",
            "message_stop"
        ]
    );
    let start = &streamed
        .iter()
        .find(|(n, d)| n == "content_block_start" && d["index"] == 1)
        .unwrap()
        .1;
    let block = &start["content_block"];
    assert!(block["id"].as_str().unwrap().starts_with("toolu_"));
    assert_eq!(
        (&block["name"], &block["input"]),
        (&json!("get_weather"), &json!({}))
    );
    let arguments = block_text(&streamed, 1, "partial_json");
    let input: Value = serde_json::from_str(&arguments).unwrap();
    assert_eq!(input, json!({"city": "Paris"}));
    let (_, delta) = &streamed[streamed.len() - 2];
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn an_engine_failure_mid_stream_is_an_error_event() {
    let server = Server::start().await;
    let streamed = events(&server, message("one two BREAK")).await;
    let names = sequence(&streamed);
    assert_eq!(names[..3], ["message_start", "ping", "start \"text\""]);
    assert_eq!(names.last().map(String::as_str), Some("error"), "{names:?}");
    assert_eq!(
        streamed.last().unwrap().1,
        json!({"type": "error", "error": {"type": "api_error", "message": "the fake engine failed"}})
    );
    // A failure at the very start is a status, in Anthropic's shape.
    let mut failing = message("FAIL now");
    failing["stream"] = json!(true);
    let (status, body) = server.post("/v1/messages", failing).await;
    assert_eq!((status, &body["error"]["type"]), (500, &json!("api_error")));
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn malformed_requests_are_400s_in_anthropics_shape_naming_the_field() {
    let server = Server::start().await;
    let with = |field: &str, value: Value| {
        let mut request = message("x");
        request[field] = value;
        request
    };
    let tool_use = json!({"type": "tool_use", "id": "toolu_1", "name": "get_weather",
        "input": {"city": "Rome"}});
    let cases = [
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x"}]}),
            "max_tokens",
        ),
        (with("max_tokens", json!(0)), "max_tokens"),
        (with("messages", json!([])), "messages"),
        (
            with("messages", json!([{"role": "wizard", "content": "x"}])),
            "messages[0].role",
        ),
        (
            with(
                "messages",
                json!([{"role": "user", "content": "x"},
                {"role": "assistant", "content": "The answer is"}]),
            ),
            "prefilled",
        ),
        (
            with(
                "messages",
                json!([{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_9", "content": "sunny"}]}]),
            ),
            "tool_use_id",
        ),
        (
            with(
                "messages",
                json!([{"role": "user", "content": "x"},
                {"role": "assistant", "content": [tool_use]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2"}]}]),
            ),
            "tool_use_id",
        ),
        (
            with("messages", json!([{"role": "user", "content": [tool_use]}])),
            "messages[0].content[0]",
        ),
        (
            with(
                "messages",
                json!([{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "data": ""}}]}]),
            ),
            "'image'",
        ),
        (with("temperature", json!(5)), "temperature"),
        (with("top_k", json!(1u64 << 30)), "top_k"),
        (with("stop_sequences", json!([""])), "stop_sequences"),
        (with("tool_choice", json!({"type": "any"})), "tool_choice"),
        (
            with("tool_choice", json!({"type": "required"})),
            "tool_choice.type",
        ),
        (
            {
                let mut r = with("tools", weather_tools());
                r["tool_choice"] = json!({"type": "tool", "name": "get_time"});
                r
            },
            "get_time",
        ),
        (
            {
                let mut r = with("tools", weather_tools());
                r["tool_choice"] = json!({"type": "tool"});
                r
            },
            "tool_choice.name",
        ),
        (
            with("tools", json!([{"name": "f", "input_schema": "object"}])),
            "tools[0].input_schema",
        ),
        (
            with(
                "tools",
                json!([{"type": "web_search_20250305", "name": "web_search"}]),
            ),
            "tools[0].type",
        ),
        (
            with(
                "tools",
                json!([{"name": "bad name!", "input_schema": {"type": "object"}}]),
            ),
            "tools[0].name",
        ),
        (
            with("thinking", json!({"type": "enabled"})),
            "thinking.budget_tokens",
        ),
        (
            with("thinking", json!({"type": "sometimes"})),
            "thinking.type",
        ),
        (
            with(
                "output_config",
                json!({"format": {"type": "json_schema", "schema": "x"}}),
            ),
            "output_config.format.schema",
        ),
        (
            with(
                "output_config",
                json!({"format": {"type": "json_schema",
                "schema": {"type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}}}),
            ),
            "output_config.format",
        ),
        (
            with("output_config", json!({"format": {"type": "yaml"}})),
            "output_config.format.type",
        ),
        (
            {
                let mut r = with("tools", weather_tools());
                r["tool_choice"] = json!({"type": "any"});
                r["output_config"] = json!({"format": {"type": "json_schema",
                    "schema": {"type": "object"}}});
                r
            },
            "output_config.format",
        ),
        // A wrong type is named by its path.
        (with("max_tokens", json!("many")), "max_tokens"),
    ];
    for (request, named) in cases {
        let (status, body) = server.post("/v1/messages", request.clone()).await;
        assert_eq!(status, 400, "{request} -> {body}");
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{request} -> {message}");
    }
    // Nothing was generated for any of them.
    assert!(server.record.lock().unwrap().ended.is_empty());
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn unknown_models_are_404_not_found_errors() {
    let server = Server::start().await;
    let mut request = message("x");
    request["model"] = json!("claude-sonnet-4-5");
    for path in ["/v1/messages", "/v1/messages/count_tokens"] {
        let (status, body) = server.post(path, request.clone()).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "not_found_error");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("claude-sonnet-4-5"));
    }
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn the_key_is_taken_from_x_api_key() {
    let server = Server::with(|c| c.api_key = Some("sk-local".into())).await;
    let send = |key: Option<&'static str>| {
        let mut request = server
            .client
            .post(server.url("/v1/messages"))
            .header("anthropic-version", "2023-06-01")
            .json(&message("x"));
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        request.send()
    };
    for key in [None, Some("sk-wrong")] {
        let refused = send(key).await.unwrap();
        assert_eq!(refused.status(), 401);
        // In Anthropic's shape, as its clients read it.
        let body: Value = refused.json().await.unwrap();
        assert_eq!(
            (&body["type"], &body["error"]["type"]),
            (&json!("error"), &json!("authentication_error"))
        );
    }
    let response = send(Some("sk-local")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["content"][0]["text"], "x");
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

/// The fixture's tokenizer knows two tokens, `a` and `b`, and skips every other character;
/// its chat template writes `<|role|>content` for each message.
#[tokio::test]
async fn count_tokens_counts_the_rendered_prompt_without_loading_the_model() {
    let server = Server::start().await;
    let request = json!({"model": MODEL, "system": "ab",
        "messages": [{"role": "user", "content": "a b ab"}]});
    let (status, body) = server
        .post("/v1/messages/count_tokens", request.clone())
        .await;
    assert_eq!(status, 200, "{body}");
    // `<|system|>ab<|user|>a b ab`: six of them.
    assert_eq!(body, json!({"input_tokens": 6}));
    // The fixture's template has no tools: they are described in a system message, and count.
    let mut with_tools = request.clone();
    with_tools["tools"] = weather_tools();
    let (_, counted) = server
        .post("/v1/messages/count_tokens", with_tools.clone())
        .await;
    assert!(counted["input_tokens"].as_u64().unwrap() > 6, "{counted}");
    // tool_choice none leaves them out, as a generation would.
    with_tools["tool_choice"] = json!({"type": "none"});
    let (_, counted) = server.post("/v1/messages/count_tokens", with_tools).await;
    assert_eq!(counted, json!({"input_tokens": 6}));
    // Malformed conversations are refused as /v1/messages refuses them.
    let mut bad = request;
    bad["messages"][0]["role"] = json!("wizard");
    let (status, body) = server.post("/v1/messages/count_tokens", bad).await;
    assert_eq!(
        (status, &body["error"]["type"]),
        (400, &json!("invalid_request_error"))
    );
    assert!(server.record.lock().unwrap().loads.is_empty());
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_client_that_leaves_a_stream_cancels_its_generation() {
    let server = Server::start().await;
    let mut body = message(&format!("SLOW {}", "w ".repeat(200)));
    body["max_tokens"] = json!(1000);
    body["stream"] = json!(true);
    let response = server
        .client
        .post(server.url("/v1/messages"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let ended = server.leave(response).await;
    assert_eq!(ended, vec![FinishReason::Cancelled]);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}
