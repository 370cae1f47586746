"""`mlxk serve` as a real process on loopback, driven by the official openai client and raw HTTP."""

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from conftest import BIN_DIR, FixtureCache
from test_demo_model import DEMO_GGUF, NAME


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, cache: FixtureCache, *flags: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [str(BIN_DIR / "mlxk"), "serve", "--port", str(self.port), *flags],
            env=cache.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        # Read as it comes: a server logging into a full pipe would stall.
        self._stderr: list[str] = []
        self._reader = threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True)
        self._reader.start()
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("the server did not come up")

    def stderr(self) -> str:
        """What the server wrote to stderr so far (all of it once stopped)."""
        if self.proc.poll() is not None:
            self._reader.join(timeout=10)
        return "".join(self._stderr)

    def client(self, key: str = "unused") -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base + "/v1", api_key=key, max_retries=0, timeout=120)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise
        return self.proc.returncode


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> FixtureCache:
    assert DEMO_GGUF.is_file(), f"{DEMO_GGUF} is missing: run ./scripts/setup.sh"
    home = tmp_path_factory.mktemp("serve") / "hf_home"
    (home / "hub").mkdir(parents=True)
    (home / ".mlxk-test-sentinel").write_text("test cache\n")
    cache = FixtureCache(home)
    cache.mlxk("convert", "--from-gguf", str(DEMO_GGUF), "--into-cache", NAME)
    return cache


@pytest.fixture(scope="module")
def server(cache):
    server = Server(cache, "--keep-alive", "0", "--max-body-bytes", "200000")
    yield server
    assert server.stop() == 0, server.stderr()
    with socket.socket() as s:
        # Nothing listens there any more (connections in TIME_WAIT do not count).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", server.port))
        s.listen()


QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def test_the_server_waits_passively_in_openmp(server):
    # OpenBLAS's OpenMP threads must not spin against MLX's thread on a busy machine (mlx-sys
    # prefer_passive_openmp re-executes serve with this set).
    environ = Path(f"/proc/{server.proc.pid}/environ").read_bytes().split(b"\0")
    assert b"OMP_WAIT_POLICY=PASSIVE" in environ


def test_models_are_listed(server):
    models = server.client().models.list().data
    assert [m.id for m in models] == [NAME]
    raw = httpx.get(server.base + "/v1/models").json()["data"][0]
    assert raw["context_length"] == 8192 and "chat" in raw["capabilities"] and raw["created"] > 0
    # The load plan is visible: on this CPU the 4-bit demo model runs as dense float32.
    weights = raw["weights"]
    assert weights["layout"] == "dense_float32" and weights["compute_dtype"] == "float32"
    assert 500_000_000 < weights["memory_bytes"] < 600_000_000, weights


def test_dense_budget_flag_keeps_weights_quantized(cache):
    small = Server(cache, "--dense-budget", "0")
    try:
        raw = httpx.get(small.base + "/v1/models").json()["data"][0]
        assert raw["weights"]["layout"] == "float32", raw["weights"]
        assert "over the 0 MB budget" in raw["weights"]["reason"]
    finally:
        assert small.stop() == 0


def test_greedy_chat_equals_mlxk_run(server, cache):
    reply = server.client().chat.completions.create(model=NAME, messages=QUESTION, temperature=0, max_tokens=40)
    ran = cache.mlxk("run", NAME, QUESTION[0]["content"], "--temperature", "0", "--max-tokens", "40")["data"]
    assert reply.choices[0].message.content == ran["response"]
    assert "Paris" in ran["response"]
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == ran["tokens_generated"]
    assert reply.usage.prompt_tokens == ran["prompt_tokens"]


def test_streaming_with_usage(server):
    client = server.client()
    plain = client.chat.completions.create(model=NAME, messages=QUESTION, temperature=0, max_tokens=40)
    chunks = list(client.chat.completions.create(
        model=NAME, messages=QUESTION, temperature=0, max_tokens=40, stream=True,
        stream_options={"include_usage": True},
    ))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == plain.usage.total_tokens


def test_completions_and_length(server):
    reply = server.client().completions.create(model=NAME, prompt="Once upon a time", max_tokens=8, temperature=0)
    assert reply.choices[0].text and reply.choices[0].finish_reason == "length"
    assert reply.usage.completion_tokens == 8


