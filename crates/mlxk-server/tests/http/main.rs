//! The server's HTTP behaviour on a deterministic stand-in for the engine: every error status,
//! the response and stream shapes of each API, cancellation, queueing, auth and shutdown, in
//! milliseconds and without a model. The real engine is tested through the same server by the
//! Python interop tests (`tests/interop`). This file holds the stand-in and the harness; one
//! module per API holds its tests.

mod anthropic;
mod audio;
mod metrics;
mod ollama;
mod openai;
mod residency;
mod responses;

use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use mlxk_core::{HubCache, RunnableModel};
use mlxk_engine::{
    AnswerOptions, Candidate, Embedded, EmbeddingInput, FinishReason, InputKind, Prompt, Reasoning,
    TextEvent, TextStream, TokenLogprob,
};
use mlxk_fixtures::{FixtureCache, ModelSpec, SnapshotSpec};
use mlxk_server::backend::{Backend, Generation};
use mlxk_server::{start_with_backend, ServerConfig, ServerHandle, ServiceError, Stopped, Usage};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MODEL: &str = "mlx-community/Llama-3.2-1B-Instruct-4bit";
/// Loading it fails as a machine short of memory does.
const TOO_BIG: &str = "mlx-community/Llama-3.2-1B-Instruct-8bit";
/// Loading it fails as an impossible config.json does.
const UNUSABLE: &str = "mlx-community/Qwen2.5-0.5B-Instruct-4bit";
/// What the stand-in says a loaded model holds.
const FAKE_MODEL_BYTES: u64 = 700_000_000;
/// An embedding model (a quantized BERT), added to the standard fixtures.
const EMBEDDER: &str = "mlx-community/all-MiniLM-L6-v2-4bit";
/// The stand-in embedder's vectors: `[length of the text, 1, 0, 0]`, then normalised.
const FAKE_DIMENSIONS: usize = 4;

/// What the stand-in engine did, for the tests to read.
#[derive(Default)]
struct Record {
    loads: Vec<String>,
    /// The models let go, in order.
    unloads: Vec<String>,
    /// How each generation ended, in order.
    ended: Vec<FinishReason>,
    /// The number of inputs of each embedding batch, in order.
    embed_batches: Vec<usize>,
    /// Generations started and batch steps taken, in order (`start`, `step`).
    timeline: Vec<&'static str>,
    /// How long loading a text model takes (none unless a test sets it).
    load_time: Duration,
}

/// The stand-in engine: answers with the words of the prompt's last message, one per token.
/// Words in the prompt steer it: `SLOW` (50 ms per token), `FAIL` (an engine error at the
/// first token), `BREAK` (an engine error after two words), `PANIC` (a panic at the first token), `BADTEMPLATE` (the chat template
/// refuses the prompt), `CALL` (with tools offered: after the words, a call of the first tool
/// with `{"city": "Paris"}`, its arguments in two pieces). `<think>…</think>` in the words is
/// reasoning. `STEPFAIL` and `STEPPANIC` make the next batch step of the model an error or a
/// panic (every generation on that model meets it). As an embedder it takes 100 ms per batch,
/// and an input with `BADTOKEN` fails its batch.
struct FakeBackend {
    record: Arc<Mutex<Record>>,
    /// The models whose next step fails, and whether it panics.
    failing_steps: Vec<(String, bool)>,
}

impl Backend for FakeBackend {
    /// `FAKE_MODEL_BYTES` for every model; `TOO_BIG` fits in no memory.
    fn memory_needed(&self, model: &RunnableModel) -> Result<u64, ServiceError> {
        match model.name.as_str() {
            TOO_BIG => Err(ServiceError::InsufficientMemory(format!(
                "{TOO_BIG} needs about 9000 MB but only 10 MB are free"
            ))),
            _ => Ok(FAKE_MODEL_BYTES),
        }
    }

    fn load(&mut self, model: &RunnableModel) -> Result<u64, ServiceError> {
        let load_time = {
            let mut record = self.record.lock().unwrap();
            record.loads.push(model.name.clone());
            record.load_time
        };
        std::thread::sleep(load_time);
        match model.name.as_str() {
            UNUSABLE => Err(ServiceError::ModelUnusable(format!(
                "{UNUSABLE}: config: 'num_hidden_layers' is 0"
            ))),
            _ => Ok(FAKE_MODEL_BYTES),
        }
    }

    fn unload(&mut self, name: &str) {
        self.record.lock().unwrap().unloads.push(name.to_string());
    }

    fn load_embedder(&mut self, model: &RunnableModel) -> Result<u64, ServiceError> {
        self.record.lock().unwrap().loads.push(model.name.clone());
        Ok(90_000_000)
    }

