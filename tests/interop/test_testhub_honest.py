"""`mlxk-testhub` is honest: the official `huggingface_hub` client downloads from it, uploads to it
and raises its own exception types for its errors.

Every client call runs in a fresh Python process, because `huggingface_hub` reads `HF_ENDPOINT`,
`HF_HOME` and `HF_HUB_DISABLE_XET` once, at import. Downloads run with `hf_xet` installed and Xet
enabled (the hub never advertises Xet, so plain HTTP is used); uploads set `HF_HUB_DISABLE_XET=1`
because with `hf_xet` installed `huggingface_hub` uploads through Xet's CAS service
unconditionally, and the test hub speaks only the Git LFS `basic` transfer.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN_DIR

ALICE, BOB = "hf_alice_test_token", "hf_bob_test_token"
BIG = 11 * 1024 * 1024  # above the 10 MiB LFS threshold


def write_tree(root: Path, files: dict) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def tree_bytes(root: Path) -> dict:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".cache" not in p.relative_to(root).parts
    }


class Hub:
    def __init__(self, root: Path, *flags: str):
        self.proc = subprocess.Popen(
            [str(BIN_DIR / "mlxk-testhub"), "--root", str(root), "--port", "0", *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            raise RuntimeError(f"mlxk-testhub did not start: {line!r} {self.proc.stderr.read()}")
        self.url = line.removeprefix("listening on ")

    def requests(self) -> list:
        with urllib.request.urlopen(self.url + "/_testhub/requests", timeout=10) as r:
            return json.load(r)

    def clear_requests(self) -> None:
        req = urllib.request.Request(self.url + "/_testhub/requests", method="DELETE")
        urllib.request.urlopen(req, timeout=10).close()

    def set_knobs(self, **knobs) -> None:
        req = urllib.request.Request(
            self.url + "/_testhub/knobs", method="PUT", data=json.dumps(knobs).encode(),
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=10).close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


PRELUDE = """
import json, sys, traceback
def _report(value):
    print(json.dumps(value))
try:
    import huggingface_hub as hh
    from huggingface_hub import HfApi
    result = main()
    _report({"ok": result})
except Exception as e:
    _report({"error": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__],
             "status": getattr(getattr(e, "response", None), "status_code", None), "message": str(e)[:500]})
