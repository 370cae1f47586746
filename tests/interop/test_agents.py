"""Real coding agents against the real `mlxk serve`: Claude Code (`claude -p`, Anthropic's Messages
API) and Codex (`codex exec`, OpenAI's Responses API), both from the npm registry
(scripts/agents.sh), each completing one turn on Qwen2.5-Coder-0.5B with no protocol error.

Hermetic: a temp HOME (and CODEX_HOME), telemetry and update checks off, and every proxy variable
pointed at a recording trap, so a reach for any host but the server fails the test. Both clients'
prompts are cut down (their defaults are ~12k tokens of system prompt and tools for Claude Code,
~10k for Codex: minutes of CPU prefill on this model): the protocol is under test, not the agent.
"""

import json
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import pytest

from agent_recorder import Recorder
from conftest import QWEN, ROOT
from test_server import free_port

AGENTS = ROOT / ".cache" / "agents" / "node_modules" / ".bin"
PROMPT = "Reply with one word: hello."
SYSTEM = "You are a helpful assistant. Answer in one short sentence."
# Per run: the server answers these prompts in seconds; the margin is for a busy CI machine.
TIMEOUT = 240


def agent(name: str) -> Path:
    path = AGENTS / name
    # Installed by setup (scripts/agents.sh, from the npm registry): missing is a failure.
    assert path.exists(), f"{name} is not installed: run ./scripts/setup.sh"
    return path


@pytest.fixture
def trap(tmp_path):
    """A proxy that only records: any connection a client tries beyond the server lands here."""
    with Recorder(free_port(), tmp_path / "trapped") as recorder:
        thread = threading.Thread(target=recorder.serve_forever, daemon=True)
        thread.start()
        yield recorder
        recorder.shutdown()
        thread.join(timeout=10)


def hermetic_env(home: Path, trap: Recorder) -> dict:
    proxy = f"http://127.0.0.1:{trap.server_address[1]}"
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        **{name: proxy for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY",
                                    "https_proxy", "http_proxy", "all_proxy")},
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def run(args: list, env: dict, cwd: Path, server) -> tuple[subprocess.CompletedProcess, str]:
    """Runs one client turn; gives its process and the server's log lines written meanwhile. On a
    timeout the whole process group goes (`codex` is a Node script that starts the native binary)."""
    logged = len(server.stderr())
    cwd.mkdir(exist_ok=True)
    with subprocess.Popen([str(a) for a in args], env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                          start_new_session=True) as child:
        try:
            stdout, stderr = child.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            stdout, stderr = child.communicate()
            pytest.fail(f"{Path(args[0]).name} took over {TIMEOUT} s:\n{stdout}{stderr}")
    proc = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    return proc, server.stderr()[logged:]


def answered(log: str, path: str) -> list[str]:
    """The server's log lines of successful POSTs to `path` (its query string aside)."""
    return [line for line in log.splitlines()
            if re.search(rf"method=POST path={re.escape(path)}\b", line) and "status=200" in line]


def assert_no_other_host(trap: Recorder) -> None:
    trapped = [json.loads(p.read_text()) for p in sorted(trap.out.glob("*.json"))]
    assert not trapped, [f"{t['method']} {t['path']}" for t in trapped]


def test_claude_code_completes_a_turn(model_server, tmp_path, trap):
    claude = agent("claude")
    env = hermetic_env(tmp_path, trap) | {
        "ANTHROPIC_BASE_URL": model_server.base,
        "ANTHROPIC_API_KEY": "unused",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        # A protocol error fails the turn at once instead of after ten backed-off retries.
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "CLAUDE_CODE_MAX_OUTPUT_TOKENS": "32",
        # No `thinking` (nor `context_management`) in the request.
        "MAX_THINKING_TOKENS": "0",
    }
    # --bare: no hooks, plugins or CLAUDE.md; --system-prompt and --tools "": a ~100-token prompt
    # instead of the ~12k-token default.
    proc, log = run([claude, "-p", PROMPT, "--model", QWEN, "--output-format", "json", "--bare",
                     "--system-prompt", SYSTEM, "--tools", "", "--strict-mcp-config",
                     "--no-session-persistence", "--max-turns", "1"],
                    env, tmp_path / "work", model_server)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(proc.stdout)
    assert (result["type"], result["subtype"], result["is_error"]) == ("result", "success", False), result
    assert result["result"].strip(), result
    assert result["stop_reason"] in ("end_turn", "max_tokens"), result
    # The usage is the server's: Claude Code adds nothing of its own.
    assert result["usage"]["input_tokens"] > 0 and 0 < result["usage"]["output_tokens"] <= 32, result
    assert len(answered(log, "/v1/messages")) == 1, log
    assert_no_other_host(trap)


CODEX_CONFIG = """\
model_provider = "mlxk"
check_for_update_on_startup = false
web_search = "disabled"
# A short instruction instead of the built-in ~4k-token one, and none of the context blocks.
model_instructions_file = "{instructions}"
include_environment_context = false
include_permissions_instructions = false
include_apps_instructions = false
include_collaboration_mode_instructions = false

[model_providers.mlxk]
name = "MLX Knife"
base_url = "{base}/v1"
wire_api = "responses"
env_key = "MLXK_API_KEY"
# A protocol error fails the turn at once.
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false

[feedback]
enabled = false

[skills.bundled]
enabled = false

[agents]
enabled = false

# No plugin or app sync (they reach for other hosts) and fewer tools: what is left is two
# function tools (request_user_input, view_image).
[features]
plugins = false
remote_plugin = false
apps = false
goals = false
shell_tool = false
unified_exec = false
"""


def test_codex_completes_a_turn(model_server, tmp_path, trap):
    codex = agent("codex")
    codex_home = tmp_path / "codex"
    codex_home.mkdir()
    instructions = tmp_path / "instructions.md"
    instructions.write_text(SYSTEM + "\n")
    (codex_home / "config.toml").write_text(
        CODEX_CONFIG.format(instructions=instructions, base=model_server.base))
    env = hermetic_env(tmp_path, trap) | {"CODEX_HOME": str(codex_home), "MLXK_API_KEY": "unused"}
    # --strict-config: a key this version does not know fails instead of being ignored.
    proc, log = run([codex, "exec", "--strict-config", "--skip-git-repo-check", "--ephemeral", "--json",
                     "--sandbox", "read-only", "-m", QWEN, PROMPT],
                    env, tmp_path / "work", model_server)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    kinds = [e["type"] for e in events]
    assert "turn.failed" not in kinds and "error" not in kinds, events
    messages = [e["item"]["text"] for e in events
                if e["type"] == "item.completed" and e["item"]["type"] == "agent_message"]
    assert messages and messages[-1].strip(), events
    (usage,) = [e["usage"] for e in events if e["type"] == "turn.completed"]
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0, usage
    assert answered(log, "/v1/responses"), log
    assert_no_other_host(trap)