    fn load_transcriber(&mut self, model: &RunnableModel) -> Result<u64, ServiceError> {
        self.record.lock().unwrap().loads.push(model.name.clone());
        Ok(150_000_000)
    }

    fn start_transcription(
        &mut self,
        _model: &str,
        samples: Vec<f32>,
        options: mlxk_engine::TranscribeOptions,
    ) -> Result<Box<dyn mlxk_server::backend::TranscriptionRun>, ServiceError> {
        Ok(audio::stand_in(samples, options))
    }

    fn embed(
        &mut self,
        _model: &str,
        inputs: &[EmbeddingInput],
        _kind: InputKind,
    ) -> Result<Vec<Embedded>, ServiceError> {
        self.record.lock().unwrap().embed_batches.push(inputs.len());
        std::thread::sleep(Duration::from_millis(100));
        inputs
            .iter()
            .map(|input| {
                let text = match input {
                    EmbeddingInput::Text(text) => text.clone(),
                    EmbeddingInput::Tokens(ids) => format!("{ids:?}"),
                };
                if text.contains("BADTOKEN") {
                    return Err(ServiceError::InvalidPrompt(
                        "token id 99999 is outside the vocabulary".into(),
                    ));
                }
                let raw = [text.len() as f32, 1.0, 0.0, 0.0];
                let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt();
                Ok(Embedded {
                    vector: raw.iter().map(|x| x / norm).collect(),
                    tokens: text.split_whitespace().count() + 2,
                    truncated: text.contains("LONG"),
                })
            })
            .collect()
    }

    fn step(&mut self, model: &str) -> Result<(), ServiceError> {
        self.record.lock().unwrap().timeline.push("step");
        let Some(at) = self.failing_steps.iter().position(|(m, _)| m == model) else {
            return Ok(());
        };
        if self.failing_steps.remove(at).1 {
            panic!("the fake batch met a hostile tensor");
        }
        Err(ServiceError::Internal("the fake batch step failed".into()))
    }

    fn start(
        &mut self,
        model: &str,
        prompt: &Prompt,
        options: &AnswerOptions,
    ) -> Result<Box<dyn Generation>, ServiceError> {
        let text = match prompt {
            Prompt::Chat(messages) => messages.last().map(|m| m.content.clone()).unwrap(),
            Prompt::Text(text) => text.clone(),
        };
        self.record.lock().unwrap().timeline.push("start");
        for (word, panics) in [("STEPFAIL", false), ("STEPPANIC", true)] {
            if text.contains(word) {
                self.failing_steps.push((model.to_string(), panics));
            }
        }
        if text.contains("BADTEMPLATE") {
            return Err(ServiceError::InvalidPrompt(
                "the chat template failed: roles must alternate".into(),
            ));
        }
        let words: Vec<String> = text.split_whitespace().map(str::to_string).collect();
        if words.len() >= options.context_length {
            return Err(ServiceError::ContextLengthExceeded(format!(
                "the prompt has {} tokens; the context holds {}",
                words.len(),
                options.context_length
            )));
        }
        let call = options
            .tools
            .as_ref()
            .filter(|t| t.choice != mlxk_engine::tool_use::ToolChoice::None)
            .and_then(|t| t.tools.first())
            .filter(|_| text.contains("CALL"))
            .map(|tool| tool.name.clone());
        Ok(Box::new(FakeGeneration {
            breaks: text.contains("BREAK"),
            logprobs: options.logprobs,
            said: Vec::new(),
            call,
            slow: text.contains("SLOW"),
            fail: text.contains("FAIL"),
            panic: text.contains("PANIC"),
            prompt_tokens: words.len(),
            words: words.into_iter().rev().collect(),
            max_tokens: options.max_tokens,
            produced: 0,
            text: TextStream::new(options.stops.clone(), Reasoning::Split),
            finish: None,
            flushed: false,
            record: Arc::clone(&self.record),
        }))
    }
}

struct FakeGeneration {
    /// Fails once two words are out.
    breaks: bool,
    /// Alternatives per token, when log-probabilities are asked for.
    logprobs: Option<usize>,
    /// The pieces said since log-probabilities were last taken.
    said: Vec<String>,
    /// The tool to call once the words are said.
    call: Option<String>,
    slow: bool,
    fail: bool,
    panic: bool,
    prompt_tokens: usize,
    /// What is left to say, last word first.
    words: Vec<String>,
    max_tokens: usize,
    produced: usize,
    text: TextStream,
    finish: Option<FinishReason>,
    flushed: bool,
    record: Arc<Mutex<Record>>,
}

