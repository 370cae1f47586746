"""Embeddings with a real model (sentence-transformers' all-MiniLM-L6-v2, BERT, 384 dimensions,
installed by scripts/setup.sh as mlxk-test/all-MiniLM-L6-v2), against mlx-embeddings' BERT run
as sentence-transformers runs it (tests/reference/embeddings_reference.py: the model's own
tokenizer through transformers, cut at 256 tokens, mean pooling, unit length).

Proven here:
- `mlxk embed --batch` (one process) on 50 texts of mixed length -- empty-ish, unicode, emoji,
  CJK, code, numbers, texts right at and far beyond the 256-token limit -- agrees with the
  reference to cosine >= 1 - 1e-4 for every text; texts embedded one per process equal the
  batched vectors (1e-5) and the reference; `tokens` is the reference tokenizer's count after
  the cut, and `truncated` is true exactly for the texts the reference tokenizer cuts.
- The CLI's other ways in and out: fields passed through --batch, `-` (stdin), the --json
  envelope, --dimensions (the first N dimensions scaled back to length 1), --query on a model
  without a query prompt, --no-truncate's refusal, a chat model refused, a malformed --batch
  line (exit 2, its line number named), --dimensions out of range (exit 2).
- `mlxk serve` (one real process): /v1/embeddings through the official openai client (base64,
  its default, and float) equals the reference; single strings, token arrays (the reference
  tokenizer's ids) equal their texts' vectors; dimensions; usage; `truncated` on cut items;
  OpenAI-shaped errors (unknown model, dimensions, chat model, empty input, truncate=false);
  a chat completion naming the embedding model is refused; Ollama's /api/embed and
  /api/embeddings through raw HTTP and the official ollama client equal the reference.
"""

import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import ollama
import openai
import pytest

from conftest import BIN_DIR, ROOT, FixtureCache
from test_server import Server, error

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "reference"))
import embeddings_reference  # noqa: E402

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
HOME = TARGET / "test-models-hf-home"
NAME = "mlxk-test/all-MiniLM-L6-v2"
CHAT = "mlxk-test/Qwen2.5-Coder-0.5B-Instruct-Q4_K_M-mlx"
DIMENSIONS = 384
MAX_TOKENS = 256
COSINE = 1 - 1e-4  # ours against the reference, each text
SAME = 1e-5  # ours against ours (another batch, another encoding): max abs difference
SECONDS: dict[str, float] = {}  # how long the parity test's two sides took

PARAGRAPH = ("The lighthouse on the northern cape has stood for two hundred years; its keepers wrote "
             "about storms, ships and the lamps they tended through the night. ")
CODE = "def add(a, b):\n    return a + b\n\n\nclass Point:\n    x: int = 0\n    y: int = 0\n"
LONG = PARAGRAPH * 16  # ~480 tokens
TEXTS = [
    # empty-ish
    "", " ", ".", "a", "\n", "\t  \n", "I",
    # short sentences
    "hello world",
    "Hello, World!",
    "The capital of France is Paris.",
    "What is the capital of France?",
    "A man is eating food.",
    "A man is riding a white horse on an enclosed ground.",
    "Two dogs play in the snow while their owner watches from the porch.",
    "The quick brown fox jumps over the lazy dog.",
    "I'd've thought it'd be done by now -- wouldn't you?",
    "ALL CAPS SHOUTING AND MiXeD cAsE",
    # unicode, emoji, CJK and other scripts
    "Ünïcödé façade — naïve café crème brûlée",
    "日本語のテキストです。東京は日本の首都です。",
    "中文文本：北京是中国的首都。",
    "한국어 문장입니다.",
    "Привет, мир! Москва — столица России.",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
    "emoji 🙂🚀🎉 and a family 👨‍👩‍👧",
    "zero\u200bwidth and non\u00a0breaking and \u0007bell",
    "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫg̓ͫ̒o̰̻̣ text",
    # code and numbers
    CODE,
    "SELECT id, name FROM users WHERE age > 21 ORDER BY name;",
    '{"key": [1, 2, 3], "nested": {"a": null}}',
    "<html><body><p class=\"x\">Hi</p></body></html>",
    "3.14159 2.71828 1.41421 6.02214076e23 -273.15",
    "Call 555-0123 before 2024-12-31 at 23:59:59 UTC+01:00.",
    "0x1F 0b1010 0o777 1_000_000",
    "$ ls -la /usr/local/bin | grep mlx && echo ok",
    # medium
    PARAGRAPH,
    PARAGRAPH * 2,
    ("Ünïcödé " + PARAGRAPH) * 2,
    " ".join(f"item{i}" for i in range(40)),
    " ".join(str(i) for i in range(100)),
    "supercalifragilisticexpialidocious antidisestablishmentarianism " * 4,
    "🙂 " * 30,
    # at the 256-token limit ([CLS] + 254 words + [SEP] fits; one more word does not)
    "word " * 254,
    "word " * 255,
    # far beyond it (what the model reads of each costs ~2 s here: MLX's CPU build uses the
    # reference BLAS, so a handful)
    LONG,
    CODE * 20,
    "日本語のテキストです。" * 40,
    # more short ones
    "Machine learning on the CPU.",
    "mlx knife",
    "Is this the real life? Is this just fantasy?",
]
assert len(TEXTS) == 50, len(TEXTS)
# Embedded one per process as well (argv cannot hold "", nor texts that look like flags).
SINGLES = ["a", "hello world", "日本語のテキストです。東京は日本の首都です。", CODE, LONG]


