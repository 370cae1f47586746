"""Safetensors → MLX conversion checked bit for bit against mlx-lm itself.

A tiny llama (random weights written with numpy, a small BPE tokenizer from `tokenizers`, no
transformers model code) is converted by `mlx_lm.convert -q` and by `mlxk convert --quantize`
with the same bits and group size; every tensor (name, dtype, shape, bytes), the config
(`quantization` included) and the index must be the same. One matrix's last dimension is not a
multiple of 64 or 128, so the rule mlx-lm applies (such layers stay dense) is exercised; the model is
stored in two shards, with rotary frequencies and a tied `lm_head` mlx-lm drops.
`--dequantize` is checked against `mlx_lm.convert --dequantize` of the same quantized folder.
"""

import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

mx = pytest.importorskip("mlx.core", reason="mlx is installed by scripts/setup.sh")
pytest.importorskip("mlx_lm", reason="mlx-lm is installed by scripts/setup.sh")
tokenizers = pytest.importorskip("tokenizers", reason="tokenizers comes with mlx-lm")

from conftest import BIN_DIR  # noqa: E402

HIDDEN, FFN, VOCAB, LAYERS = 128, 160, 256, 2
KV = HIDDEN // 2  # 2 of 4 heads
# (source dtype, config torch_dtype, bits, group size, tied embeddings)
CASES = [
    ("float32", "bfloat16", 4, 64, False),
    ("float16", "float16", 8, 32, True),
    ("bfloat16", None, 3, 32, False),
    ("float32", "float16", 2, 64, True),
    ("bfloat16", "bfloat16", 6, 128, False),
    ("float32", None, 5, 32, False),
]


def as_dtype(values: np.ndarray, dtype: str) -> tuple[str, bytes]:
    """`values` as safetensors bytes of `dtype` (bfloat16 rounded by MLX)."""
    if dtype == "float32":
        return "F32", values.astype(np.float32).tobytes()
    if dtype == "float16":
        return "F16", values.astype(np.float16).tobytes()
    bf = mx.array(values.astype(np.float32)).astype(mx.bfloat16).view(mx.uint16)
    return "BF16", np.array(bf).tobytes()


def write_safetensors(path: Path, tensors: dict[str, tuple[str, list[int], bytes]]) -> None:
    header, offset, blobs = {}, 0, []
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def read_safetensors(path: Path) -> dict[str, tuple[str, list[int], bytes]]:
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    data = raw[8 + n:]
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]])
            for k, v in header.items()}


def folder_tensors(folder: Path) -> dict:
    tensors = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(read_safetensors(file))
    return tensors


def write_tokenizer(folder: Path) -> None:
    vocab = {f"t{i}": i for i in range(VOCAB - 2)} | {"<s>": VOCAB - 2, "</s>": VOCAB - 1}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="t0"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<s>", "eos_token": "</s>",
        "model_max_length": 512,
    }))


def make_model(folder: Path, dtype: str, torch_dtype, tied: bool, seed: int = 0) -> None:
    """A two-shard llama with an index, as Hugging Face checkpoints come."""
    rng = np.random.default_rng(seed)
    shapes = {"model.embed_tokens.weight": [VOCAB, HIDDEN], "model.norm.weight": [HIDDEN]}
    if not tied:
        shapes["lm_head.weight"] = [VOCAB, HIDDEN]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        shapes |= {
            p + "input_layernorm.weight": [HIDDEN], p + "post_attention_layernorm.weight": [HIDDEN],
            p + "self_attn.q_proj.weight": [HIDDEN, HIDDEN], p + "self_attn.k_proj.weight": [KV, HIDDEN],
            p + "self_attn.v_proj.weight": [KV, HIDDEN], p + "self_attn.o_proj.weight": [HIDDEN, HIDDEN],
            p + "mlp.gate_proj.weight": [FFN, HIDDEN], p + "mlp.up_proj.weight": [FFN, HIDDEN],
            p + "mlp.down_proj.weight": [HIDDEN, FFN],
            p + "self_attn.rotary_emb.inv_freq": [8],
        }
    if tied:
        # A checkpoint that still carries the tied head: mlx-lm drops it.
        shapes["lm_head.weight"] = [VOCAB, HIDDEN]
    tensors = {}
    for name, shape in shapes.items():
        values = rng.standard_normal(shape).astype(np.float32) * 0.05
        # A few outliers, a constant group and exact zeros: the edges of the quantizer.
        values.reshape(-1)[::97] *= 40
        values.reshape(-1)[:32] = 0.0
        dt, data = as_dtype(values, dtype)
        tensors[name] = (dt, shape, data)
    folder.mkdir(parents=True)
    names = sorted(tensors)
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half],
              "model-00002-of-00002.safetensors": names[half:]}
    for file, part in shards.items():
        write_safetensors(folder / file, {n: tensors[n] for n in part})
    (folder / "model.safetensors.index.json").write_text(json.dumps({
        "metadata": {"total_size": sum(len(t[2]) for t in tensors.values())},
        "weight_map": {n: f for f, part in shards.items() for n in part},
    }))
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": HIDDEN,
        "intermediate_size": FFN, "num_hidden_layers": LAYERS, "num_attention_heads": 4,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-5, "vocab_size": VOCAB,
        "max_position_embeddings": 512, "rope_theta": 10000.0, "tie_word_embeddings": tied,
        "_name_or_path": "tiny/llama", "bos_token_id": VOCAB - 2, "eos_token_id": VOCAB - 1,
    }
    if torch_dtype:
        config["torch_dtype"] = torch_dtype
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "generation_config.json").write_text(json.dumps({"eos_token_id": [VOCAB - 1, 3]}))
    write_tokenizer(folder)


