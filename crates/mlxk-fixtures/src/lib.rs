//! Builds Hugging Face cache fixtures exactly as `huggingface_hub` lays them out: content in
//! `blobs/<sha256>`, relative symlinks in `snapshots/<commit>/`, commits in `refs/`.
//!
//! Used by the tests (a temp `HF_HOME` carrying the test sentinel), the benchmark (a synthetic
//! cache of many models) and the demo. It writes only inside the folder it is given, and only
//! into a folder that is new, empty, or already a fixture cache.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use filetime::FileTime;
use safetensors::tensor::{Dtype, TensorView};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Must match `mlxk_core::cache::TEST_SENTINEL_FILE` (the fixtures do not depend on the core).
pub const TEST_SENTINEL_FILE: &str = ".mlxk-test-sentinel";

/// 2025-01-15T10:00:00Z: the modification time of fixtures that do not say otherwise.
pub const FIXED_TIME: u64 = 1_736_935_200;

/// A fixture `HF_HOME`: the sentinel file plus `hub/`.
pub struct FixtureCache {
    pub home: PathBuf,
    pub hub: PathBuf,
}

#[derive(Clone)]
pub enum Content {
    Bytes(Vec<u8>),
    /// A snapshot symlink whose blob does not exist.
    MissingBlob,
}

pub struct SnapshotSpec {
    pub commit: String,
    pub files: Vec<(String, Content)>,
}

pub struct ModelSpec {
    pub repo_id: String,
    pub snapshots: Vec<SnapshotSpec>,
    /// (ref name, commit)
    pub refs: Vec<(String, String)>,
    /// Extra files in `blobs/` (e.g. `<sha>.incomplete` of an interrupted download).
    pub extra_blobs: Vec<(String, Vec<u8>)>,
    pub modified: SystemTime,
}

impl FixtureCache {
    pub fn create(home: &Path) -> Result<Self> {
        if home.exists() {
            let is_empty = fs::read_dir(home)?.next().is_none();
            if !is_empty && !home.join(TEST_SENTINEL_FILE).exists() {
                bail!(
                    "{} is not empty and not a fixture cache; refusing to write there",
                    home.display()
                );
            }
        }
        let hub = home.join("hub");
        fs::create_dir_all(&hub).with_context(|| format!("creating {}", hub.display()))?;
        fs::write(
            home.join(TEST_SENTINEL_FILE),
            "MLX Knife test cache: safe to delete\n",
        )?;
        Ok(FixtureCache {
            home: home.to_path_buf(),
            hub,
        })
    }

    pub fn write(&self, model: &ModelSpec) -> Result<PathBuf> {
        let repo_dir = self
            .hub
            .join(format!("models--{}", model.repo_id.replace('/', "--")));
        let blobs = repo_dir.join("blobs");
        fs::create_dir_all(&blobs)?;
        let time = FileTime::from_system_time(model.modified);
        for snapshot in &model.snapshots {
            let snap_dir = repo_dir.join("snapshots").join(&snapshot.commit);
            fs::create_dir_all(&snap_dir)?;
            for (name, content) in &snapshot.files {
                let link = snap_dir.join(name);
                if let Some(parent) = link.parent() {
                    fs::create_dir_all(parent)?;
                }
                let blob_name = match content {
                    Content::Bytes(bytes) => {
                        let blob_name = sha256_hex(bytes);
                        let blob = blobs.join(&blob_name);
                        if !blob.exists() {
                            fs::write(&blob, bytes)?;
                        }
                        filetime::set_file_mtime(&blob, time)?;
                        blob_name
                    }
                    Content::MissingBlob => sha256_hex(name.as_bytes()),
                };
                let depth = name.matches('/').count() + 2;
                let target = format!("{}blobs/{blob_name}", "../".repeat(depth));
                if link.symlink_metadata().is_ok() {
                    fs::remove_file(&link)?;
                }
                symlink(&target, &link)?;
                filetime::set_symlink_file_times(&link, time, time)?;
            }
            filetime::set_file_mtime(&snap_dir, time)?;
        }
        for (name, bytes) in &model.extra_blobs {
            fs::write(blobs.join(name), bytes)?;
        }
        for (name, commit) in &model.refs {
            let path = repo_dir.join("refs").join(name);
            fs::create_dir_all(path.parent().expect("refs/<name> has a parent"))?;
            fs::write(path, commit)?;
        }
        Ok(repo_dir)
    }
}

