"""GGUF → MLX conversion checked against the GGUF format's own reader.

Small GGUF files are written here with llama.cpp's Python package `gguf` (its GGUFWriter; its
`gguf.quants` quantizes the legacy types, and K-quant blocks, which it can only read, are made
of random bytes with sane block scales). `mlxk convert --from-gguf` turns each into an MLX folder;
every tensor there, dequantized by MLX itself (`mx.dequantize`), must equal
`gguf.quants.dequantize` of the same GGUF tensor bit for bit, after the documented transforms
(llama's Q/K rows back in Hugging Face order, Gemma's `1 + w` norms back to `w`).
"""

import functools
import json
from pathlib import Path

import numpy as np
import pytest

gguf = pytest.importorskip("gguf", reason="gguf is installed by scripts/setup.sh")
mx = pytest.importorskip("mlx.core", reason="mlx is installed by scripts/setup.sh")

from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf import quants  # noqa: E402

from conftest import BIN_DIR  # noqa: E402

import subprocess  # noqa: E402

HIDDEN = 256  # K-quant rows are whole 256-value super-blocks
HEADS, KV_HEADS = 2, 1
HEAD_DIM = HIDDEN // HEADS
FFN = 256

LEGACY = [T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0]
K_QUANTS = [T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]
FLOATS = [T.F32, T.F16, T.BF16]
EVERY_TYPE = LEGACY + K_QUANTS + FLOATS

# Where each K-quant block keeps its float16 super-block scales: (d, dmin) byte offsets.
K_SCALE_OFFSETS = {T.Q2_K: (80, 82), T.Q3_K: (108, None), T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208, None)}


