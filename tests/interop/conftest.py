"""Shared fixtures: the project's binaries and a fixture cache in a temp HF_HOME."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _bin_dir() -> Path:
    explicit = os.environ.get("MLXK_BIN_DIR")
    if explicit:
        return Path(explicit)
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return target / "debug"


BIN_DIR = _bin_dir()


class FixtureCache:
    def __init__(self, home: Path):
        self.home = home
        self.hub = home / "hub"
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home.parent),
            "HF_HOME": str(home),
            "HF_HUB_OFFLINE": "1",
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "MLXK_REQUIRE_TEST_SENTINEL": "1",
        }

    def mlxk(self, *args: str, expect: int = 0) -> dict:
        proc = subprocess.run(
            [str(BIN_DIR / "mlxk"), *args, "--json"],
            env=self.env, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60,
        )
        assert proc.returncode == expect, proc.stdout + proc.stderr
        return json.loads(proc.stdout)


@pytest.fixture
def fixture_cache(tmp_path: Path) -> FixtureCache:
    home = tmp_path / "hf_home"
    subprocess.run([str(BIN_DIR / "mlxk-fixtures"), "standard", str(home)], check=True,
                   capture_output=True, timeout=60)
    return FixtureCache(home)


TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
# The real chat models the API tests share: Qwen's template has tools (Hermes format); SmolLM2's
# has none (the generic format).
QWEN = "mlxk-test/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M-mlx"
SMOL = "mlxk-demo/SmolLM2-135M-Instruct-Q4_1-mlx"
# The tool the API tests offer, in chat completions' shape (the others are made from it), and
# the question that calls for it.
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "The city, e.g. Paris", "maxLength": 40},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
ASK = [{"role": "user", "content": "What is the weather like in Paris today?"}]

MODEL_SOURCES = {
    QWEN: TARGET / "test-models-hf-home" / "hub" / "models--mlxk-test--Qwen2.5-Coder-0.5B-Instruct-Q4_K_M-mlx",
    SMOL: TARGET / "demo-hf-home" / "hub" / "models--mlxk-demo--SmolLM2-135M-Instruct-Q4_1-mlx",
    "mlxk-test/whisper-tiny.en-mlx": TARGET / "test-models-hf-home" / "hub" / "models--mlxk-test--whisper-tiny.en-mlx",
    "mlxk-test/whisper-base-mlx": TARGET / "test-models-hf-home" / "hub" / "models--mlxk-test--whisper-base-mlx",
}


@pytest.fixture(scope="session")
def model_server(tmp_path_factory):
    """One `mlxk serve` for the whole run over a private cache holding both models (hard links
    of the set-up caches): the API test files share it, so each model loads once."""
    from test_server import Server  # noqa: PLC0415 (test_server imports this module)

    home = tmp_path_factory.mktemp("models") / "hf_home"
    (home / "hub").mkdir(parents=True)
    (home / ".mlxk-test-sentinel").write_text("test cache\n")
    for source in MODEL_SOURCES.values():
        assert (source / "refs" / "main").is_file(), f"{source} is missing: run ./scripts/setup.sh"
        target = home / "hub" / source.name
        if subprocess.run(["cp", "-al", str(source), str(target)], capture_output=True).returncode != 0:
            shutil.copytree(source, target, symlinks=True)
    # The tests ask for 192 tokens at most; an agent client asks for none: the cap
    # keeps a wandering answer short.
    server = Server(FixtureCache(home), "--keep-alive", "0", "--max-tokens", "192")
    server.cache = FixtureCache(home)
    yield server
    assert server.stop() == 0, server.stderr()