def snapshot() -> Path:
    repo = HOME / "hub" / f"models--{NAME.replace('/', '--')}"
    assert (repo / "refs" / "main").is_file(), "run ./scripts/setup.sh"
    return repo / "snapshots" / (repo / "refs" / "main").read_text().strip()


@pytest.fixture(scope="module")
def cache() -> FixtureCache:
    return FixtureCache(HOME)


@pytest.fixture(scope="module")
def ref() -> embeddings_reference.Reference:
    return embeddings_reference.load(snapshot())


@pytest.fixture(scope="module")
def expected(ref) -> np.ndarray:
    # Batches of 8 similar lengths: the 5 texts at the limit are the only ones padded to 256.
    started = time.perf_counter()
    vectors = ref.embed(TEXTS, batch_size=8, sort_by_length=True)
    SECONDS["reference"] = time.perf_counter() - started
    return vectors


def mlxk(cache: FixtureCache, *args: str, stdin: str = "", expect: int = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(BIN_DIR / "mlxk"), *args], env=cache.env, input=stdin,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == expect, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def records(proc: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def batch(cache: FixtureCache, rows: list[dict], *flags: str) -> list[dict]:
    stdin = "".join(json.dumps(row) + "\n" for row in rows)
    return records(mlxk(cache, "embed", NAME, "--batch", *flags, stdin=stdin))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.atleast_2d(a).astype(np.float64), np.atleast_2d(b).astype(np.float64)
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def agree(ours, reference, texts) -> None:
    ours = np.atleast_2d(np.asarray(ours, dtype=np.float32))
    reference = np.atleast_2d(reference)
    assert ours.shape == reference.shape, (ours.shape, reference.shape)
    cos = cosines(ours, reference)
    worst = int(np.argmin(cos))
    assert cos.min() >= COSINE, f"cosine {cos.min():.8f} for text {worst}: {texts[worst][:80]!r}"


# --- CLI -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def batched(cache) -> list[dict]:
    started = time.perf_counter()
    out = batch(cache, [{"text": t} for t in TEXTS])
    SECONDS["mlxk embed --batch"] = time.perf_counter() - started
    return out


def test_batch_equals_the_reference_on_50_mixed_texts(batched, expected, ref, capsys):
    assert [r["text"] for r in batched] == TEXTS
    ours = np.array([r["embedding"] for r in batched], dtype=np.float32)
    assert ours.shape == (len(TEXTS), DIMENSIONS)
    cos = cosines(ours, expected)
    diff = np.abs(ours - expected).max(axis=1)
    with capsys.disabled():
        worst = int(np.argmin(cos))
        print(f"\n[embed parity] {len(TEXTS)} texts: min cosine 1 - {1 - cos.min():.2e} (text {worst}: "
              f"{TEXTS[worst][:40]!r}), max abs diff {diff.max():.3e} (text {int(np.argmax(diff))}), "
              f"mean cosine 1 - {1 - cos.mean():.2e}; "
              + ", ".join(f"{k} {v:.1f} s" for k, v in SECONDS.items()) + f" (reference BLAS: {ref.blas})")
    bad = [(i, TEXTS[i][:40], float(cos[i]), float(diff[i])) for i in range(len(TEXTS)) if cos[i] < COSINE]
    assert not bad, bad
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)


