//! The llama architecture: GGUF tensor names and hyper-parameters to mlx-lm's.

use serde_json::{json, Value};

use crate::error::ConvertError;
use crate::gguf::GgufFile;

#[derive(Debug, Clone)]
pub struct LlamaParams {
    pub layers: u64,
    pub hidden: u64,
    pub intermediate: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub context_length: u64,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
}

impl LlamaParams {
    pub fn read(gguf: &GgufFile) -> Result<Self, ConvertError> {
        let arch = gguf
            .string("general.architecture")
            .unwrap_or("")
            .to_string();
        if arch != "llama" {
            return Err(ConvertError::UnsupportedArchitecture(arch));
        }
        let heads = gguf.require_u64("llama.attention.head_count")?;
        let hidden = gguf.require_u64("llama.embedding_length")?;
        Ok(LlamaParams {
            layers: gguf.require_u64("llama.block_count")?,
            intermediate: gguf.require_u64("llama.feed_forward_length")?,
            kv_heads: gguf.u64("llama.attention.head_count_kv").unwrap_or(heads),
            head_dim: gguf
                .u64("llama.attention.key_length")
                .unwrap_or(hidden / heads),
            context_length: gguf.require_u64("llama.context_length")?,
            rms_norm_eps: gguf
                .float("llama.attention.layer_norm_rms_epsilon")
                .unwrap_or(1e-5),
            rope_theta: gguf.float("llama.rope.freq_base").unwrap_or(10_000.0),
            heads,
            hidden,
        })
    }
}

/// How a GGUF tensor becomes an MLX one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    /// The module path in mlx-lm (`model.layers.0.self_attn.q_proj`), or the full name for
    /// plain parameters such as norms (`model.norm.weight`).
    pub mlx_name: String,
    /// Undo llama.cpp's Q/K row permutation with this many heads.
    pub unpermute_heads: Option<u64>,
}

/// Maps a GGUF tensor name; `None` for tensors this architecture does not know.
pub fn map_tensor(name: &str, params: &LlamaParams) -> Option<Mapping> {
    let plain = |mlx: &str| {
        Some(Mapping {
            mlx_name: mlx.to_string(),
            unpermute_heads: None,
        })
    };
    match name {
        "token_embd.weight" => return plain("model.embed_tokens"),
        "output_norm.weight" => return plain("model.norm.weight"),
        "output.weight" => return plain("lm_head"),
        _ => {}
    }
    let rest = name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: u64 = layer.parse().ok()?;
    let prefix = format!("model.layers.{layer}");
    let (module, heads) = match part {
        "attn_norm.weight" => return plain(&format!("{prefix}.input_layernorm.weight")),
        "ffn_norm.weight" => return plain(&format!("{prefix}.post_attention_layernorm.weight")),
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
        unpermute_heads: heads,
    })
}

/// mlx-lm's `config.json` for the model.
pub fn config(
    params: &LlamaParams,
    vocab_size: usize,
    tied: bool,
    quantization: Value,
    special: &crate::tokenizer::SpecialTokens,
) -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": params.hidden,
        "intermediate_size": params.intermediate,
        "num_hidden_layers": params.layers,
        "num_attention_heads": params.heads,
        "num_key_value_heads": params.kv_heads,
        "head_dim": params.head_dim,
        "max_position_embeddings": params.context_length,
        "rms_norm_eps": params.rms_norm_eps,
        "rope_theta": params.rope_theta,
        "rope_traditional": false,
        "attention_bias": false,
        "mlp_bias": false,
        "tie_word_embeddings": tied,
        "vocab_size": vocab_size,
        "bos_token_id": special.bos,
        "eos_token_id": special.eos,
        "pad_token_id": special.pad,
        "quantization": quantization.clone(),
        "quantization_config": quantization,
    })
}
