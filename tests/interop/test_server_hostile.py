"""`mlxk serve` under hostile input, hostile pages and hostile model files, as a real process on
loopback: each case must end in a clear 4xx/5xx for that request and leave the server serving
everyone else."""

import json
import resource
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import FixtureCache
from test_demo_model import NAME
from test_server import QUESTION, Server, cache, error, server  # noqa: F401 (fixtures)


def hostile_copy(source: FixtureCache, tmp_path: Path, repo: str, files: dict) -> FixtureCache:
    """The demo model copied into a cache of its own as `repo`, with `files` (name -> text)
    written into its snapshot: a model file someone tampered with."""
    import shutil

    home = tmp_path / "hostile_home"  # several calls add several models to one cache
    (home / "hub").mkdir(parents=True, exist_ok=True)
    (home / ".mlxk-test-sentinel").write_text("test cache\n")
    target = home / "hub" / ("models--" + repo.replace("/", "--"))
    shutil.copytree(source.hub / ("models--" + NAME.replace("/", "--")), target, symlinks=True)
    snapshot = next((target / "snapshots").iterdir())
    for name, text in files.items():
        path = snapshot / name
        if path.is_symlink() or path.exists():
            path.unlink()
        path.write_text(text)
    return FixtureCache(home)


# Few template steps (well within the renderer's fuel), each reversing a 50 MB string: hours.
SLOW_TEMPLATE = ("{% set s = 'x' * 50000000 %}"
                 "{% for a in range(100000) %}{% if s|reverse == s %}{% endif %}{% endfor %}")


def test_a_stuck_chat_template_does_not_keep_the_server_from_stopping(cache, tmp_path):
    hostile = hostile_copy(cache, tmp_path, "probe/slow-template",
                           {"chat_template.jinja": SLOW_TEMPLATE})
    server = Server(hostile, "--keep-alive", "0", "--shutdown-timeout", "2")

    def ask() -> None:
        try:
            httpx.post(server.base + "/v1/chat/completions", timeout=60,
                       json={"model": "probe/slow-template", "messages": QUESTION})
        except httpx.HTTPError:
            pass  # the server goes away under it

    threading.Thread(target=ask, daemon=True).start()
    # The model is loaded before its template renders: once /v1/models says so, the worker is
    # (about to be) stuck in the loop.
    deadline = time.time() + 60
    while time.time() < deadline:
        listed = httpx.get(server.base + "/v1/models", timeout=5).json()["data"]
        if listed and listed[0]["loaded"]:
            break
        time.sleep(0.1)
    else:
        server.proc.kill()
        pytest.fail("the model never loaded")
    time.sleep(0.5)
    started = time.time()
    server.proc.send_signal(signal.SIGTERM)
    try:
        code = server.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        pytest.fail("SIGTERM did not stop a server whose worker is stuck")
    stderr = server.stderr()
    assert code == 1, stderr  # an orderly exit that says what happened, not a crash
    assert "did not finish within 2 s" in stderr, stderr
    assert time.time() - started < 15
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", server.port))


def test_errors_for_clients_name_no_directories(cache, tmp_path):
    # A tokenizer.json that looks like JSON passes the quick health check and fails in the
    # engine, whose message names the file by its full path in the cache.
    hostile = hostile_copy(cache, tmp_path, "probe/bad-tokenizer",
                           {"tokenizer.json": '{"not": "a tokenizer"}'})
    server = Server(hostile, "--keep-alive", "0")
    try:
        response = httpx.post(server.base + "/v1/chat/completions", timeout=60,
                              json={"model": "probe/bad-tokenizer", "messages": QUESTION})
        assert response.status_code == 500, response.text
        message = error(response)["message"]
        assert "probe/bad-tokenizer" in message and "tokenizer.json" in message, message
        assert str(hostile.home) not in message and str(tmp_path) not in message, message
        assert "/snapshots/" not in message and ".cargo" not in message, message
    finally:
        assert server.stop() == 0


