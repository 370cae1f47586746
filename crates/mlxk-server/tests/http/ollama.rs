//! Ollama's API on the stand-in engine: NDJSON streams and whole answers of chat and generate,
//! options, tools, thinking, grammars, keep-alive, the model list and details, names as
//! Ollama's clients write them, and errors in Ollama's shape.

use super::*;

/// Sends a request and reads its NDJSON lines (or a whole JSON body, as one line).
async fn lines(server: &Server, path: &str, body: Value) -> (u16, String, Vec<Value>) {
    let response = server
        .client
        .post(server.url(path))
        .json(&body)
        .send()
        .await
        .unwrap();
    let (status, kind, text) = status_type_text(response).await;
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    (status, kind, lines)
}

fn ollama_chat(content: &str) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": content}]})
}

/// The text of a chat's lines (`message.content`), or of generate's (`response`).
fn said(lines: &[Value], field: &str) -> String {
    lines
        .iter()
        .filter_map(|l| match field {
            "response" | "thinking" if l.get("message").is_none() => l[field].as_str(),
            _ => l["message"][field].as_str(),
        })
        .collect()
}

/// Waits (up to 2 s) until `/api/ps` holds `count` models.
async fn wait_for_models(server: &Server, count: usize) -> Value {
    for _ in 0..100 {
        let (_, ps) = server.get("/api/ps").await;
        if ps["models"].as_array().unwrap().len() == count {
            return ps;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("/api/ps never held {count} models");
}

/// Seconds until the first model in `/api/ps` goes (`None`: never).
async fn seconds_left(server: &Server) -> Option<i64> {
    let (_, ps) = server.get("/api/ps").await;
    let expires = ps["models"][0]["expires_at"].as_str()?;
    let expires = chrono::DateTime::parse_from_rfc3339(expires).unwrap();
    Some((expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds())
}

/// Waits (up to 2 s: the worker shows the expiry once idle) until the first model in
/// `/api/ps` has about `seconds` left (`None`: kept for ever).
async fn wait_for_expiry(server: &Server, seconds: Option<i64>) {
    let mut left = None;
    for _ in 0..100 {
        left = seconds_left(server).await;
        let close = match (left, seconds) {
            (Some(left), Some(wanted)) => (wanted - 10..=wanted).contains(&left),
            (None, None) => true,
            _ => false,
        };
        if close {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the model has {left:?} s left, not about {seconds:?}");
}

#[tokio::test]
async fn a_chat_streams_ndjson_by_default_and_ends_with_counts_and_durations() {
    let server = Server::start().await;
    let (status, kind, lines) = lines(&server, "/api/chat", ollama_chat("hello there world")).await;
    assert_eq!((status, kind.as_str()), (200, "application/x-ndjson"));
    let (last, text) = lines.split_last().unwrap();
    assert_eq!(text.len(), 3, "one line per token: {lines:?}");
    for line in text {
        assert_eq!(line["model"], MODEL);
        assert_eq!(line["done"], false);
        assert_eq!(line["message"]["role"], "assistant");
        assert!(line["created_at"].as_str().unwrap().ends_with('Z'));
    }
    assert_eq!(said(&lines, "content"), "hello there world");
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert_eq!(last["message"], json!({"role": "assistant", "content": ""}));
    assert_eq!(
        (&last["prompt_eval_count"], &last["eval_count"]),
        (&json!(3), &json!(3))
    );
    let nanos = |key: &str| {
        last[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key}: {last}"))
    };
    assert!(nanos("total_duration") > 0);
    assert!(
        nanos("total_duration")
            >= nanos("load_duration") + nanos("prompt_eval_duration") + nanos("eval_duration"),
        "{last}"
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn stream_false_answers_whole_and_generate_answers_in_response() {
    let server = Server::start().await;
    let mut request = ollama_chat("hello there");
    request["stream"] = json!(false);
    let (status, body) = server.post("/api/chat", request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["message"],
        json!({"role": "assistant", "content": "hello there"})
    );
    assert_eq!(
        (&body["done"], &body["done_reason"], &body["eval_count"]),
        (&json!(true), &json!("stop"), &json!(2))
    );

    let generate = json!({"model": MODEL, "prompt": "once upon a time", "system": "be brief"});
    let (status, _, lines) = lines(&server, "/api/generate", generate.clone()).await;
    assert_eq!(status, 200);
    assert_eq!(said(&lines, "response"), "once upon a time");
    assert!(
        lines.iter().all(|l| l.get("message").is_none()),
        "{lines:?}"
    );
    assert_eq!(lines.last().unwrap()["response"], "");
    let mut whole = generate;
    whole["stream"] = json!(false);
    let (status, body) = server.post("/api/generate", whole.clone()).await;
    assert_eq!(
        (status, &body["response"]),
        (200, &json!("once upon a time"))
    );
    assert_eq!(body["prompt_eval_count"], 4);
    // Raw: the prompt as it is, no template.
    whole["raw"] = json!(true);
    whole.as_object_mut().unwrap().remove("system");
    let (status, body) = server.post("/api/generate", whole).await;
    assert_eq!(
        (status, &body["response"]),
        (200, &json!("once upon a time"))
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn options_bound_and_stop_the_answer() {
    let server = Server::start().await;
    let mut request = ollama_chat("a b c d e");
    request["stream"] = json!(false);
    request["options"] = json!({"num_predict": 2, "temperature": 0, "seed": 1, "num_gpu": 99});
    let (status, body) = server.post("/api/chat", request.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["message"]["content"],
            &body["done_reason"],
            &body["eval_count"]
        ),
        (&json!("a b"), &json!("length"), &json!(2))
    );
    request["options"] = json!({"stop": ["d"], "num_predict": -1});
    let (_, body) = server.post("/api/chat", request.clone()).await;
    assert_eq!(
        (&body["message"]["content"], &body["done_reason"]),
        (&json!("a b c "), &json!("stop"))
    );
    request["options"] = json!({"num_ctx": 3});
    let (_, body) = server.post("/api/chat", request.clone()).await;
    assert_eq!(body["done_reason"], "length");

    for (options, named) in [
        (json!({"temperature": 5}), "options.temperature"),
        (json!({"top_k": 1.5}), "options.top_k"),
        (json!({"num_predict": 0}), "options.num_predict"),
        (json!({"mirostat": 2}), "options.mirostat"),
        (json!({"temperature": "hot"}), "options.temperature"),
    ] {
        request["options"] = options;
        let (status, body) = server.post("/api/chat", request.clone()).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"].as_str().unwrap().contains(named), "{body}");
    }
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn tool_calls_come_whole_with_arguments_as_an_object() {
    let server = Server::start().await;
    let tools = json!([{"type": "function", "function": {"name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let mut request = ollama_chat("let me look CALL");
    request["tools"] = tools.clone();
    request["stream"] = json!(false);
    let (status, body) = server.post("/api/chat", request.clone()).await;
    assert_eq!(status, 200, "{body}");
    let message = &body["message"];
    assert_eq!(message["content"], "let me look CALL");
    assert_eq!(
        message["tool_calls"],
        json!([{"id": "call_0", "function": {"index": 0, "name": "get_weather", "arguments": {"city": "Paris"}}}])
    );
    assert_eq!(body["done_reason"], "stop");

    // Streamed: the call in one line, once its arguments are complete.
    request["stream"] = json!(true);
    let (_, _, lines) = lines(&server, "/api/chat", request).await;
    let calls: Vec<&Value> = lines
        .iter()
        .filter_map(|l| l["message"]["tool_calls"].as_array())
        .flatten()
        .collect();
    assert_eq!(calls.len(), 1, "{lines:?}");
    assert_eq!(calls[0]["function"]["arguments"], json!({"city": "Paris"}));

    // The result goes back as Ollama's clients send it: no ids, the tool's name.
    let history = json!({"model": MODEL, "stream": false, "tools": tools, "messages": [
        {"role": "user", "content": "weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]},
        {"role": "tool", "content": "sunny and warm", "tool_name": "get_weather"},
    ]});
    let (status, body) = server.post("/api/chat", history).await;
    assert_eq!(
        (status, &body["message"]["content"]),
        (200, &json!("sunny and warm"))
    );

    let mut bad = ollama_chat("hi");
    bad["tools"] = json!([{"type": "function", "function": {"name": "no spaces allowed"}}]);
    let (status, body) = server.post("/api/chat", bad).await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("tools[0].function"),
        "{body}"
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn thinking_is_split_from_the_answer_unless_think_is_false() {
    let server = Server::start().await;
    let mut request = ollama_chat("<think> let me see </think> the answer");
    request["stream"] = json!(false);
    let (_, body) = server.post("/api/chat", request.clone()).await;
    // The stand-in's words keep their spaces.
    assert_eq!(body["message"]["content"], " the answer", "{body}");
    assert_eq!(
        body["message"]["thinking"].as_str().unwrap().trim(),
        "let me see"
    );

    request["stream"] = json!(true);
    request["think"] = json!(true);
    let (_, _, streamed) = lines(&server, "/api/chat", request.clone()).await;
    assert_eq!(said(&streamed, "thinking").trim(), "let me see");
    assert_eq!(said(&streamed, "content"), " the answer");

    request["think"] = json!(false);
    let (_, _, hidden) = lines(&server, "/api/chat", request.clone()).await;
    assert!(
        hidden
            .iter()
            .all(|l| l["message"].get("thinking").is_none()),
        "{hidden:?}"
    );
    assert_eq!(said(&hidden, "content"), " the answer");

    let generate = json!({"model": MODEL, "prompt": "<think> hmm </think> yes", "stream": false});
    let (_, body) = server.post("/api/generate", generate).await;
    assert_eq!(
        (body["thinking"].as_str().unwrap().trim(), &body["response"]),
        ("hmm", &json!(" yes"))
    );

    request["think"] = json!("high");
    let (status, body) = server.post("/api/chat", request).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("'think'"),
        "{body}"
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn format_is_a_grammar_refused_before_queueing_when_it_cannot_be_enforced() {
    let server = Server::start().await;
    for format in [
        json!("json"),
        json!({"type": "object", "properties": {"a": {"type": "string"}}}),
    ] {
        let mut request = ollama_chat("{}");
        request["format"] = format;
        request["stream"] = json!(false);
        let (status, body) = server.post("/api/chat", request).await;
        assert_eq!(status, 200, "{body}");
    }
    let loads = server.record.lock().unwrap().loads.len();
    let mut request = ollama_chat("anything");
    request["format"] =
        json!({"type": "object", "properties": {"a": {"$ref": "http://example.com/x"}}});
    let (status, body) = server.post("/api/chat", request.clone()).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.starts_with("format:") && message.contains("http://example.com/x"),
        "{body}"
    );
    request["format"] = json!("yaml");
    assert_eq!(server.post("/api/chat", request).await.0, 400);
    // Refused before the queue: nothing reached the engine, nothing streamed.
    assert_eq!(server.record.lock().unwrap().loads.len(), loads);
    assert_eq!(server.record.lock().unwrap().ended.len(), 2);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn keep_alive_sets_how_long_the_model_stays() {
    let server = Server::start().await;
    let mut request = ollama_chat("hello");
    request["stream"] = json!(false);
    request["keep_alive"] = json!("1h");
    assert_eq!(server.post("/api/chat", request.clone()).await.0, 200);
    wait_for_expiry(&server, Some(3600)).await;

    // For ever: no expiry shown.
    request["keep_alive"] = json!(-1);
    assert_eq!(server.post("/api/chat", request.clone()).await.0, 200);
    wait_for_expiry(&server, None).await;
    // A request through another API gives the model the server's keep-alive again.
    let (status, _) = server
        .post(
            "/v1/chat/completions",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 200);
    wait_for_expiry(&server, Some(300)).await;
    // A request without keep_alive gives the model the server's (5 minutes), as in Ollama.
    request.as_object_mut().unwrap().remove("keep_alive");
    assert_eq!(server.post("/api/chat", request.clone()).await.0, 200);
    wait_for_expiry(&server, Some(300)).await;

    // Zero: unloaded as soon as the answer ends.
    request["keep_alive"] = json!(0);
    request["stream"] = json!(true);
    let (status, _, lines) = lines(&server, "/api/chat", request.clone()).await;
    assert_eq!(
        (status, lines.last().unwrap()["done"].clone()),
        (200, json!(true))
    );
    wait_for_models(&server, 0).await;

    // An empty chat loads, for as long as it says.
    let (status, body) = server
        .post(
            "/api/chat",
            json!({"model": MODEL, "messages": [], "keep_alive": "10m"}),
        )
        .await;
    assert_eq!(
        (status, &body["done_reason"]),
        (200, &json!("load")),
        "{body}"
    );
    assert_eq!(body["message"]["content"], "");
    wait_for_expiry(&server, Some(600)).await;
    let (status, body) = server
        .post(
            "/api/chat",
            json!({"model": MODEL, "messages": [], "keep_alive": "0s"}),
        )
        .await;
    assert_eq!((status, &body["done_reason"]), (200, &json!("unload")));
    assert_eq!(server.get("/api/ps").await.1, json!({"models": []}));

    request["keep_alive"] = json!("soon");
    let (status, body) = server.post("/api/chat", request).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("'keep_alive'"),
        "{body}"
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

/// A model whose chat template writes a reasoning block.
fn write_reasoning_model(server: &Server) -> &'static str {
    const NAME: &str = "mlx-community/Qwen3-0.6B-thinking";
    let cache = FixtureCache::create(server._home.path()).unwrap();
    let mut files = mlxk_fixtures::healthy_model_files("qwen3", None, true);
    files.retain(|(name, _)| name != "tokenizer_config.json");
    let config = json!({"eos_token": "</s>", "chat_template":
        "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|><think>\n"});
    files.push((
        "tokenizer_config.json".into(),
        mlxk_fixtures::Content::Bytes(serde_json::to_vec(&config).unwrap()),
    ));
    let commit = mlxk_fixtures::commit_id(NAME);
    cache
        .write(&ModelSpec {
            repo_id: NAME.into(),
            snapshots: vec![SnapshotSpec {
                commit: commit.clone(),
                files,
            }],
            refs: vec![("main".into(), commit)],
            extra_blobs: Vec::new(),
            modified: mlxk_fixtures::fixed_time(),
        })
        .unwrap();
    NAME
}

#[tokio::test]
async fn tags_list_the_runnable_models_and_show_tells_their_capabilities() {
    let server = Server::start().await;
    let thinker = write_reasoning_model(&server);
    let (status, tags) = server.get("/api/tags").await;
    assert_eq!(status, 200);
    let models = tags["models"].as_array().unwrap();
    let listed: Vec<&str> = models.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert!(listed.contains(&MODEL) && listed.contains(&EMBEDDER) && listed.contains(&thinker));
    // Only runnable ones: no GGUF, no broken model.
    assert!(
        !listed
            .iter()
            .any(|n| n.contains("GGUF") || n.contains("truncated")),
        "{listed:?}"
    );
    let llama = models.iter().find(|m| m["name"] == MODEL).unwrap();
    assert_eq!(llama["model"], MODEL);
    assert_eq!(llama["digest"], mlxk_fixtures::commit_id(MODEL));
    assert!(llama["size"].as_u64().unwrap() > 0);
    assert!(chrono::DateTime::parse_from_rfc3339(llama["modified_at"].as_str().unwrap()).is_ok());
    assert_eq!(
        llama["details"],
        json!({"parent_model": "", "format": "mlx", "family": "llama", "families": ["llama"],
            "parameter_size": "9K", "quantization_level": "Q4"})
    );

    // Every listed name resolves when sent back, as clients list then use.
    for name in &listed {
        let (status, body) = server.post("/api/show", json!({"model": name})).await;
        assert_eq!(status, 200, "{name}: {body}");
    }
    let (_, show) = server.post("/api/show", json!({"model": MODEL})).await;
    assert_eq!(show["capabilities"], json!(["completion", "tools"]));
    assert_eq!(show["model_info"]["general.architecture"], "llama");
    assert_eq!(show["model_info"]["llama.context_length"], 131072);
    assert_eq!(show["model_info"]["llama.block_count"], 2);
    assert_eq!(show["details"], llama["details"]);
    assert!(
        show["parameters"]
            .as_str()
            .unwrap()
            .contains("temperature 0.7"),
        "{show}"
    );
    assert!(show["modelfile"]
        .as_str()
        .unwrap()
        .contains(&format!("FROM {MODEL}")));
    assert!(show.get("template").is_none());
    let (_, show) = server.post("/api/show", json!({"name": EMBEDDER})).await;
    assert_eq!(show["capabilities"], json!(["embedding"]));
    let (_, show) = server.post("/api/show", json!({"model": thinker})).await;
    assert_eq!(
        show["capabilities"],
        json!(["completion", "tools", "thinking"])
    );
    assert_eq!(show["details"]["quantization_level"], "");

    // Ollama's `name:tag`: a revision of ours.
    let (status, _) = server
        .post(
            "/api/show",
            json!({"model": "Qwen2.5-0.5B-Instruct-4bit:v1.0"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = server
        .post(
            "/api/show",
            json!({"model": "Qwen2.5-0.5B-Instruct-4bit:v9"}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = server.post("/api/show", json!({})).await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("'model'"),
        "{body}"
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn names_resolve_as_ollamas_clients_write_them_and_are_answered_as_given() {
    let server = Server::start().await;
    let name = format!("{MODEL}:latest");
    let request = json!({"model": name, "stream": false,
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, body) = server.post("/api/chat", request).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], name);
    // Memory knows it by its own name.
    assert_eq!(server.get("/api/ps").await.1["models"][0]["name"], MODEL);
    let (status, _) = server
        .post(
            "/api/show",
            json!({"model": "Llama-3.2-1B-Instruct-4bit:latest"}),
        )
        .await;
    assert_eq!(status, 200);
    // An unload names the model as it was held.
    let unloaded = server.unload(&name).await;
    assert_eq!(
        (&unloaded["model"], &unloaded["unloaded"]),
        (&json!(MODEL), &json!("now"))
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn errors_have_ollamas_shape_and_status() {
    let server = Server::start().await;
    let cases = [
        // Ollama's clients offer to pull on a 404: this server says it cannot.
        (
            "/api/chat",
            json!({"model": "nobody/none", "messages": [{"role": "user", "content": "hi"}]}),
            404,
            "cannot pull",
        ),
        (
            "/api/generate",
            json!({"model": "nobody/none", "prompt": "hi"}),
            404,
            "nobody/none",
        ),
        (
            "/api/show",
            json!({"model": "nobody/none"}),
            404,
            "cannot pull",
        ),
        (
            "/api/chat",
            json!({"model": MODEL, "messages": "hi"}),
            400,
            "messages",
        ),
        (
            "/api/chat",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "x", "images": ["aGk="]}]}),
            400,
            "images",
        ),
        (
            "/api/chat",
            json!({"model": MODEL, "messages": [{"role": "robot", "content": "x"}]}),
            400,
            "messages[0].role",
        ),
        (
            "/api/chat",
            json!({"model": EMBEDDER, "messages": [{"role": "user", "content": "x"}]}),
            400,
            "embedding model",
        ),
        (
            "/api/generate",
            json!({"model": MODEL, "prompt": "x", "suffix": "y"}),
            400,
            "'suffix'",
        ),
        (
            "/api/generate",
            json!({"model": MODEL, "prompt": "x", "images": ["aGk="]}),
            400,
            "'images'",
        ),
        (
            "/api/generate",
            json!({"model": MODEL, "prompt": "x", "context": [1, 2]}),
            400,
            "'context'",
        ),
        (
            "/api/generate",
            json!({"model": MODEL, "prompt": "x", "template": "{{ .Prompt }}"}),
            400,
            "'template'",
        ),
        // Failures as the model starts are statuses, before any line is streamed.
        (
            "/api/chat",
            ollama_chat("BADTEMPLATE"),
            400,
            "roles must alternate",
        ),
        (
            "/api/chat",
            json!({"model": TOO_BIG, "messages": [{"role": "user", "content": "hi"}]}),
            507,
            "MB",
        ),
        (
            "/api/chat",
            ollama_chat("FAIL"),
            500,
            "the fake engine failed",
        ),
        (
            "/api/generate",
            json!({"model": MODEL, "prompt": "PANIC now"}),
            500,
            "this request ended",
        ),
    ];
    for (path, body, status, says) in cases {
        let (got, answer) = server.post(path, body.clone()).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        let error = answer["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{answer}"));
        assert!(error.contains(says), "{path} {body}: {error}");
    }
    // The server goes on.
    assert_eq!(
        server.post("/api/chat", ollama_chat("still here")).await.0,
        200
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn logprobs_go_with_the_text_they_belong_to() {
    let server = Server::start().await;
    let mut request = ollama_chat("one two");
    request["logprobs"] = json!(true);
    request["top_logprobs"] = json!(1);
    let (_, _, streamed) = lines(&server, "/api/chat", request.clone()).await;
    let tokens: Vec<&Value> = streamed
        .iter()
        .filter_map(|l| l["logprobs"].as_array())
        .flatten()
        .collect();
    assert_eq!(tokens.len(), 2, "{streamed:?}");
    assert_eq!(
        (&tokens[0]["token"], &tokens[0]["logprob"]),
        (&json!("one"), &json!(-0.1f32))
    );
    assert_eq!(tokens[1]["top_logprobs"][0]["token"], "alt0");
    request["stream"] = json!(false);
    let (_, body) = server.post("/api/chat", request).await;
    assert_eq!(body["logprobs"].as_array().unwrap().len(), 2, "{body}");
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn ollamas_ps_and_generate_show_load_and_unload_the_model_in_memory() {
    let server = Server::start().await;
    let (status, body) = server.get("/api/version").await;
    assert_eq!(status, 200);
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(server.get("/api/ps").await.1, json!({"models": []}));

    let (status, _) = server
        .post("/v1/chat/completions", chat("hello there"))
        .await;
    assert_eq!(status, 200);
    let (_, ps) = server.get("/api/ps").await;
    let resident = &ps["models"][0];
    assert_eq!(resident["name"], MODEL);
    assert_eq!(resident["size"], FAKE_MODEL_BYTES);
    assert!(resident["loaded_at"].is_string());
    // Idle with the default keep-alive (5 minutes): it goes in about that long.
    wait_for_expiry(&server, Some(300)).await;

    // `ollama stop` / `mlxk stop`: an empty generate with keep_alive 0.
    let body = server.unload(MODEL).await;
    assert_eq!(body["unloaded"], "now");
    assert_eq!(server.get("/api/ps").await.1, json!({"models": []}));
    let (_, again) = server
        .post("/api/generate", json!({"model": MODEL, "keep_alive": "0s"}))
        .await;
    assert_eq!(again["unloaded"], "not_loaded");
    let (_, models) = server.get(&format!("/v1/models/{MODEL}")).await;
    assert_eq!(models["loaded"], false);

    // An empty generate without keep_alive loads it ahead of requests.
    let (status, body) = server.post("/api/generate", json!({"model": MODEL})).await;
    assert_eq!((status, body["done_reason"].as_str()), (200, Some("load")));
    assert_eq!(body["response"], "");
    assert_eq!(server.get("/api/ps").await.1["models"][0]["name"], MODEL);
    assert_eq!(server.record.lock().unwrap().loads, [MODEL, MODEL]);

    // Errors in Ollama's shape: no such model, a model that fails, a malformed body.
    let (status, body) = server
        .post(
            "/api/generate",
            json!({"model": "nobody/none", "keep_alive": "0s"}),
        )
        .await;
    assert_eq!(status, 404);
    assert!(
        body["error"].as_str().unwrap().contains("nobody/none"),
        "{body}"
    );
    let (status, body) = server
        .post("/api/generate", json!({"model": TOO_BIG}))
        .await;
    assert_eq!(status, 507, "{body}");
    assert!(body["error"].as_str().unwrap().contains("MB"), "{body}");
    let (status, body) = server.post("/api/generate", json!({"prompt": 1})).await;
    assert_eq!(status, 400);
    assert!(body["error"].is_string(), "{body}");
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn an_unload_asked_during_a_generation_waits_for_its_end() {
    let server = Server::start().await;
    let slow = server.spawn_chat(chat(&format!("SLOW {}", "w ".repeat(10))));
    server.wait_for_queue(1, 0).await;
    let body = server.unload(MODEL).await;
    assert_eq!(body["unloaded"], "when_idle");
    // Still held while it answers; gone once the answer is complete.
    assert_eq!(server.get("/api/ps").await.1["models"][0]["name"], MODEL);
    assert_eq!(slow.await.unwrap(), 200);
    wait_for_models(&server, 0).await;
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn ollama_embeds_and_lists_both_models_in_memory() {
    let server = Server::start().await;
    let (status, body) = server
        .post(
            "/api/embed",
            json!({"model": EMBEDDER, "input": ["ab", "abc"]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], EMBEDDER);
    assert_eq!(body["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(body["prompt_eval_count"], 6);
    let (status, body) = server
        .post(
            "/api/embed",
            json!({"model": EMBEDDER, "input": "ab", "dimensions": 2}),
        )
        .await;
    assert_eq!(
        (status, body["embeddings"][0].as_array().unwrap().len()),
        (200, 2)
    );
    let (status, body) = server
        .post(
            "/api/embeddings",
            json!({"model": EMBEDDER, "prompt": "ab"}),
        )
        .await;
    assert_eq!(
        (status, body["embedding"].as_array().unwrap().len()),
        (200, FAKE_DIMENSIONS)
    );
    let (status, body) = server
        .post(
            "/api/embed",
            json!({"model": EMBEDDER, "input": "a LONG one", "truncate": false}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("truncation is off"),
        "{body}"
    );
    let (status, body) = server
        .post("/api/embed", json!({"model": MODEL, "input": "x"}))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not an embedding model"),
        "{body}"
    );

    // A text model beside the embedding model: both in memory, both listed, each let go alone.
    let (status, _) = server.post("/v1/chat/completions", chat("hello")).await;
    assert_eq!(status, 200);
    let (_, ps) = server.get("/api/ps").await;
    let names = resident_names(&ps);
    assert_eq!(names, [MODEL, EMBEDDER]);
    let (_, models) = server.get("/v1/models").await;
    let loaded = loaded_ids(&models);
    assert_eq!(loaded.len(), 2, "{loaded:?}");
    let embedder = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == EMBEDDER)
        .unwrap();
    assert_eq!(embedder["capabilities"], json!(["embeddings"]));
    // Each keeps its own keep-alive.
    let (status, _) = server
        .post(
            "/api/embed",
            json!({"model": EMBEDDER, "input": "ab", "keep_alive": -1}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, ps) = server.get("/api/ps").await;
    assert!(ps["models"][0]["expires_at"].is_string(), "{ps}");
    assert!(ps["models"][1]["expires_at"].is_null(), "{ps}");
    assert_eq!(server.unload(EMBEDDER).await["unloaded"], "now");
    let (_, ps) = server.get("/api/ps").await;
    assert_eq!(ps["models"].as_array().unwrap().len(), 1);
    assert_eq!(ps["models"][0]["name"], MODEL);
    // An embedding model loaded ahead of requests, as `serve --model` does.
    let (status, _) = server
        .post("/api/generate", json!({"model": EMBEDDER}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        server.get("/api/ps").await.1["models"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}
