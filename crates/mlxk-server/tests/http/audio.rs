//! Speech to text on the stand-in engine: OpenAI's `/v1/audio/transcriptions` and
//! `/translations` (multipart uploads as the official clients send them, every response format,
//! the 400s and 413s), `input_audio` parts in chat completions, the guard's rules for uploads,
//! how the models are listed, the transcriber in `/api/ps`, and transcriptions interleaved with
//! a chat stream. The audio is real WAV decoded by `mlxk-audio`; the transcriber is a stand-in
//! ([`StandInTranscription`]) whose segments say which window of how many samples they cover.

use std::time::Instant;

use mlxk_engine::{Segment, Task, TranscribeOptions, Transcript};
use mlxk_server::backend::TranscriptionRun;
use reqwest::multipart::{Form, Part};

use super::*;

/// A multilingual Whisper model (it can translate).
const WHISPER: &str = "mlx-community/whisper-base-mlx";
/// An English-only one.
const WHISPER_EN: &str = "mlx-community/whisper-tiny.en-mlx";
const RATE: usize = 16_000;
const WINDOW: usize = 30 * RATE;

/// The stand-in transcriber: one segment per 30-second window, its text the prompt's words (or
/// `Heard` / `Translated`) and the window's number. The prompt steers it as the chat stand-in's
/// words do: `SLOW` (250 ms per window), `FAIL` (an engine error at the first window), `PANIC`.
pub struct StandInTranscription {
    samples: usize,
    options: TranscribeOptions,
    segments: Vec<Segment>,
}

/// What [`FakeBackend::start_transcription`] starts.
pub fn stand_in(samples: Vec<f32>, options: TranscribeOptions) -> Box<dyn TranscriptionRun> {
    Box::new(StandInTranscription {
        samples: samples.len(),
        options,
        segments: Vec::new(),
    })
}

impl StandInTranscription {
    fn prompt_has(&self, word: &str) -> bool {
        self.options
            .initial_prompt
            .as_deref()
            .is_some_and(|p| p.contains(word))
    }

    fn windows(&self) -> usize {
        self.samples.div_ceil(WINDOW).max(1)
    }
}

impl TranscriptionRun for StandInTranscription {
    fn step(&mut self) -> Result<bool, ServiceError> {
        if self.prompt_has("PANIC") {
            panic!("the fake speech engine met a hostile tensor");
        }
        if self.prompt_has("FAIL") {
            return Err(ServiceError::Internal(
                "the fake speech engine failed".into(),
            ));
        }
        if self.prompt_has("SLOW") {
            std::thread::sleep(Duration::from_millis(250));
        }
        let k = self.segments.len();
        let word = match (&self.options.initial_prompt, self.options.task) {
            (Some(prompt), _) => prompt.clone(),
            (None, Task::Transcribe) => "Heard".into(),
            (None, Task::Translate) => "Translated".into(),
        };
        let end = (((k + 1) * WINDOW).min(self.samples)) as f64 / RATE as f64;
        self.segments.push(Segment {
            id: k,
            seek: k * 3000,
            start: (k * 30) as f64,
            end,
            text: format!(" {word} {k}."),
            tokens: vec![50364, 1000 + k as u32, 13, 50414],
            temperature: self.options.temperatures[0],
            avg_logprob: -0.2,
            compression_ratio: 1.0,
            no_speech_prob: 0.01,
        });
        Ok(self.segments.len() == self.windows())
    }

    fn finish(self: Box<Self>) -> Transcript {
        Transcript {
            text: self.segments.iter().map(|s| s.text.as_str()).collect(),
            language: (self.options.language.as_deref())
                .and_then(mlxk_engine::resolve_language)
                .unwrap_or("en")
                .into(),
            task: self.options.task,
            duration: self.samples as f64 / RATE as f64,
            segments: self.segments,
        }
    }
}