def test_web_pages_cannot_use_the_server(server):
    chat = server.base + "/v1/chat/completions"
    body = {"model": NAME, "messages": QUESTION, "max_tokens": 1}
    # DNS rebinding: a page whose own domain resolves to 127.0.0.1 still sends its name.
    for path in ("/v1/models", "/health"):
        rebound = httpx.get(server.base + path, headers={"Host": "evil.example:%d" % server.port})
        assert rebound.status_code == 403, rebound.text
        assert error(rebound)["code"] == "host_not_allowed"
        assert "--allowed-host evil.example" in error(rebound)["message"]
    for host in ("localhost:%d" % server.port, "127.0.0.1:%d" % server.port):
        assert httpx.get(server.base + "/v1/models", headers={"Host": host}).status_code == 200
    # A "simple" cross-site POST (text, form or no type) is refused before any work.
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {"content-type": content_type} if content_type else {}
        refused = httpx.post(chat, content=json.dumps(body).encode(), headers=headers)
        assert refused.status_code == 415, refused.text
        assert error(refused)["code"] == "unsupported_media_type"
    # A browser's Origin on a state-changing request must be one CORS allows.
    foreign = httpx.post(chat, json=body, headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 403 and error(foreign)["code"] == "origin_not_allowed"
    local = httpx.post(chat, json=body, headers={"Origin": "http://localhost:3000"})
    assert local.status_code == 200, local.text


def test_the_api_never_loads_a_path(server, cache):
    snapshot = next((cache.hub / ("models--" + NAME.replace("/", "--")) / "snapshots").iterdir())
    for name in (str(snapshot), "/usr", "./x", "../x", "."):
        response = httpx.post(server.base + "/v1/chat/completions",
                              json={"model": name, "messages": QUESTION, "max_tokens": 1})
        assert response.status_code == 404, (name, response.text)
        message = error(response)["message"]
        assert "never folders on disk" in message, message
        assert "bin" not in message and "lib" not in message, message


def raw_request(port: int, data: bytes, wait: float) -> bytes:
    """Sends `data` on a fresh connection and reads until the server closes it or `wait` ends."""
    with socket.create_connection(("127.0.0.1", port), timeout=wait) as s:
        s.sendall(data)
        received = b""
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            received += chunk
        return received


def test_bodies_announced_too_large_or_never_finished_end_quickly(cache):
    server = Server(cache, "--keep-alive", "0", "--read-timeout", "2")
    try:
        started = time.time()
        announced = raw_request(server.port, (
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000000000000\r\n\r\n{").encode(), 10)
        assert announced.startswith(b"HTTP/1.1 413"), announced[:200]
        assert time.time() - started < 5
        started = time.time()
        endless = raw_request(server.port, (
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            "5\r\n{\"mod\r\n").encode(), 15)
        assert endless.startswith(b"HTTP/1.1 408"), endless[:200]
        assert time.time() - started < 10
        # A client that connects and says nothing is let go after the read timeout.
        started = time.time()
        assert raw_request(server.port, b"", 15) == b""
        assert time.time() - started < 10
        assert httpx.get(server.base + "/health").json()["healthy"] is True
    finally:
        assert server.stop() == 0


def test_idle_connections_cannot_starve_health(cache):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    server = Server(cache, "--keep-alive", "0", "--max-connections", "100", "--read-timeout", "30")
    idle = []
    try:
        for _ in range(1100):
            try:
                idle.append(socket.create_connection(("127.0.0.1", server.port), timeout=5))
            except OSError:
                break
        assert len(idle) == 1100
        started = time.time()
        answered = None
        while time.time() - started < 10 and answered is None:
            try:
                answered = httpx.get(server.base + "/health", timeout=2).json()
            except httpx.HTTPError:
                time.sleep(0.2)
        assert answered and answered["status"] == "ok", "no /health while idle clients hold the slots"
        assert time.time() - started < 10
    finally:
        for s in idle:
            s.close()
        assert server.stop() == 0
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_request_waiting_too_long_gets_503_with_retry_after(cache):
    server = Server(cache, "--keep-alive", "0", "--max-active", "1", "--queue-timeout", "1")
    streams = []
    try:
        first_chunk = threading.Event()

        def long_stream() -> None:
            with httpx.stream("POST", server.base + "/v1/chat/completions", timeout=120, json={
                "model": NAME, "messages": [{"role": "user", "content": "Tell a long story."}],
                "max_tokens": 400, "temperature": 0, "stream": True,
            }) as response:
                for _ in response.iter_lines():
                    first_chunk.set()
                    if stop_streaming.is_set():
                        return

        stop_streaming = threading.Event()
        thread = threading.Thread(target=long_stream)
        thread.start()
        streams.append(thread)
        assert first_chunk.wait(60)
        started = time.time()
        waited = httpx.post(server.base + "/v1/chat/completions", timeout=30,
                            json={"model": NAME, "messages": QUESTION, "max_tokens": 1})
        assert waited.status_code == 503, waited.text
        assert error(waited)["code"] == "queue_timeout"
        assert waited.headers["retry-after"] == "1"
        assert time.time() - started < 5
        # The abandoned request leaves the queue at the worker's next step.
        deadline = time.time() + 5
        health = httpx.get(server.base + "/health").json()
        while health["queue"]["waiting"] and time.time() < deadline:
            time.sleep(0.1)
            health = httpx.get(server.base + "/health").json()
        assert health["queue"]["capacity"] == 32 and health["queue"]["waiting"] == 0
        assert health["queue"]["active"] in (0, 1)  # the story may have ended meanwhile
        stop_streaming.set()
    finally:
        for thread in streams:
            thread.join(timeout=60)
        assert server.stop() == 0


def test_sampling_fields_are_validated_and_named(server):
    url = server.base + "/v1/chat/completions"
    for field, value in [("top_k", 2**31), ("top_k", -1), ("temperature", -0.5), ("temperature", 7),
                         ("top_p", 1.5), ("min_p", 2), ("repetition_penalty", 0),
                         ("frequency_penalty", 9), ("max_tokens", 0), ("stop", [""])]:
        response = httpx.post(url, json={"model": NAME, "messages": QUESTION, field: value})
        assert response.status_code == 400, (field, value, response.text)
        assert field in error(response)["message"], (field, error(response))
    empty = httpx.post(server.base + "/v1/completions", json={"model": NAME, "prompt": ""})
    assert empty.status_code == 400 and error(empty)["param"] == "prompt"
    # Within range is served.
    ok = httpx.post(url, json={"model": NAME, "messages": QUESTION, "max_tokens": 2, "top_k": 100000})
    assert ok.status_code == 200, ok.text


def test_a_hostile_model_fails_its_own_requests_only(cache, tmp_path):
    # Heads 0 (a division by zero when building attention) in one model; the good one beside it.
    hostile = hostile_copy(cache, tmp_path, "probe/zero-heads", {})
    snapshot = next((hostile.hub / "models--probe--zero-heads" / "snapshots").iterdir())
    config = json.loads((snapshot / "config.json").read_text())
    config["num_attention_heads"] = 0
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").write_text(json.dumps(config))
    import shutil
    shutil.copytree(cache.hub / ("models--" + NAME.replace("/", "--")),
                    hostile.hub / ("models--" + NAME.replace("/", "--")), symlinks=True)
    server = Server(hostile, "--keep-alive", "0")
    try:
        # Then absurd sizes, which would abort on allocation: the same request, the same answer.
        edits = [("num_attention_heads", 0), ("num_hidden_layers", 1_000_000),
                 ("hidden_size", 1_000_000_000), ("num_attention_heads", 0)]
        for field, value in edits:
            edited = dict(config, num_attention_heads=9)  # the demo model's own value
            edited[field] = value
            (snapshot / "config.json").write_text(json.dumps(edited))
            bad = httpx.post(server.base + "/v1/chat/completions", timeout=60,
                             json={"model": "probe/zero-heads", "messages": QUESTION, "max_tokens": 2})
            assert bad.status_code == 400, bad.text
            assert error(bad)["code"] == "model_unusable" and field in error(bad)["message"], error(bad)
            good = httpx.post(server.base + "/v1/chat/completions", timeout=60,
                              json={"model": NAME, "messages": QUESTION, "max_tokens": 2})
            assert good.status_code == 200, good.text
    finally:
        assert server.stop() == 0


def test_hostile_templates_are_clear_errors(cache, tmp_path):
    cases = {
        "probe/loops": ("{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}",
                        "did not finish"),
        "probe/balloons": ("{% for a in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",  # 100 MB
                           "more than 16 MiB"),
        "probe/multiplies": ("{% for x in [1, 2] * 1000000000000 %}{% endfor %}", "did not finish"),
    }
    for name, (text, _) in cases.items():
        hostile = hostile_copy(cache, tmp_path, name, {"chat_template.jinja": text})
    server = Server(hostile, "--keep-alive", "0")
    try:
        for name, (_, expected) in cases.items():
            response = httpx.post(server.base + "/v1/chat/completions", timeout=120,
                                  json={"model": name, "messages": QUESTION})
            assert response.status_code == 400, response.text
            assert expected in error(response)["message"], error(response)
            assert httpx.get(server.base + "/health").status_code == 200
    finally:
        assert server.stop() == 0


def test_custom_code_models_are_not_runnable(cache, tmp_path):
    hostile = hostile_copy(cache, tmp_path, "probe/custom-code", {})
    snapshot = next((hostile.hub / "models--probe--custom-code" / "snapshots").iterdir())
    config = json.loads((snapshot / "config.json").read_text())
    custom = dict(config, model_type="my_custom_arch", auto_map={"AutoModelForCausalLM": "modeling.M"})
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").write_text(json.dumps(custom))
    runtime = hostile.mlxk("show", "probe/custom-code")["data"]["runtime"]
    assert runtime["compatible"] is False
    assert "custom Python code" in runtime["reason"], runtime
    # auto_map beside an architecture the engine implements: the model runs natively.
    (snapshot / "config.json").write_text(json.dumps(dict(config, auto_map={"AutoModel": "m.M"})))
    assert hostile.mlxk("show", "probe/custom-code")["data"]["runtime"]["compatible"] is True


def test_a_token_typed_as_an_argument_is_not_echoed(cache):
    token = "hf_" + "abcdefghijklmnopqrstuvwxyz012345"
    from conftest import BIN_DIR
    for args in (["login", token], ["login", token, "--json"], ["pull", token, "--json"]):
        proc = subprocess.run([str(BIN_DIR / "mlxk"), *args], env=cache.env, capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=60)
        assert proc.returncode != 0
        assert token not in proc.stdout + proc.stderr, (args, proc.stdout, proc.stderr)
        assert "hf_…(35 chars)" in proc.stdout + proc.stderr, (args, proc.stdout, proc.stderr)