def mlx_lm_convert(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "mlx_lm", "convert", *args],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def mlxk(*args: str, expect: int = 0, env=None) -> dict:
    proc = subprocess.run([str(BIN_DIR / "mlxk"), "convert", *args, "--json"], env=env,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == expect, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def assert_same_model(ours: Path, theirs: Path) -> None:
    a, b = folder_tensors(ours), folder_tensors(theirs)
    assert sorted(a) == sorted(b)
    for name in b:
        assert a[name][:2] == b[name][:2], name
        assert a[name][2] == b[name][2], f"{name}: bytes differ"
    assert json.loads((ours / "config.json").read_text()) == json.loads((theirs / "config.json").read_text())
    assert (json.loads((ours / "model.safetensors.index.json").read_text())
            == json.loads((theirs / "model.safetensors.index.json").read_text()))
    for name in ["tokenizer.json", "README.md"]:
        assert (ours / name).exists() and (theirs / name).exists(), name
    assert (ours / "generation_config.json").exists() == (theirs / "generation_config.json").exists()


@pytest.mark.parametrize("dtype,torch_dtype,bits,group_size,tied", CASES,
                         ids=[f"{c[0]}-{c[1]}-q{c[2]}g{c[3]}{'-tied' if c[4] else ''}" for c in CASES])
def test_quantize_and_dequantize_equal_mlx_lm(tmp_path, dtype, torch_dtype, bits, group_size, tied):
    src = tmp_path / "dense"
    make_model(src, dtype, torch_dtype, tied)
    theirs, ours = tmp_path / "mlx-lm", tmp_path / "mlxk"
    mlx_lm_convert("--hf-path", str(src), "--mlx-path", str(theirs), "-q",
                   "--q-bits", str(bits), "--q-group-size", str(group_size))
    report = mlxk(str(src), str(ours), "--quantize", str(bits), "--group-size", str(group_size))
    assert report["data"]["health_status"] == "healthy"
    assert_same_model(ours, theirs)
    cfg = json.loads((ours / "config.json").read_text())
    assert cfg["quantization"] == {"group_size": group_size, "bits": bits, "mode": "affine"}
    # down_proj's last dimension (160) is a multiple of 32, not of 64 or 128.
    kept = report["data"]["not_divisible"]
    assert kept == ([f"model.layers.{i}.mlp.down_proj.weight" for i in range(LAYERS)]
                    if group_size > 32 else []), kept

    theirs_dense, ours_dense = tmp_path / "mlx-lm-dense", tmp_path / "mlxk-dense"
    mlx_lm_convert("--hf-path", str(theirs), "--mlx-path", str(theirs_dense), "--dequantize")
    mlxk(str(theirs), str(ours_dense), "--dequantize")
    assert_same_model(ours_dense, theirs_dense)


def test_repair_index_rebuilds_the_weight_map(tmp_path):
    src = tmp_path / "dense"
    make_model(src, "float32", None, False)
    good = json.loads((src / "model.safetensors.index.json").read_text())
    broken = dict(good, weight_map={k: "model-00001-of-00002.safetensors" for k in good["weight_map"]})
    (src / "model.safetensors.index.json").write_text(json.dumps(broken))
    report = mlxk(str(src), str(tmp_path / "fixed"), "--repair-index")
    assert report["data"]["index_changed"] is True
    fixed = json.loads((tmp_path / "fixed" / "model.safetensors.index.json").read_text())
    assert fixed == good
    assert (tmp_path / "fixed" / "tokenizer.json").exists()


def test_bad_input_is_named_and_nothing_is_overwritten(tmp_path):
    src = tmp_path / "dense"
    make_model(src, "float32", None, False)
    assert mlxk(str(tmp_path), str(tmp_path / "a"), "--quantize", "4",
                expect=1)["error"]["type"] == "not_a_model_folder"
    # No group size divides a 48-wide matrix.
    narrow = tmp_path / "narrow"
    narrow.mkdir()
    write_safetensors(narrow / "model.safetensors",
                      {"model.embed_tokens.weight": ("F32", [4, 48], bytes(4 * 4 * 48))})
    (narrow / "config.json").write_text(json.dumps({"model_type": "llama"}))
    err = mlxk(str(narrow), str(tmp_path / "b"), "--quantize", "4", expect=1)["error"]
    assert err["type"] == "invalid_options" and "divides" in err["message"], err
    f64 = tmp_path / "f64"
    f64.mkdir()
    write_safetensors(f64 / "model.safetensors",
                      {"model.embed_tokens.weight": ("F64", [4, 64], bytes(8 * 4 * 64))})
    (f64 / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert mlxk(str(f64), str(tmp_path / "c"), "--quantize", "4",
                expect=1)["error"]["type"] == "unsupported_dtype"
    assert mlxk(str(src), str(tmp_path / "d"), "--quantize", "7",
                expect=1)["error"]["type"] == "invalid_options"
    # What to do with SRC is said once: a mode, and --group-size only with --quantize.
    assert mlxk(str(src), str(tmp_path / "e"), expect=2)["error"]["type"] == "usage_error"
    assert mlxk(str(src), str(tmp_path / "e"), "--dequantize", "--group-size", "32",
                expect=2)["error"]["type"] == "usage_error"
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    assert mlxk(str(src), str(taken), "--quantize", "4", expect=1)["error"]["type"] == "target_not_empty"
    assert (taken / "keep.txt").read_text() == "mine"
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_into_cache_installs_a_healthy_model(tmp_path, fixture_cache):
    src = tmp_path / "dense"
    make_model(src, "bfloat16", "bfloat16", True)
    report = fixture_cache.mlxk("convert", str(src), "--quantize", "4", "--into-cache", "tiny/llama-4bit")
    assert report["data"]["repo_id"] == "tiny/llama-4bit"
    assert report["data"]["health_status"] == "healthy"
    snapshot = Path(report["data"]["target"])
    assert (snapshot / "model.safetensors").exists() and (snapshot / "tokenizer.json").exists()
    health = fixture_cache.mlxk("health", "tiny/llama-4bit")
    assert health["data"]["summary"]["unhealthy_count"] == 0, health
    assert len(health["data"]["healthy"]) == 1, health


ARCHITECTURES = ["mistral", "qwen2", "qwen3", "phi3", "gemma2", "gemma3_text"]


@pytest.mark.parametrize("case", ARCHITECTURES)
def test_every_supported_architecture_equals_mlx_lm(tmp_path, case):
    """The other model types, from make_tiny_models.py's configs, with mlx-lm's own model
    classes making the weights (float32 stored, bfloat16 asked for, 4 bits in groups of 64)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
    from make_tiny_models import CASES as TINY
    from mlx.utils import tree_flatten
    from mlx_lm.utils import _get_classes

    config = dict(TINY[case], torch_dtype="bfloat16")
    if "query_pre_attn_scalar" in config:
        # transformers (which loads the tokenizer for mlx-lm) wants an int here.
        config["query_pre_attn_scalar"] = int(config["query_pre_attn_scalar"])
    mx.random.seed(len(case))
    model_class, args_class = _get_classes(config)
    weights = dict(tree_flatten(model_class(args_class.from_dict(config)).parameters()))
    src = tmp_path / "dense"
    src.mkdir()
    mx.save_safetensors(str(src / "model.safetensors"), weights)
    (src / "config.json").write_text(json.dumps(config))
    write_tokenizer(src)
    theirs, ours = tmp_path / "mlx-lm", tmp_path / "mlxk"
    mlx_lm_convert("--hf-path", str(src), "--mlx-path", str(theirs), "-q", "--q-bits", "4")
    mlxk(str(src), str(ours), "--quantize", "4")
    assert_same_model(ours, theirs)
