//! The architectures a GGUF file can hold that this converter knows: their hyper-parameters
//! (`{arch}.*` metadata), tensor names, and mlx-lm's `config.json` for them.
//!
//! - `llama`: llama.cpp permutes the query and key rows for GGML's RoPE; they are put back.
//! - `qwen2`: query/key/value biases, usually an untied `output.weight`; not permuted.
//! - `gemma3`: sandwich norms and per-head query/key norms, stored by llama.cpp as `1 + w`
//!   (mlx-lm, like Hugging Face, stores `w` and adds the 1 itself); not permuted. Three values
//!   mlx-lm needs are not in the file and are filled from Gemma 3's published configs.

use serde_json::{json, Value};

use crate::error::ConvertError;
use crate::gguf::GgufFile;
use crate::tokenizer::SpecialTokens;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Qwen2,
    Gemma3,
}

impl Architecture {
    pub const SUPPORTED: &'static str = "llama, qwen2, gemma3";

    fn from_gguf(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Architecture::Llama),
            "qwen2" => Some(Architecture::Qwen2),
            "gemma3" => Some(Architecture::Gemma3),
            _ => None,
        }
    }

    pub fn gguf_name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
            Architecture::Gemma3 => "gemma3",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ModelParams {
    pub arch: Architecture,
    pub layers: u64,
    pub hidden: u64,
    pub intermediate: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub context_length: u64,
    pub rms_norm_eps: f64,
    pub rope_theta: Option<f64>,
    pub sliding_window: Option<u64>,
    /// `rope_scaling` for `config.json`, when the file states one.
    pub rope_scaling: Option<Value>,
}

impl ModelParams {
    pub fn read(gguf: &GgufFile) -> Result<Self, ConvertError> {
        let name = gguf.string("general.architecture").unwrap_or("");
        let arch = Architecture::from_gguf(name)
            .ok_or_else(|| ConvertError::UnsupportedArchitecture(name.to_string()))?;
        let key = |k: &str| format!("{name}.{k}");
        let heads = gguf.require_u64(&key("attention.head_count"))?;
        let hidden = gguf.require_u64(&key("embedding_length"))?;
        if heads == 0 {
            return Err(ConvertError::Gguf(format!(
                "{} is 0",
                key("attention.head_count")
            )));
        }
        let rope_scaling = match (
            gguf.string(&key("rope.scaling.type")),
            gguf.float(&key("rope.scaling.factor")),
        ) {
            // Only linear scaling is stated in full by these two keys.
            (Some("linear"), Some(factor)) => {
                Some(json!({"rope_type": "linear", "factor": factor}))
            }
            _ => None,
        };
        Ok(ModelParams {
            arch,
            layers: gguf.require_u64(&key("block_count"))?,
            intermediate: gguf.require_u64(&key("feed_forward_length"))?,
            kv_heads: gguf.u64(&key("attention.head_count_kv")).unwrap_or(heads),
            head_dim: gguf
                .u64(&key("attention.key_length"))
                .unwrap_or(hidden / heads),
            context_length: gguf.require_u64(&key("context_length"))?,
            rms_norm_eps: gguf
                .float(&key("attention.layer_norm_rms_epsilon"))
                .unwrap_or(if arch == Architecture::Llama {
                    1e-5
                } else {
                    1e-6
                }),
            rope_theta: gguf.float(&key("rope.freq_base")),
            sliding_window: gguf.u64(&key("attention.sliding_window")),
            rope_scaling,
            heads,
            hidden,
        })
    }
}

/// How a GGUF tensor becomes an MLX one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The module path in mlx-lm (`model.layers.0.self_attn.q_proj`) for weight matrices, or
    /// the full name for plain parameters such as norms and biases (`model.norm.weight`).
    pub mlx_name: String,
    /// Undo llama.cpp's Q/K row permutation with this many heads.
    pub unpermute_heads: Option<u64>,
    /// A Gemma norm stored as `1 + w`: subtract the 1.
    pub stored_plus_one: bool,
}