impl Generation for FakeGeneration {
    fn next_events(&mut self) -> Result<Option<Vec<TextEvent>>, ServiceError> {
        if self.panic {
            panic!("the fake engine met a hostile tensor");
        }
        if self.fail || (self.breaks && self.produced >= 2) {
            return Err(ServiceError::Internal("the fake engine failed".into()));
        }
        if self.finish.is_some() {
            if self.flushed {
                return Ok(None);
            }
            self.flushed = true;
            return Ok(Some(self.text.finish()));
        }
        if self.slow {
            std::thread::sleep(Duration::from_millis(50));
        }
        let Some(word) = self.words.pop() else {
            if let Some(name) = self.call.take() {
                self.produced += 1;
                let mut events = self.text.finish();
                events.extend([
                    TextEvent::ToolCallStart {
                        index: 0,
                        id: "call_0".into(),
                        name,
                    },
                    TextEvent::ToolCallArguments {
                        index: 0,
                        fragment: "{\"city\": ".into(),
                    },
                    TextEvent::ToolCallArguments {
                        index: 0,
                        fragment: "\"Paris\"}".into(),
                    },
                ]);
                return Ok(Some(events));
            }
            self.finish = Some(FinishReason::Stop);
            return self.next_events();
        };
        self.produced += 1;
        let piece = if self.produced == 1 {
            word
        } else {
            format!(" {word}")
        };
        self.said.push(piece.clone());
        let events = self.text.push(&piece);
        if self.text.stopped() {
            self.finish = Some(FinishReason::Stop);
        } else if self.produced >= self.max_tokens {
            self.finish = Some(FinishReason::Length);
        }
        Ok(Some(events))
    }

    fn finish(&mut self, reason: FinishReason) {
        self.finish.get_or_insert(reason);
    }

    /// Token `n` (from 1) has log-probability `-n / 10`; its alternatives are `alt0`, `alt1`…
    /// each less likely.
    fn take_logprobs(&mut self) -> Result<Vec<TokenLogprob>, ServiceError> {
        let Some(top) = self.logprobs else {
            return Ok(Vec::new());
        };
        let first = self.produced + 1 - self.said.len();
        let candidate = |id: usize, text: String, logprob: f32| Candidate {
            id: id as u32,
            bytes: text.clone().into_bytes(),
            text,
            logprob,
        };
        Ok(std::mem::take(&mut self.said)
            .into_iter()
            .enumerate()
            .map(|(i, piece)| {
                let n = first + i;
                let logprob = -(n as f32) / 10.0;
                TokenLogprob {
                    chosen: candidate(n, piece, logprob),
                    top: (0..top)
                        .map(|k| candidate(1000 + k, format!("alt{k}"), logprob - 1.0 - k as f32))
                        .collect(),
                }
            })
            .collect())
    }

    fn finish_reason(&self) -> Option<FinishReason> {
        self.finish
    }

    fn matched_stop(&self) -> Option<String> {
        self.text.matched_stop().map(str::to_string)
    }

    fn end(self: Box<Self>) -> (FinishReason, Usage) {
        let reason = self.finish.unwrap_or(FinishReason::Cancelled);
        self.record.lock().unwrap().ended.push(reason);
        let usage = Usage {
            prompt_tokens: self.prompt_tokens,
            cached_tokens: 0,
            completion_tokens: self.produced,
        };
        (reason, usage)
    }
}

/// A server on a fixture cache with the stand-in engine.
struct Server {
    handle: Option<ServerHandle>,
    addr: SocketAddr,
    record: Arc<Mutex<Record>>,
    client: reqwest::Client,
    _home: tempfile::TempDir,
}

impl Server {
    async fn start() -> Server {
        Server::with(|_| {}).await
    }