#[cfg(unix)]
fn symlink(target: &str, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn symlink(target: &str, link: &Path) -> std::io::Result<()> {
    std::os::windows::fs::symlink_file(target, link)
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A deterministic 40-hex commit id derived from a label.
pub fn commit_id(label: &str) -> String {
    sha256_hex(label.as_bytes())[..40].to_string()
}

pub fn fixed_time() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(FIXED_TIME)
}

/// A safetensors file with the named float32 tensors (deterministic values).
pub fn safetensors_file(tensors: &[(&str, Vec<usize>)]) -> Vec<u8> {
    let buffers: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, shape)| {
            let count: usize = shape.iter().product();
            (0..count)
                .flat_map(|i| (i as f32 * 0.001).to_le_bytes())
                .collect()
        })
        .collect();
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .zip(&buffers)
        .map(|((name, shape), data)| {
            let view =
                TensorView::new(Dtype::F32, shape.clone(), data).expect("shape matches data");
            (name.to_string(), view)
        })
        .collect();
    safetensors::serialize(views, None).expect("serialising fixture tensors")
}

/// A well-formed GGUF file holding one small float32 tensor, padded with zeros to `len` bytes
/// (GGUF readers ignore bytes after the last tensor's data).
pub fn tiny_gguf(len: usize) -> Vec<u8> {
    use gguf_rs_lib::builder::gguf_builder::GGUFBuilder;
    use gguf_rs_lib::format::metadata::MetadataValue;
    let (mut bytes, _) = GGUFBuilder::new()
        .add_metadata(
            "general.architecture",
            MetadataValue::String("llama".into()),
        )
        .add_f32_tensor("token_embd.weight", vec![4, 2], vec![0.5; 8])
        .and_then(|b| b.build_to_bytes())
        .expect("writing a fixture GGUF file");
    assert!(
        bytes.len() <= len,
        "the fixture GGUF needs {} bytes",
        bytes.len()
    );
    bytes.resize(len, 0);
    bytes
}

pub fn json_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec_pretty(value).expect("fixture JSON serialises")
}

pub fn llama_config(model_type: &str, quant_bits: Option<u32>) -> Value {
    let mut config = json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": model_type,
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "vocab_size": 128,
        "max_position_embeddings": 131072,
    });
    if let Some(bits) = quant_bits {
        config["quantization"] = json!({"bits": bits, "group_size": 64});
    }
    config
}

pub fn tokenizer_json() -> Vec<u8> {
    json_bytes(&json!({
        "version": "1.0",
        "model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []},
        "added_tokens": [],
    }))
}

pub fn tokenizer_config(chat: bool) -> Vec<u8> {
    let mut config = json!({"bos_token": "<s>", "eos_token": "</s>"});
    if chat {
        config["chat_template"] =
            json!("{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}");
    }
    json_bytes(&config)
}

fn weights() -> Vec<u8> {
    safetensors_file(&[
        ("model.embed_tokens.weight", vec![128, 64]),
        ("lm_head.weight", vec![16, 64]),
    ])
}

/// The files of a small healthy MLX model.
pub fn healthy_model_files(
    model_type: &str,
    quant_bits: Option<u32>,
    chat: bool,
) -> Vec<(String, Content)> {
    vec![
        (
            "config.json".into(),
            Content::Bytes(json_bytes(&llama_config(model_type, quant_bits))),
        ),
        ("model.safetensors".into(), Content::Bytes(weights())),
        ("tokenizer.json".into(), Content::Bytes(tokenizer_json())),
        (
            "tokenizer_config.json".into(),
            Content::Bytes(tokenizer_config(chat)),
        ),
    ]
}

/// The files of a small Whisper model as `mlxk convert --from-ct2` writes them (mlx-whisper's
/// layout): the ten dimensions in `config.json`, `weights.safetensors`, `tokenizer.json`, and a
/// README whose front matter makes it MLX. A multilingual model has 51865 tokens (it can
/// translate), an English-only one (`.en`) 51864. The weights are placeholders: the HTTP tests
/// run it on a stand-in engine.
pub fn whisper_model_files(multilingual: bool) -> Vec<(String, Content)> {
    let config = json!({
        "n_mels": 80,
        "n_audio_ctx": 1500,
        "n_audio_state": 64,
        "n_audio_head": 2,
        "n_audio_layer": 1,
        "n_vocab": if multilingual { 51865 } else { 51864 },
        "n_text_ctx": 448,
        "n_text_state": 64,
        "n_text_head": 2,
        "n_text_layer": 1,
        "model_type": "whisper",
    });
    let readme = "---\nlibrary_name: mlx\npipeline_tag: automatic-speech-recognition\nlicense: mit\ntags:\n- mlx\n- whisper\n---\n# A fixture Whisper model\n";
    vec![
        ("config.json".into(), Content::Bytes(json_bytes(&config))),
        (
            "weights.safetensors".into(),
            Content::Bytes(safetensors_file(&[
                ("encoder.ln_post.weight", vec![64]),
                ("decoder.token_embedding.weight", vec![16, 64]),
            ])),
        ),
        ("tokenizer.json".into(), Content::Bytes(tokenizer_json())),
        (
            "README.md".into(),
            Content::Bytes(readme.as_bytes().to_vec()),
        ),
    ]
}

