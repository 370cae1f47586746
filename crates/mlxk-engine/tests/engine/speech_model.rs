//! The Whisper models of the test cache as `SpeechModel` reads them: the special token ids
//! (against the table of the design, from mlx-whisper's tiktoken files), the suppression
//! lists computed in code against the ones CTranslate2 ships in the source packages'
//! config.json, the refusals a server checks before queueing, and `models::load` pointing a
//! Whisper folder to the speech API. Also Whisper configs without weights (the fuzz target).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mlxk_engine::models::build_without_weights;
use mlxk_engine::speech::TOKENS_PER_STEP;
use mlxk_engine::{EngineError, LoadPolicy, SpeechModel, Task, TranscribeOptions};
use serde_json::{json, Value};

use super::parity_whisper::{whisper_model, BASE, TINY_EN};
use super::reference::{ids, root};

fn load(model: (&str, &str)) -> SpeechModel {
    SpeechModel::load(&whisper_model(model), &LoadPolicy::default()).unwrap()
}

/// The source package's CTranslate2 config.json (setup.sh's `.cache/whisper/NAME`).
fn ct2_config(name: &str) -> Value {
    let dir = std::env::var_os("MLXK_TEST_CT2_WHISPER")
        .map_or(root().join(".cache/whisper"), PathBuf::from);
    let path = dir.join(name).join("config.json");
    let text = std::fs::read(&path).unwrap_or_else(|_| {
        panic!(
            "{} is not installed: run ./scripts/setup.sh",
            path.display()
        )
    });
    serde_json::from_slice(&text).unwrap()
}

/// eot, sot, first language, translate, transcribe, sot_lm, sot_prev, no_speech,
/// notimestamps, timestamp_begin.
fn check_special_tokens(speech: &SpeechModel, expected: [u32; 10]) {
    let s = speech.special_tokens();
    let ours = [
        s.eot,
        s.sot,
        s.first_language,
        s.translate,
        s.transcribe,
        s.sot_lm,
        s.sot_prev,
        s.no_speech,
        s.no_timestamps,
        s.timestamp_begin,
    ];
    assert_eq!(ours, expected);
    assert_eq!(s.num_languages, 99);
}

fn check_suppression(speech: &SpeechModel, ct2: &str) {
    let config = ct2_config(ct2);
    let ours = speech.suppressed_tokens().unwrap();
    assert_eq!(ours, ids(&config["suppress_ids"]), "{ct2}: suppress_ids");
    let s = speech.special_tokens();
    // SuppressBlank's list: encode(" ") and the end of text.
    assert_eq!(
        vec![220, s.eot],
        ids(&config["suppress_ids_begin"]),
        "{ct2}: suppress_ids_begin"
    );
    eprintln!(
        "{ct2}: {} suppressed tokens equal CTranslate2's",
        ours.len()
    );
}

#[test]
fn tiny_en_tokens_and_suppression_match_whisper() {
    let _mlx = super::mlx();
    let speech = load(TINY_EN);
    assert!(!speech.is_multilingual());
    check_special_tokens(
        &speech,
        [
            50256, 50257, 50258, 50357, 50358, 50359, 50360, 50361, 50362, 50363,
        ],
    );
    check_suppression(&speech, "tiny.en");
    assert_eq!(speech.count_tokens(" Hello world."), 3);
}

#[test]
fn base_tokens_and_suppression_match_whisper() {
    let _mlx = super::mlx();
    let speech = load(BASE);
    assert!(speech.is_multilingual());
    check_special_tokens(
        &speech,
        [
            50257, 50258, 50259, 50358, 50359, 50360, 50361, 50362, 50363, 50364,
        ],
    );
    check_suppression(&speech, "base");
}

fn speech_error(speech: &SpeechModel, options: TranscribeOptions) -> String {
    match speech.check(&options) {
        Err(e @ EngineError::Speech(_)) => e.to_string(),
        other => panic!("{options:?}: expected a speech error, got {other:?}"),
    }
}

