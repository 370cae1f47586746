"""Tiny random-weight embedding models, with the reference implementations' vectors.

- BERT, made by mlx-embeddings' own model (the reference `mlxk embed` is checked against on the
  real all-MiniLM-L6-v2 too): float32 pooled by mean + Normalize (mlx-embeddings' `text_embeds`),
  by CLS and by max (pooled in numpy from its last hidden states and padding mask), and 4-bit
  (mlx's `nn.quantize`, every table and matrix quantized as MLX conversions do).
- A causal Qwen3 embedder, made by mlx-lm's model, pooled by its last token and normalised (as
  Qwen3-Embedding), with a query prompt; and the same weights saved as the bare transformer
  (names without `model.`), as Qwen3-Embedding's checkpoints are.

Each model has a word-level `tokenizer.json` (w0..w59 and special tokens), the
sentence-transformers files (`modules.json`, `1_Pooling/config.json`, `sentence_bert_config.json`
with a maximum of 16 tokens, so the long text is cut), and `reference.json`:
{"texts", "document": [[...]], "query": [[...]] (when the model has a query prompt), "tokens": [...]}.

Usage: make_tiny_embedders.py OUT_DIR
"""

import json
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import numpy as np
from mlx.utils import tree_flatten
from mlx_lm.utils import _get_classes
from tokenizers import Tokenizer, models, pre_tokenizers, processors

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embeddings_reference import _bert_module  # noqa: E402

WORDS = [f"w{i}" for i in range(60)]
MAX_TOKENS = 16
TEXTS = [
    "w1 w2 w3",
    "w5",
    "w7 w8 w9 w10 w11 w12 w13 w14",
    " ".join(WORDS[:40]),  # longer than MAX_TOKENS: cut
    "w59 w58",
]
QUERY_PROMPT = "w50 w51 "


def tokenizer(specials: list[str], template: str) -> Tokenizer:
    vocab = {token: i for i, token in enumerate(specials + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single=template, special_tokens=[(t, vocab[t]) for t in specials if t in template]
    )
    tok.enable_truncation(MAX_TOKENS)
    return tok


def write_common(folder: Path, tok: Tokenizer, config: dict, pooling: dict, normalize: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": config["hidden_size"], **pooling}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": MAX_TOKENS}))


def normalized(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def bert_cases(out: Path) -> None:
    bert = _bert_module()
    config = {
        "model_type": "bert", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 128, "max_position_embeddings": 64, "vocab_size": 64, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "hidden_act": "gelu",
    }
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]
    tok = tokenizer(specials, "[CLS] $A [SEP]")
    encodings = tok.encode_batch(TEXTS)
    length = max(len(e.ids) for e in encodings)
    ids = np.array([e.ids + [0] * (length - len(e.ids)) for e in encodings], dtype=np.int32)
    mask = np.array([[1] * len(e.ids) + [0] * (length - len(e.ids)) for e in encodings], dtype=np.float32)

    for name, pooling, normalize, quantize in [
        ("bert-mean", {"pooling_mode_mean_tokens": True}, True, False),
        ("bert-cls", {"pooling_mode_cls_token": True}, False, False),
        ("bert-max", {"pooling_mode_max_tokens": True}, True, False),
        ("bert-mean-4bit", {"pooling_mode_mean_tokens": True}, True, True),
    ]:
        mx.random.seed(sum(map(ord, name)))
        model = bert.Model(bert.ModelArgs.from_dict(config))
        model.eval()  # no dropout
        case_config = dict(config)
        if quantize:
            nn.quantize(model, group_size=32, bits=4)
            case_config["quantization"] = {"group_size": 32, "bits": 4}
        mx.eval(model.parameters())
        folder = out / name
        write_common(folder, tok, case_config, pooling, normalize)
        weights = {k: v for k, v in tree_flatten(model.parameters()) if not k.startswith("pooler.")}
        mx.save_safetensors(str(folder / "model.safetensors"), weights)

        output = model(mx.array(ids), attention_mask=mx.array(mask))
        hidden = np.array(output.last_hidden_state)
        if "pooling_mode_mean_tokens" in pooling:
            vectors = np.array(output.text_embeds)  # mlx-embeddings' own mean + normalisation
        elif "pooling_mode_cls_token" in pooling:
            vectors = hidden[:, 0]
        else:
            vectors = np.where(mask[..., None] > 0, hidden, -np.inf).max(axis=1)
        if normalize and "pooling_mode_mean_tokens" not in pooling:
            vectors = normalized(vectors)
        reference = {"texts": TEXTS, "document": vectors.tolist(), "tokens": [len(e.ids) for e in encodings]}
        (folder / "reference.json").write_text(json.dumps(reference))
        print(name)


def qwen3_cases(out: Path) -> None:
    config = {
        "model_type": "qwen3", "hidden_size": 64, "num_hidden_layers": 2, "intermediate_size": 128,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "rms_norm_eps": 1e-6,
        "vocab_size": 64, "max_position_embeddings": 512, "rope_theta": 10000.0, "tie_word_embeddings": True,
    }
    specials = ["<|endoftext|>", "[UNK]"]
    tok = tokenizer(specials, "$A <|endoftext|>")
    mx.random.seed(7)
    model_class, args_class = _get_classes(config)
    model = model_class(args_class.from_dict(config))
    params = {k: v * 3.0 if k.endswith("proj.weight") else v for k, v in tree_flatten(model.parameters())}
    model.load_weights(list(params.items()))
    mx.eval(model.parameters())

    def embed(texts: list[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            ids = tok.encode(text).ids
            hidden = model.model(mx.array([ids]))  # mlx-lm: the final norm, no output projection
            vectors.append(normalized(np.array(hidden[0, -1])).tolist())
        return vectors

    reference = {
        "texts": TEXTS,
        "document": embed(TEXTS),
        "query": embed([QUERY_PROMPT + t for t in TEXTS]),
        "tokens": [len(tok.encode(t).ids) for t in TEXTS],
    }
    weights = dict(tree_flatten(model.parameters()))
    for name, names in [
        ("qwen3-embedding", weights),
        ("qwen3-embedding-bare", {k.removeprefix("model."): v for k, v in weights.items()}),
    ]:
        folder = out / name
        write_common(folder, tok, config, {"pooling_mode_lasttoken": True}, True)
        (folder / "config_sentence_transformers.json").write_text(
            json.dumps({"prompts": {"query": QUERY_PROMPT, "document": ""}, "default_prompt_name": None})
        )
        mx.save_safetensors(str(folder / "model.safetensors"), names)
        (folder / "reference.json").write_text(json.dumps(reference))
        print(name)


def main() -> None:
    out = Path(sys.argv[1])
    bert_cases(out)
    qwen3_cases(out)


if __name__ == "__main__":
    main()