"""


class Client:
    """Runs `def main(): ...` in a fresh Python with its own HF_HOME, against the hub."""

    def __init__(self, hub: Hub, home: Path, **env):
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home.parent),
            "HF_ENDPOINT": hub.url,
            "HF_HOME": str(home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
            **env,
        }
        self.home = home

    def run(self, body: str):
        code = "def main():\n" + textwrap.indent(textwrap.dedent(body), "    ") + PRELUDE
        proc = subprocess.run([sys.executable, "-c", code], env=self.env, capture_output=True,
                              text=True, timeout=300, stdin=subprocess.DEVNULL)
        lines = proc.stdout.strip().splitlines()
        assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
        return json.loads(lines[-1])

    def ok(self, body: str):
        answer = self.run(body)
        assert "ok" in answer, answer
        return answer["ok"]


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("seeds")
    weights_v1 = os.urandom(3 * 1024 * 1024)
    common = {"config.json": b'{"model_type": "llama"}\n', "tokenizer/vocab.txt": b"a\nb\nc\n"}
    return {
        "v1": write_tree(base / "v1", {**common, "model.safetensors": weights_v1}),
        "v2": write_tree(base / "v2", {**common, "model.safetensors": weights_v1[::-1],
                                       "README.md": b"# tiny\n"}),
        "private": write_tree(base / "private", {"config.json": b"{}\n", "w.bin": os.urandom(1000)}),
        "gated": write_tree(base / "gated", {"config.json": b'{"gated": true}\n'}),
        "large": write_tree(base / "large", {"large.bin": os.urandom(24 * 1024 * 1024)}),
    }


@pytest.fixture(scope="module")
def hub(tmp_path_factory, seeds) -> Hub:
    root = tmp_path_factory.mktemp("hub-root")
    hub = Hub(
        root,
        "--token", f"{ALICE}=alice", "--token", f"{BOB}=bob",
        "--seed-from", f"{seeds['v1']}=org/public@v1.0",
        "--seed-from", f"{seeds['v2']}=org/public",
        "--seed-from", f"{seeds['private']}=alice/secret", "--private", "alice/secret",
        "--seed-from", f"{seeds['large']}=org/large",
        "--seed-from", f"{seeds['gated']}=org/gated", "--gated", "org/gated", "--grant", "org/gated=bob",
    )
    yield hub
    hub.stop()


@pytest.fixture
def client(hub, tmp_path) -> Client:
    return Client(hub, tmp_path / "hf_home")


def test_snapshot_download_public_is_byte_identical_in_the_standard_layout(client, seeds):
    got = client.ok("""
        path = hh.snapshot_download("org/public")
        info = HfApi().model_info("org/public", files_metadata=True)
        cache = hh.scan_cache_dir()
        repo = next(r for r in cache.repos if r.repo_id == "org/public")
        return {"path": path, "sha": info.sha, "refs": sorted(repo.refs),
                "files": sorted(f.file_name for rev in repo.revisions for f in rev.files),
                "lfs": {s.rfilename: s.lfs.sha256 for s in info.siblings if s.lfs},
                "warnings": [str(w) for w in cache.warnings]}
    """)
    path = Path(got["path"])
    assert path == client.home / "hub" / "models--org--public" / "snapshots" / got["sha"]
    assert tree_bytes(path) == tree_bytes(seeds["v2"])
    assert (client.home / "hub" / "models--org--public" / "refs" / "main").read_text() == got["sha"]
    weights = (seeds["v2"] / "model.safetensors").read_bytes()
    assert got["lfs"] == {"model.safetensors": hashlib.sha256(weights).hexdigest()}
    # The blob of an LFS file is named by its sha256, as on the real Hub.
    blob = client.home / "hub" / "models--org--public" / "blobs" / got["lfs"]["model.safetensors"]
    assert blob.read_bytes() == weights
    assert got["refs"] == ["main"] and got["warnings"] == []
    assert got["files"] == ["README.md", "config.json", "model.safetensors", "vocab.txt"]


def test_tag_and_commit_revisions(client, seeds):
    got = client.ok("""
        sha = HfApi().model_info("org/public", revision="v1.0").sha
        by_tag = hh.snapshot_download("org/public", revision="v1.0")
        by_commit = hh.snapshot_download("org/public", revision=sha)
        one = hh.hf_hub_download("org/public", "model.safetensors", revision=sha)
        return {"sha": sha, "by_tag": by_tag, "by_commit": by_commit, "one": one}
    """)
    assert got["by_tag"] == got["by_commit"]
    assert tree_bytes(Path(got["by_tag"])) == tree_bytes(seeds["v1"])
    assert Path(got["one"]).read_bytes() == (seeds["v1"] / "model.safetensors").read_bytes()
    assert (client.home / "hub" / "models--org--public" / "refs" / "v1.0").read_text() == got["sha"]


def test_private_repo_needs_its_owners_token(client, seeds):
    anonymous = client.run('return hh.snapshot_download("alice/secret")')
    assert anonymous["error"] == "RepositoryNotFoundError" and anonymous["status"] == 401
    assert "GatedRepoError" not in anonymous["mro"]
    other = client.run(f'return hh.snapshot_download("alice/secret", token="{BOB}")')
    assert other["error"] == "RepositoryNotFoundError" and other["status"] == 404
    path = client.ok(f'return hh.snapshot_download("alice/secret", token="{ALICE}")')
    assert tree_bytes(Path(path)) == tree_bytes(seeds["private"])


def test_gated_repo_needs_a_grant(client, seeds):
    anonymous = client.run('return hh.hf_hub_download("org/gated", "config.json")')
    assert anonymous["error"] == "GatedRepoError" and anonymous["status"] == 401
    not_granted = client.run(f'return hh.snapshot_download("org/gated", token="{ALICE}")')
    assert not_granted["error"] == "GatedRepoError" and not_granted["status"] == 403
    info = client.ok('return HfApi().model_info("org/gated").gated')
    assert info == "auto"
    path = client.ok(f'return hh.snapshot_download("org/gated", token="{BOB}")')
    assert tree_bytes(Path(path)) == tree_bytes(seeds["gated"])


def test_missing_things_raise_the_matching_errors(client):
    entry = client.run('return hh.hf_hub_download("org/public", "nope.txt")')
    assert entry["error"] == "RemoteEntryNotFoundError" and "EntryNotFoundError" in entry["mro"]
    revision = client.run('return hh.snapshot_download("org/public", revision="no-such-branch")')
    assert revision["error"] == "RevisionNotFoundError"
    repo = client.run(f'return hh.snapshot_download("org/absent", token="{ALICE}")')
    assert repo["error"] == "RepositoryNotFoundError" and repo["status"] == 404
    bad_token = client.run('return hh.snapshot_download("org/public", token="hf_wrong")')
    assert bad_token["status"] == 401


def test_whoami(client):
    assert client.ok(f'return HfApi().whoami(token="{ALICE}")["name"]') == "alice"
    assert client.run('return HfApi().whoami(token="hf_wrong")')["status"] == 401


def test_interrupted_download_resumes_with_a_range(hub, client, seeds):
    # huggingface_hub reads bodies in 10 MiB chunks and resumes from the last whole chunk, so
    # the cut comes after the first one.
    hub.clear_requests()
    hub.set_knobs(failAfterBytes=15 * 1024 * 1024, failBudget=1)
    try:
        path = client.ok('return hh.hf_hub_download("org/large", "large.bin")')
    finally:
        hub.set_knobs()
    assert Path(path).read_bytes() == (seeds["large"] / "large.bin").read_bytes()
    gets = [r for r in hub.requests() if r["method"] == "GET"]
    assert [(g["range"], g["status"]) for g in gets] == [
        (None, 200), (f"bytes={10 * 1024 * 1024}-", 206)], gets


def test_create_repo_and_upload_folder_then_only_the_change_travels(hub, tmp_path):
    uploader = Client(hub, tmp_path / "uploader_home", HF_HUB_DISABLE_XET="1")
    folder = write_tree(tmp_path / "local", {
        "big.bin": os.urandom(BIG),
        "model.safetensors": os.urandom(200_000),
        "config.json": b'{"hidden_size": 8}\n',
        "docs/notes.txt": b"small text\n",
    })
    url = uploader.ok(f'return str(HfApi().create_repo("alice/uploaded", private=True, token="{ALICE}"))')
    assert url == f"{hub.url}/alice/uploaded"
    again = uploader.run(f'return str(HfApi().create_repo("alice/uploaded", token="{ALICE}"))')
    assert again["status"] == 409
    uploader.ok(f'return str(HfApi().create_repo("alice/uploaded", exist_ok=True, token="{ALICE}"))')
    foreign = uploader.run(f'return str(HfApi().create_repo("alice/other", token="{BOB}"))')
    assert foreign["status"] == 403

    upload = f'return HfApi().upload_folder(repo_id="alice/uploaded", folder_path="{folder}", token="{ALICE}").oid'
    hub.clear_requests()
    first = uploader.ok(upload)
    log = hub.requests()
    puts = sorted(r["requestBytes"] for r in log if r["method"] == "PUT")
    assert puts == [200_000, BIG], log
    commits = [r for r in log if r["path"] == "/api/models/alice/uploaded/commit/main"]
    assert len(commits) == 1 and commits[0]["authorization"]
    assert set(commits[0]["detail"].split()) == {
        "lfsFile:big.bin", "lfsFile:model.safetensors", "file:config.json", "file:docs/notes.txt"}

    changed = bytearray((folder / "big.bin").read_bytes())
    changed[:4] = b"\xde\xad\xbe\xef"
    (folder / "big.bin").write_bytes(bytes(changed))
    hub.clear_requests()
    second = uploader.ok(upload)
    log = hub.requests()
    assert second != first
    assert [r["requestBytes"] for r in log if r["method"] == "PUT"] == [BIG], log
    commit = next(r for r in log if r["path"].endswith("/commit/main"))
    assert commit["detail"] == "lfsFile:big.bin" and commit["requestBytes"] < 2000
    assert not any(r["path"].startswith("/alice/uploaded/resolve/") for r in log)

    downloader = Client(hub, tmp_path / "downloader_home")
    got = downloader.ok(f"""
        path = hh.snapshot_download("alice/uploaded", token="{ALICE}")
        return {{"path": path, "sha": HfApi().model_info("alice/uploaded", token="{ALICE}").sha}}
    """)
    assert got["sha"] == second
    downloaded = tree_bytes(Path(got["path"]))
    assert downloaded.pop(".gitattributes").startswith(b"*.7z filter=lfs")
    assert downloaded == tree_bytes(folder)


def test_upload_file_regular_and_deletion(hub, tmp_path):
    uploader = Client(hub, tmp_path / "home", HF_HUB_DISABLE_XET="1")
    got = uploader.ok(f"""
        api = HfApi(token="{ALICE}")
        api.create_repo("alice/single")
        api.upload_file(path_or_fileobj=b"one\\n", path_in_repo="a/one.txt", repo_id="alice/single")
        head = api.model_info("alice/single").sha
        api.upload_file(path_or_fileobj=b"two\\n", path_in_repo="two.txt", repo_id="alice/single",
                        parent_commit=head)
        try:
            api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="alice/single",
                            parent_commit=head)
            stale = None
        except hh.errors.HfHubHTTPError as e:
            stale = e.response.status_code
        api.delete_file("a/one.txt", repo_id="alice/single")
        files = sorted(api.list_repo_files("alice/single"))
        text = open(hh.hf_hub_download("alice/single", "two.txt")).read()
        return {{"stale": stale, "files": files, "text": text}}
    """)
    assert got == {"stale": 412, "files": [".gitattributes", "two.txt"], "text": "two\n"}