def test_stop_strings_are_never_emitted(server):
    client = server.client()
    reply = client.chat.completions.create(model=NAME, messages=QUESTION, temperature=0, max_tokens=40, stop=["Paris"])
    assert "Paris" not in reply.choices[0].message.content and reply.choices[0].finish_reason == "stop"
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model=NAME, messages=QUESTION, temperature=0, max_tokens=40, stop=" Paris", stream=True)
        if c.choices
    )
    assert streamed == reply.choices[0].message.content.rstrip() or "Paris" not in streamed


def error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}, body
    return body["error"]


def test_errors_have_openai_shape_and_status(server):
    url = server.base + "/v1/chat/completions"
    unknown = httpx.post(url, json={"model": "no-such-model", "messages": QUESTION})
    assert unknown.status_code == 404 and error(unknown)["code"] == "model_not_found"
    assert "no-such-model" in error(unknown)["message"]
    malformed = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert malformed.status_code == 400 and error(malformed)["type"] == "invalid_request_error"
    wrong_type = httpx.post(url, json={"model": NAME, "messages": QUESTION, "max_tokens": "many"})
    assert wrong_type.status_code == 400
    two = httpx.post(url, json={"model": NAME, "messages": QUESTION, "n": 2})
    assert two.status_code == 400 and error(two)["param"] == "n"
    huge = httpx.post(url, json={"model": NAME, "messages": [{"role": "user", "content": "x" * 300000}]})
    assert huge.status_code == 413
    too_long = httpx.post(url, json={"model": NAME, "messages": [{"role": "user", "content": "word " * 9000}]}, timeout=60)
    assert too_long.status_code in (400, 413)
    with pytest.raises(openai.NotFoundError):
        server.client().chat.completions.create(model="nothing-like-it", messages=QUESTION)
    ignored = httpx.post(url, json={"model": NAME, "messages": QUESTION, "max_tokens": 2, "temperature": 0, "future_field": 1})
    assert ignored.status_code == 200


def test_context_length_is_reported_with_both_numbers(cache):
    server = Server(cache, "--keep-alive", "0")
    try:
        response = httpx.post(server.base + "/v1/chat/completions",
                              json={"model": NAME, "messages": [{"role": "user", "content": "word " * 9000}]}, timeout=120)
        assert response.status_code == 400
        err = error(response)
        assert err["code"] == "context_length_exceeded" and "8192" in err["message"]
    finally:
        assert server.stop() == 0


def test_api_key(cache):
    server = Server(cache, "--api-key", "s3cret", "--keep-alive", "0")
    try:
        assert httpx.get(server.base + "/v1/models").status_code == 401
        assert httpx.get(server.base + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        with pytest.raises(openai.AuthenticationError):
            server.client("wrong").models.list()
        assert [m.id for m in server.client("s3cret").models.list().data] == [NAME]
        assert httpx.get(server.base + "/health").status_code == 200
        assert "s3cret" not in server.stderr()
    finally:
        assert server.stop() == 0
    assert "s3cret" not in server.stderr()


def test_eight_clients_at_once_none_starves(server):
    client = server.client()
    started = time.time()
    results = {}

    def one(i: int) -> None:
        first = None
        text = ""
        for chunk in client.chat.completions.create(
            model=NAME, messages=[{"role": "user", "content": f"Count to {i + 3}."}],
            temperature=0, max_tokens=16, stream=True,
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.time() - started
                text += chunk.choices[0].delta.content
        results[i] = (first, time.time() - started, text)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(results) == 8 and all(r[2] for r in results.values())
    # Interleaved, not queued: every client saw its first token before any client finished.
    assert max(r[0] for r in results.values()) < min(r[1] for r in results.values())


def test_a_disconnected_client_stops_its_generation(server):
    client = server.client()
    stream = client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "Write a very long story."}],
        temperature=0, max_tokens=1500, stream=True,
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    # 1500 tokens take minutes here; a short request right after finishes quickly only if the
    # abandoned generation stopped.
    begun = time.time()
    reply = client.chat.completions.create(model=NAME, messages=QUESTION, temperature=0, max_tokens=8)
    assert reply.choices[0].message.content
    assert time.time() - begun < 20


def test_idle_model_is_unloaded_after_keep_alive(cache):
    server = Server(cache, "--keep-alive", "1")
    try:
        server.client().chat.completions.create(model=NAME, messages=QUESTION, max_tokens=2, temperature=0)
        loaded = lambda: httpx.get(server.base + "/v1/models").json()["data"][0]["loaded"]
        assert loaded() is True
        time.sleep(2.5)
        assert loaded() is False
    finally:
        assert server.stop() == 0