def test_tokens_and_truncated_are_the_reference_tokenizers(batched, ref):
    counts, cut = ref.token_counts(TEXTS), ref.truncated(TEXTS)
    assert sum(cut) >= 4, "the texts must include several over-long ones"
    assert cut[TEXTS.index("word " * 254)] is False and cut[TEXTS.index("word " * 255)] is True
    for i, (record, tokens, truncated) in enumerate(zip(batched, counts, cut)):
        meta = record["metadata"]
        assert (meta["tokens"], meta["truncated"]) == (tokens, truncated), (i, TEXTS[i][:60], meta)
        assert meta["model"] == NAME and meta["dimensions"] == DIMENSIONS and meta["device"]
    assert len({r["metadata"]["content_hash"] for r in batched}) == 1


def test_texts_embedded_singly_equal_the_batch(cache, batched, expected):
    by_text = {r["text"]: np.array(r["embedding"], dtype=np.float32) for r in batched}
    for text in SINGLES:
        proc = mlxk(cache, "embed", NAME, text)
        (record,) = records(proc)
        single = np.array(record["embedding"], dtype=np.float32)
        assert record["text"] == text
        assert np.abs(single - by_text[text]).max() <= SAME, (text[:40], np.abs(single - by_text[text]).max())
        agree(single, expected[TEXTS.index(text)], [text])
        assert ("cut" in proc.stderr) == record["metadata"]["truncated"], proc.stderr


def test_several_texts_as_arguments(cache, batched):
    out = records(mlxk(cache, "embed", NAME, "hello world", "a", "mlx knife"))
    assert [r["text"] for r in out] == ["hello world", "a", "mlx knife"]
    by_text = {r["text"]: r["embedding"] for r in batched}
    for r in out:
        assert np.abs(np.array(r["embedding"]) - by_text[r["text"]]).max() <= SAME


def test_batch_passes_other_fields_through(cache, batched):
    rows = [
        {"id": 7, "text": "hello world", "tags": ["a", "b"], "meta": {"source": "x.md", "page": None}},
        {"text": "a", "score": 0.5, "ok": True},
        {"text": "mlx knife"},
    ]
    out = batch(cache, rows)
    assert len(out) == 3
    by_text = {r["text"]: r["embedding"] for r in batched}
    for row, record in zip(rows, out):
        for key, value in row.items():
            assert record[key] == value, (key, record.get(key))
        assert set(record) == set(row) | {"embedding", "metadata"}
        assert np.abs(np.array(record["embedding"]) - by_text[row["text"]]).max() <= SAME


def test_text_from_stdin(cache, ref):
    text = "line one\nline two"
    (record,) = records(mlxk(cache, "embed", NAME, "-", stdin=text + "\n"))
    assert record["text"] == text
    agree(record["embedding"], ref.embed([text]), [text])
    assert record["metadata"]["tokens"] == ref.token_counts([text])[0]


def test_json_envelope(cache, batched):
    texts = ["hello world", CODE]
    envelope = json.loads(mlxk(cache, "embed", NAME, *texts, "--json").stdout)
    assert envelope["status"] == "success" and envelope["command"] == "embed" and envelope["error"] is None
    out = envelope["data"]["records"]
    assert [r["text"] for r in out] == texts
    by_text = {r["text"]: r for r in batched}
    for r in out:
        assert r["metadata"] == by_text[r["text"]]["metadata"]
        assert np.abs(np.array(r["embedding"]) - by_text[r["text"]]["embedding"]).max() <= SAME


