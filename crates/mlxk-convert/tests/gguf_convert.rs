//! Conversion of small GGUF files written here with gguf-rs-lib's own writer.

use std::collections::HashMap;
use std::path::Path;

use gguf_rs_lib::builder::gguf_builder::GGUFBuilder;
use gguf_rs_lib::format::metadata::{MetadataArray, MetadataValue};
use gguf_rs_lib::format::types::GGUFValueType;
use gguf_rs_lib::tensor::tensor_type::TensorType;
use half::f16;
use mlxk_convert::{convert_gguf, ConvertError, ConvertOptions, ScaleDtype};

const HIDDEN: u64 = 64;
const HEADS: u64 = 2;
const KV_HEADS: u64 = 1;
const HEAD_DIM: u64 = HIDDEN / HEADS;

fn strings(values: &[String]) -> MetadataValue {
    let items = values
        .iter()
        .map(|s| MetadataValue::String(s.clone()))
        .collect();
    MetadataValue::Array(Box::new(
        MetadataArray::new(GGUFValueType::String, items).unwrap(),
    ))
}

fn ints(values: &[i32]) -> MetadataValue {
    let items = values.iter().map(|v| MetadataValue::I32(*v)).collect();
    MetadataValue::Array(Box::new(
        MetadataArray::new(GGUFValueType::I32, items).unwrap(),
    ))
}

/// Q4_1 rows whose every block has `d = row + 1`, `m = -row`, and nibbles 0..15, 0..15.
fn q4_1_rows(rows: u64, cols: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    for row in 0..rows {
        for _ in 0..cols / 32 {
            bytes.extend(f16::from_f32(row as f32 + 1.0).to_le_bytes());
            bytes.extend(f16::from_f32(-(row as f32)).to_le_bytes());
            bytes.extend((0..16u8).map(|j| j | (15 - j) << 4));
        }
    }
    bytes
}

fn q8_0_rows(rows: u64, cols: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    for row in 0..rows {
        for _ in 0..cols / 32 {
            bytes.extend(f16::from_f32(0.5).to_le_bytes());
            bytes.extend((0..32).map(|j| (j as i8 - 16 + row as i8) as u8));
        }
    }
    bytes
}

fn f32_bytes(n: u64, value: f32) -> Vec<u8> {
    (0..n).flat_map(|_| value.to_le_bytes()).collect()
}