def test_refuses_non_loopback_without_a_key(cache):
    proc = subprocess.run([str(BIN_DIR / "mlxk"), "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                          env=cache.env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "API key" in proc.stderr


def test_shutdown_ends_streams_cleanly(cache):
    server = Server(cache, "--keep-alive", "0")
    lines = []

    def reader() -> None:
        with httpx.stream("POST", server.base + "/v1/chat/completions", timeout=120, json={
            "model": NAME, "messages": [{"role": "user", "content": "Write a very long story."}],
            "max_tokens": 1500, "temperature": 0, "stream": True,
        }) as response:
            for line in response.iter_lines():
                if line:
                    lines.append(line)

    thread = threading.Thread(target=reader)
    thread.start()
    deadline = time.time() + 60
    while len(lines) < 4 and time.time() < deadline:
        time.sleep(0.1)
    assert server.stop() == 0
    thread.join(timeout=30)
    assert lines[-1] == "data: [DONE]"
    final = json.loads(lines[-2][len("data: "):])
    assert final["choices"][0]["finish_reason"] == "stop"


def test_a_model_too_large_for_memory_is_a_507(cache, tmp_path):
    """A (sparse) model folder whose weights could never fit: refused before loading."""
    import struct

    folder = tmp_path / "huge"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 1, "num_attention_heads": 4,
        "rms_norm_eps": 1e-5, "vocab_size": 256, "max_position_embeddings": 512,
    }))
    (folder / "README.md").write_text("---\nlibrary_name: mlx\n---\n")
    rows = 400_000_000  # x 64 float32 = ~100 GB
    header = json.dumps({"model.embed_tokens.weight": {"dtype": "F32", "shape": [rows, 64], "data_offsets": [0, rows * 64 * 4]}}).encode()
    with open(folder / "model.safetensors", "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + rows * 64 * 4)
    repo = cache.hub / "models--mlxk-test--huge-llama"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for file in folder.iterdir():
        (snapshot / file.name).symlink_to(file)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    server = Server(cache, "--keep-alive", "0")
    try:
        response = httpx.post(server.base + "/v1/chat/completions",
                              json={"model": "mlxk-test/huge-llama", "messages": QUESTION}, timeout=60)
        assert response.status_code == 507, response.text
        assert error(response)["code"] == "insufficient_memory"
    finally:
        assert server.stop() == 0
        import shutil
        shutil.rmtree(repo)



def wait_for(predicate, seconds: float = 10) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_one_log_line_per_request_never_its_content(server):
    marker = "zebra-marker-4711"
    question = [{"role": "user", "content": f"Say {marker} back."}]

    def lines() -> list[str]:
        return [line for line in server.stderr().splitlines() if "path=/v1/chat/completions" in line]

    # Earlier tests on this server logged lines too: only the ones after this point count.
    before = len(lines())
    client = server.client()
    client.chat.completions.create(model=NAME, messages=question, temperature=0, max_tokens=5)
    list(client.chat.completions.create(model=NAME, messages=question, temperature=0, max_tokens=5, stream=True))
    assert httpx.post(server.base + "/v1/chat/completions", json={"model": "nobody/none", "messages": question}).status_code == 404
    # Three requests, three lines (the streamed one once its stream has ended).
    assert wait_for(lambda: len(lines()) >= before + 3), lines()[before:]
    ours = lines()[before:]
    assert len(ours) == 3, ours
    done = [line for line in ours if f"model={NAME}" in line and "status=200" in line]
    assert len(done) == 2, ours
    for line in done:
        for field in ("method=POST", "prompt_tokens=", "cached_tokens=", "generated_tokens=5", "ttft_ms=", "duration_ms="):
            assert field in line, line
    # The same question again: all of its prompt but the last token came from the prefix cache.
    counts = dict(field.split("=", 1) for field in done[1].split() if field.startswith(("prompt_tokens=", "cached_tokens=")))
    assert int(counts["cached_tokens"]) == int(counts["prompt_tokens"]) - 1, done[1]
    assert any("model=nobody/none" in line and "status=404" in line for line in ours), ours
    log = server.stderr()
    assert marker not in log, "a prompt reached the log"
    assert "\x1b[" not in log, "colour codes written to a pipe"


def test_sampling_left_out_comes_from_the_models_generation_config(cache, tmp_path):
    # A copy of the demo model whose generation_config.json asks for greedy decoding.
    home = tmp_path / "hf_home"
    shutil.copytree(cache.home, home, symlinks=True)
    snapshot = next((home / "hub" / f"models--{NAME.replace('/', '--')}" / "snapshots").iterdir())
    config = snapshot / "generation_config.json"
    settings = json.loads(config.read_text()) | {"do_sample": False}
    config.unlink()  # a link into blobs/: replaced, the blob stays as it was
    config.write_text(json.dumps(settings))
    greedy_cache = FixtureCache(home)
    ran = greedy_cache.mlxk("run", NAME, QUESTION[0]["content"], "--max-tokens", "12")["data"]["response"]
    greedy = greedy_cache.mlxk("run", NAME, QUESTION[0]["content"], "--max-tokens", "12", "--temperature", "0")
    assert ran == greedy["data"]["response"]
    server = Server(greedy_cache, "--keep-alive", "0")
    try:
        answers = {
            server.client().chat.completions.create(model=NAME, messages=QUESTION, max_tokens=12).choices[0].message.content
            for _ in range(2)
        }
        assert answers == {ran}
    finally:
        assert server.stop() == 0


def test_ps_and_stop_show_and_unload_the_model_a_server_holds(cache):
    # Started with --model: held before any request; ps finds it through serve's record.
    server = Server(cache, "--model", NAME, "--keep-alive", "600")
    try:
        # /health answers while the model loads; serve announces itself once it is held.
        assert wait_for(lambda: "Serving" in server.stderr(), 60), server.stderr()
        held = cache.mlxk("ps")["data"]
        assert held["server"] == server.base
        [model] = held["models"]
        assert model["name"] == NAME and model["memory_bytes"] > 10_000_000
        assert model["loaded_at"] and model["expires_at"]
        shown = subprocess.run([str(BIN_DIR / "mlxk"), "ps"], env=cache.env, capture_output=True, text=True)
        assert shown.returncode == 0 and NAME in shown.stdout and f"Server: {server.base}" in shown.stdout, shown
        stopped = cache.mlxk("stop", NAME.split("/")[1])["data"]
        assert stopped == {"model": NAME, "server": server.base, "was_loaded": True, "unloaded": "now"}
        assert cache.mlxk("ps", "--server", server.base)["data"]["models"] == []
        again = cache.mlxk("stop", NAME, "--server", server.base)["data"]
        assert again["was_loaded"] is False and again["unloaded"] == "not_loaded"
        # A request loads it again, as before.
        server.client().chat.completions.create(model=NAME, messages=QUESTION, max_tokens=2, temperature=0)
        assert [m["name"] for m in cache.mlxk("ps", "--server", server.base)["data"]["models"]] == [NAME]
        missing = cache.mlxk("stop", "nobody/none", "--server", server.base, expect=1)["error"]
        assert missing["type"] == "model_not_found" and "nobody/none" in missing["message"]
    finally:
        assert server.stop() == 0
    # Stopped: the record is gone and nothing answers there.
    nobody = cache.mlxk("ps", "--server", server.base, expect=1)["error"]
    assert nobody["type"] == "server_not_running" and server.base in nobody["message"]


def test_serve_with_a_model_it_cannot_load_stops_before_serving(cache):
    port = free_port()
    proc = subprocess.run([str(BIN_DIR / "mlxk"), "serve", "--port", str(port), "--model", "nobody/none"],
                          env=cache.env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "nobody/none" in proc.stderr, proc.stderr
    assert "Serving" not in proc.stderr


def test_run_through_a_running_server_answers_as_a_local_run(server, cache):
    local = cache.mlxk("run", NAME, QUESTION[0]["content"], "--temperature", "0", "--max-tokens", "24")["data"]
    remote = cache.mlxk("run", NAME, QUESTION[0]["content"], "--temperature", "0", "--max-tokens", "24",
                        f"--server={server.base}")["data"]
    for field in ("model", "response", "finish_reason", "tokens_generated", "prompt_tokens"):
        assert remote[field] == local[field], (field, remote, local)
    # On a terminal's terms: the answer on stdout, the numbers on a line of their own on stderr.
    shown = subprocess.run([str(BIN_DIR / "mlxk"), "run", NAME, QUESTION[0]["content"], "--temperature", "0",
                            "--max-tokens", "24", "--verbose", f"--server={server.base}"],
                           env=cache.env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == local["response"].strip()
    assert f"served by {server.base}" in shown.stderr and "decode: " in shown.stderr
    nobody = f"http://127.0.0.1:{free_port()}"
    missing = cache.mlxk("run", NAME, "hi", f"--server={nobody}", expect=1)["error"]
    assert missing["type"] == "server_not_running" and nobody in missing["message"]