def test_dimensions_keeps_the_first_n_at_unit_length(cache, expected):
    texts = ["hello world", CODE]
    out = records(mlxk(cache, "embed", NAME, *texts, "--dimensions", "64"))
    for r in out:
        vector = np.array(r["embedding"], dtype=np.float32)
        assert vector.shape == (64,) and r["metadata"]["dimensions"] == 64
        assert abs(np.linalg.norm(vector) - 1) < 1e-5
        full = expected[TEXTS.index(r["text"])][:64]
        agree(vector, full / np.linalg.norm(full), [r["text"]])
    for n in ("0", str(DIMENSIONS + 1)):
        proc = mlxk(cache, "embed", NAME, "hello", "--dimensions", n, expect=2)
        assert "--dimensions" in proc.stderr and proc.stdout == "", proc.stderr
    full = records(mlxk(cache, "embed", NAME, "hello world", "--dimensions", str(DIMENSIONS)))[0]
    agree(full["embedding"], expected[TEXTS.index("hello world")], ["hello world"])


def test_query_on_a_model_without_a_query_prompt(cache, batched):
    proc = mlxk(cache, "embed", NAME, "hello world", "--query")
    assert "query" in proc.stderr
    by_text = {r["text"]: r["embedding"] for r in batched}
    assert np.abs(np.array(records(proc)[0]["embedding"]) - by_text["hello world"]).max() <= SAME
    document = records(mlxk(cache, "embed", NAME, "hello world", "--document"))[0]
    assert np.abs(np.array(document["embedding"]) - by_text["hello world"]).max() <= SAME


def test_no_truncate_refuses_an_over_long_text(cache):
    long_text = LONG
    proc = mlxk(cache, "embed", NAME, "hello", long_text, "--no-truncate", expect=1)
    assert str(MAX_TOKENS) in proc.stderr and "text 2" in proc.stderr, proc.stderr
    envelope = json.loads(mlxk(cache, "embed", NAME, long_text, "--no-truncate", "--json", expect=1).stdout)
    assert envelope["status"] == "error" and envelope["error"]["type"] == "input_too_long"
    # At the limit it still embeds.
    (fits,) = records(mlxk(cache, "embed", NAME, "word " * 254, "--no-truncate"))
    assert fits["metadata"] == {**fits["metadata"], "tokens": MAX_TOKENS, "truncated": False}
    # Without the flag the cut is said on stderr.
    assert "cut" in mlxk(cache, "embed", NAME, long_text).stderr


def test_a_chat_model_is_refused(cache):
    proc = mlxk(cache, "embed", CHAT, "hello", expect=1)
    assert CHAT in proc.stderr and "embedding" in proc.stderr and proc.stdout == ""
    envelope = json.loads(mlxk(cache, "embed", CHAT, "hello", "--json", expect=1).stdout)
    assert envelope["error"]["type"] == "not_an_embedding_model"


def test_a_malformed_batch_line_names_its_number(cache):
    for bad in ("not json", '{"id": 3}', '{"text": 5}', '["text"]'):
        stdin = '{"text": "a"}\n{"text": "b"}\n' + bad + '\n{"text": "c"}\n'
        proc = mlxk(cache, "embed", NAME, "--batch", stdin=stdin, expect=2)
        assert "line 3" in proc.stderr, (bad, proc.stderr)


# --- server ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(cache):
    server = Server(cache)
    yield server
    assert server.stop() == 0, server.stderr()


SERVER_TEXTS = ["hello world", "日本語のテキストです。東京は日本の首都です。", CODE, LONG,
                "emoji 🙂🚀🎉 and a family 👨‍👩‍👧", "a", PARAGRAPH * 2, "The capital of France is Paris."]


def embeddings(server, **body) -> httpx.Response:
    return httpx.post(server.base + "/v1/embeddings", json={"model": NAME, **body}, timeout=120)


def test_openai_client_base64_and_float_equal_the_reference(server, expected):
    client = server.client()
    want = expected[[TEXTS.index(t) for t in SERVER_TEXTS]]
    default = client.embeddings.create(model=NAME, input=SERVER_TEXTS)  # asks for base64
    floats = client.embeddings.create(model=NAME, input=SERVER_TEXTS, encoding_format="float")
    for reply in (default, floats):
        assert reply.model == NAME and [d.index for d in reply.data] == list(range(len(SERVER_TEXTS)))
        agree([d.embedding for d in reply.data], want, SERVER_TEXTS)
    a = np.array([d.embedding for d in default.data], dtype=np.float32)
    b = np.array([d.embedding for d in floats.data], dtype=np.float32)
    assert np.abs(a - b).max() <= SAME


