//! `GET /metrics` on the stand-in engine: Prometheus' text format, counters that follow the requests.

use super::*;

/// One scrape: its content type and its samples.
struct Scrape {
    content_type: String,
    text: String,
}

impl Scrape {
    /// The value of the sample `name` whose labels are exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.text
            .lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| {
                let (series, value) = line.rsplit_once(' ')?;
                let (sample, sample_labels) = match series.split_once('{') {
                    Some((sample, rest)) => (sample, parse_labels(rest.strip_suffix('}')?)),
                    None => (series, Vec::new()),
                };
                let wanted: Vec<(String, String)> = labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
                (sample == name && sample_labels == wanted).then(|| value.parse().unwrap())
            })
    }

    fn chat(&self, name: &str) -> Option<f64> {
        self.value(name, &[("api", "openai_chat")])
    }
}

/// `a="x",b="y"` as pairs; the test's label values hold no quotes or commas.
fn parse_labels(text: &str) -> Vec<(String, String)> {
    text.split(',')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap();
            (key.to_string(), value.trim_matches('"').to_string())
        })
        .collect()
}

impl Server {
    async fn scrape(&self) -> Scrape {
        let response = self.client.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_string();
        Scrape {
            content_type,
            text: response.text().await.unwrap(),
        }
    }

    /// Scrapes until `ready` holds: a stream's request is counted when the server drops the
    /// stream, a moment after its client has read the end.
    async fn scrape_when(&self, ready: impl Fn(&Scrape) -> bool) -> Scrape {
        for _ in 0..100 {
            let scrape = self.scrape().await;
            if ready(&scrape) {
                return scrape;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("the metrics never got there:\n{}", self.scrape().await.text);
    }
}

#[tokio::test]
async fn requests_tokens_and_token_times_are_counted_by_api_and_status() {
    let server = Server::start().await;
    let (status, whole) = server
        .post("/v1/chat/completions", chat("hello there world"))
        .await;
    assert_eq!(status, 200, "{whole}");

    let mut streamed = chat("a b c d");
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let lines = server.stream("/v1/chat/completions", streamed).await;
    let chunks: Vec<Value> = lines
        .iter()
        .filter(|l| *l != "[DONE]")
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let text_chunks = chunks
        .iter()
        .filter(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|t| !t.is_empty())
        })
        .count();
    assert_eq!(text_chunks, 4);
    let stream_usage = &chunks.last().unwrap()["usage"];

    let mut unknown = chat("hello");
    unknown["model"] = json!("nobody/no-such-model");
    let (status, _) = server.post("/v1/chat/completions", unknown).await;
    assert_eq!(status, 404);
    let mut invalid = chat("hello");
    invalid["temperature"] = json!(5);
    let (status, _) = server.post("/v1/chat/completions", invalid).await;
    assert_eq!(status, 400);
    let (status, _) = server.get("/no/such/route").await;
    assert_eq!(status, 404);