/// A one-layer llama with a byte-level vocabulary; `extra` can add or replace tensors.
fn tiny_llama(
    path: &Path,
    architecture: &str,
    extra: Option<(&str, TensorType, Vec<u64>, Vec<u8>)>,
) {
    let byte_tokens: Vec<String> = (33u8..=126).map(|b| (b as char).to_string()).collect();
    let mut tokens = vec![
        "<|endoftext|>".to_string(),
        "<|im_start|>".into(),
        "<|im_end|>".into(),
    ];
    tokens.extend(byte_tokens);
    tokens.push("Ġ".into());
    tokens.push("ab".into());
    let mut types = vec![3, 3, 3];
    types.extend(std::iter::repeat_n(1, tokens.len() - 3));
    let vocab = tokens.len() as u64;
    // Embedding rows must be whole Q8_0 blocks; the vocabulary size does not matter for that.
    let mut builder = GGUFBuilder::new()
        .add_metadata(
            "general.architecture",
            MetadataValue::String(architecture.into()),
        )
        .add_metadata("llama.block_count", MetadataValue::U32(1))
        .add_metadata("llama.context_length", MetadataValue::U32(256))
        .add_metadata("llama.embedding_length", MetadataValue::U32(HIDDEN as u32))
        .add_metadata(
            "llama.feed_forward_length",
            MetadataValue::U32(HIDDEN as u32),
        )
        .add_metadata(
            "llama.attention.head_count",
            MetadataValue::U32(HEADS as u32),
        )
        .add_metadata(
            "llama.attention.head_count_kv",
            MetadataValue::U32(KV_HEADS as u32),
        )
        .add_metadata("llama.rope.freq_base", MetadataValue::F32(10000.0))
        .add_metadata(
            "llama.attention.layer_norm_rms_epsilon",
            MetadataValue::F32(1e-5),
        )
        .add_metadata("tokenizer.ggml.model", MetadataValue::String("gpt2".into()))
        .add_metadata("tokenizer.ggml.pre", MetadataValue::String("smollm".into()))
        .add_metadata("tokenizer.ggml.tokens", strings(&tokens))
        .add_metadata("tokenizer.ggml.token_type", ints(&types))
        .add_metadata("tokenizer.ggml.merges", strings(&["a b".to_string()]))
        .add_metadata("tokenizer.ggml.bos_token_id", MetadataValue::U32(1))
        .add_metadata("tokenizer.ggml.eos_token_id", MetadataValue::U32(2))
        .add_metadata(
            "tokenizer.chat_template",
            MetadataValue::String("{{ messages }}".into()),
        );
    let mut tensors: Vec<(String, TensorType, Vec<u64>, Vec<u8>)> = vec![
        (
            "token_embd.weight".into(),
            TensorType::Q8_0,
            vec![HIDDEN, vocab],
            q8_0_rows(vocab, HIDDEN),
        ),
        (
            "output_norm.weight".into(),
            TensorType::F32,
            vec![HIDDEN],
            f32_bytes(HIDDEN, 1.0),
        ),
        (
            "blk.0.attn_norm.weight".into(),
            TensorType::F32,
            vec![HIDDEN],
            f32_bytes(HIDDEN, 0.5),
        ),
        (
            "blk.0.ffn_norm.weight".into(),
            TensorType::F32,
            vec![HIDDEN],
            f32_bytes(HIDDEN, 0.25),
        ),
        (
            "blk.0.attn_q.weight".into(),
            TensorType::Q4_1,
            vec![HIDDEN, HIDDEN],
            q4_1_rows(HIDDEN, HIDDEN),
        ),
        (
            "blk.0.attn_k.weight".into(),
            TensorType::Q4_1,
            vec![HIDDEN, HEAD_DIM],
            q4_1_rows(HEAD_DIM, HIDDEN),
        ),
        (
            "blk.0.attn_v.weight".into(),
            TensorType::F16,
            vec![HIDDEN, HEAD_DIM],
            (0..HIDDEN * HEAD_DIM)
                .flat_map(|i| f16::from_f32(i as f32 / 64.0).to_le_bytes())
                .collect(),
        ),
        (
            "blk.0.attn_output.weight".into(),
            TensorType::F32,
            vec![HIDDEN, HIDDEN],
            f32_bytes(HIDDEN * HIDDEN, 0.1),
        ),
        (
            "blk.0.ffn_gate.weight".into(),
            TensorType::Q4_1,
            vec![HIDDEN, HIDDEN],
            q4_1_rows(HIDDEN, HIDDEN),
        ),
        (
            "blk.0.ffn_up.weight".into(),
            TensorType::Q4_1,
            vec![HIDDEN, HIDDEN],
            q4_1_rows(HIDDEN, HIDDEN),
        ),
        (
            "blk.0.ffn_down.weight".into(),
            TensorType::Q4_1,
            vec![HIDDEN, HIDDEN],
            q4_1_rows(HIDDEN, HIDDEN),
        ),
    ];
    if let Some((name, kind, dims, data)) = extra {
        tensors.retain(|t| t.0 != name);
        tensors.push((name.to_string(), kind, dims, data));
    }
    for (name, kind, dims, data) in tensors {
        builder = builder.add_tensor(name, dims, kind, data).unwrap();
    }
    builder.build_to_file(path).unwrap();
}