def encode(values: np.ndarray, kind: T, rng: np.random.Generator) -> np.ndarray:
    """`values` (rows, cols) as GGUF data of `kind`: what GGUFWriter.add_tensor takes."""
    if kind == T.F32:
        return values.astype(np.float32)
    if kind == T.F16:
        return values.astype(np.float16)
    if kind in K_QUANTS:
        block_values, block_bytes = gguf.GGML_QUANT_SIZES[kind]
        rows, cols = values.shape
        blocks = rng.integers(0, 256, size=(rows * cols // block_values, block_bytes), dtype=np.uint8)
        d_at, dmin_at = K_SCALE_OFFSETS[kind]
        for at in (d_at, dmin_at):
            if at is not None:
                scales = rng.uniform(1e-3, 2e-2, size=len(blocks)).astype(np.float16)
                blocks[:, at:at + 2] = scales.view(np.uint8).reshape(-1, 2)
        return blocks.reshape(rows, -1)
    return quants.quantize(values.astype(np.float32), kind)


def tokenizer_metadata(writer, architecture: str) -> None:
    if architecture == "gemma3":
        tokens = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]
        tokens += [f"<0x{b:02X}>" for b in range(256)]
        tokens += ["\u2581", "a", "b", "c", "ab", "\u2581a", "\u2581ab", "  ", "\u2581\u2581\u2581"]
        types = [3, 3, 3, 2, 3, 3] + [6] * 256 + [1] * 9
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores([0.0] * len(tokens))
        writer.add_token_types(types)
        writer.add_bos_token_id(2)
        writer.add_eos_token_id(1)
        writer.add_unk_token_id(3)
        writer.add_pad_token_id(0)
        writer.add_add_bos_token(True)
        return
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tokens += [chr(b) for b in range(33, 127)] + ["\u0120", "ab", "<tool_call>"]
    types = [3, 3, 3] + [1] * (len(tokens) - 4) + [4]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2" if architecture == "qwen2" else "smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(["a b"])
    writer.add_bos_token_id(0)
    writer.add_eos_token_id(2)
    writer.add_chat_template("{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}")


def tensor_shapes(architecture: str, vocab: int) -> dict[str, tuple[int, ...]]:
    """GGUF tensor names and (rows, cols) shapes of a one-layer model; vectors as (cols,)."""
    shapes = {
        "token_embd.weight": (vocab, HIDDEN),
        "output_norm.weight": (HIDDEN,),
        "blk.0.attn_norm.weight": (HIDDEN,),
        "blk.0.ffn_norm.weight": (HIDDEN,),
        "blk.0.attn_q.weight": (HEADS * HEAD_DIM, HIDDEN),
        "blk.0.attn_k.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
        "blk.0.attn_v.weight": (KV_HEADS * HEAD_DIM, HIDDEN),
        "blk.0.attn_output.weight": (HIDDEN, HEADS * HEAD_DIM),
        "blk.0.ffn_gate.weight": (FFN, HIDDEN),
        "blk.0.ffn_up.weight": (FFN, HIDDEN),
        "blk.0.ffn_down.weight": (HIDDEN, FFN),
    }
    if architecture == "qwen2":
        shapes["output.weight"] = (vocab, HIDDEN)
        for part, rows in (("q", HEADS * HEAD_DIM), ("k", KV_HEADS * HEAD_DIM), ("v", KV_HEADS * HEAD_DIM)):
            shapes[f"blk.0.attn_{part}.bias"] = (rows,)
    if architecture == "gemma3":
        for norm in ("post_attention_norm", "post_ffw_norm"):
            shapes[f"blk.0.{norm}.weight"] = (HIDDEN,)
        shapes["blk.0.attn_q_norm.weight"] = (HEAD_DIM,)
        shapes["blk.0.attn_k_norm.weight"] = (HEAD_DIM,)
    return shapes


def write_model(path: Path, architecture: str, types: list[T], seed: int = 0, split_max_tensors: int = 0) -> Path:
    """A one-layer model whose matrices take `types` in turn; vectors are F32. Returns the path
    mlxk is given (the first part of a split model)."""
    rng = np.random.default_rng(seed)
    writer = gguf.GGUFWriter(str(path), architecture, split_max_tensors=split_max_tensors)
    writer.add_block_count(1)
    writer.add_context_length(256)
    writer.add_embedding_length(HIDDEN)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_key_length(HEAD_DIM)
    writer.add_value_length(HEAD_DIM)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(10000.0)
    if architecture == "gemma3":
        writer.add_sliding_window(512)
    tokenizer_metadata(writer, architecture)
    vocab = 265 if architecture == "gemma3" else 100
    matrix_index = 0
    for name, shape in tensor_shapes(architecture, vocab).items():
        if len(shape) == 1:
            base = 1.0 if architecture == "gemma3" and name.endswith("norm.weight") else 0.0
            writer.add_tensor(name, (base + rng.standard_normal(shape) * 0.1).astype(np.float32))
            continue
        kind = types[matrix_index % len(types)]
        matrix_index += 1
        data = encode(rng.standard_normal(shape).astype(np.float32) * 0.05, kind, rng)
        if kind in (T.F32, T.F16):
            writer.add_tensor(name, data)
        else:
            writer.add_tensor(name, data, raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if split_max_tensors:
        parts = sorted(path.parent.glob(path.stem + "-*-of-*.gguf"))
        assert len(parts) > 1, parts
        return parts[0]
    return path


def mlxk_convert(source: Path, target: Path, *extra: str) -> dict:
    proc = subprocess.run(
        [str(BIN_DIR / "mlxk"), "convert", "--from-gguf", str(source), str(target), *extra, "--json"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)["data"]


def gguf_tensors(first_part: Path) -> dict[str, np.ndarray]:
    """Every tensor of a model (all parts), dequantized by gguf-py, as (rows, cols) float32."""
    prefix, split, _ = first_part.name.partition("-00001-of-")
    parts = sorted(first_part.parent.glob(prefix + "-*-of-*.gguf")) if split else [first_part]
    tensors = {}
    for part in parts:
        for t in gguf.GGUFReader(str(part)).tensors:
            values = quants.dequantize(t.data, t.tensor_type).astype(np.float32)
            shape = tuple(int(d) for d in reversed(t.shape))
            tensors[t.name] = (values.reshape(shape), t.tensor_type)
    return tensors


def mlx_name(name: str, architecture: str) -> str:
    fixed = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
             "output.weight": "lm_head.weight"}
    if name in fixed:
        return fixed[name]
    layer, part = name.removeprefix("blk.").split(".", 1)
    parts = {
        "attn_norm.weight": "input_layernorm.weight",
        "ffn_norm.weight": "pre_feedforward_layernorm.weight" if architecture == "gemma3"
        else "post_attention_layernorm.weight",
        "post_attention_norm.weight": "post_attention_layernorm.weight",
        "post_ffw_norm.weight": "post_feedforward_layernorm.weight",
        "attn_q_norm.weight": "self_attn.q_norm.weight",
        "attn_k_norm.weight": "self_attn.k_norm.weight",
        "attn_q.weight": "self_attn.q_proj.weight", "attn_k.weight": "self_attn.k_proj.weight",
        "attn_v.weight": "self_attn.v_proj.weight", "attn_output.weight": "self_attn.o_proj.weight",
        "attn_q.bias": "self_attn.q_proj.bias", "attn_k.bias": "self_attn.k_proj.bias",
        "attn_v.bias": "self_attn.v_proj.bias",
        "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
        "ffn_down.weight": "mlp.down_proj.weight",
    }
    return f"model.layers.{layer}.{parts[part]}"


def expected_mlx_values(name: str, values: np.ndarray, architecture: str) -> np.ndarray:
    """What the MLX tensor must hold: llama.cpp's Q/K permutation undone for llama, Gemma's
    stored `1 + w` back to `w`."""
    if architecture == "llama" and name.endswith(("attn_q.weight", "attn_k.weight")):
        heads = HEADS if "attn_q" in name else KV_HEADS
        rows, cols = values.shape
        values = values.reshape(heads, rows // heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)
    if architecture == "gemma3" and name.endswith("norm.weight"):
        values = values - np.float32(1.0)
    return values


@functools.lru_cache(maxsize=2)
def load_folder(folder: Path) -> tuple[dict, dict]:
    return mx.load(str(folder / "model.safetensors")), json.loads((folder / "config.json").read_text())


def mlx_values(folder: Path, name: str) -> tuple[np.ndarray, int | None]:
    """A tensor of the converted folder as MLX dequantizes it, and its bits (None if dense)."""
    weights, config = load_folder(folder)
    if not name.endswith(".weight") or name.removesuffix(".weight") + ".scales" not in weights:
        return np.array(weights[name].astype(mx.float32)), None
    module = name.removesuffix(".weight")
    quantization = config["quantization"]
    setting = quantization.get(module, quantization)
    values = mx.dequantize(weights[name], weights[module + ".scales"], weights[module + ".biases"],
                           group_size=setting["group_size"], bits=setting["bits"])
    return np.array(values), setting["bits"]


def assert_exact(gguf_path: Path, folder: Path, architecture: str) -> dict[str, int | None]:
    """Every tensor equal bit for bit; returns the bits each MLX tensor got."""
    bits = {}
    tensors = gguf_tensors(gguf_path)
    assert len(tensors) >= 11, tensors.keys()
    for name, (values, kind) in tensors.items():
        mlx = mlx_name(name, architecture)
        ours, bits[name] = mlx_values(folder, mlx)
        expected = expected_mlx_values(name, values, architecture)
        assert ours.shape == expected.shape, (name, ours.shape, expected.shape)
        assert np.array_equal(ours, expected), (
            f"{name} ({kind.name}): worst difference {np.abs(ours - expected).max()}")
    return bits


MLX_BITS = {T.Q4_0: 4, T.Q4_1: 4, T.Q4_K: 4, T.Q5_0: 5, T.Q5_1: 5, T.Q5_K: 5, T.Q8_0: 8}


@pytest.mark.parametrize("kind", EVERY_TYPE, ids=lambda k: k.name)
def test_every_tensor_type_converts_exactly(tmp_path, kind):
    source = write_model(tmp_path / "tiny.gguf", "llama", [kind], seed=int(kind))
    converted = mlxk_convert(source, tmp_path / "out")
    assert converted["exact"] is True
    bits = assert_exact(source, tmp_path / "out", "llama")
    assert bits["blk.0.ffn_up.weight"] == MLX_BITS.get(kind), "quantized as MLX allows, or dense"


@pytest.mark.parametrize("architecture", ["llama", "qwen2", "gemma3"])
def test_architectures_convert_exactly_from_split_files(tmp_path, architecture):
    source = write_model(tmp_path / "mixed.gguf", architecture, EVERY_TYPE, split_max_tensors=6)
    folder = tmp_path / "out"
    converted = mlxk_convert(source, folder)
    assert_exact(source, folder, architecture)
    config = json.loads((folder / "config.json").read_text())
    expected_type = {"llama": "llama", "qwen2": "qwen2", "gemma3": "gemma3_text"}[architecture]
    assert config["model_type"] == expected_type
    assert config["tie_word_embeddings"] is (architecture != "qwen2")
    if architecture == "gemma3":
        assert config["rope_local_base_freq"] == 10000.0
        assert config["sliding_window_pattern"] == 6
        assert config["query_pre_attn_scalar"] == 256
        assert config["sliding_window"] == 512
        assert any("sliding_window_pattern" in a for a in converted["assumed_config"]), converted


def test_requantize_is_opt_in_lossy_and_mlx_own_quantization(tmp_path):
    source = write_model(tmp_path / "k.gguf", "llama", [T.Q6_K, T.Q4_K])
    converted = mlxk_convert(source, tmp_path / "out", "--requantize", "8")
    assert converted["exact"] is False and converted["lossy"], converted
    # blk.0.attn_k is Q6_K (matrices take the types in turn): requantized exactly as
    # mx.quantize quantizes its true values.
    ours, bits = mlx_values(tmp_path / "out", "model.layers.0.self_attn.k_proj.weight")
    assert bits == 8
    (values, _) = gguf_tensors(source)["blk.0.attn_k.weight"]
    expected = expected_mlx_values("blk.0.attn_k.weight", values, "llama")
    w, scales, biases = mx.quantize(mx.array(expected), group_size=32, bits=8)
    assert np.array_equal(ours, np.array(mx.dequantize(w, scales, biases, group_size=32, bits=8)))
    assert not np.array_equal(ours, expected)
    # Q4_K has an exact form: it is not requantized.
    assert mlx_values(tmp_path / "out", "model.layers.0.self_attn.q_proj.weight")[1] == 4


def transformers_gguf_tokenizer(path: Path):
    """transformers' own tokenizer for a GGUF file (its GGUF tokenizer conversion), built from
    the metadata as gguf-py reads it."""
    mapping = pytest.importorskip("transformers.integrations.gguf.gguf_tokenizer_mapping")
    fields = gguf.GGUFReader(str(path)).fields
    keys = {"tokenizer.ggml.model": "tokenizer_type", "tokenizer.ggml.pre": "pre_tokenizer_type",
            "tokenizer.ggml.tokens": "tokens", "tokenizer.ggml.scores": "scores",
            "tokenizer.ggml.token_type": "token_type", "tokenizer.ggml.merges": "merges",
            "tokenizer.ggml.bos_token_id": "bos_token_id", "tokenizer.ggml.eos_token_id": "eos_token_id",
            "tokenizer.ggml.unknown_token_id": "unk_token_id", "tokenizer.ggml.padding_token_id": "pad_token_id"}
    tokenizer_dict = {name: fields[key].contents() for key, name in keys.items() if key in fields}
    architecture = fields["general.architecture"].contents()
    backend, _ = mapping.convert_gguf_tokenizer(architecture, tokenizer_dict)
    return backend


SAMPLES = ["ab abc", "  a b", "a\u00e9b c", "<start_of_turn>ab<end_of_turn>", "   ab", "def f(x):\n    return x"]


@pytest.mark.parametrize("architecture", ["gemma3", "qwen2"])
def test_vocabulary_tokenizes_as_transformers_reads_gguf(tmp_path, architecture):
    """Our tokenizer.json and transformers' own GGUF tokenizer conversion agree (SentencePiece
    for Gemma, byte-level BPE with Qwen 2's split)."""
    from tokenizers import Tokenizer

    source = write_model(tmp_path / "t.gguf", architecture, [T.Q8_0])
    mlxk_convert(source, tmp_path / "out")
    ours = Tokenizer.from_file(str(tmp_path / "out" / "tokenizer.json"))
    theirs = transformers_gguf_tokenizer(source)
    for text in SAMPLES:
        assert ours.encode(text, add_special_tokens=False).ids == \
            theirs.encode(text, add_special_tokens=False).ids, text