    let scrape = server
        .scrape_when(|s| {
            s.value(
                "mlxk_requests_total",
                &[("api", "openai_chat"), ("status", "200")],
            ) == Some(2.0)
        })
        .await;
    assert_eq!(
        scrape.content_type,
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let requests =
        |api, status| scrape.value("mlxk_requests_total", &[("api", api), ("status", status)]);
    assert_eq!(requests("openai_chat", "404"), Some(1.0));
    assert_eq!(requests("openai_chat", "400"), Some(1.0));
    assert_eq!(requests("other", "404"), Some(1.0));

    let tokens = |field: &str| {
        (whole["usage"][field].as_u64().unwrap() + stream_usage[field].as_u64().unwrap()) as f64
    };
    assert_eq!(
        scrape.chat("mlxk_prompt_tokens_total"),
        Some(tokens("prompt_tokens"))
    );
    assert_eq!(
        scrape.chat("mlxk_generated_tokens_total"),
        Some(tokens("completion_tokens"))
    );
    // One first token per answer; a gap between each two text events: 3 words, then 4.
    assert_eq!(
        scrape.chat("mlxk_time_to_first_token_seconds_count"),
        Some(2.0)
    );
    assert_eq!(
        scrape.chat("mlxk_inter_token_seconds_count"),
        Some(2.0 + 3.0)
    );
    let first_token_total = scrape.chat("mlxk_time_to_first_token_seconds_sum").unwrap();
    assert!(first_token_total > 0.0 && first_token_total < 10.0);

    assert_eq!(
        scrape.value("mlxk_model_memory_bytes", &[("model", MODEL)]),
        Some(FAKE_MODEL_BYTES as f64)
    );
    assert_eq!(scrape.value("mlxk_queue_waiting", &[]), Some(0.0));
    assert_eq!(scrape.value("mlxk_queue_active", &[]), Some(0.0));
    assert_eq!(scrape.value("mlxk_queue_capacity", &[]), Some(32.0));
    // Neither what was said nor a model name a client made up.
    for secret in ["hello", "there", "nobody", "no-such-model"] {
        assert!(
            !scrape.text.contains(secret),
            "{secret} in\n{}",
            scrape.text
        );
    }
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn the_queue_and_the_models_are_read_at_each_scrape() {
    let server = Server::start().await;
    let scrape = server.scrape().await;
    assert!(
        !scrape.text.contains("mlxk_model_memory_bytes{"),
        "{}",
        scrape.text
    );

    let slow = server.spawn_chat(chat("SLOW one two three four five six seven eight"));
    server.wait_for_queue(1, 0).await;
    let scrape = server.scrape().await;
    assert_eq!(scrape.value("mlxk_queue_active", &[]), Some(1.0));
    assert_eq!(scrape.value("mlxk_queue_waiting", &[]), Some(0.0));
    assert_eq!(slow.await.unwrap(), 200);

    let (status, _) = server
        .post(
            "/v1/embeddings",
            json!({"model": EMBEDDER, "input": "two words"}),
        )
        .await;
    assert_eq!(status, 200);
    let scrape = server.scrape().await;
    assert_eq!(scrape.value("mlxk_queue_active", &[]), Some(0.0));
    assert_eq!(
        scrape.value("mlxk_model_memory_bytes", &[("model", MODEL)]),
        Some(FAKE_MODEL_BYTES as f64)
    );
    assert!(scrape
        .value("mlxk_model_memory_bytes", &[("model", EMBEDDER)])
        .is_some());
    // The embedder read its input: 2 words and 2 special tokens in the stand-in.
    assert_eq!(
        scrape.value("mlxk_prompt_tokens_total", &[("api", "openai_embeddings")]),
        Some(4.0)
    );

    server.unload(MODEL).await;
    let scrape = server.scrape().await;
    assert_eq!(
        scrape.value("mlxk_model_memory_bytes", &[("model", MODEL)]),
        None
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn with_an_api_key_the_metrics_need_it_and_refusals_are_counted() {
    let server = Server::with(|c| c.api_key = Some("sk-local".into())).await;
    let (status, body) = server.get("/metrics").await;
    assert_eq!(status, 401);
    assert_eq!(error_code(&body), "invalid_api_key");
    let (status, _) = server.post("/v1/chat/completions", chat("hi")).await;
    assert_eq!(status, 401);
    let (status, _) = server.get("/health").await;
    assert_eq!(status, 200);

    let response = server
        .client
        .get(server.url("/metrics"))
        .bearer_auth("sk-local")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let scrape = Scrape {
        content_type: String::new(),
        text: response.text().await.unwrap(),
    };
    let requests =
        |api, status| scrape.value("mlxk_requests_total", &[("api", api), ("status", status)]);
    assert_eq!(requests("metrics", "401"), Some(1.0));
    assert_eq!(requests("openai_chat", "401"), Some(1.0));
    assert_eq!(requests("health", "200"), Some(1.0));
    assert!(!scrape.text.contains("sk-local"));
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_stream_refused_at_its_start_is_counted_with_its_status() {
    let server = Server::start().await;
    let refused = [
        (
            "/api/chat",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "BADTEMPLATE"}]}),
            "ollama_chat",
        ),
        (
            "/v1/chat/completions",
            json!({"model": MODEL, "stream": true,
                "messages": [{"role": "user", "content": "BADTEMPLATE"}]}),
            "openai_chat",
        ),
    ];
    for (path, body, api) in refused {
        assert_eq!(server.post(path, body).await.0, 400, "{path}");
        let scrape = server
            .scrape_when(|s| {
                s.value("mlxk_requests_total", &[("api", api), ("status", "400")])
                    .is_some()
            })
            .await;
        assert_eq!(
            scrape.value("mlxk_requests_total", &[("api", api), ("status", "200")]),
            None,
            "{api}: a refusal counted as a success"
        );
    }
    assert_eq!(server.stop().await, Stopped::Cleanly);
}