/// A model of one snapshot, `main` pointing at it, at the fixed time.
pub fn single(repo_id: &str, files: Vec<(String, Content)>) -> ModelSpec {
    let commit = commit_id(repo_id);
    ModelSpec {
        repo_id: repo_id.to_string(),
        snapshots: vec![SnapshotSpec {
            commit: commit.clone(),
            files,
        }],
        refs: vec![("main".into(), commit)],
        extra_blobs: Vec::new(),
        modified: fixed_time(),
    }
}

fn replace(
    mut files: Vec<(String, Content)>,
    name: &str,
    content: Content,
) -> Vec<(String, Content)> {
    files.retain(|(n, _)| n != name);
    files.push((name.to_string(), content));
    files
}

fn sharded_files(model_type: &str, keep_second_shard: bool) -> Vec<(String, Content)> {
    let shard1 = safetensors_file(&[("model.embed_tokens.weight", vec![128, 64])]);
    let shard2 = safetensors_file(&[("lm_head.weight", vec![128, 64])]);
    let index = json!({
        "metadata": {"total_size": 65536},
        "weight_map": {
            "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
            "lm_head.weight": "model-00002-of-00002.safetensors",
        }
    });
    let mut files = healthy_model_files(model_type, Some(4), true);
    files.retain(|(n, _)| n != "model.safetensors");
    files.push((
        "model.safetensors.index.json".into(),
        Content::Bytes(json_bytes(&index)),
    ));
    files.push((
        "model-00001-of-00002.safetensors".into(),
        Content::Bytes(shard1),
    ));
    if keep_second_shard {
        files.push((
            "model-00002-of-00002.safetensors".into(),
            Content::Bytes(shard2),
        ));
    }
    files
}

