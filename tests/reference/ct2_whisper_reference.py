"""An independent CTranslate2 -> MLX Whisper conversion, in numpy, that `mlxk convert --from-ct2`
is checked against (tests/interop/test_ct2_convert.py).

It reads CTranslate2's `model.bin` the way `ModelSpec._serialize` (ctranslate2/specs/model_spec.py)
writes it, and maps the WhisperSpec variables onto the parameter names of mlx-whisper's `Whisper`
(mlx_whisper/whisper.py), as ml-explore's mlx-examples `whisper/convert.py` maps OpenAI's:
fused self-attention Q;K;V rows and cross-attention K;V rows split (the key biases, zero in
CTranslate2, dropped: Whisper's keys have none), `gamma`/`beta` to `weight`/`bias`, Conv1d weights
from [out, in, k] to MLX's [out, k, in], the sinusoidal encoder positions dropped (mlx-whisper
computes them), the tied output projection dropped, and the CTranslate2 config's alignment heads as
an int64 [N, 2] array. Values keep their dtype.

    tensors = convert_tensors(src_dir)      # {mlx name: np.ndarray}
    dims = dimensions(src_dir)              # the 10 ModelDimensions + model_type

Usage as a script: ct2_whisper_reference.py SRC_DIR DST_DIR writes config.json,
weights.safetensors and tokenizer.json as mlx-whisper's loader reads them.
"""

import json
import struct
import sys
from pathlib import Path

import numpy as np

DTYPES = {0: np.float32, 1: np.int8, 2: np.int16, 3: np.int32, 4: np.float16}


def read_model_bin(path):
    """(spec name, {variable: array}) with every alias pointing at its target's array."""
    raw = Path(path).read_bytes()
    at = 0

    def take(fmt):
        nonlocal at
        values = struct.unpack_from("<" + fmt, raw, at)
        at += struct.calcsize("<" + fmt)
        return values

    def text():
        nonlocal at
        (length,) = take("H")
        value = raw[at:at + length - 1].decode()
        assert raw[at + length - 1] == 0
        at += length
        return value

    (version,) = take("I")
    assert version == 6, version
    spec = text()
    take("I")  # spec revision
    (count,) = take("I")
    variables = {}
    for _ in range(count):
        name = text()
        (rank,) = take("B")
        shape = take(f"{rank}I")
        (dtype,) = take("B")
        (size,) = take("I")
        variables[name] = np.frombuffer(raw, DTYPES[dtype], count=size // np.dtype(DTYPES[dtype]).itemsize,
                                        offset=at).reshape(shape)
        at += size
    (aliases,) = take("I")
    for _ in range(aliases):
        alias, target = text(), text()
        variables[alias] = variables[target]
    assert at == len(raw), "bytes after the aliases"
    return spec, variables


def layer_count(variables, side):
    return len({name.split("/")[1] for name in variables
                if name.startswith(f"{side}/layer_") and name.split("/")[1][len("layer_"):].isdigit()})


def dimensions(src):
    _, v = read_model_bin(Path(src) / "model.bin")
    embeddings = v["decoder/embeddings/weight"]
    return {
        "n_mels": v["encoder/conv1/weight"].shape[1],
        "n_audio_ctx": v["encoder/position_encodings/encodings"].shape[0],
        "n_audio_state": v["encoder/conv1/weight"].shape[0],
        "n_audio_head": int(v["encoder/num_heads"]),
        "n_audio_layer": layer_count(v, "encoder"),
        "n_vocab": embeddings.shape[0],
        "n_text_ctx": v["decoder/position_encodings/encodings"].shape[0],
        "n_text_state": embeddings.shape[1],
        "n_text_head": int(v["decoder/num_heads"]),
        "n_text_layer": layer_count(v, "decoder"),
        "model_type": "whisper",
    }


def convert_tensors(src):
    src = Path(src)
    spec, v = read_model_bin(src / "model.bin")
    assert spec == "WhisperSpec", spec
    assert (int(v["decoder/activation"]), int(v["decoder/pre_norm"])) == (3, 1)
    assert np.array_equal(v["decoder/projection/weight"], v["decoder/embeddings/weight"])
    width = v["encoder/conv1/weight"].shape[0]
    out = {}

    def same(ct2, mlx):
        out[mlx] = v[ct2]

    def norm(ct2, mlx):
        same(f"{ct2}/gamma", f"{mlx}.weight")
        same(f"{ct2}/beta", f"{mlx}.bias")

    def dense(ct2, mlx):
        same(f"{ct2}/weight", f"{mlx}.weight")
        same(f"{ct2}/bias", f"{mlx}.bias")

    def unfuse(ct2, parts):
        weight, bias = v[f"{ct2}/weight"], v[f"{ct2}/bias"]
        for index, mlx in enumerate(parts):
            rows = slice(index * width, (index + 1) * width)
            out[f"{mlx}.weight"] = weight[rows]
            if mlx.endswith(".key"):
                assert not bias[rows].any(), f"{ct2}: a key bias"
            else:
                out[f"{mlx}.bias"] = bias[rows]

    def block(ct2, mlx):
        norm(f"{ct2}/self_attention/layer_norm", f"{mlx}.attn_ln")
        unfuse(f"{ct2}/self_attention/linear_0", [f"{mlx}.attn.{p}" for p in ("query", "key", "value")])
        dense(f"{ct2}/self_attention/linear_1", f"{mlx}.attn.out")
        norm(f"{ct2}/ffn/layer_norm", f"{mlx}.mlp_ln")
        dense(f"{ct2}/ffn/linear_0", f"{mlx}.mlp1")
        dense(f"{ct2}/ffn/linear_1", f"{mlx}.mlp2")

    for conv in ("conv1", "conv2"):
        out[f"encoder.{conv}.weight"] = np.swapaxes(v[f"encoder/{conv}/weight"], 1, 2)
        same(f"encoder/{conv}/bias", f"encoder.{conv}.bias")
    for i in range(layer_count(v, "encoder")):
        block(f"encoder/layer_{i}", f"encoder.blocks.{i}")
    norm("encoder/layer_norm", "encoder.ln_post")
    same("decoder/embeddings/weight", "decoder.token_embedding.weight")
    same("decoder/position_encodings/encodings", "decoder.positional_embedding")
    for i in range(layer_count(v, "decoder")):
        ct2, mlx = f"decoder/layer_{i}", f"decoder.blocks.{i}"
        block(ct2, mlx)
        norm(f"{ct2}/attention/layer_norm", f"{mlx}.cross_attn_ln")
        dense(f"{ct2}/attention/linear_0", f"{mlx}.cross_attn.query")
        unfuse(f"{ct2}/attention/linear_1", [f"{mlx}.cross_attn.key", f"{mlx}.cross_attn.value"])
        dense(f"{ct2}/attention/linear_2", f"{mlx}.cross_attn.out")
    norm("decoder/layer_norm", "decoder.ln")
    heads = json.loads((src / "config.json").read_text())["alignment_heads"]
    out["alignment_heads"] = np.asarray(heads, dtype=np.int64).reshape(-1, 2)
    return {name: np.ascontiguousarray(array) for name, array in out.items()}


def main(src, dst):
    from safetensors.numpy import save_file

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    save_file(convert_tensors(src), str(dst / "weights.safetensors"), metadata={"format": "mlx"})
    (dst / "config.json").write_text(json.dumps(dimensions(src), indent=4))
    (dst / "tokenizer.json").write_bytes((src / "tokenizer.json").read_bytes())


if __name__ == "__main__":
    main(*sys.argv[1:3])
