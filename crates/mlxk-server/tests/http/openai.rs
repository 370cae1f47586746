//! OpenAI's chat completions, completions and embeddings; the behaviour every API shares
//! (queueing, cancellation, limits, auth, shutdown) is tested here through them.

use super::*;

#[tokio::test]
async fn a_chat_answer_has_openai_shape_and_counts() {
    let server = Server::start().await;
    let (status, body) = server
        .post("/v1/chat/completions", chat("hello there world"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert!(body["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(body["model"], MODEL);
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "hello there world");
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 3, "completion_tokens": 3, "total_tokens": 6,
            "prompt_tokens_details": {"cached_tokens": 0}})
    );
    assert_eq!(server.record.lock().unwrap().loads, vec![MODEL.to_string()]);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn max_tokens_and_stop_strings_end_the_answer() {
    let server = Server::start().await;
    let mut request = chat("one two three four five");
    request["max_tokens"] = json!(2);
    let (status, body) = server.post("/v1/chat/completions", request).await;
    assert_eq!(status, 200);
    assert_eq!(body["choices"][0]["message"]["content"], "one two");
    assert_eq!(body["choices"][0]["finish_reason"], "length");

    let mut request = chat("one two three four five");
    request["stop"] = json!(" three");
    let (_, body) = server.post("/v1/chat/completions", request).await;
    assert_eq!(body["choices"][0]["message"]["content"], "one two");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");

    let (status, body) = server
        .post(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "alpha beta"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], "alpha beta");
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_stream_has_the_role_first_then_text_then_finish_usage_and_done() {
    let server = Server::start().await;
    let mut request = chat("a b c");
    request["stream"] = json!(true);
    request["stream_options"] = json!({"include_usage": true});
    let lines = server.stream("/v1/chat/completions", request).await;
    assert_eq!(lines.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "a b c");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 3);

    let lines = server
        .stream(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "x y", "stream": true}),
        )
        .await;
    let first: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(first["object"], "text_completion");
    assert_eq!(first["choices"][0]["text"], "x");
    assert_eq!(lines.last().unwrap(), "[DONE]");
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn models_lists_only_runnable_ones_and_names_the_loaded_one() {
    let server = Server::start().await;
    let (status, body) = server.get("/v1/models").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&MODEL), "{ids:?}");
    for broken in [
        "openai-community/gpt2",
        "mlx-community/gemma-2-2b-truncated",
        "mlx-community/broken-symlink-model",
        "TheBloke/TinyLlama-1.1B-Chat-GGUF",
    ] {
        assert!(!ids.contains(&broken), "{broken} listed: {ids:?}");
    }
    server.post("/v1/chat/completions", chat("hi")).await;
    let (status, model) = server.get(&format!("/v1/models/{MODEL}")).await;
    assert_eq!(status, 200);
    assert_eq!(model["id"], MODEL);
    assert_eq!(model["loaded"], true);
    let (status, body) = server.get("/health").await;
    assert_eq!(status, 200);
    // mlx-knife 2.0.8's code answers `status`, its tests read `healthy`: both hold.
    assert_eq!(body["status"], "ok");
    assert_eq!(body["healthy"], true);
    assert_eq!(body["queue"]["capacity"], 32);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn malformed_requests_are_400s_naming_the_field() {
    let server = Server::start().await;
    let cases = [
        (json!({"model": MODEL}), "messages"),
        (json!({"model": MODEL, "messages": []}), "messages"),
        (
            json!({"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]}),
            "messages",
        ),
        (
            json!({"model": MODEL, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            "messages",
        ),
        (
            {
                let mut r = chat("x");
                r["temperature"] = json!(7);
                r
            },
            "temperature",
        ),
        (
            {
                let mut r = chat("x");
                r["top_k"] = json!(1u64 << 30);
                r
            },
            "top_k",
        ),
        (
            {
                let mut r = chat("x");
                r["max_tokens"] = json!(0);
                r
            },
            "max_tokens",
        ),
        (
            {
                let mut r = chat("x");
                r["n"] = json!(2);
                r
            },
            "n",
        ),
        (
            {
                let mut r = chat("x");
                r["stop"] = json!([""]);
                r
            },
            "stop",
        ),
    ];
    for (request, field) in cases {
        let (status, body) = server.post("/v1/chat/completions", request.clone()).await;
        assert_eq!(status, 400, "{request} -> {body}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], field, "{request} -> {body}");
    }
    let (status, body) = server
        .post("/v1/completions", json!({"model": MODEL, "prompt": ""}))
        .await;
    assert_eq!(
        (status, body["error"]["param"].clone()),
        (400, json!("prompt"))
    );
    // A wrong type is named by its path.
    let (status, body) = server
        .post(
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [], "temperature": "hot"}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("temperature"),
        "{body}"
    );
    let (status, _) = server
        .raw("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{\"model\":")
        .await;
    assert_eq!(status, 400);
    assert!(server.record.lock().unwrap().loads.is_empty());
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn prompts_the_model_cannot_take_are_400s() {
    let server = Server::start().await;
    let (status, body) = server
        .post("/v1/chat/completions", chat("BADTEMPLATE please"))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("roles must alternate"));
    let (_, model) = server.get(&format!("/v1/models/{MODEL}")).await;
    let context = model["context_length"].as_u64().unwrap() as usize;
    let long = "w ".repeat(context);
    let (status, body) = server.post("/v1/chat/completions", chat(&long)).await;
    assert_eq!(status, 400);
    assert_eq!(error_code(&body), "context_length_exceeded");
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn unknown_unrunnable_and_path_models_are_404s() {
    let server = Server::start().await;
    for model in [
        "no-such-model",
        "openai-community/gpt2",
        "/usr",
        "../../etc",
    ] {
        let (status, body) = server
            .post(
                "/v1/chat/completions",
                json!({"model": model, "messages": [{"role": "user", "content": "x"}]}),
            )
            .await;
        assert_eq!(status, 404, "{model}: {body}");
        assert_eq!(error_code(&body), "model_not_found");
        assert_eq!(body["error"]["param"], "model");
    }
    let (status, _) = server.get("/v1/models/no-such-model").await;
    assert_eq!(status, 404);
    assert!(server.record.lock().unwrap().loads.is_empty());
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn models_that_fail_to_load_say_why() {
    let server = Server::start().await;
    let ask = |model: &str| json!({"model": model, "messages": [{"role": "user", "content": "x"}]});
    let (status, body) = server.post("/v1/chat/completions", ask(TOO_BIG)).await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(error_code(&body), "insufficient_memory");
    let (status, body) = server.post("/v1/chat/completions", ask(UNUSABLE)).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(error_code(&body), "model_unusable");
    // The server goes on with a model that loads.
    let (status, _) = server.post("/v1/chat/completions", ask(MODEL)).await;
    assert_eq!(status, 200);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn an_engine_failure_or_panic_fails_its_request_only() {
    let server = Server::start().await;
    for prompt in ["FAIL now", "PANIC now"] {
        let (status, body) = server.post("/v1/chat/completions", chat(prompt)).await;
        assert_eq!(status, 500, "{prompt}: {body}");
        assert_eq!(body["error"]["type"], "server_error");
    }
    // A stream failing at its start is a status; once it has begun, an error object ends it.
    let mut request = chat("FAIL streaming");
    request["stream"] = json!(true);
    assert_eq!(server.post("/v1/chat/completions", request).await.0, 500);
    let mut request = chat("one two BREAK");
    request["stream"] = json!(true);
    let lines = server.stream("/v1/chat/completions", request).await;
    let last: Value = serde_json::from_str(lines.last().unwrap()).unwrap();
    assert_eq!(last["error"]["message"], "the fake engine failed");
    server.answers_still().await;
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

/// Requests that arrive while their model loads start before its batch's first step, with
/// the request that asked for the model: clients that arrive together are prefilled together.
#[tokio::test]
async fn requests_that_arrive_during_a_load_start_before_the_first_step() {
    let server = Server::start().await;
    server.record.lock().unwrap().load_time = Duration::from_millis(800);
    let send = |text: String| {
        let (client, url) = (server.client.clone(), server.url("/v1/chat/completions"));
        let request = chat(&text);
        tokio::spawn(async move {
            let response = client.post(url).json(&request).send().await.unwrap();
            response.status().as_u16()
        })
    };
    let mut requests = vec![send("one two".into())];
    while server.record.lock().unwrap().loads.is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The model is loading: three more come.
    requests.extend((0..3).map(|i| send(format!("word{i} and more"))));
    for request in requests {
        assert_eq!(request.await.unwrap(), 200);
    }
    let timeline = server.record.lock().unwrap().timeline.clone();
    let first_step = timeline.iter().position(|e| *e == "step").unwrap();
    assert_eq!(timeline[..first_step], ["start"; 4], "{timeline:?}");
    assert_eq!(server.record.lock().unwrap().loads, [MODEL], "one load");
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_failed_batch_step_ends_the_generations_on_its_model_and_lets_it_go() {
    let server = Server::start().await;
    assert_eq!(
        server.post("/v1/chat/completions", chat("load")).await.0,
        200
    );
    for word in ["STEPFAIL", "STEPPANIC"] {
        let loads_before = server.record.lock().unwrap().loads.len();
        // A stream under way on the model, then a request whose step breaks the batch.
        let mut request = chat("SLOW one two three four five six seven eight nine ten");
        request["stream"] = json!(true);
        // Under way means it streamed something already: a request that broke the batch before
        // its first token would end it with a plain error, not an error event.
        let (begun, under_way) = tokio::sync::oneshot::channel();
        let stream = {
            let (client, url) = (server.client.clone(), server.url("/v1/chat/completions"));
            tokio::spawn(async move {
                let mut response = client.post(url).json(&request).send().await.unwrap();
                let mut text = String::new();
                let mut begun = Some(begun);
                while let Some(chunk) = response.chunk().await.unwrap() {
                    text.push_str(&String::from_utf8_lossy(&chunk));
                    if text.contains("data: ") {
                        if let Some(begun) = begun.take() {
                            let _ = begun.send(());
                        }
                    }
                }
                text
            })
        };
        under_way.await.unwrap();
        let (status, body) = server
            .post("/v1/chat/completions", chat(&format!("{word} now")))
            .await;
        assert_eq!(status, 500, "{word}: {body}");
        assert_eq!(body["error"]["type"], "server_error");
        let streamed = stream.await.unwrap();
        let last = streamed
            .lines()
            .rev()
            .filter_map(|l| l.strip_prefix("data: "))
            .next()
            .unwrap();
        let last: Value = serde_json::from_str(last).unwrap();
        assert!(
            last["error"]["message"].as_str().is_some(),
            "{word}: the stream on the same model ends with an error: {streamed}"
        );
        assert_eq!(
            server
                .record
                .lock()
                .unwrap()
                .unloads
                .last()
                .map(String::as_str),
            Some(MODEL)
        );
        // The next request loads the model anew and is answered.
        server.answers_still().await;
        assert_eq!(server.record.lock().unwrap().loads.len(), loads_before + 1);
    }
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_key_is_required_when_configured() {
    let server = Server::with(|c| c.api_key = Some("sk-local".into())).await;
    let (status, body) = server.post("/v1/chat/completions", chat("x")).await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "invalid_api_key");
    let (status, _) = server.get("/v1/models").await;
    assert_eq!(status, 401);
    let response = server
        .client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth("sk-local")
        .json(&chat("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Ollama's routes are behind the same key, refused in Ollama's shape.
    let (status, body) = server.get("/api/ps").await;
    assert_eq!(status, 401);
    assert!(body["error"].as_str().is_some(), "{body}");
    // Liveness needs no key.
    assert_eq!(server.get("/health").await.0, 200);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn pages_of_other_sites_are_refused() {
    let server = Server::start().await;
    let body = chat("x").to_string();
    let post = |headers: &str, content_type: &str| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\n{headers}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    };
    // DNS rebinding: a foreign name in Host.
    let (status, answer) = server
        .raw(&post("Host: evil.example\r\n", "application/json"))
        .await;
    assert_eq!(status, 403, "{answer}");
    assert!(answer.contains("--allowed-host"), "{answer}");
    // A "simple" cross-site POST.
    let (status, _) = server.raw(&post("Host: 127.0.0.1\r\n", "text/plain")).await;
    assert_eq!(status, 415);
    // An origin CORS does not allow.
    let (status, _) = server
        .raw(&post(
            "Host: 127.0.0.1\r\nOrigin: https://evil.example\r\n",
            "application/json",
        ))
        .await;
    assert_eq!(status, 403);
    let (status, _) = server
        .raw(&post(
            "Host: localhost\r\nOrigin: http://localhost:5173\r\n",
            "application/json",
        ))
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.record.lock().unwrap().loads.len(), 1);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn bodies_too_large_or_too_slow_are_refused() {
    let server = Server::with(|c| {
        c.max_body_bytes = 1024;
        c.read_timeout = Duration::from_secs(1);
    })
    .await;
    // Announced too large: refused before it is read.
    let (status, answer) = server.raw(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 999999\r\nConnection: close\r\n\r\n",
    ).await;
    assert_eq!(status, 413, "{answer}");
    // Chunked, so only reading finds it too large.
    let big = format!(
        "{{\"model\": \"{MODEL}\", \"pad\": \"{}\"}}",
        "x".repeat(4000)
    );
    let response = server
        .client
        .post(server.url("/v1/chat/completions"))
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter([
            Ok::<_, std::io::Error>(big),
        ])))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "request_too_large");
    // A body that stops arriving.
    let (status, _) = server.raw(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\nConnection: close\r\n\r\n{\"model\"",
    ).await;
    assert_eq!(status, 408);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_full_queue_is_a_503_with_retry_after() {
    let server = Server::with(|c| {
        c.max_active = 1;
        c.queue_capacity = 1;
        c.queue_timeout = Duration::from_millis(300);
    })
    .await;
    let slow = chat(&format!("SLOW {}", "w ".repeat(40)));
    // One runs, one waits; a third finds the queue full or its wait too long.
    let first = server.spawn_chat(slow.clone());
    tokio::time::sleep(Duration::from_millis(150)).await;
    let response = server
        .client
        .post(server.url("/v1/chat/completions"))
        .json(&slow)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "queue_timeout");
    let second = server.spawn_chat(slow.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (status, body) = server.post("/v1/chat/completions", slow.clone()).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        ["server_busy", "queue_timeout"].contains(&error_code(&body)),
        "{body}"
    );
    assert_eq!(first.await.unwrap(), 200);
    assert_eq!(second.await.unwrap(), 503);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_its_generation() {
    let server = Server::start().await;
    let response = server
        .open_stream(&format!("SLOW {}", "w ".repeat(200)))
        .await;
    let ended = server.leave(response).await;
    assert_eq!(ended, vec![FinishReason::Cancelled]);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_stop_ends_streams_cleanly_and_refuses_new_work() {
    let server = Server::start().await;
    let response = server
        .open_stream(&format!("SLOW {}", "w ".repeat(200)))
        .await;
    let reading = tokio::spawn(async move { response.text().await.unwrap() });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let record = Arc::clone(&server.record);
    let addr = server.addr;
    assert_eq!(server.stop().await, Stopped::Cleanly);
    let text = reading.await.unwrap();
    assert!(text.contains("\"finish_reason\":\"stop\""), "{text}");
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    assert_eq!(record.lock().unwrap().ended, vec![FinishReason::Stop]);
    assert!(TcpStream::connect(addr).is_err(), "the port is released");
}

#[tokio::test]
async fn a_stop_refuses_the_requests_still_waiting_with_shutting_down() {
    let server = Server::with(|c| {
        c.max_active = 1;
        c.queue_timeout = Duration::from_secs(30);
    })
    .await;
    let slow = chat(&format!("SLOW {}", "w ".repeat(200)));
    let running = server.spawn_chat(slow.clone());
    server.wait_for_queue(1, 0).await;
    // The second waits for the one slot; the stop comes first.
    let (client, url) = (server.client.clone(), server.url("/v1/chat/completions"));
    let waiting = tokio::spawn(async move {
        let response = client.post(url).json(&slow).send().await.unwrap();
        let retry_after = response.headers().get("retry-after").cloned();
        let body: Value = response.json().await.unwrap();
        (body, retry_after)
    });
    server.wait_for_queue(1, 1).await;
    assert_eq!(server.stop().await, Stopped::Cleanly);
    let (body, retry_after) = waiting.await.unwrap();
    assert_eq!(error_code(&body), "shutting_down", "{body}");
    assert_eq!(body["error"]["message"], "the server is shutting down");
    assert_eq!(retry_after.unwrap(), "1");
    assert_eq!(running.await.unwrap(), 200);
}

#[tokio::test]
async fn unknown_routes_and_methods_are_refused() {
    let server = Server::start().await;
    let (status, _) = server.get("/v1/nothing").await;
    assert_eq!(status, 404);
    let (status, _) = server.get("/v1/chat/completions").await;
    assert_eq!(status, 405);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

fn embed(input: Value) -> Value {
    json!({"model": EMBEDDER, "input": input})
}

#[tokio::test]
async fn embeddings_have_openai_shape_in_float_and_base64() {
    let server = Server::start().await;
    let (status, body) = server
        .post("/v1/embeddings", embed(json!(["ab", "abcd"])))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], EMBEDDER);
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 6, "total_tokens": 6})
    );
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(
            (item["object"].as_str(), item["index"].as_u64()),
            (Some("embedding"), Some(i as u64))
        );
        assert_eq!(item["embedding"].as_array().unwrap().len(), FAKE_DIMENSIONS);
        assert!(item.get("truncated").is_none());
    }
    let first: Vec<f64> = serde_json::from_value(data[0]["embedding"].clone()).unwrap();

    let mut request = embed(json!("ab"));
    request["encoding_format"] = json!("base64");
    let (_, body) = server.post("/v1/embeddings", request).await;
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f64> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
        .collect();
    assert_eq!(decoded, first);

    // Shortened to 2 dimensions: the first two, scaled back to length 1.
    let mut request = embed(json!("ab"));
    request["dimensions"] = json!(2);
    let (_, body) = server.post("/v1/embeddings", request).await;
    let short: Vec<f64> = serde_json::from_value(body["data"][0]["embedding"].clone()).unwrap();
    let norm = (first[0] * first[0] + first[1] * first[1]).sqrt();
    assert!(
        (short[0] - first[0] / norm).abs() < 1e-6 && (short[1] - first[1] / norm).abs() < 1e-6,
        "{short:?}"
    );

    // Token arrays, one or several.
    let (status, body) = server
        .post("/v1/embeddings", embed(json!([[101, 102], [7]])))
        .await;
    assert_eq!((status, body["data"].as_array().unwrap().len()), (200, 2));
    // A cut input says so, and is an error when truncation is off.
    let (_, body) = server
        .post("/v1/embeddings", embed(json!(["a LONG text", "short"])))
        .await;
    assert_eq!(body["data"][0]["truncated"], true);
    assert!(body["data"][1].get("truncated").is_none());
    let mut request = embed(json!("a LONG text"));
    request["truncate"] = json!(false);
    let (status, body) = server.post("/v1/embeddings", request).await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("input")),
        "{body}"
    );
    assert!(server
        .record
        .lock()
        .unwrap()
        .loads
        .iter()
        .all(|m| m == EMBEDDER));
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn embedding_requests_the_model_cannot_honour_are_400s_naming_why() {
    let server = Server::start().await;
    for (request, param, words) in [
        (embed(json!([])), "input", "empty"),
        (
            json!({"model": EMBEDDER, "input": "x", "dimensions": 5}),
            "dimensions",
            "vectors of 4",
        ),
        (
            json!({"model": EMBEDDER, "input": "x", "dimensions": 0}),
            "dimensions",
            "is 0",
        ),
        (
            json!({"model": MODEL, "input": "x"}),
            "model",
            "not an embedding model",
        ),
        (
            json!({"model": EMBEDDER, "input": "x", "encoding_format": "int8"}),
            "",
            "encoding_format",
        ),
        (json!({"model": EMBEDDER, "input": [1.5]}), "", "input"),
    ] {
        let (status, body) = server.post("/v1/embeddings", request.clone()).await;
        assert_eq!(status, 400, "{request}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(words), "{request}: {message}");
        if !param.is_empty() {
            assert_eq!(body["error"]["param"], param, "{request}");
        }
    }
    // A chat request to the embedding model, and an unknown model.
    let (status, body) = server
        .post(
            "/v1/chat/completions",
            json!({"model": EMBEDDER, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("embedding model"),
        "{body}"
    );
    let (status, _) = server
        .post(
            "/v1/embeddings",
            json!({"model": "nobody/none", "input": "x"}),
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn embeddings_of_several_clients_share_batches_and_pass_a_long_generation() {
    let server = Server::start().await;
    // A long answer (50 ms a token, 60 tokens) holds the worker for 3 s.
    let words = vec!["SLOW"; 60].join(" ");
    let chat_task = server.spawn_chat(chat(&words));
    server.wait_for_queue(1, 0).await;

    let requests: Vec<_> = (0..6)
        .map(|i| {
            let (client, url) = (server.client.clone(), server.url("/v1/embeddings"));
            let text = "x".repeat(i + 1);
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .json(&embed(json!([text])))
                    .send()
                    .await
                    .unwrap();
                (
                    response.status().as_u16(),
                    response.json::<Value>().await.unwrap(),
                )
            })
        })
        .collect();
    for (i, request) in requests.into_iter().enumerate() {
        let (status, body) = request.await.unwrap();
        assert_eq!(status, 200, "{body}");
        // Each client gets its own vector: the stand-in's first component is the length.
        let v: Vec<f64> = serde_json::from_value(body["data"][0]["embedding"].clone()).unwrap();
        let length = (i + 1) as f64;
        assert!(
            (v[0] - length / (length * length + 1.0).sqrt()).abs() < 1e-6,
            "{i}: {v:?}"
        );
    }
    // Every embedding was answered while the generation still ran.
    assert!(
        !chat_task.is_finished(),
        "the embeddings waited for the generation"
    );
    let batches = server.record.lock().unwrap().embed_batches.clone();
    assert_eq!(batches.iter().sum::<usize>(), 6, "{batches:?}");
    assert!(
        batches.len() < 6,
        "six requests, no batch shared: {batches:?}"
    );
    assert_eq!(chat_task.await.unwrap(), 200);

    // One request's bad input fails that request only, though it shared a batch.
    let bad = tokio::spawn({
        let (client, url) = (server.client.clone(), server.url("/v1/embeddings"));
        async move {
            client
                .post(url)
                .json(&embed(json!(["BADTOKEN"])))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let (status, _) = server.post("/v1/embeddings", embed(json!(["fine"]))).await;
    assert_eq!((status, bad.await.unwrap()), (200, 400));
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_tool_call_ends_the_answer_with_tool_calls() {
    let server = Server::start().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let mut request = chat("let me look CALL");
    request["tools"] = tools;
    let (status, body) = server.post("/v1/chat/completions", request.clone()).await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], "let me look CALL");
    let call = &choice["message"]["tool_calls"][0];
    assert_eq!(
        (
            &call["id"],
            &call["function"]["name"],
            &call["function"]["arguments"]
        ),
        (
            &json!("call_0"),
            &json!("get_weather"),
            &json!("{\"city\": \"Paris\"}")
        )
    );
    request["stream"] = json!(true);
    let lines = server.stream("/v1/chat/completions", request).await;
    let chunks: Vec<Value> = lines
        .iter()
        .filter(|l| *l != "[DONE]")
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let arguments: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str())
        .collect();
    assert_eq!(arguments, "{\"city\": \"Paris\"}");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn logprobs_come_per_token_whole_and_streamed_in_both_endpoints() {
    let server = Server::start().await;
    let mut request = chat("one two three");
    request["logprobs"] = json!(true);
    request["top_logprobs"] = json!(2);
    let (status, body) = server.post("/v1/chat/completions", request.clone()).await;
    assert_eq!(status, 200, "{body}");
    let content = body["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    let tokens: Vec<&str> = content
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(tokens, ["one", " two", " three"]);
    assert_eq!(content[1]["logprob"], json!(-0.2_f32));
    assert_eq!(content[1]["bytes"], json!(" two".as_bytes()));
    let top: Vec<&str> = content[1]["top_logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["token"].as_str().unwrap())
        .collect();
    assert_eq!(top, ["alt0", "alt1"]);

    request["stream"] = json!(true);
    let lines = server.stream("/v1/chat/completions", request).await;
    let streamed: Vec<String> = lines
        .iter()
        .filter(|l| *l != "[DONE]")
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .flat_map(|c| {
            c["choices"][0]["logprobs"]["content"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|t| t["token"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(streamed, tokens);

    let (status, body) = server
        .post(
            "/v1/completions",
            json!({"model": MODEL, "prompt": "red green", "logprobs": 1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let logprobs = &body["choices"][0]["logprobs"];
    assert_eq!(logprobs["tokens"], json!(["red", " green"]));
    assert_eq!(logprobs["text_offset"], json!([0, 3]));
    assert_eq!(logprobs["token_logprobs"], json!([-0.1_f32, -0.2_f32]));
    assert_eq!(logprobs["top_logprobs"][0], json!({"alt0": -1.1_f32}));

    // Not asked for: null, as OpenAI answers.
    let (_, body) = server.post("/v1/chat/completions", chat("plain")).await;
    assert_eq!(body["choices"][0]["logprobs"], Value::Null);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn logprobs_asked_wrongly_are_400s_naming_the_field() {
    let server = Server::start().await;
    let cases = [
        (
            "/v1/chat/completions",
            json!({"logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
        ),
        (
            "/v1/chat/completions",
            json!({"top_logprobs": 2}),
            "top_logprobs",
        ),
        ("/v1/chat/completions", json!({"logprobs": 3}), "logprobs"),
        ("/v1/completions", json!({"logprobs": 6}), "logprobs"),
        ("/v1/completions", json!({"logprobs": true}), "logprobs"),
    ];
    for (path, extra, param) in cases {
        let mut request = if path.ends_with("chat/completions") {
            chat("hello")
        } else {
            json!({"model": MODEL, "prompt": "hello"})
        };
        for (key, value) in extra.as_object().unwrap() {
            request[key] = value.clone();
        }
        let (status, body) = server.post(path, request).await;
        assert_eq!(
            (status, body["error"]["param"].as_str()),
            (400, Some(param)),
            "{extra}: {body}"
        );
    }
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_response_format_with_a_forced_call_is_a_400_before_any_work() {
    let server = Server::start().await;
    let mut request = chat("hello");
    request["tools"] = json!([{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {}}}}]);
    request["tool_choice"] = json!("required");
    request["response_format"] = json!({"type": "json_object"});
    request["stream"] = json!(true);
    let (status, body) = server.post("/v1/chat/completions", request).await;
    assert_eq!(
        (status, body["error"]["param"].as_str()),
        (400, Some("response_format")),
        "{body}"
    );
    assert!(server.record.lock().unwrap().loads.is_empty());
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_stream_that_fails_at_its_start_is_a_status_in_every_api() {
    let server = Server::start().await;
    let (_, model) = server.get(&format!("/v1/models/{MODEL}")).await;
    let long = "w ".repeat(model["context_length"].as_u64().unwrap() as usize);
    let requests = [
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": long}]}),
        ),
        (
            "/v1/messages",
            json!({"model": MODEL, "stream": true, "max_tokens": 8,
                "messages": [{"role": "user", "content": long}]}),
        ),
        (
            "/v1/responses",
            json!({"model": MODEL, "stream": true, "input": long}),
        ),
    ];
    for (path, body) in requests {
        let (status, body) = server.post(path, body).await;
        assert_eq!(status, 400, "{path}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("context"), "{path}: {body}");
    }
    // A start that is still working past the wait streams as before.
    let mut slow = chat("SLOW one two");
    slow["stream"] = json!(true);
    let lines = server.stream("/v1/chat/completions", slow).await;
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(server.stop().await, Stopped::Cleanly);
}