/// A 16 kHz mono 16-bit WAV file of `seconds` of a quiet tone.
fn wav(seconds: f64) -> Vec<u8> {
    let n = (seconds * RATE as f64) as usize;
    let data: Vec<u8> = (0..n)
        .flat_map(|i| {
            let t = i as f64 / RATE as f64;
            (((t * 440.0 * std::f64::consts::TAU).sin() * 3000.0) as i16).to_le_bytes()
        })
        .collect();
    let mut file = Vec::with_capacity(44 + data.len());
    file.extend_from_slice(b"RIFF");
    file.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    file.extend_from_slice(b"WAVEfmt ");
    file.extend_from_slice(&16u32.to_le_bytes());
    file.extend_from_slice(&1u16.to_le_bytes()); // PCM
    file.extend_from_slice(&1u16.to_le_bytes()); // mono
    file.extend_from_slice(&(RATE as u32).to_le_bytes());
    file.extend_from_slice(&(RATE as u32 * 2).to_le_bytes());
    file.extend_from_slice(&2u16.to_le_bytes());
    file.extend_from_slice(&16u16.to_le_bytes());
    file.extend_from_slice(b"data");
    file.extend_from_slice(&(data.len() as u32).to_le_bytes());
    file.extend_from_slice(&data);
    file
}

/// A server with the two Whisper fixtures in its cache.
async fn server_with(configure: impl FnOnce(&mut ServerConfig)) -> Server {
    let server = Server::with(configure).await;
    let cache = FixtureCache::create(server._home.path()).unwrap();
    for (name, multilingual) in [(WHISPER, true), (WHISPER_EN, false)] {
        let files = mlxk_fixtures::whisper_model_files(multilingual);
        cache.write(&mlxk_fixtures::single(name, files)).unwrap();
    }
    server
}

async fn speech_server() -> Server {
    server_with(|_| {}).await
}

/// The form OpenAI's clients send: the file (named, so its extension is a hint), the model,
/// then the other fields as text.
fn form(model: &str, audio: Vec<u8>, fields: &[(&str, &str)]) -> Form {
    let mut form = Form::new()
        .part(
            "file",
            Part::bytes(audio)
                .file_name("speech.wav")
                .mime_str("audio/wav")
                .unwrap(),
        )
        .text("model", model.to_string());
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    form
}

/// Posts a form; returns the status, the content type and the body as text.
async fn upload(server: &Server, path: &str, form: Form) -> (u16, String, String) {
    let response = server
        .client
        .post(server.url(path))
        .multipart(form)
        .send()
        .await
        .unwrap();
    status_type_text(response).await
}

/// Posts a form whose answer is JSON.
async fn upload_json(server: &Server, path: &str, form: Form) -> (u16, Value) {
    let (status, _, body) = upload(server, path, form).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}")),
    )
}

const TRANSCRIBE: &str = "/v1/audio/transcriptions";
const TRANSLATE: &str = "/v1/audio/translations";