    async fn with(configure: impl FnOnce(&mut ServerConfig)) -> Server {
        let home = tempfile::tempdir().unwrap();
        let cache = FixtureCache::create(home.path()).unwrap();
        mlxk_fixtures::write_standard(&cache).unwrap();
        let commit = mlxk_fixtures::commit_id(EMBEDDER);
        cache
            .write(&ModelSpec {
                repo_id: EMBEDDER.into(),
                snapshots: vec![SnapshotSpec {
                    commit: commit.clone(),
                    files: mlxk_fixtures::healthy_model_files("bert", Some(4), false),
                }],
                refs: vec![("main".into(), commit)],
                extra_blobs: Vec::new(),
                modified: mlxk_fixtures::fixed_time(),
            })
            .unwrap();
        let mut config = ServerConfig {
            port: 0,
            cache: Some(HubCache::at(cache.hub.clone())),
            queue_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            ..ServerConfig::default()
        };
        configure(&mut config);
        let record = Arc::new(Mutex::new(Record::default()));
        let backend_record = Arc::clone(&record);
        let handle = start_with_backend(
            config,
            Box::new(move || -> Box<dyn Backend> {
                Box::new(FakeBackend {
                    record: backend_record,
                    failing_steps: Vec::new(),
                })
            }),
        )
        .await
        .unwrap();
        Server {
            addr: handle.addr(),
            handle: Some(handle),
            record,
            client: reqwest::Client::new(),
            _home: home,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Sends a chat request in the background; the task ends with its status.
    fn spawn_chat(&self, body: Value) -> tokio::task::JoinHandle<u16> {
        let (client, url) = (self.client.clone(), self.url("/v1/chat/completions"));
        tokio::spawn(async move {
            let response = client.post(url).json(&body).send().await.unwrap();
            response.status().as_u16()
        })
    }

    /// Waits (up to 10 s) until `/health` counts `active` running and `waiting` queued
    /// requests: no test guesses how long the server takes to get there.
    async fn wait_for_queue(&self, active: u64, waiting: u64) {
        for _ in 0..200 {
            let (_, health) = self.get("/health").await;
            if health["queue"]["active"] == active && health["queue"]["waiting"] == waiting {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the queue never reached {active} active, {waiting} waiting");
    }

    /// Ollama's unload (`ollama stop`, `mlxk stop`): an empty generate with keep_alive 0; it
    /// must be answered as one. Returns the answer.
    async fn unload(&self, model: &str) -> Value {
        let (status, body) = self
            .post("/api/generate", json!({"model": model, "keep_alive": 0}))
            .await;
        assert_eq!(
            (status, body["done_reason"].as_str()),
            (200, Some("unload"))
        );
        body
    }

    /// Starts a streamed chat answer and hands back the response as it arrives.
    async fn open_stream(&self, content: &str) -> reqwest::Response {
        let mut request = chat(content);
        request["stream"] = json!(true);
        self.client
            .post(self.url("/v1/chat/completions"))
            .json(&request)
            .send()
            .await
            .unwrap()
    }

    /// The data lines of a streamed answer, read to its end.
    async fn stream(&self, path: &str, body: Value) -> Vec<String> {
        let response = self
            .client
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(str::to_string)
            .collect()
    }

    /// Sends raw bytes and returns the status line's code and the whole answer (what arrived
    /// before the server closed, even if it then reset the connection).
    async fn raw(&self, request: &str) -> (u16, String) {
        let mut socket = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 4096];
        let error = loop {
            let read = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buffer));
            match read.await {
                Ok(Ok(0)) => break None,
                Ok(Ok(n)) => answer.extend_from_slice(&buffer[..n]),
                Ok(Err(e)) => break Some(e.to_string()),
                Err(_) => break Some("no answer within 10 s".to_string()),
            }
        };
        let answer = String::from_utf8_lossy(&answer).to_string();
        let status = answer
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status in {answer:?} ({error:?})"));
        (status, answer)
    }

    /// Reads the first piece of a streamed answer and goes away; returns how the generations
    /// ended, once one has (up to 5 s).
    async fn leave(&self, response: reqwest::Response) -> Vec<FinishReason> {
        let mut body = response.bytes_stream();
        body.next().await.unwrap().unwrap();
        drop(body);
        for _ in 0..100 {
            let ended = self.record.lock().unwrap().ended.clone();
            if !ended.is_empty() {
                return ended;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Vec::new()
    }

    /// A chat request is answered (after a failure: the server goes on).
    async fn answers_still(&self) {
        let (status, body) = self.post("/v1/chat/completions", chat("still here")).await;
        assert_eq!(
            (status, &body["choices"][0]["message"]["content"]),
            (200, &json!("still here"))
        );
    }

    async fn stop(mut self) -> Stopped {
        self.handle.take().unwrap().stop().await
    }
}

fn chat(content: &str) -> Value {
    json!({"model": MODEL, "messages": [{"role": "user", "content": content}]})
}

/// The ids `/v1/models` marks loaded.
fn loaded_ids(models: &Value) -> Vec<&str> {
    models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["loaded"] == true)
        .map(|m| m["id"].as_str().unwrap())
        .collect()
}

/// A response's status, content type and body text.
async fn status_type_text(response: reqwest::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, kind, response.text().await.unwrap())
}

/// The names `/api/ps` lists, in its order.
fn resident_names(ps: &Value) -> Vec<&str> {
    ps["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}