/// The standard fixture set: healthy, broken and foreign models that the tests rely on.
/// Returns the repository ids written.
pub fn write_standard(cache: &FixtureCache) -> Result<Vec<String>> {
    let recent = SystemTime::now() - Duration::from_secs(2 * 3600 + 60);
    let mut models = vec![
        ModelSpec {
            modified: recent,
            ..single("mlx-community/Llama-3.2-1B-Instruct-4bit", healthy_model_files("llama", Some(4), true))
        },
        single("mlx-community/Llama-3.2-1B-Instruct-8bit", healthy_model_files("llama", Some(8), true)),
        single("mlx-community/Qwen3-0.6B-sharded", sharded_files("qwen3", true)),
        single("mlx-community/Mistral-7B-Instruct-v0.3-missing-shard", sharded_files("mistral", false)),
        single(
            "mlx-community/phi-2-lfs-pointer",
            replace(
                healthy_model_files("phi", Some(4), false),
                "model.safetensors",
                Content::Bytes(
                    b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a2146\nsize 1430000000\n".to_vec(),
                ),
            ),
        ),
        single("mlx-community/gemma-2-2b-truncated", {
            let mut bytes = weights();
            bytes.truncate(bytes.len() - 1000);
            replace(healthy_model_files("gemma2", Some(4), true), "model.safetensors", Content::Bytes(bytes))
        }),
        ModelSpec {
            extra_blobs: vec![(format!("{}.incomplete", sha256_hex(b"partial")), vec![7u8; 4096])],
            ..single("mlx-community/SmolLM2-135M-Instruct-downloading", healthy_model_files("llama", Some(4), true))
        },
        single(
            "TheBloke/TinyLlama-1.1B-Chat-GGUF",
            vec![
                ("tinyllama-1.1b-chat.Q4_K_M.gguf".into(), Content::Bytes(tiny_gguf(2048))),
                ("README.md".into(), Content::Bytes(b"---\nlicense: apache-2.0\n---\n# TinyLlama GGUF\n".to_vec())),
            ],
        ),
        single(
            "openai-community/gpt2",
            vec![
                ("config.json".into(), Content::Bytes(json_bytes(&json!({"model_type": "gpt2", "n_positions": 1024, "vocab_size": 50257})))),
                ("pytorch_model.bin".into(), Content::Bytes([0x80, 0x02, 0x7d, 0x71].repeat(512))),
                ("tokenizer.json".into(), Content::Bytes(tokenizer_json())),
            ],
        ),
        single(
            "my_org.v2/Model_v1.5-beta.test",
            [
                healthy_model_files("llama", None, false),
                vec![("README.md".into(), Content::Bytes(b"---\nlibrary_name: mlx\ntags:\n- mlx\n---\n# Odd name\n".to_vec()))],
            ]
            .concat(),
        ),
        single(
            "mlx-community/broken-symlink-model",
            replace(healthy_model_files("llama", Some(4), true), "tokenizer.json", Content::MissingBlob),
        ),
    ];

    // Two snapshots: main (new) and the tag v1.0 (old). They share the tokenizer blobs.
    let repo = "mlx-community/Qwen2.5-0.5B-Instruct-4bit";
    let (old, new) = (commit_id("qwen2.5-old"), commit_id("qwen2.5-new"));
    let mut old_files = healthy_model_files("qwen2", Some(4), true);
    old_files = replace(
        old_files,
        "model.safetensors",
        Content::Bytes(safetensors_file(&[(
            "model.embed_tokens.weight",
            vec![64, 64],
        )])),
    );
    models.push(ModelSpec {
        repo_id: repo.into(),
        snapshots: vec![
            SnapshotSpec {
                commit: old.clone(),
                files: old_files,
            },
            SnapshotSpec {
                commit: new.clone(),
                files: healthy_model_files("qwen2", Some(4), true),
            },
        ],
        refs: vec![("main".into(), new), ("v1.0".into(), old)],
        extra_blobs: Vec::new(),
        modified: fixed_time(),
    });

    for model in &models {
        cache.write(model)?;
    }

    // No refs at all: the newest snapshot folder is the model's snapshot.
    let repo = "mlx-community/no-refs-model";
    let (older, newer) = (commit_id("norefs-older"), commit_id("norefs-newer"));
    let mut files = healthy_model_files("llama", Some(4), false);
    files.push(("README.md".into(), Content::Bytes(b"newest".to_vec())));
    let no_refs = ModelSpec {
        repo_id: repo.into(),
        snapshots: vec![
            SnapshotSpec {
                commit: older.clone(),
                files: healthy_model_files("llama", Some(4), false),
            },
            SnapshotSpec {
                commit: newer.clone(),
                files,
            },
        ],
        refs: Vec::new(),
        extra_blobs: Vec::new(),
        modified: fixed_time(),
    };
    let dir = cache.write(&no_refs)?;
    let snapshots = dir.join("snapshots");
    filetime::set_file_mtime(
        snapshots.join(&older),
        FileTime::from_unix_time(FIXED_TIME as i64 - 86_400, 0),
    )?;
    filetime::set_file_mtime(
        snapshots.join(&newer),
        FileTime::from_unix_time(FIXED_TIME as i64, 0),
    )?;

    let mut names: Vec<String> = models.into_iter().map(|m| m.repo_id).collect();
    names.push(repo.into());
    names.sort();
    Ok(names)
}

/// A synthetic cache of `count` models (for benchmarks): mostly healthy quantized MLX models,
/// every tenth sharded, every twenty-fifth broken, with tokenizers of realistic size.
pub fn write_synthetic(cache: &FixtureCache, count: usize) -> Result<()> {
    let vocab: serde_json::Map<String, Value> =
        (0..20_000).map(|i| (format!("tok{i}"), json!(i))).collect();
    let big_tokenizer = json_bytes(
        &json!({"version": "1.0", "model": {"type": "BPE", "vocab": vocab, "merges": []}}),
    );
    let archs = ["llama", "qwen2", "qwen3", "mistral", "phi3", "gemma2"];
    for i in 0..count {
        let arch = archs[i % archs.len()];
        let repo_id = format!("mlx-community/Synthetic-{arch}-{i:03}-Instruct-4bit");
        let mut files = if i % 10 == 9 {
            sharded_files(arch, true)
        } else {
            healthy_model_files(arch, Some(4), true)
        };
        files = replace(
            files,
            "tokenizer.json",
            Content::Bytes(big_tokenizer.clone()),
        );
        if i % 25 == 24 {
            files = replace(
                files,
                "model.safetensors",
                Content::Bytes(
                    b"version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n".to_vec(),
                ),
            );
        }
        cache.write(&single(&repo_id, files))?;
    }
    Ok(())
}