def test_raw_base64_is_little_endian_float32_of_the_float_answer(server):
    raw = embeddings(server, input=SERVER_TEXTS[:3], encoding_format="base64")
    floats = embeddings(server, input=SERVER_TEXTS[:3], encoding_format="float")
    assert raw.status_code == 200 and floats.status_code == 200, (raw.text, floats.text)
    for b64, f in zip(raw.json()["data"], floats.json()["data"]):
        decoded = np.frombuffer(base64.b64decode(b64["embedding"]), dtype="<f4")
        assert decoded.shape == (DIMENSIONS,)
        assert np.abs(decoded - np.array(f["embedding"], dtype=np.float32)).max() <= SAME


def test_answer_shape_usage_and_truncated(server, ref):
    response = embeddings(server, input=SERVER_TEXTS, encoding_format="float")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["model"] == NAME
    tokens = sum(ref.token_counts(SERVER_TEXTS))
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    for i, (item, cut) in enumerate(zip(body["data"], ref.truncated(SERVER_TEXTS))):
        assert item["object"] == "embedding" and item["index"] == i
        assert item.get("truncated", False) is cut, (i, item.get("truncated"))


def test_a_single_string(server, expected):
    reply = server.client().embeddings.create(model=NAME, input="hello world", encoding_format="float")
    assert len(reply.data) == 1 and reply.data[0].index == 0
    agree(reply.data[0].embedding, expected[TEXTS.index("hello world")], ["hello world"])


def test_token_arrays_equal_their_texts(server, ref):
    texts = ["hello world", CODE]
    by_text = [d["embedding"] for d in embeddings(server, input=texts, encoding_format="float").json()["data"]]
    ids = [ref.token_ids(t) for t in texts]
    assert ids[0][0] == ref.tokenizer.cls_token_id and ids[0][-1] == ref.tokenizer.sep_token_id
    one = embeddings(server, input=ids[0], encoding_format="float")
    assert one.status_code == 200, one.text
    assert np.abs(np.array(one.json()["data"][0]["embedding"]) - by_text[0]).max() <= SAME
    assert one.json()["usage"]["prompt_tokens"] == len(ids[0])
    many = embeddings(server, input=ids, encoding_format="float")
    assert many.status_code == 200, many.text
    for item, want in zip(many.json()["data"], by_text):
        assert np.abs(np.array(item["embedding"]) - want).max() <= SAME
    reply = server.client().embeddings.create(model=NAME, input=ids, encoding_format="float")
    agree([d.embedding for d in reply.data], ref.embed(texts), texts)


def test_dimensions(server, expected):
    texts = ["hello world", CODE]
    reply = server.client().embeddings.create(model=NAME, input=texts, dimensions=64)
    for d, text in zip(reply.data, texts):
        vector = np.array(d.embedding, dtype=np.float32)
        assert vector.shape == (64,) and abs(np.linalg.norm(vector) - 1) < 1e-5
        full = expected[TEXTS.index(text)][:64]
        agree(vector, full / np.linalg.norm(full), [text])


def test_input_type_query_and_document(server, expected):
    for kind in ("query", "document"):
        response = embeddings(server, input="hello world", input_type=kind, encoding_format="float")
        assert response.status_code == 200, (kind, response.text)
        agree(response.json()["data"][0]["embedding"], expected[TEXTS.index("hello world")], ["hello world"])


def test_openai_errors(server):
    unknown = httpx.post(server.base + "/v1/embeddings", json={"model": "no-such-model", "input": "hi"})
    assert unknown.status_code == 404 and "no-such-model" in error(unknown)["message"], unknown.text
    for n in (0, DIMENSIONS + 1):
        response = embeddings(server, input="hi", dimensions=n)
        assert response.status_code == 400, (n, response.text)
        err = error(response)
        assert err["param"] == "dimensions" or "dimensions" in err["message"], err
    chat = httpx.post(server.base + "/v1/embeddings", json={"model": CHAT, "input": "hi"})
    assert chat.status_code == 400 and CHAT in error(chat)["message"], chat.text
    empty = embeddings(server, input=[])
    assert empty.status_code == 400 and (error(empty)["param"] == "input" or "input" in error(empty)["message"]), empty.text
    with pytest.raises(openai.NotFoundError):
        server.client().embeddings.create(model="nothing-like-it", input="hi")
    with pytest.raises(openai.BadRequestError):
        server.client().embeddings.create(model=CHAT, input="hi")


