"""A conversion into the cache killed midway leaves a staging folder: `health` and `list --all`
say so, and the next conversion removes it (never one that is still running)."""

import os
import signal
import subprocess
import time

from conftest import BIN_DIR, FixtureCache
from test_demo_model import DEMO_GGUF


def test_a_killed_conversion_is_reported_and_cleaned_up(tmp_path):
    home = tmp_path / "hf_home"
    (home / "hub").mkdir(parents=True)
    (home / ".mlxk-test-sentinel").write_text("test cache\n")
    cache = FixtureCache(home)
    proc = subprocess.Popen([str(BIN_DIR / "mlxk"), "convert", "--from-gguf", str(DEMO_GGUF),
                             "--into-cache", "probe/killed"], env=cache.env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    staging = []
    while time.time() < deadline and not staging:
        staging = [p for p in cache.hub.iterdir() if p.name.startswith(".mlxk-staging-")]
        time.sleep(0.05)
    assert staging, "the conversion never made its staging folder"
    # A live conversion's folder is not a leftover.
    live = subprocess.run([str(BIN_DIR / "mlxk"), "health"], env=cache.env, capture_output=True, text=True)
    assert "interrupted conversion" not in live.stderr
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert staging[0].exists()

    for args in (["health"], ["list", "--all"], ["health", "--json"]):
        run = subprocess.run([str(BIN_DIR / "mlxk"), *args], env=cache.env, capture_output=True, text=True)
        assert "interrupted conversion" in run.stderr and staging[0].name in run.stderr, (args, run.stderr)

    done = subprocess.run([str(BIN_DIR / "mlxk"), "convert", "--from-gguf", str(DEMO_GGUF),
                           "--into-cache", "probe/second", "--json"], env=cache.env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "removed" in done.stderr and staging[0].name in done.stderr
    assert not staging[0].exists()
    assert not [p for p in cache.hub.iterdir() if p.name.startswith(".mlxk-")]
    assert "interrupted" not in subprocess.run([str(BIN_DIR / "mlxk"), "health"], env=cache.env,
                                                capture_output=True, text=True).stderr
