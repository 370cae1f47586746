//! Whisper against mlx-whisper 0.4.3 (tests/reference/mlx_whisper_reference.py) on the same
//! converted folders and the same samples, both in float32 and greedy (temperature 0): every
//! segment's tokens, text, seek and times, the whole text and the language are equal. The
//! models are the CTranslate2 packages setup.sh converts into the test cache; the clips are
//! scripts/speech-clips.sh's (espeak-ng sentences, and a recorded reading of Shakespeare's
//! first sonnet, 53 s: two windows, the second prompted with the first's text).
//!
//! Overrides for runs outside setup: `MLXK_TEST_WHISPER_TINY_EN`, `MLXK_TEST_WHISPER_BASE`
//! (model folders) and `MLXK_TEST_SPEECH_CLIPS` (the clips' folder).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use mlxk_engine::{LoadPolicy, SpeechModel, Task, TranscribeOptions};
use serde_json::Value;

use super::reference::{ids, root};

pub const TINY_EN: (&str, &str) = ("mlxk-test/whisper-tiny.en-mlx", "MLXK_TEST_WHISPER_TINY_EN");
pub const BASE: (&str, &str) = ("mlxk-test/whisper-base-mlx", "MLXK_TEST_WHISPER_BASE");

/// What setup installs and these tests need: missing, they fail (CI runs setup first, so a
/// skip would only hide a broken setup).
fn missing(what: &str) -> ! {
    panic!("{what} is not installed: run ./scripts/setup.sh")
}

