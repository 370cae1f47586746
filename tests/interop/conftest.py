"""Shared fixtures: the project's binaries and a fixture cache in a temp HF_HOME."""

import json
import os
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
