//! Every supported architecture, float32 and 4-bit (and llama in 8-bit, 3-bit, bfloat16 and
//! 4-bit with float16 scales): tiny random-weight models made by mlx-lm itself
//! (tests/reference/make_tiny_models.py). Our greedy tokens must equal mlx-lm's, our first-step
//! log-probabilities must match to 1e-4, and with the same seed our sampled tokens
//! (temperature, top-p, min-p, top-k, repetition penalty) must be mlx-lm's draws.
//!
//! Each model is checked under three load plans. As published, we compute exactly what mlx-lm
//! computes. The CPU plans (float32 with quantized weights kept, and dense float32) change only
//! low-order bits for models stored in float32: a dequantized matmul sums in another order
//! (and through OpenBLAS) than the quantized kernel, ~1e-6 apart, well inside 1e-4 and far from
//! flipping a greedy choice. A model stored in 16 bits is computed in float32 on the CPU, which
//! is a different computation from mlx-lm's 16-bit one (rounding at every op, ~1e-2): for those
//! the reference is mlx-lm on the same weights upcast to float32 (`reference.json`'s `float32`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::sync::OnceLock;

use mlx_rs::transforms::eval;
use mlx_rs::Array;
use mlxk_core::architectures::SUPPORTED_ARCHITECTURES;
use mlxk_engine::{
    generate, Control, DeviceKind, LanguageModel, LoadPolicy, SamplingParams, WeightLayout,
};
use serde_json::Value;

use super::mlx;
use super::reference::ids;

fn make_models(out: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/reference/make_tiny_models.py"))
        .arg(out)
        .status()
        .expect("the test virtualenv's python runs (./scripts/setup.sh)");
    assert!(status.success());
}

/// What mlx-lm's generate_step yields first: log-softmax of the last position's logits after
/// prefilling all prompt tokens but the last.
fn first_logprobs(model: &dyn LanguageModel, prompt: &[u32]) -> Vec<f32> {
    let mut caches = model.make_caches();
    let as_array = |t: &[u32]| {
        let v: Vec<i32> = t.iter().map(|&x| x as i32).collect();
        Array::from_slice(&v, &[1, v.len() as i32])
    };
    let (head, last) = prompt.split_at(prompt.len() - 1);
    model.forward(&as_array(head), &mut caches).unwrap();
    let logits = model.forward(&as_array(last), &mut caches).unwrap();
    let logits = logits.reshape(&[-1]).unwrap();
    let logprobs = logits.subtract(logits.logsumexp(true).unwrap()).unwrap();
    let logprobs = logprobs.as_type::<f32>().unwrap();
    eval([&logprobs]).unwrap();
    logprobs.as_slice::<f32>().to_vec()
}

fn check_greedy(what: &str, model: &Rc<dyn LanguageModel>, prompt: &[u32], reference: &Value) {
    let expected: Vec<f32> = reference["logprobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    let ours = first_logprobs(model.as_ref(), prompt);
    let worst = ours
        .iter()
        .zip(&expected)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "{what}: log-probabilities differ by {worst}");
    let generation = generate(
        model,
        prompt,
        12,
        512,
        &[],
        &SamplingParams::default(),
        |_| Control::Continue,
    )
    .unwrap();
    assert_eq!(
        generation.tokens,
        ids(&reference["tokens"]),
        "{what}: greedy tokens"
    );
}

fn check_sampled(
    what: &str,
    model: &Rc<dyn LanguageModel>,
    prompt: &[u32],
    sampling: &Value,
    reference: &Value,
) {
    let params = sampling_of(sampling);
    let sampled = generate(model, prompt, 12, 512, &[], &params, |_| Control::Continue).unwrap();
    assert_eq!(
        sampled.tokens,
        ids(&reference["sampled_tokens"]),
        "{what}: seeded sampled tokens"
    );
}