def test_truncate_false_refuses_an_over_long_input_naming_it_and_the_limit(server):
    too_long = embeddings(server, input=["hello", LONG], truncate=False)
    assert too_long.status_code == 400, too_long.text
    err = error(too_long)
    # As the CLI says it: which input, and how many tokens the model reads.
    assert err["param"] == "input" and "1" in err["message"] and str(MAX_TOKENS) in err["message"], err
    fits = embeddings(server, input="word " * 254, truncate=False, encoding_format="float")
    assert fits.status_code == 200 and fits.json()["usage"]["prompt_tokens"] == MAX_TOKENS, fits.text


def test_a_chat_completion_naming_the_embedding_model_is_refused(server):
    response = httpx.post(server.base + "/v1/chat/completions", timeout=60,
                          json={"model": NAME, "messages": [{"role": "user", "content": "hi"}]})
    assert response.status_code == 400, response.text
    message = error(response)["message"]
    assert NAME in message and "embedding" in message, message


def test_ollama_embed_and_embeddings_raw(server, ref, expected):
    texts = SERVER_TEXTS[:4]
    response = httpx.post(server.base + "/api/embed", json={"model": NAME, "input": texts}, timeout=120)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"] == NAME
    agree(body["embeddings"], expected[[TEXTS.index(t) for t in texts]], texts)
    assert body["prompt_eval_count"] == sum(ref.token_counts(texts))
    assert isinstance(body["total_duration"], int) and isinstance(body["load_duration"], int)
    assert body["total_duration"] >= body["load_duration"] >= 0
    one = httpx.post(server.base + "/api/embed", json={"model": NAME, "input": "hello world"}, timeout=120).json()
    assert len(one["embeddings"]) == 1
    agree(one["embeddings"][0], expected[TEXTS.index("hello world")], ["hello world"])
    short = httpx.post(server.base + "/api/embed", json={"model": NAME, "input": "hello world", "dimensions": 64}).json()
    full = expected[TEXTS.index("hello world")][:64]
    agree(short["embeddings"][0], full / np.linalg.norm(full), ["hello world"])
    legacy = httpx.post(server.base + "/api/embeddings", json={"model": NAME, "prompt": "hello world"}, timeout=120)
    assert legacy.status_code == 200, legacy.text
    agree(legacy.json()["embedding"], expected[TEXTS.index("hello world")], ["hello world"])


def test_ollama_errors(server):
    def post(path, body):
        response = httpx.post(server.base + path, json=body, timeout=120)
        assert 400 <= response.status_code < 500 and set(response.json()) == {"error"}, response.text
        return response
    unknown = post("/api/embed", {"model": "no-such-model", "input": "hi"})
    assert unknown.status_code == 404 and "no-such-model" in unknown.json()["error"]
    assert post("/api/embeddings", {"model": "no-such-model", "prompt": "hi"}).status_code == 404
    assert CHAT in post("/api/embed", {"model": CHAT, "input": "hi"}).json()["error"]
    assert post("/api/embed", {"model": NAME, "input": LONG, "truncate": False}).status_code == 400
    cut = httpx.post(server.base + "/api/embed", json={"model": NAME, "input": LONG}, timeout=120)
    assert cut.status_code == 200, cut.text


def test_official_ollama_client(server, expected):
    client = ollama.Client(host=server.base)
    texts = ["hello world", CODE]
    reply = client.embed(model=NAME, input=texts)
    agree(reply.embeddings, expected[[TEXTS.index(t) for t in texts]], texts)
    legacy = client.embeddings(model=NAME, prompt="hello world")
    agree(legacy.embedding, expected[TEXTS.index("hello world")], ["hello world"])
    with pytest.raises(ollama.ResponseError) as raised:
        client.embed(model="no-such-model", input="hi")
    assert raised.value.status_code == 404
