//! Several sequences in one forward pass: prompts of different lengths prefilled alone, their
//! caches joined as the rows of one batch (left-padded to a common length), then decoded
//! together. Each row's logits are the ones it gets decoding alone, on every architecture's
//! tiny model (float32 and 4-bit, as published).

use std::rc::Rc;

use mlx_rs::transforms::eval;
use mlx_rs::Array;
use mlxk_engine::{LanguageModel, LoadPolicy, Positions};
use serde_json::Value;

use super::mlx;
use super::parity_tiny::cases;
use super::reference::ids;

/// How far apart a row's logits may be from the same sequence's alone, relative to the largest
/// logit: the batched matmuls and the longer, padded attention group their sums differently,
/// which moves the last bits (seen: up to 3e-6, Gemma 2's hand-written attention the most).
const TOLERANCE: f32 = 1e-5;

/// Decoding steps taken together after the join.
const STEPS: usize = 4;

fn tokens(rows: &[u32]) -> Array {
    let ids: Vec<i32> = rows.iter().map(|&t| t as i32).collect();
    Array::from_slice(&ids, &[1, ids.len() as i32])
}

/// Logits `[rows, 1, vocab]` as host floats, one vector per row.
fn rows_of(logits: &Array, rows: usize) -> Vec<Vec<f32>> {
    let logits = logits
        .as_type::<f32>()
        .unwrap()
        .reshape(&[rows as i32, -1])
        .unwrap();
    eval([&logits]).unwrap();
    let vocab = logits.shape()[1] as usize;
    logits
        .as_slice::<f32>()
        .chunks(vocab)
        .map(<[f32]>::to_vec)
        .collect()
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best as u32
}

/// Prompts of 12, 5 and 38 tokens: the 38 runs past Gemma 3's window of 8, the 5 is padded.
fn prompts(reference: &Value) -> Vec<Vec<u32>> {
    let prompt = ids(&reference["prompt"]);
    let mut long: Vec<u32> = prompt.repeat(3);
    long.extend([9, 8]);
    vec![prompt.clone(), prompt[..5].to_vec(), long]
}

fn check_case(name: &str, model: &Rc<dyn LanguageModel>, prompts: &[Vec<u32>]) {
    // Each prompt but its last token, prefilled alone.
    let prefilled: Vec<_> = prompts
        .iter()
        .map(|prompt| {
            let mut caches = model.make_caches();
            let head = &prompt[..prompt.len() - 1];
            model
                .forward_positions(&tokens(head), &mut caches, Positions::Last)
                .unwrap();
            caches
        })
        .collect();
    // The rows joined: the first sequence's caches take the others as rows.
    let mut batch = prefilled[0].clone();
    for caches in &prefilled[1..] {
        for (layer, row) in batch.iter_mut().zip(caches.iter().cloned()) {
            layer.append_row(row).unwrap();
        }
    }
    let mut alone = prefilled;
    let mut next: Vec<u32> = prompts.iter().map(|p| *p.last().unwrap()).collect();
    for step in 0..STEPS {
        let ids: Vec<i32> = next.iter().map(|&t| t as i32).collect();
        let input = Array::from_slice(&ids, &[ids.len() as i32, 1]);
        let together = model
            .forward_positions(&input, &mut batch, Positions::Last)
            .unwrap();
        let together = rows_of(&together, prompts.len());
        for (r, caches) in alone.iter_mut().enumerate() {
            let solo = model
                .forward_positions(&tokens(&next[r..r + 1]), caches, Positions::Last)
                .unwrap();
            let solo = &rows_of(&solo, 1)[0];
            let worst = together[r]
                .iter()
                .zip(solo)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            let largest = solo.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            assert!(
                worst <= TOLERANCE * largest,
                "{name}: row {r} (a prompt of {}) at step {step}: logits differ by {worst} \
                 (the largest is {largest})",
                prompts[r].len()
            );
            assert_eq!(
                argmax(&together[r]),
                argmax(solo),
                "{name}: row {r} at step {step}: the greedy token"
            );
            next[r] = argmax(solo);
        }
    }
}

#[test]
fn rows_joined_into_a_batch_decode_as_each_sequence_alone() {
    let _mlx = mlx();
    let mut checked = Vec::new();
    for (architecture, dir) in cases() {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let float_or_4bit = name == *architecture || name == format!("{architecture}-4bit");
        if !(float_or_4bit || name.starts_with("llama-rope-llama3")) {
            continue;
        }
        let reference: Value =
            serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
        let model = mlxk_engine::load(dir, &LoadPolicy::as_published())
            .unwrap()
            .model;
        check_case(&name, &model, &prompts(&reference));
        checked.push(name);
    }
    // Every architecture, in float32 and 4-bit.
    assert_eq!(checked.len(), 16, "{checked:?}");
}