/// The tiny models and mlx-lm's answers, made once for every test of this binary.
/// The sampling a reference case records.
pub(super) fn sampling_of(sampling: &Value) -> SamplingParams {
    let number = |key: &str| sampling[key].as_f64().unwrap();
    SamplingParams {
        temperature: number("temperature") as f32,
        top_p: number("top_p") as f32,
        min_p: number("min_p") as f32,
        top_k: number("top_k") as usize,
        repetition_penalty: number("repetition_penalty") as f32,
        repetition_window: 20,
        seed: Some(number("seed") as u64),
    }
}

pub(super) fn cases() -> &'static [(String, PathBuf)] {
    static CASES: OnceLock<Vec<(String, PathBuf)>> = OnceLock::new();
    CASES.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("parity_tiny");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        make_models(&dir);
        let mut cases: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|path| (model_type(&path), path))
            .collect();
        cases.sort_by(|a, b| a.1.cmp(&b.1));
        cases
    })
}

fn model_type(case: &Path) -> String {
    let config: Value =
        serde_json::from_slice(&std::fs::read(case.join("config.json")).unwrap()).unwrap();
    config["model_type"].as_str().unwrap().to_string()
}

/// Every case of one architecture under every load plan.
fn check_architecture(architecture: &str) {
    let _mlx = mlx();
    let mine: Vec<&PathBuf> = cases()
        .iter()
        .filter(|(arch, _)| arch == architecture)
        .map(|(_, path)| path)
        .collect();
    assert!(!mine.is_empty(), "{architecture}: no tiny model case");
    for case in mine {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let reference: Value =
            serde_json::from_slice(&std::fs::read(case.join("reference.json")).unwrap()).unwrap();
        let prompt = ids(&reference["prompt"]);
        let plans = [
            LoadPolicy::as_published(),
            LoadPolicy::for_device(DeviceKind::Cpu, 0),
            LoadPolicy::for_device(DeviceKind::Cpu, u64::MAX),
        ];
        for policy in plans {
            let loaded = mlxk_engine::load(case, &policy).unwrap_or_else(|e| panic!("{name}: {e}"));
            let what = format!("{name} ({})", loaded.plan.layout.label());
            let expected = match (&reference.get("float32"), loaded.plan.layout) {
                (Some(upcast), WeightLayout::Float32 | WeightLayout::DenseFloat32) => upcast,
                _ => &reference,
            };
            check_greedy(&what, &loaded.model, &prompt, expected);
            if let Some(sampling) = reference.get("sampling") {
                if loaded.plan.layout == WeightLayout::AsPublished
                    || reference.get("float32").is_none()
                {
                    check_sampled(&what, &loaded.model, &prompt, sampling, &reference);
                }
            }
        }
    }
}

/// One test per architecture: a failure names it and hides no other.
macro_rules! parity {
    ($($test:ident => $architecture:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                check_architecture($architecture);
            }
        )*
        const TESTED: &[&str] = &[$($architecture),*];
    };
}

parity! {
    llama_matches_mlx_lm => "llama",
    mistral_matches_mlx_lm => "mistral",
    qwen2_matches_mlx_lm => "qwen2",
    qwen3_matches_mlx_lm => "qwen3",
    phi3_matches_mlx_lm => "phi3",
    gemma2_matches_mlx_lm => "gemma2",
    gemma3_text_matches_mlx_lm => "gemma3_text",
}

#[test]
fn every_architecture_in_the_runtime_table_has_parity_cases() {
    let supported: BTreeSet<&str> = SUPPORTED_ARCHITECTURES.iter().copied().collect();
    let tested: BTreeSet<&str> = TESTED.iter().copied().collect();
    assert_eq!(
        tested, supported,
        "one parity test per supported architecture"
    );
    let made: BTreeSet<&str> = cases().iter().map(|(arch, _)| arch.as_str()).collect();
    assert_eq!(
        made, supported,
        "a tiny model case per supported architecture"
    );
    let sampled = cases()
        .iter()
        .filter(|(_, path)| {
            let reference: Value =
                serde_json::from_slice(&std::fs::read(path.join("reference.json")).unwrap())
                    .unwrap();
            reference.get("sampling").is_some()
        })
        .count();
    assert_eq!(sampled, 4, "the seeded-sampling cases are made");
}