/// The folder of a Whisper model in the test cache (or its override).
pub fn whisper_model((name, env): (&str, &str)) -> PathBuf {
    if let Some(dir) = std::env::var_os(env) {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(root().join("target"), PathBuf::from);
    let repo = target
        .join("test-models-hf-home/hub")
        .join(format!("models--{}", name.replace('/', "--")));
    let commit = std::fs::read_to_string(repo.join("refs/main"))
        .unwrap_or_else(|_| missing(&format!("the model {name} (test cache)")));
    let dir = repo.join("snapshots").join(commit.trim());
    if !dir.join("config.json").exists() {
        missing(&format!("the model {name} (its config.json)"));
    }
    dir
}

/// A clip of scripts/speech-clips.sh (16 kHz mono WAV).
pub fn clip(name: &str) -> PathBuf {
    let dir = std::env::var_os("MLXK_TEST_SPEECH_CLIPS")
        .map_or(root().join(".cache/speech"), PathBuf::from);
    let path = dir.join(name);
    if !path.exists() {
        missing(&format!("the clip {}", path.display()));
    }
    path
}

/// What the reference wrote for one run.
pub struct Reference {
    pub dir: PathBuf,
    pub result: Value,
}

impl Reference {
    pub fn floats(&self, file: &str) -> Vec<f32> {
        std::fs::read(self.dir.join(file))
            .unwrap()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }
}

fn fingerprint(path: &Path, hasher: &mut DefaultHasher) {
    path.hash(hasher);
    if let Ok(meta) = std::fs::metadata(path) {
        meta.len().hash(hasher);
        meta.modified().ok().hash(hasher);
    }
}

/// mlx-whisper's run on `clip` with `model` (kept under target/ by its inputs, so a test
/// sharing a run does not repeat it).
pub fn reference(model: (&str, &str), clip_name: &str, extra: &[&str]) -> (PathBuf, Reference) {
    let model_dir = whisper_model(model);
    let clip_path = clip(clip_name);
    let script = root().join("tests/reference/mlx_whisper_reference.py");
    let mut hasher = DefaultHasher::new();
    for path in [&script, &model_dir.join("weights.safetensors"), &clip_path] {
        fingerprint(path, &mut hasher);
    }
    extra.hash(&mut hasher);
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(root().join("target"), PathBuf::from);
    let out = target
        .join("tmp/whisper-reference")
        .join(format!("{:016x}", hasher.finish()));
    if !out.join("result.json").exists() {
        let output = Command::new(root().join(".venv/bin/python"))
            .arg(&script)
            .arg(&model_dir)
            .arg(&clip_path)
            .arg(&out)
            .args(extra)
            .output()
            .expect("the test virtualenv's python runs (./scripts/setup.sh)");
        if output.status.code() == Some(3) {
            missing("mlx-whisper (in .venv)");
        }
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let result = serde_json::from_slice(&std::fs::read(out.join("result.json")).unwrap()).unwrap();
    (model_dir, Reference { dir: out, result })
}

/// Transcribes the reference's samples and checks everything against it; returns the
/// language and the number of tokens compared.
fn check(model: (&str, &str), clip_name: &str, task: Task) -> (String, usize) {
    let _mlx = super::mlx();
    let extra: &[&str] = match task {
        Task::Transcribe => &[],
        Task::Translate => &["--task", "translate"],
    };
    let (model_dir, reference) = reference(model, clip_name, extra);
    let samples = reference.floats("samples.f32");
    let speech = SpeechModel::load(&model_dir, &LoadPolicy::default()).unwrap();
    let options = TranscribeOptions {
        task,
        temperatures: vec![0.0],
        ..TranscribeOptions::default()
    };
    let started = std::time::Instant::now();
    let ours = speech.transcribe(&samples, &options).unwrap();
    let expected = &reference.result;
    let label = format!("{} on {clip_name} ({task:?})", model.0);
    eprintln!(
        "{label}: {:.1} s of audio in {:.1} s: {:?}",
        ours.duration,
        started.elapsed().as_secs_f64(),
        ours.text
    );
    let segments = expected["segments"].as_array().unwrap();
    let mut tokens = 0;
    for (i, (ours, theirs)) in ours.segments.iter().zip(segments).enumerate() {
        assert_eq!(
            ours.tokens,
            ids(&theirs["tokens"]),
            "{label}: segment {i}'s tokens; ours: {:?}, mlx-whisper's: {}",
            ours.text,
            theirs["text"]
        );
        assert_eq!(
            ours.text,
            theirs["text"].as_str().unwrap(),
            "{label}: segment {i}"
        );
        assert_eq!(
            ours.seek as u64,
            theirs["seek"].as_u64().unwrap(),
            "{label}: seek {i}"
        );
        for (field, value) in [("start", ours.start), ("end", ours.end)] {
            let theirs = theirs[field].as_f64().unwrap();
            assert!(
                (value - theirs).abs() < 1e-9,
                "{label}: segment {i} {field} {value} vs {theirs}"
            );
        }
        for (field, value) in [
            ("avg_logprob", ours.avg_logprob),
            ("no_speech_prob", ours.no_speech_prob),
        ] {
            let theirs = theirs[field].as_f64().unwrap();
            assert!(
                (value - theirs).abs() < 1e-4,
                "{label}: segment {i} {field} {value} vs {theirs}"
            );
        }
        tokens += ours.tokens.len();
    }
    assert_eq!(ours.segments.len(), segments.len(), "{label}: segments");
    assert_eq!(
        ours.text,
        expected["text"].as_str().unwrap(),
        "{label}: text"
    );
    assert_eq!(
        ours.language,
        expected["language"].as_str().unwrap(),
        "{label}: language"
    );
    eprintln!(
        "{label}: {} segments, {tokens} tokens equal",
        segments.len()
    );
    assert!(tokens > 0, "{label}: no tokens to compare");
    (ours.language, tokens)
}

#[test]
fn tiny_en_matches_mlx_whisper_on_an_english_clip() {
    check(TINY_EN, "en-1-16k.wav", Task::Transcribe);
}

#[test]
fn tiny_en_matches_mlx_whisper_on_the_recorded_sonnet_across_windows() {
    check(TINY_EN, "sonnet.wav", Task::Transcribe);
}

#[test]
fn base_matches_mlx_whisper_on_an_english_clip() {
    check(BASE, "en-1-16k.wav", Task::Transcribe);
}

#[test]
fn base_detects_german_and_matches_mlx_whisper() {
    let (language, _) = check(BASE, "de-1-16k.wav", Task::Transcribe);
    assert_eq!(language, "de");
}

#[test]
fn base_translates_german_as_mlx_whisper_does() {
    let (language, _) = check(BASE, "de-1-16k.wav", Task::Translate);
    assert_eq!(language, "de");
}

#[test]
fn base_ranks_german_first_among_the_languages_of_a_german_clip() {
    let _mlx = super::mlx();
    let (model_dir, reference) = reference(BASE, "de-1-16k.wav", &[]);
    let speech = SpeechModel::load(&model_dir, &LoadPolicy::default()).unwrap();
    let ranked = speech
        .detect_language(&reference.floats("samples.f32"))
        .unwrap();
    assert_eq!(ranked.len(), 99);
    let total: f32 = ranked.iter().map(|(_, p)| p).sum();
    assert!((total - 1.0).abs() < 1e-3, "{total}");
    assert!(ranked.windows(2).all(|w| w[0].1 >= w[1].1));
    eprintln!("detected: {:?}", &ranked[..3]);
    assert_eq!(ranked[0].0, "de");
}