fn load(path: &Path) -> HashMap<String, (safetensors::Dtype, Vec<usize>, Vec<u8>)> {
    let bytes = std::fs::read(path).unwrap();
    let tensors = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    tensors
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                (view.dtype(), view.shape().to_vec(), view.data().to_vec()),
            )
        })
        .collect()
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn converts_a_llama_gguf_into_an_mlx_folder() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    tiny_llama(&gguf, "llama", None);
    let target = dir.path().join("out");
    let mut stages = 0;
    let report = convert_gguf(&gguf, &target, &ConvertOptions::default(), |_| stages += 1).unwrap();
    assert_eq!((report.bits, report.group_size), (Some(4), Some(32)));
    assert!(stages > 11, "progress is reported per tensor");

    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "llama");
    assert_eq!(config["num_key_value_heads"], 1);
    assert_eq!(config["tie_word_embeddings"], true);
    assert_eq!(config["quantization"]["bits"], 4);
    assert_eq!(config["quantization"]["model.embed_tokens"]["bits"], 8);
    assert_eq!(config["rms_norm_eps"].as_f64(), Some(1e-5));

    let tensors = load(&target.join("model.safetensors"));
    let (dtype, shape, _) = &tensors["model.layers.0.self_attn.q_proj.weight"];
    assert_eq!(
        (*dtype, shape.as_slice()),
        (safetensors::Dtype::U32, [64, 8].as_slice())
    );
    assert_eq!(tensors["model.embed_tokens.weight"].1, [99, 16]);
    assert_eq!(
        tensors["model.layers.0.self_attn.v_proj.weight"].0,
        safetensors::Dtype::F32
    );
    assert_eq!(tensors["model.norm.weight"].1, [64]);
    assert!(!tensors.contains_key("lm_head.weight"));

    // Q rows come back in Hugging Face order: row `o` holds the GGUF row llama.cpp stored it at.
    let scales = f32s(&tensors["model.layers.0.self_attn.q_proj.scales"].2);
    let (per_head, half) = ((HIDDEN / HEADS) as usize, (HIDDEN / HEADS / 2) as usize);
    for original in 0..HIDDEN as usize {
        let (head, within) = (original / per_head, original % per_head);
        let stored = head * per_head + 2 * (within % half) + within / half;
        assert_eq!(
            scales[original * 2],
            stored as f32 + 1.0,
            "q_proj row {original}"
        );
    }
    // K is permuted with the KV head count; V is not permuted at all.
    let k_scales = f32s(&tensors["model.layers.0.self_attn.k_proj.scales"].2);
    // One KV head of 32 rows: original row 1 (first half) sat at 2, row 16 (second half) at 1.
    assert_eq!((k_scales[2], k_scales[32]), (3.0, 2.0));
    let v = f32s(&tensors["model.layers.0.self_attn.v_proj.weight"].2);
    assert_eq!(v[65], 65.0 / 64.0);

    let tokenizer = tokenizers::Tokenizer::from_file(target.join("tokenizer.json")).unwrap();
    let encoding = tokenizer
        .encode("<|im_start|>ab 12<|im_end|>", false)
        .unwrap();
    assert_eq!(
        encoding.get_tokens(),
        ["<|im_start|>", "ab", "Ġ", "1", "2", "<|im_end|>"]
    );
    let tokenizer_config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(target.join("tokenizer_config.json")).unwrap())
            .unwrap();
    assert_eq!(tokenizer_config["eos_token"], "<|im_end|>");
    assert_eq!(tokenizer_config["chat_template"], "{{ messages }}");
}

#[test]
fn float16_scales_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("tiny.gguf");
    tiny_llama(&gguf, "llama", None);
    let target = dir.path().join("out");
    convert_gguf(
        &gguf,
        &target,
        &ConvertOptions {
            scales: ScaleDtype::F16,
            ..Default::default()
        },
        |_| {},
    )
    .unwrap();
    let tensors = load(&target.join("model.safetensors"));
    assert_eq!(
        tensors["model.layers.0.mlp.up_proj.scales"].0,
        safetensors::Dtype::F16
    );
    assert_eq!(tensors["model.norm.weight"].0, safetensors::Dtype::F32);
}

#[test]
fn unsupported_input_is_named_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gguf = dir.path().join("i-quant.gguf");
    tiny_llama(
        &gguf,
        "llama",
        Some((
            "blk.0.ffn_up.weight",
            TensorType::IQ4_NL,
            vec![32, 1],
            vec![0u8; 18],
        )),
    );
    let target = dir.path().join("out");
    match convert_gguf(&gguf, &target, &ConvertOptions::default(), |_| {}) {
        Err(ConvertError::UnsupportedTensors(list)) => {
            assert_eq!(list.len(), 1);
            assert!(
                list[0].starts_with("blk.0.ffn_up.weight") && list[0].contains("IQ4_NL"),
                "{list:?}"
            );
        }
        other => panic!("expected unsupported tensors, got {other:?}"),
    }
    assert!(!target.exists());

    let phi = dir.path().join("phi.gguf");
    tiny_llama(&phi, "phi2", None);
    assert!(matches!(
        convert_gguf(&phi, &target, &ConvertOptions::default(), |_| {}),
        Err(ConvertError::UnsupportedArchitecture(a)) if a == "phi2"
    ));

    std::fs::write(dir.path().join("not.gguf"), b"definitely not gguf").unwrap();
    assert!(matches!(
        convert_gguf(
            &dir.path().join("not.gguf"),
            &target,
            &ConvertOptions::default(),
            |_| {}
        ),
        Err(ConvertError::Gguf(_))
    ));

    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep.txt"), "mine").unwrap();
    let good = dir.path().join("tiny.gguf");
    tiny_llama(&good, "llama", None);
    assert!(matches!(
        convert_gguf(&good, &target, &ConvertOptions::default(), |_| {}),
        Err(ConvertError::TargetNotEmpty(_))
    ));
    assert_eq!(
        std::fs::read_to_string(target.join("keep.txt")).unwrap(),
        "mine"
    );
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("converting"))
        .collect();
    assert!(leftovers.is_empty());
}