#[tokio::test]
async fn every_response_format_as_openai_writes_it() {
    let server = speech_server().await;
    // 65 s: three windows, three segments.
    let audio = wav(65.0);
    let (status, body) =
        upload_json(&server, TRANSCRIBE, form(WHISPER_EN, audio.clone(), &[])).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"text": "Heard 0. Heard 1. Heard 2.", "usage": {"type": "duration", "seconds": 65}})
    );

    let (status, kind, text) = upload(
        &server,
        TRANSCRIBE,
        form(WHISPER_EN, audio.clone(), &[("response_format", "text")]),
    )
    .await;
    assert_eq!((status, kind.as_str()), (200, "text/plain; charset=utf-8"));
    assert_eq!(text, "Heard 0. Heard 1. Heard 2.\n");

    let (status, body) = upload_json(
        &server,
        TRANSCRIBE,
        form(
            WHISPER_EN,
            audio.clone(),
            &[
                ("response_format", "verbose_json"),
                ("timestamp_granularities[]", "segment"),
                ("temperature", "0.4"),
                ("language", "en"),
            ],
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (
            &body["task"],
            &body["language"],
            &body["duration"],
            &body["text"]
        ),
        (
            &json!("transcribe"),
            &json!("english"),
            &json!(65.0),
            &json!("Heard 0. Heard 1. Heard 2.")
        )
    );
    let segments = body["segments"].as_array().unwrap();
    assert_eq!(segments.len(), 3);
    assert_eq!(
        segments[2],
        json!({"id": 2, "seek": 6000, "start": 60.0, "end": 65.0, "text": " Heard 2.",
            "tokens": [50364, 1002, 13, 50414], "temperature": 0.4, "avg_logprob": -0.2,
            "compression_ratio": 1.0, "no_speech_prob": 0.01})
    );

    let (status, kind, srt) = upload(
        &server,
        TRANSCRIBE,
        form(WHISPER_EN, audio.clone(), &[("response_format", "srt")]),
    )
    .await;
    assert_eq!((status, kind.as_str()), (200, "text/plain; charset=utf-8"));
    assert_eq!(
        srt,
        "1\n00:00:00,000 --> 00:00:30,000\nHeard 0.\n\n\
         2\n00:00:30,000 --> 00:01:00,000\nHeard 1.\n\n\
         3\n00:01:00,000 --> 00:01:05,000\nHeard 2.\n\n"
    );

    let (status, kind, vtt) = upload(
        &server,
        TRANSCRIBE,
        form(WHISPER_EN, audio, &[("response_format", "vtt")]),
    )
    .await;
    assert_eq!((status, kind.as_str()), (200, "text/vtt; charset=utf-8"));
    assert_eq!(
        vtt,
        "WEBVTT\n\n00:00.000 --> 00:30.000\nHeard 0.\n\n\
         00:30.000 --> 01:00.000\nHeard 1.\n\n\
         01:00.000 --> 01:05.000\nHeard 2.\n\n"
    );
    // Larger than the JSON routes' 4 MiB and sent in chunks: the upload routes' own limit holds.
    let (status, body) = upload_chunked(&server, wav(140.0)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["text"], "Heard 0. Heard 1. Heard 2. Heard 3. Heard 4.");
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn translation_needs_a_multilingual_model_and_the_prompt_reaches_the_engine() {
    let server = speech_server().await;
    let (status, body) = upload_json(
        &server,
        TRANSLATE,
        form(
            WHISPER,
            wav(2.0),
            &[("response_format", "verbose_json"), ("language", "German")],
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["task"], &body["language"], &body["text"]),
        (
            &json!("translate"),
            &json!("german"),
            &json!("Translated 0.")
        )
    );
    let (status, body) = upload_json(
        &server,
        TRANSCRIBE,
        form(WHISPER, wav(2.0), &[("prompt", "Aeneas")]),
    )
    .await;
    assert_eq!((status, &body["text"]), (200, &json!("Aeneas 0.")));

    let (status, body) = upload_json(&server, TRANSLATE, form(WHISPER_EN, wav(2.0), &[])).await;
    assert_eq!((status, error_param(&body)), (400, "model"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("English-only"),
        "{body}"
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

fn error_param(body: &Value) -> &str {
    body["error"]["param"].as_str().unwrap_or("")
}

#[tokio::test]
async fn what_cannot_be_transcribed_is_a_400_naming_the_field() {
    let server = speech_server().await;
    let cases: Vec<(Form, &str, &str)> = vec![
        (
            Form::new().text("model", WHISPER_EN),
            "file",
            "'file' is required",
        ),
        (
            Form::new().part("file", Part::bytes(wav(1.0)).file_name("a.wav")),
            "model",
            "'model' is required",
        ),
        (
            form(
                WHISPER_EN,
                wav(1.0),
                &[("timestamp_granularities[]", "word")],
            ),
            "timestamp_granularities[]",
            "word timestamps are not supported",
        ),
        (
            form(WHISPER_EN, wav(1.0), &[("stream", "true")]),
            "stream",
            "streamed transcriptions are not supported",
        ),
        (
            form(WHISPER_EN, wav(1.0), &[("language", "klingon")]),
            "language",
            "not a language Whisper knows",
        ),
        (
            form(WHISPER_EN, wav(1.0), &[("response_format", "xml")]),
            "response_format",
            "json, text, verbose_json, srt or vtt",
        ),
        (
            form(WHISPER_EN, wav(1.0), &[("temperature", "2")]),
            "temperature",
            "a number from 0 to 1",
        ),
        (
            form(WHISPER_EN, wav(1.0), &[("include[]", "logprobs")]),
            "include[]",
            "no token log-probabilities",
        ),
        (
            form(
                WHISPER_EN,
                b"this is not audio at all, only text".repeat(20),
                &[],
            ),
            "file",
            "supported: WAV",
        ),
        (form(WHISPER_EN, Vec::new(), &[]), "file", "empty"),
        (
            form(MODEL, wav(1.0), &[]),
            "model",
            "not a speech-to-text model",
        ),
        (
            form(EMBEDDER, wav(1.0), &[]),
            "model",
            "not a speech-to-text model",
        ),
    ];
    for (form, param, message) in cases {
        let (status, body) = upload_json(&server, TRANSCRIBE, form).await;
        assert_eq!((status, error_param(&body)), (400, param), "{body}");
        let said = body["error"]["message"].as_str().unwrap();
        assert!(said.contains(message), "{param}: {said}");
        assert_eq!(body["error"]["type"], "invalid_request_error");
    }
    // A model that does not exist is OpenAI's 404.
    let (status, body) = upload_json(&server, TRANSCRIBE, form("org/nothing", wav(1.0), &[])).await;
    assert_eq!((status, error_code(&body)), (404, "model_not_found"));
    // The engine failing is the server's 500; the server goes on.
    let (status, _) = upload_json(
        &server,
        TRANSCRIBE,
        form(WHISPER_EN, wav(1.0), &[("prompt", "FAIL")]),
    )
    .await;
    assert_eq!(status, 500);
    let (status, body) = upload_json(
        &server,
        TRANSCRIBE,
        form(WHISPER_EN, wav(1.0), &[("prompt", "PANIC")]),
    )
    .await;
    assert_eq!(status, 500);
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("the server goes on"));
    let (status, _) = upload_json(&server, TRANSCRIBE, form(WHISPER_EN, wav(1.0), &[])).await;
    assert_eq!(status, 200);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

/// Posts `audio` as a form sent in chunks (no `Content-Length`: the guard cannot see its size).
async fn upload_chunked(server: &Server, audio: Vec<u8>) -> (u16, Value) {
    let mut body = b"--XYZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\n".to_vec();
    body.extend_from_slice(WHISPER_EN.as_bytes());
    body.extend_from_slice(
        b"\r\n--XYZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n",
    );
    body.extend_from_slice(&audio);
    body.extend_from_slice(b"\r\n--XYZ--\r\n");
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let response = server
        .client
        .post(server.url(TRANSCRIBE))
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn files_over_the_limits_are_413s_or_400s() {
    let server = server_with(|config| {
        config.max_audio_bytes = 100_000;
        config.max_audio_seconds = 2.0;
    })
    .await;
    // Over the file limit, within the body's: the decoder refuses it.
    let (status, body) = upload_json(&server, TRANSCRIBE, form(WHISPER_EN, wav(4.0), &[])).await;
    assert_eq!(
        (status, error_code(&body), error_param(&body)),
        (413, "request_too_large", "file"),
        "{body}"
    );
    // Over the body limit (the file plus 1 MiB for the form): refused before it is read.
    let (status, body) = upload_json(&server, TRANSCRIBE, form(WHISPER_EN, wav(40.0), &[])).await;
    assert_eq!(
        (status, error_code(&body)),
        (413, "request_too_large"),
        "{body}"
    );
    // Sent in chunks, without a length: the route's body limit stops it as it arrives.
    let (status, body) = upload_chunked(&server, wav(40.0)).await;
    assert_eq!(
        (status, error_code(&body), error_param(&body)),
        (413, "request_too_large", ""),
        "{body}"
    );
    // Within the bytes, longer than the duration limit.
    let (status, body) = upload_json(&server, TRANSCRIBE, form(WHISPER_EN, wav(2.5), &[])).await;
    assert_eq!((status, error_param(&body)), (400, "file"), "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit is 2 s"),
        "{body}"
    );
    let (status, _) = upload_json(&server, TRANSCRIBE, form(WHISPER_EN, wav(1.5), &[])).await;
    assert_eq!(status, 200);
    // The JSON routes keep their own, smaller limit: an upload's size is not theirs.
    let big = "x".repeat(5 * 1024 * 1024);
    let (status, body) = server.post("/v1/chat/completions", chat(&big)).await;
    assert_eq!((status, error_code(&body)), (413, "request_too_large"));
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn forms_are_taken_by_the_audio_routes_only_and_never_from_other_sites() {
    let server = speech_server().await;
    let post_form = |path: &str, origin: Option<&str>| {
        let mut request =
            server
                .client
                .post(server.url(path))
                .multipart(form(WHISPER_EN, wav(1.0), &[]));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        request.send()
    };
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(
        status(post_form("/v1/chat/completions", None).await.unwrap()),
        415
    );
    assert_eq!(status(post_form("/api/chat", None).await.unwrap()), 415);
    assert_eq!(
        status(
            post_form(TRANSCRIBE, Some("https://evil.example"))
                .await
                .unwrap()
        ),
        403
    );
    assert_eq!(
        status(
            post_form(TRANSCRIBE, Some("http://localhost:5173"))
                .await
                .unwrap()
        ),
        200
    );
    // JSON, or a plain form, to the audio routes.
    let (status, body) = server.post(TRANSCRIBE, json!({"model": WHISPER_EN})).await;
    assert_eq!((status, error_code(&body)), (415, "unsupported_media_type"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("multipart/form-data"));
    let response = server
        .client
        .post(server.url(TRANSLATE))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("model=x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    // A malformed multipart body is a 400, not a hang or a 500.
    let response = server
        .client
        .post(server.url(TRANSCRIBE))
        .header("content-type", "multipart/form-data; boundary=XYZ")
        .body("--XYZ\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nunterminated")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

fn audio_chat(model: &str, audio: &[u8], text: Option<&str>) -> Value {
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(audio);
    let mut parts =
        vec![json!({"type": "input_audio", "input_audio": {"data": data, "format": "wav"}})];
    if let Some(text) = text {
        parts.insert(0, json!({"type": "text", "text": text}));
    }
    json!({"model": model, "messages": [
        {"role": "system", "content": "You transcribe."},
        {"role": "user", "content": parts},
    ]})
}

#[tokio::test]
async fn input_audio_in_a_chat_is_transcribed_by_a_speech_model_only() {
    let server = speech_server().await;
    let audio = wav(31.0);
    let (status, body) = server
        .post(
            "/v1/chat/completions",
            audio_chat(WHISPER_EN, &audio, Some("Names")),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let choice = &body["choices"][0];
    assert_eq!(
        (
            &choice["message"]["role"],
            &choice["message"]["content"],
            &choice["finish_reason"]
        ),
        (
            &json!("assistant"),
            &json!("Names 0. Names 1."),
            &json!("stop")
        )
    );
    assert_eq!(body["usage"]["completion_tokens"], 8);
    assert_eq!(body["model"], WHISPER_EN);

    // Streamed: the transcript in one chunk, then the end.
    let mut request = audio_chat(WHISPER_EN, &audio, None);
    request["stream"] = json!(true);
    let lines = server.stream("/v1/chat/completions", request).await;
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = lines[..lines.len() - 1]
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let content: Vec<&str> = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(content, ["Heard 0. Heard 1."]);
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );

    // A text model given audio, a speech model given text, what a transcript cannot honour.
    let (status, body) = server
        .post("/v1/chat/completions", audio_chat(MODEL, &audio, None))
        .await;
    assert_eq!((status, error_param(&body)), (400, "model"));
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not a speech-to-text model"));
    for path in ["/v1/chat/completions", "/v1/completions"] {
        let mut request = chat("hello");
        request["model"] = json!(WHISPER_EN);
        if path == "/v1/completions" {
            request["prompt"] = json!("hello");
        }
        let (status, body) = server.post(path, request).await;
        assert_eq!((status, error_param(&body)), (400, "model"), "{path}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("send audio"),
            "{body}"
        );
    }
    let (status, body) = server
        .post(
            "/api/chat",
            json!({"model": WHISPER_EN, "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("speech-to-text"),
        "{body}"
    );
    let mut with_tools = audio_chat(WHISPER_EN, &audio, None);
    with_tools["tools"] = json!([{"type": "function", "function": {"name": "f"}}]);
    let (status, body) = server.post("/v1/chat/completions", with_tools).await;
    assert_eq!((status, error_param(&body)), (400, "tools"));
    let mut bad = audio_chat(WHISPER_EN, &audio, None);
    bad["messages"][1]["content"][0]["input_audio"]["data"] = json!("%%%");
    let (status, body) = server.post("/v1/chat/completions", bad).await;
    assert_eq!((status, error_param(&body)), (400, "messages"));
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn speech_models_are_listed_with_their_capabilities() {
    let server = speech_server().await;
    let (status, models) = server.get("/v1/models").await;
    assert_eq!(status, 200);
    let find = |id: &str| {
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} not listed: {models}"))
    };
    assert_eq!(
        find(WHISPER)["capabilities"],
        json!(["audio", "audio-translate-en"])
    );
    assert_eq!(find(WHISPER_EN)["capabilities"], json!(["audio"]));
    assert_eq!(find(WHISPER_EN)["tools"], Value::Null);

    let (_, tags) = server.get("/api/tags").await;
    let tag = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == WHISPER)
        .unwrap();
    assert_eq!(tag["capabilities"], json!(["audio", "audio-translate-en"]));
    assert_eq!(tag["details"]["family"], "whisper");
    let (status, shown) = server.post("/api/show", json!({"model": WHISPER_EN})).await;
    assert_eq!((status, &shown["capabilities"]), (200, &json!(["audio"])));
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn the_transcriber_is_held_beside_the_text_model_with_its_own_keep_alive() {
    let server = speech_server().await;
    let (status, _) = server
        .post("/v1/chat/completions", chat("hello there"))
        .await;
    assert_eq!(status, 200);
    let (status, _) = upload_json(&server, TRANSCRIBE, form(WHISPER_EN, wav(1.0), &[])).await;
    assert_eq!(status, 200);
    let (_, ps) = server.get("/api/ps").await;
    let names = resident_names(&ps);
    assert_eq!(names, [MODEL, WHISPER_EN]);
    // Shown with its expiry as soon as its reply is out.
    assert!(ps["models"][1]["expires_at"].is_string(), "{ps}");
    // Another speech model takes its place; the text model stays.
    let (status, _) = upload_json(&server, TRANSCRIBE, form(WHISPER, wav(1.0), &[])).await;
    assert_eq!(status, 200);
    let (_, ps) = server.get("/api/ps").await;
    assert_eq!(ps["models"][1]["name"], WHISPER);
    assert_eq!(ps["models"].as_array().unwrap().len(), 2);
    // Unloaded by name, as any model.
    server.unload(WHISPER).await;
    let (_, ps) = server.get("/api/ps").await;
    assert_eq!(ps["models"].as_array().unwrap().len(), 1);
    let loads = server.record.lock().unwrap().loads.clone();
    assert_eq!(loads, [MODEL, WHISPER_EN, WHISPER]);
    assert_eq!(server.stop().await, Stopped::Cleanly);
}

#[tokio::test]
async fn a_chat_stream_flows_while_a_long_recording_is_transcribed() {
    let server = speech_server().await;
    // Eight windows of 250 ms each: two seconds of transcription, one window per worker turn.
    let transcription = {
        let (client, url) = (server.client.clone(), server.url(TRANSCRIBE));
        tokio::spawn(async move {
            let response = client
                .post(url)
                .multipart(form(WHISPER_EN, wav(240.0), &[("prompt", "SLOW")]))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            (Instant::now(), body)
        })
    };
    server.wait_for_queue(1, 0).await;
    // A chat answer of one word (no SLOW: its steps wait only for the windows between them).
    let lines = server
        .stream(
            "/v1/chat/completions",
            json!({"model": MODEL, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    let chat_done = Instant::now();
    assert_eq!(lines.last().map(String::as_str), Some("[DONE]"));
    let (transcribed, body) = transcription.await.unwrap();
    let expected: Vec<String> = (0..8).map(|k| format!("SLOW {k}.")).collect();
    assert_eq!(body["text"], expected.join(" "));
    // The chat ended while the recording was still being transcribed: had the transcription
    // run whole between two tokens, the chat would have ended after it.
    assert!(
        chat_done < transcribed,
        "the chat waited for the whole transcription"
    );
    assert_eq!(server.stop().await, Stopped::Cleanly);
}
