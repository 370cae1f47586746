"""Workspaces shared with mlx-knife 2.0.8: its own workspace code (the wheel, installed without
dependencies by scripts/setup.sh) and `mlxk` read each other's markers as clean or dirty, with
the same content hash; `MLXK_WORKSPACE_HOME` resolves, lists and serves as mlx-knife's does."""

import json
import os
import shutil
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import ROOT, FixtureCache
from test_server import Server

MLX_KNIFE = ROOT / ".cache" / "mlx-knife-2.0.8"
MODEL = "mlx-community/Llama-3.2-1B-Instruct-4bit"


@pytest.fixture(scope="module")
def mk():
    """mlx-knife's workspace module (stdlib only: its wheel needs no dependencies for it)."""
    assert (MLX_KNIFE / "mlxk2").is_dir(), f"{MLX_KNIFE} is missing: run ./scripts/setup.sh"
    sys.path.insert(0, str(MLX_KNIFE))
    try:
        from mlxk2.operations import workspace
        yield workspace
    finally:
        sys.path.remove(str(MLX_KNIFE))


def model_folder(cache: FixtureCache, target: Path) -> Path:
    """A model folder with what real workspaces hold: weights, JSON, a nested file, an
    internal symlink, and cruft the hash must skip."""
    snapshot = next((cache.hub / "models--mlx-community--Llama-3.2-1B-Instruct-4bit" / "snapshots").iterdir())
    shutil.copytree(snapshot, target, symlinks=False)
    (target / "docs").mkdir()
    (target / "docs" / "notes.md").write_text("# notes\n")
    (target / "alias.json").symlink_to("config.json")
    (target / ".git").mkdir()
    (target / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (target / "run.log").write_text("noise\n")
    return target


def mlx_knife_marks(mk, folder: Path, repo: str = "org/from-mlx-knife") -> str:
    """What mlx-knife's clone writes (operations/clone.py), through its own functions."""
    content_hash, file_index = mk.compute_workspace_hash_v2(folder)
    mk.write_workspace_sentinel(folder, {
        "mlxk_version": "2.0.8",
        "created_at": "2026-01-01T00:00:00Z",
        "source_repo": repo,
        "source_revision": "0" * 40,
        "managed": True,
        "operation": "clone",
        "hash_modified": "2026-01-01T00:00:00Z",
        "hash_algorithm": mk.HASH_ALGORITHM_V2,
        "content_hash": content_hash,
        "exclude_patterns": list(mk.DEFAULT_EXCLUDE_PATTERNS),
        "file_index": file_index,
    })
    return content_hash


def shown(cache: FixtureCache, target: str, *flags: str, env: dict | None = None) -> dict:
    return cache.mlxk("show", target, *flags) if env is None else run(cache, env, "show", target, *flags)


def run(cache: FixtureCache, env: dict, *args: str, expect: int = 0) -> dict:
    import subprocess
    from conftest import BIN_DIR
    proc = subprocess.run([str(BIN_DIR / "mlxk"), *args, "--json"], env={**cache.env, **env},
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == expect, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def test_a_workspace_marked_by_mlx_knife_is_clean_in_mlxk_until_it_changes(mk, fixture_cache, tmp_path):
    folder = model_folder(fixture_cache, tmp_path / "ws")
    expected = mlx_knife_marks(mk, folder)
    model = shown(fixture_cache, str(folder))["data"]["model"]
    assert (model["cached"], model["clean"], model["content_hash"], model["origin"]) == \
        (False, True, expected, "org/from-mlx-knife")
    # A time-only change: both tools still call it clean (and mlxk heals the marker's times).
    later = time.time() + 1000
    os.utime(folder / "docs" / "notes.md", (later, later))
    assert shown(fixture_cache, str(folder))["data"]["model"]["clean"] is True
    assert mk.is_workspace_clean(folder)[0] is True
    # A content change: both call it dirty, and agree on the hash of what is there now.
    (folder / "docs" / "notes.md").write_text("# edited\n")
    dirty = shown(fixture_cache, str(folder))["data"]["model"]
    clean, current, stored = mk.is_workspace_clean(folder)
    assert (dirty["clean"], clean, stored) == (False, False, expected)
    # `--recalc-hash` re-pins it; mlx-knife reads the new marker as clean, with mlxk's hash.
    repinned = shown(fixture_cache, str(folder), "--recalc-hash")["data"]
    assert repinned["hash_recalculated"] and repinned["model"]["clean"] is True
    assert repinned["model"]["content_hash"] == current == mk.compute_workspace_hash_v2(folder)[0]
    assert mk.is_workspace_clean(folder) == (True, current, current)
    marker = json.loads((folder / ".mlxk_workspace.json").read_text())
    assert marker["source_repo"] == "org/from-mlx-knife" and marker["hash_algorithm"] == "v2"


def test_a_workspace_cloned_by_mlxk_is_clean_in_mlx_knife(mk, fixture_cache, tmp_path):
    target = tmp_path / "cloned"
    cloned = fixture_cache.mlxk("clone", MODEL, str(target))["data"]
    clean, current, stored = mk.is_workspace_clean(target)
    assert clean is True and current == stored == cloned["content_hash"]
    assert mk.compute_workspace_hash_v2(target)[0] == cloned["content_hash"]
    marker = json.loads((target / ".mlxk_workspace.json").read_text())
    for field in ("mlxk_version", "created_at", "source_repo", "source_revision", "managed", "operation",
                  "hash_algorithm", "content_hash", "hash_modified", "exclude_patterns", "file_index"):
        assert field in marker, field
    assert marker["operation"] == "clone" and marker["managed"] is True
    assert all(set(entry) == {"path", "size", "mtime_ns", "sha"} for entry in marker["file_index"])
    (target / "extra.json").write_text("{}")
    assert mk.is_workspace_clean(target)[0] is False
    assert fixture_cache.mlxk("show", str(target))["data"]["model"]["clean"] is False


def test_an_old_or_broken_marker_is_unknown_not_clean(mk, fixture_cache, tmp_path):
    folder = model_folder(fixture_cache, tmp_path / "old")
    (folder / ".mlxk_workspace.json").write_text(json.dumps({
        "mlxk_version": "2.0.5", "created_at": "2025-01-01T00:00:00Z", "managed": True,
        "operation": "clone", "source_repo": "org/m", "content_hash": "ab" * 32}))
    assert fixture_cache.mlxk("show", str(folder))["data"]["model"]["clean"] is None
    assert mk.is_workspace_clean(folder)[0] is None
    # A marker whose index points outside the workspace is never followed.
    mlx_knife_marks(mk, folder)
    marker = json.loads((folder / ".mlxk_workspace.json").read_text())
    marker["file_index"][0]["path"] = "../../etc/passwd"
    (folder / ".mlxk_workspace.json").write_text(json.dumps(marker))
    assert fixture_cache.mlxk("show", str(folder))["data"]["model"]["clean"] is None
    assert mk.is_workspace_clean(folder)[0] is None


def test_the_workspace_home_resolves_lists_clones_and_serves(mk, fixture_cache, tmp_path):
    home = tmp_path / "workspaces"
    home.mkdir()
    folder = model_folder(fixture_cache, home / "my-llama")
    mlx_knife_marks(mk, folder)
    env = {"MLXK_WORKSPACE_HOME": str(home)}
    listed = run(fixture_cache, env, "list")["data"]["models"]
    workspace = [m for m in listed if not m["cached"]]
    assert [m["name"] for m in workspace] == [str(folder.resolve())]
    assert workspace[0]["clean"] is True and any(m["name"] == MODEL for m in listed)
    # A bare name resolves in the home first, and a part of one resolves when it is unique.
    for name in ("my-llama", "my-ll"):
        assert run(fixture_cache, env, "show", name)["data"]["model"]["name"] == str(folder.resolve())
    # `list ./path`: the workspace itself, or the workspaces inside a folder.
    assert [m["name"] for m in run(fixture_cache, env, "list", str(folder))["data"]["models"]] == \
        [str(folder.resolve())]
    assert [m["name"] for m in run(fixture_cache, env, "list", str(home) + "/")["data"]["models"]] == \
        [str(folder.resolve())]
    # `health` with no argument checks the home's workspaces too.
    names = [e["name"] for e in run(fixture_cache, env, "health", expect=3)["data"]["healthy"]]
    assert str(folder.resolve()) in names
    # `clone ORG/NAME` with no target lands in the home under the model's name.
    cloned = run(fixture_cache, env, "clone", MODEL)["data"]
    assert cloned["target_dir"] == str((home / "Llama-3.2-1B-Instruct-4bit").resolve())
    assert mk.is_workspace_clean(home / "Llama-3.2-1B-Instruct-4bit")[0] is True
    assert run(fixture_cache, env, "clone", MODEL, expect=1)["error"]["type"] == "folder_not_empty"
    # The server lists workspaces by folder name, owned by "workspace"; never their paths.
    cache = FixtureCache(fixture_cache.home)
    cache.env = {**fixture_cache.env, **env}
    server = Server(cache)
    try:
        models = httpx.get(server.base + "/v1/models", timeout=30).json()["data"]
        served = {m["id"]: m["owned_by"] for m in models}
        assert served.get("my-llama") == "workspace", served
        assert not any(str(home) in m["id"] for m in models)
        one = httpx.get(server.base + "/v1/models/my-llama", timeout=30)
        assert one.status_code == 200 and one.json()["id"] == "my-llama"
    finally:
        server.stop()


def test_clone_into_a_non_empty_folder_says_so(fixture_cache, tmp_path):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    error = fixture_cache.mlxk("clone", MODEL, str(taken), expect=1)["error"]
    assert error["type"] == "folder_not_empty" and "not empty" in error["message"]
    assert (taken / "keep.txt").read_text() == "mine"


def test_offline_clone_and_pull_never_reach_for_the_hub(fixture_cache, tmp_path):
    # The fixture environment has HF_HUB_OFFLINE=1 and no endpoint: a request would fail as a
    # network error, not with these messages.
    cloned = fixture_cache.mlxk("clone", "org/not-cached", str(tmp_path / "w"), expect=1)["error"]
    assert cloned["type"] == "model_not_found" and "HF_HUB_OFFLINE" in cloned["message"]
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())
    pulled = fixture_cache.mlxk("pull", "org/not-cached", expect=1)["error"]
    assert pulled["type"] == "offline" and "HF_HUB_OFFLINE" in pulled["message"]