#[test]
fn options_a_model_cannot_honour_are_refused_before_any_work() {
    let _mlx = super::mlx();
    let tiny = load(TINY_EN);
    let translate = TranscribeOptions {
        task: Task::Translate,
        ..TranscribeOptions::default()
    };
    assert!(speech_error(&tiny, translate.clone()).contains("English-only"));
    let german = TranscribeOptions {
        language: Some("German".into()),
        ..TranscribeOptions::default()
    };
    assert!(speech_error(&tiny, german.clone()).contains("'de'"));
    let english = TranscribeOptions {
        language: Some("english".into()),
        ..TranscribeOptions::default()
    };
    tiny.check(&english).unwrap();
    let klingon = TranscribeOptions {
        language: Some("klingon".into()),
        ..TranscribeOptions::default()
    };
    assert!(speech_error(&tiny, klingon.clone()).contains("'klingon'"));
    let no_temperature = TranscribeOptions {
        temperatures: vec![],
        ..TranscribeOptions::default()
    };
    assert!(speech_error(&tiny, no_temperature).contains("temperature"));
    let negative = TranscribeOptions {
        temperatures: vec![-0.5],
        ..TranscribeOptions::default()
    };
    assert!(speech_error(&tiny, negative).contains("-0.5"));
    // Silence transcribes to nothing: no window has speech.
    let silence = tiny
        .transcribe(&[0.0; 16_000], &TranscribeOptions::default())
        .unwrap();
    assert_eq!((silence.language.as_str(), silence.duration), ("en", 1.0));
    assert!(silence.text.trim().is_empty(), "{:?}", silence.text);
    drop(tiny);

    let base = load(BASE);
    base.check(&translate).unwrap();
    base.check(&german).unwrap();
    assert!(speech_error(&base, klingon).contains("'klingon'"));
    let cantonese = TranscribeOptions {
        language: Some("yue".into()),
        ..TranscribeOptions::default()
    };
    assert!(speech_error(&base, cantonese).contains("'yue'"));
}

#[test]
fn a_whisper_folder_is_not_a_language_model() {
    let _mlx = super::mlx();
    let dir = whisper_model(TINY_EN);
    let error = mlxk_engine::load(&dir, &LoadPolicy::default())
        .err()
        .expect("whisper is refused")
        .to_string();
    assert!(
        error.contains("speech-to-text") && error.contains("--audio"),
        "{error}"
    );
}

#[test]
fn temperature_ladders_step_by_a_fifth_up_to_one() {
    assert_eq!(
        TranscribeOptions::temperatures_from(0.0),
        TranscribeOptions::default().temperatures
    );
    assert_eq!(
        TranscribeOptions::temperatures_from(0.5),
        vec![0.5, 0.7, 0.9]
    );
    assert_eq!(TranscribeOptions::temperatures_from(1.0), vec![1.0]);
}

fn whisper_config() -> Value {
    json!({
        "model_type": "whisper", "n_mels": 80, "n_audio_ctx": 1500, "n_audio_state": 384,
        "n_audio_head": 6, "n_audio_layer": 4, "n_vocab": 51864, "n_text_ctx": 448,
        "n_text_state": 384, "n_text_head": 6, "n_text_layer": 4,
    })
}

#[test]
fn whisper_configs_build_without_weights_and_hostile_ones_are_config_errors() {
    let _mlx = super::mlx();
    build_without_weights(&whisper_config()).unwrap();
    let cases = [
        ("n_mels", json!(100_000), "outside 1..="),
        ("n_audio_head", json!(5), "does not divide n_audio_state"),
        ("n_text_head", json!(0), "outside 1..="),
        ("n_audio_ctx", json!(1501), "30-second window"),
        ("n_text_state", json!(768), "as wide as the encoder"),
        ("n_text_ctx", json!(-1), "not a positive whole number"),
        ("n_vocab", json!("many"), "not a positive whole number"),
    ];
    for (field, value, expected) in cases {
        let mut config = whisper_config();
        config[field] = value;
        match build_without_weights(&config) {
            Err(e @ EngineError::Config(_)) => {
                let e = e.to_string();
                assert!(e.contains(field) && e.contains(expected), "{field}: {e}");
            }
            other => panic!("{field}: expected a config error, got {other:?}"),
        }
    }
    let mut missing = whisper_config();
    missing.as_object_mut().unwrap().remove("n_text_layer");
    let error = build_without_weights(&missing).unwrap_err().to_string();
    assert!(error.contains("n_text_layer"), "{error}");
}

