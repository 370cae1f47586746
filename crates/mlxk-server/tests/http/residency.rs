//! Several models in memory: requests for two models interleave without reloading either,
//! the least recently used idle model goes when another needs its place (by count or by the
//! models' memory budget), a request waits for a place without holding up the requests for
//! models held, and each model has its own keep-alive.

use super::*;

/// A second text model of the standard fixtures.
const OTHER: &str = "mlx-community/Qwen3-0.6B-sharded";

fn ask(model: &str, content: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": content}]})
}

/// The names `/api/ps` lists, in its order.
async fn in_memory(server: &Server) -> Vec<String> {
    let (_, ps) = server.get("/api/ps").await;
    ps["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

/// Waits (up to 5 s) until `/api/ps` lists exactly `names`.
async fn wait_for_memory(server: &Server, names: &[&str]) {
    let mut shown = Vec::new();
    for _ in 0..100 {
        shown = in_memory(server).await;
        if shown == names {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/api/ps held {shown:?}, not {names:?}");
}

fn loads(server: &Server) -> Vec<String> {
    server.record.lock().unwrap().loads.clone()
}

fn unloads(server: &Server) -> Vec<String> {
    server.record.lock().unwrap().unloads.clone()
}

#[tokio::test]
async fn two_models_alternate_without_reloading_and_both_are_shown_loaded() {
    let server = Server::start().await;
    for (model, words) in [
        (MODEL, "one"),
        (OTHER, "two"),
        (MODEL, "three"),
        (OTHER, "four"),
    ] {
        let (status, body) = server.post("/v1/chat/completions", ask(model, words)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["model"], model);
        assert_eq!(body["choices"][0]["message"]["content"], words);
    }
    assert_eq!(loads(&server), [MODEL, OTHER]);
    assert!(unloads(&server).is_empty());
    assert_eq!(in_memory(&server).await, [MODEL, OTHER]);
    let (_, models) = server.get("/v1/models").await;
    let loaded = loaded_ids(&models);
    assert_eq!(loaded.len(), 2, "{models}");
    assert!(
        loaded.contains(&MODEL) && loaded.contains(&OTHER),
        "{loaded:?}"
    );
    // Each has its own expiry: the server's keep-alive from its last answer.
    let (_, ps) = server.get("/api/ps").await;
    for model in ps["models"].as_array().unwrap() {
        assert!(model["expires_at"].is_string(), "{ps}");
        assert_eq!(model["size"], FAKE_MODEL_BYTES);
    }
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn with_one_place_the_model_asked_for_takes_the_place_of_the_idle_one() {
    let server = Server::with(|config| config.max_loaded_models = 1).await;
    for model in [MODEL, OTHER, MODEL] {
        let (status, body) = server.post("/v1/chat/completions", ask(model, "hi")).await;
        assert_eq!(status, 200, "{body}");
    }
    assert_eq!(loads(&server), [MODEL, OTHER, MODEL]);
    assert_eq!(unloads(&server), [MODEL, OTHER]);
    assert_eq!(in_memory(&server).await, [MODEL]);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn the_least_recently_used_model_goes_whatever_its_kind() {
    let server = Server::with(|config| config.max_loaded_models = 2).await;
    for model in [MODEL, OTHER, MODEL] {
        let (status, _) = server.post("/v1/chat/completions", ask(model, "hi")).await;
        assert_eq!(status, 200);
    }
    // The embedding model needs a place: the text model used longest ago goes.
    let (status, body) = server
        .post(
            "/v1/embeddings",
            json!({"model": EMBEDDER, "input": "a text"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(unloads(&server), [OTHER]);
    assert_eq!(in_memory(&server).await, [MODEL, EMBEDDER]);
    assert_eq!(loads(&server), [MODEL, OTHER, EMBEDDER]);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_model_without_room_waits_for_the_busy_one_while_its_requests_go_on() {
    // Room for one of the two (700 MB each).
    let server = Server::with(|config| config.models_memory = 1_000_000_000).await;
    let slow = server.spawn_chat(ask(MODEL, &format!("SLOW {}", "w ".repeat(12))));
    server.wait_for_queue(1, 0).await;
    let other = server.spawn_chat(ask(OTHER, "after"));
    server.wait_for_queue(1, 1).await;
    // A later request for the model held is not held up by the one waiting for a place.
    let (status, body) = server
        .post("/v1/chat/completions", ask(MODEL, "meanwhile"))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["choices"][0]["message"]["content"], "meanwhile");
    assert_eq!(loads(&server), [MODEL], "the other model still waits");
    let (_, health) = server.get("/health").await;
    assert_eq!(health["queue"]["waiting"], 1, "{health}");
    // Once the slow answer ends, the idle model makes room.
    assert_eq!(slow.await.unwrap(), 200);
    assert_eq!(other.await.unwrap(), 200);
    assert_eq!(loads(&server), [MODEL, OTHER]);
    assert_eq!(unloads(&server), [MODEL]);
    assert_eq!(in_memory(&server).await, [OTHER]);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn keep_alive_zero_lets_that_model_go_alone() {
    let server = Server::start().await;
    for model in [MODEL, OTHER] {
        let (status, _) = server.post("/v1/chat/completions", ask(model, "hi")).await;
        assert_eq!(status, 200);
    }
    // `ollama stop` of one model.
    let body = server.unload(MODEL).await;
    assert_eq!(body["unloaded"], "now");
    assert_eq!(in_memory(&server).await, [OTHER]);
    assert_eq!(unloads(&server), [MODEL]);
    // A request with keep_alive 0: its model goes once it has answered, the other stays.
    let (status, body) = server
        .post(
            "/api/chat",
            json!({"model": MODEL, "messages": [{"role": "user", "content": "bye"}],
                   "stream": false, "keep_alive": 0}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_for_memory(&server, &[OTHER]).await;
    assert_eq!(unloads(&server), [MODEL, MODEL]);
    assert_eq!(loads(&server), [MODEL, OTHER, MODEL]);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn each_model_goes_when_its_own_keep_alive_runs_out() {
    let server = Server::start().await;
    let (status, _) = server.post("/v1/chat/completions", ask(MODEL, "hi")).await;
    assert_eq!(status, 200);
    let (status, body) = server
        .post(
            "/api/chat",
            json!({"model": OTHER, "messages": [{"role": "user", "content": "hi"}],
                   "stream": false, "keep_alive": "1s"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Both shown, each with its own expiry: the server's five minutes, and one second.
    let (_, ps) = server.get("/api/ps").await;
    let expiry = |i: usize| {
        let at = ps["models"][i]["expires_at"].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(at).unwrap()
    };
    assert!(
        expiry(0) - expiry(1) > chrono::Duration::seconds(200),
        "{ps}"
    );
    wait_for_memory(&server, &[MODEL]).await;
    assert_eq!(unloads(&server), [OTHER]);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_model_that_fits_in_no_memory_is_still_a_507_and_the_others_stay() {
    let server = Server::start().await;
    let (status, _) = server.post("/v1/chat/completions", ask(MODEL, "hi")).await;
    assert_eq!(status, 200);
    let (status, body) = server
        .post("/v1/chat/completions", ask(TOO_BIG, "hi"))
        .await;
    assert_eq!(status, 507, "{body}");
    assert_eq!(error_code(&body), "insufficient_memory");
    assert_eq!(in_memory(&server).await, [MODEL]);
    assert!(unloads(&server).is_empty());
    assert_eq!(server.stop().await, Stopped::Cleanly);

    // Beyond the models' budget even alone: refused at once, naming the budget.
    let server = Server::with(|config| config.models_memory = 500_000_000).await;
    let (status, body) = server.post("/v1/chat/completions", ask(MODEL, "hi")).await;
    assert_eq!(status, 507, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("--models-memory"), "{message}");
    assert!(loads(&server).is_empty());
    assert_eq!(server.stop().await, Stopped::Cleanly);
}