/// Maps a GGUF tensor name; `None` for tensors this architecture does not have.
pub fn map_tensor(name: &str, params: &ModelParams) -> Option<Mapping> {
    let gemma = params.arch == Architecture::Gemma3;
    let plain = |mlx: String| {
        Some(Mapping {
            stored_plus_one: gemma && mlx.ends_with("norm.weight"),
            mlx_name: mlx,
            unpermute_heads: None,
        })
    };
    match name {
        "token_embd.weight" => return plain("model.embed_tokens".into()),
        "output_norm.weight" => return plain("model.norm.weight".into()),
        "output.weight" => return plain("lm_head".into()),
        _ => {}
    }
    let (layer, part) = name.strip_prefix("blk.")?.split_once('.')?;
    let layer: u64 = layer.parse().ok().filter(|l| *l < params.layers)?;
    let prefix = format!("model.layers.{layer}");
    let norm = |mlx: &str| plain(format!("{prefix}.{mlx}.weight"));
    match (params.arch, part) {
        (_, "attn_norm.weight") => return norm("input_layernorm"),
        (Architecture::Gemma3, "ffn_norm.weight") => return norm("pre_feedforward_layernorm"),
        (_, "ffn_norm.weight") => return norm("post_attention_layernorm"),
        (Architecture::Gemma3, "post_attention_norm.weight") => {
            return norm("post_attention_layernorm")
        }
        (Architecture::Gemma3, "post_ffw_norm.weight") => {
            return norm("post_feedforward_layernorm")
        }
        (Architecture::Gemma3, "attn_q_norm.weight") => return norm("self_attn.q_norm"),
        (Architecture::Gemma3, "attn_k_norm.weight") => return norm("self_attn.k_norm"),
        (Architecture::Qwen2, "attn_q.bias") => {
            return plain(format!("{prefix}.self_attn.q_proj.bias"))
        }
        (Architecture::Qwen2, "attn_k.bias") => {
            return plain(format!("{prefix}.self_attn.k_proj.bias"))
        }
        (Architecture::Qwen2, "attn_v.bias") => {
            return plain(format!("{prefix}.self_attn.v_proj.bias"))
        }
        _ => {}
    }
    let permuted = params.arch == Architecture::Llama;
    let (module, heads) = match part {
        "attn_q.weight" => ("self_attn.q_proj", Some(params.heads)),
        "attn_k.weight" => ("self_attn.k_proj", Some(params.kv_heads)),
        "attn_v.weight" => ("self_attn.v_proj", None),
        "attn_output.weight" => ("self_attn.o_proj", None),
        "ffn_gate.weight" => ("mlp.gate_proj", None),
        "ffn_up.weight" => ("mlp.up_proj", None),
        "ffn_down.weight" => ("mlp.down_proj", None),
        _ => return None,
    };
    Some(Mapping {
        mlx_name: format!("{prefix}.{module}"),
        unpermute_heads: heads.filter(|_| permuted),
        stored_plus_one: false,
    })
}

/// Values mlx-lm needs that the GGUF file does not hold, filled from the architecture's
/// published configurations: (key, value, why).
pub fn assumed_values(params: &ModelParams) -> Vec<(&'static str, Value)> {
    match params.arch {
        Architecture::Gemma3 => vec![
            ("rope_local_base_freq", json!(10_000.0)),
            ("sliding_window_pattern", json!(6)),
            ("query_pre_attn_scalar", json!(256)),
        ],
        Architecture::Llama | Architecture::Qwen2 => Vec::new(),
    }
}

/// mlx-lm's `config.json` for the model.
pub fn config(
    params: &ModelParams,
    vocab_size: usize,
    tied: bool,
    quantization: Value,
    special: &SpecialTokens,
) -> Value {
    let mut config = json!({
        "hidden_size": params.hidden,
        "intermediate_size": params.intermediate,
        "num_hidden_layers": params.layers,
        "num_attention_heads": params.heads,
        "num_key_value_heads": params.kv_heads,
        "head_dim": params.head_dim,
        "max_position_embeddings": params.context_length,
        "rms_norm_eps": params.rms_norm_eps,
        "tie_word_embeddings": tied,
        "vocab_size": vocab_size,
        "bos_token_id": special.bos,
        "eos_token_id": special.eos,
        "pad_token_id": special.pad,
        "rope_scaling": params.rope_scaling,
    });
    let specific = match params.arch {
        Architecture::Llama => json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "rope_theta": params.rope_theta.unwrap_or(10_000.0),
            "rope_traditional": false,
            "attention_bias": false,
            "mlp_bias": false,
        }),
        Architecture::Qwen2 => json!({
            "architectures": ["Qwen2ForCausalLM"],
            "model_type": "qwen2",
            "rope_theta": params.rope_theta.unwrap_or(1_000_000.0),
            "hidden_act": "silu",
        }),
        Architecture::Gemma3 => json!({
            "architectures": ["Gemma3ForCausalLM"],
            "model_type": "gemma3_text",
            "rope_theta": params.rope_theta.unwrap_or(1_000_000.0),
            "sliding_window": params.sliding_window.unwrap_or(512),
            "hidden_activation": "gelu_pytorch_tanh",
        }),
    };
    for (key, value) in specific.as_object().expect("an object").iter() {
        config[key] = value.clone();
    }
    for (key, value) in assumed_values(params) {
        config[key] = value;
    }
    if !quantization.is_null() {
        config["quantization"] = quantization.clone();
        config["quantization_config"] = quantization;
    }
    config
}