#[test]
fn sampling_at_a_temperature_is_repeatable_with_a_seed_and_steps_window_by_window() {
    let _mlx = super::mlx();
    let (dir, reference) = super::parity_whisper::reference(TINY_EN, "en-1-16k.wav", &[]);
    let samples = reference.floats("samples.f32");
    let speech = SpeechModel::load(&dir, &LoadPolicy::default()).unwrap();
    let options = TranscribeOptions {
        temperatures: vec![0.6],
        seed: Some(7),
        initial_prompt: Some("Foxes and dogs.".into()),
        ..TranscribeOptions::default()
    };
    let mut run = speech.start(samples.clone(), options.clone()).unwrap();
    assert_eq!(run.language(), "en");
    let total = samples.len() as f64 / 16_000.0;
    assert_eq!(run.progress(), (0.0, total));
    let mut segments = Vec::new();
    while !run.is_done() {
        segments.extend(run.step().unwrap());
    }
    assert_eq!(run.progress(), (total, total));
    let first = run.finish();
    assert_eq!(first.segments, segments);
    assert!(
        segments.iter().all(|s| s.temperature == 0.6),
        "{segments:?}"
    );
    // The initial prompt conditions the text but is not part of it.
    assert!(!first.text.contains("Foxes and dogs"), "{:?}", first.text);
    assert!(
        first.text.to_lowercase().contains("lazy"),
        "{:?}",
        first.text
    );
    let again = speech.transcribe(&samples, &options).unwrap();
    assert_eq!(again, first);
    eprintln!("sampled at 0.6 (seed 7): {:?}", first.text);
}

/// A server interleaves `step` with chat tokens: one step runs an encoder layer of a window or
/// samples at most `TOKENS_PER_STEP` tokens, segments come when a window's text ends, and
/// `progress` moves only then.
#[test]
fn a_step_on_the_sonnet_is_a_bounded_slice_of_a_window() {
    let _mlx = super::mlx();
    let (dir, reference) = super::parity_whisper::reference(TINY_EN, "sonnet.wav", &[]);
    let samples = reference.floats("samples.f32");
    let speech = SpeechModel::load(&dir, &LoadPolicy::default()).unwrap();
    let mut run = speech.start(samples, TranscribeOptions::default()).unwrap();
    let (mut steps, mut longest) = (0, Duration::ZERO);
    let mut windows = 0;
    let mut segments = Vec::new();
    while !run.is_done() {
        let (sampled, progress) = (run.tokens_sampled(), run.progress());
        let began = Instant::now();
        let finished = run.step().unwrap();
        longest = longest.max(began.elapsed());
        steps += 1;
        let step_tokens = run.tokens_sampled() - sampled;
        assert!(
            step_tokens <= TOKENS_PER_STEP,
            "{step_tokens} tokens in a step"
        );
        if run.progress() != progress {
            windows += 1;
        } else {
            assert!(finished.is_empty(), "segments without progress");
        }
        segments.extend(finished);
    }
    let text_tokens: usize = segments.iter().map(|s| s.tokens.len()).sum();
    // Encoder steps for each window, then at least enough token steps for its kept text.
    assert!(windows >= 2, "{windows} windows");
    assert!(
        steps >= windows + text_tokens.div_ceil(TOKENS_PER_STEP),
        "{steps} steps for {windows} windows and {text_tokens} tokens"
    );
    assert!(run.tokens_sampled() >= text_tokens);
    // The same transcript as a whole run (which loops the same steps).
    let whole = speech
        .transcribe(
            &reference.floats("samples.f32"),
            &TranscribeOptions::default(),
        )
        .unwrap();
    assert_eq!(run.finish().segments, segments);
    assert_eq!(whole.segments, segments);
    eprintln!(
        "sonnet: {steps} steps over {windows} windows ({} tokens sampled), the longest {longest:?}",
        text_tokens
    );
}
