"""`mlxk convert --from-ct2` on the two real Whisper models scripts/setup.sh installs
(.cache/whisper/{tiny.en,base}: CTranslate2 float16, from PyPI; converted into the test cache
target/test-models-hf-home as mlxk-test/whisper-tiny.en-mlx and mlxk-test/whisper-base-mlx).

* Every tensor equals the independent numpy conversion (tests/reference/ct2_whisper_reference.py)
  in name, dtype, shape and bytes; config.json holds exactly mlx-whisper's ten dimensions plus
  model_type; the safetensors metadata says format mlx.
* mlx-whisper 0.4.3 loads the folder: its Whisper has every parameter from the file (no name
  missing or extra) and holds the same values.
* `mlxk list` / `show --json` call them runnable MLX audio models, the multilingual base also
  `audio-translate-en`.
* A conversion into a folder reproduces the cached one byte for byte; damaged input is a clear
  `invalid_ct2` error that leaves nothing behind.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import BIN_DIR, ROOT, TARGET, FixtureCache

sys.path.insert(0, str(ROOT / "tests" / "reference"))
import ct2_whisper_reference as reference  # noqa: E402

safetensors_numpy = pytest.importorskip("safetensors.numpy")
HOME = TARGET / "test-models-hf-home"
SOURCES = ROOT / ".cache" / "whisper"
MODELS = {
    "tiny.en": ("mlxk-test/whisper-tiny.en-mlx", 167, ["audio"]),
    "base": ("mlxk-test/whisper-base-mlx", 245, ["audio", "audio-translate-en"]),
}
DIMENSIONS = ["n_mels", "n_audio_ctx", "n_audio_state", "n_audio_head", "n_audio_layer", "n_vocab",
              "n_text_ctx", "n_text_state", "n_text_head", "n_text_layer"]


def installed(model: str) -> Path:
    name = MODELS[model][0]
    repo = HOME / "hub" / f"models--{name.replace('/', '--')}"
    assert (repo / "refs" / "main").is_file() and (SOURCES / model / "model.bin").is_file(), \
        "run ./scripts/setup.sh"
    return repo / "snapshots" / (repo / "refs" / "main").read_text().strip()


@pytest.mark.parametrize("model", MODELS)
def test_tensors_equal_the_reference_conversion(model):
    folder = installed(model)
    ours = safetensors_numpy.load_file(str(folder / "weights.safetensors"))
    expected = reference.convert_tensors(SOURCES / model)
    assert len(ours) == MODELS[model][1]
    assert sorted(ours) == sorted(expected)
    for name, want in expected.items():
        got = ours[name]
        assert (got.dtype, got.shape) == (want.dtype, want.shape), name
        assert got.tobytes() == want.tobytes(), name
    assert ours["encoder.conv1.weight"].dtype == np.float16
    assert ours["alignment_heads"].dtype == np.int64 and ours["alignment_heads"].shape == (8, 2)

    config = json.loads((folder / "config.json").read_text())
    assert list(config) == DIMENSIONS + ["model_type"]
    assert config == {key: int(value) if key != "model_type" else value
                      for key, value in reference.dimensions(SOURCES / model).items()}
    from safetensors import safe_open
    with safe_open(str(folder / "weights.safetensors"), framework="numpy") as f:
        assert f.metadata() == {"format": "mlx"}
    assert (folder / "tokenizer.json").read_bytes() == (SOURCES / model / "tokenizer.json").read_bytes()
    assert (folder / "README.md").read_text().startswith("---\nlibrary_name: mlx\n")


@pytest.mark.parametrize("model", MODELS)
def test_mlx_whisper_loads_the_folder(model):
    mx = pytest.importorskip("mlx.core")
    load_models = pytest.importorskip("mlx_whisper.load_models", reason="installed by scripts/setup.sh")
    from mlx.utils import tree_flatten
    from mlx_whisper.whisper import ModelDimensions, Whisper

    folder = installed(model)
    loaded = load_models.load_model(str(folder))
    config = json.loads((folder / "config.json").read_text())
    config.pop("model_type")
    assert loaded.dims == ModelDimensions(**config)
    # Every parameter mlx-whisper's network has comes from the file, and nothing else is there.
    wanted = dict(tree_flatten(Whisper(loaded.dims).parameters()))
    ours = safetensors_numpy.load_file(str(folder / "weights.safetensors"))
    assert sorted(wanted) == sorted(ours)
    params = dict(tree_flatten(loaded.parameters()))
    for name in ("encoder.conv1.weight", "encoder.blocks.0.attn.key.weight",
                 "decoder.blocks.1.cross_attn.value.bias", "decoder.token_embedding.weight"):
        assert params[name].shape == tuple(wanted[name].shape), name
        assert np.array_equal(np.array(params[name].astype(mx.float32)),
                              ours[name].astype(np.float32)), name
    assert np.array_equal(np.array(loaded.alignment_heads), ours["alignment_heads"])


def test_list_and_show_call_them_runnable_audio_models():
    for model in MODELS:
        installed(model)
    cache = FixtureCache(HOME)
    listed = {m["name"]: m for m in cache.mlxk("list")["data"]["models"]}
    for name, _, capabilities in MODELS.values():
        for shown in (listed[name], cache.mlxk("show", name)["data"]["model"]):
            assert shown["model_type"] == "audio", shown
            assert shown["framework"] == "MLX", shown
            assert shown["capabilities"] == capabilities, shown
            assert shown["runtime_compatible"] is True, shown
            assert shown["health"] == "healthy", shown


def mlxk_convert(*args: str, expect: int = 0) -> dict:
    proc = subprocess.run([str(BIN_DIR / "mlxk"), "convert", *args, "--json"], capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=120)
    assert proc.returncode == expect, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_a_folder_conversion_reproduces_the_cached_one(tmp_path):
    out = mlxk_convert("--from-ct2", str(SOURCES / "tiny.en"), str(tmp_path / "tiny"))["data"]
    assert (out["architecture"], out["tensors"], out["dtype"], out["exact"]) == ("whisper", 167, "float16", True)
    assert (out["multilingual"], out["health_status"]) == (False, "healthy")
    cached = installed("tiny.en")
    for file in ("weights.safetensors", "config.json", "tokenizer.json", "README.md"):
        assert (tmp_path / "tiny" / file).read_bytes() == (cached / file).read_bytes(), file


def test_damaged_input_is_a_clear_error(tmp_path):
    source = tmp_path / "damaged"
    source.mkdir()
    for file in ("config.json", "tokenizer.json"):
        shutil.copy(SOURCES / "tiny.en" / file, source / file)
    with open(SOURCES / "tiny.en" / "model.bin", "rb") as f:
        (source / "model.bin").write_bytes(f.read(4096))
    error = mlxk_convert("--from-ct2", str(source), str(tmp_path / "out"), expect=1)["error"]
    assert error["type"] == "invalid_ct2"
    assert "runs past the end of the file" in error["message"], error
    (source / "tokenizer.json").unlink()
    error = mlxk_convert("--from-ct2", str(source), str(tmp_path / "out"), expect=1)["error"]
    assert "no tokenizer.json" in error["message"], error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged"]
