// The chat pane of the Library window, in headless Chromium with Tauri's IPC mocked (see
// harness.mjs) and a small fake of the server's streaming /v1/chat/completions on loopback: the
// pane talks to the server over HTTP as any client does.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, describe, test } from "node:test";
import { launch, openPage, running, serveDist, snap, until } from "./harness.mjs";

let browser;
let pages;
before(async () => {
  [browser, pages] = await Promise.all([launch(), serveDist()]);
});
after(async () => {
  await browser?.close();
  await pages?.close();
});

/** A fake OpenAI server: streams `pieces` as chat chunks, `gapMs` apart, then usage and
 * [DONE]; with `hold`, it stops after the first piece and keeps the stream open (until the
 * client goes away). Records each request's body and Authorization header. */
async function fakeServer({ pieces = ["Paris", " is", " the", " capital."], gapMs = 30, hold = false, status = 200 } = {}) {
  const requests = [];
  let closedByClient = false;
  const server = createServer(async (request, response) => {
    const cors = {
      "access-control-allow-origin": request.headers.origin ?? "*",
      "access-control-allow-headers": "content-type, authorization",
      "access-control-allow-methods": "POST",
    };
    if (request.method === "OPTIONS") return response.writeHead(204, cors).end();
    let body = "";
    for await (const chunk of request) body += chunk;
    requests.push({ path: request.url, body: JSON.parse(body), authorization: request.headers.authorization ?? null });
    if (status !== 200) {
      return response.writeHead(status, { ...cors, "content-type": "application/json" })
        .end(JSON.stringify({ error: { message: "model 'nope' is not in the cache", type: "invalid_request_error", code: "model_not_found" } }));
    }
    response.writeHead(200, { ...cors, "content-type": "text/event-stream", "cache-control": "no-cache" });
    response.on("close", () => (closedByClient = !response.writableFinished));
    const send = (data) => response.write(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`);
    const chunk = (content) => ({ id: "chatcmpl-1", object: "chat.completion.chunk", choices: [{ index: 0, delta: { content }, finish_reason: null }] });
    send({ id: "chatcmpl-1", object: "chat.completion.chunk", choices: [{ index: 0, delta: { role: "assistant" }, finish_reason: null }] });
    for (const [i, piece] of pieces.entries()) {
      await new Promise((r) => setTimeout(r, gapMs));
      if (response.destroyed) return;
      send(chunk(piece));
      if (hold && i === 0) return; // never ends: the client must stop it
    }
    send({ id: "chatcmpl-1", object: "chat.completion.chunk", choices: [{ index: 0, delta: {}, finish_reason: "stop" }] });
    send({ id: "chatcmpl-1", object: "chat.completion.chunk", choices: [], usage: { prompt_tokens: 9, completion_tokens: pieces.length, total_tokens: 9 + pieces.length } });
    send("[DONE]");
    response.end();
  });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    address: `127.0.0.1:${server.address().port}`,
    requests,
    closedByClient: () => closedByClient,
    close: () => new Promise((r) => {
      server.closeAllConnections();
      server.close(r);
    }),
  };
}

const MODEL = {
  name: "mlx-community/SmolLM2-135M-Instruct", display_name: "mlx-community/SmolLM2-135M-Instruct", source: { kind: "cache" },
  commit: "0123456789abcdef0123456789abcdef01234567", size_bytes: 270_000_000, framework: "MLX", model_type: "chat",
  quantization: null, healthy: true, health_reason: "all integrity checks passed", runnable: true, runtime_reason: null,
  last_modified: "2026-05-01T10:00:00Z", last_used: null, download: null,
};
const BROKEN = { ...MODEL, name: "acme/broken", display_name: "acme/broken", healthy: false, runnable: false };
// Runnable, but it makes vectors: never offered for a chat.
const EMBEDDER = { ...MODEL, name: "acme/all-MiniLM-L6-v2", display_name: "acme/all-MiniLM-L6-v2", model_type: "embedding" };
// Runnable, but it reads audio: never offered for a chat either.
const WHISPER = { ...MODEL, name: "mlxk-test/whisper-tiny.en-mlx", display_name: "mlxk-test/whisper-tiny.en-mlx", model_type: "audio" };
const library = () => ({ cache_root: "/hub", workspace_home: null, models: [MODEL, BROKEN, EMBEDDER, WHISPER], total_bytes: 1 });

async function openChat(t, handlers) {
  const ui = await openPage(browser, pages.url, "library", { list_models: () => library(), ...handlers });
  t.after(() => ui.close());
  await ui.page.locator("#model-rows tr[data-model]").first().waitFor();
  await ui.page.click("#tab-chat");
  return ui;
}

/** A question whose answer streams its first piece, then holds (the server keeps it open). */
async function startHeldAnswer(t) {
  const fake = await fakeServer({ hold: true });
  t.after(() => fake.close());
  const ui = await openChat(t, {
    server_status: () => running(fake.address),
    chat_api_key: () => null,
  });
  const { page } = ui;
  await page.fill("#chat-input", "Tell me a long story.");
  await page.click("#chat-send");
  await until("the first piece", async () => (await page.textContent('#chat-transcript [data-role="assistant"] .text')) === "Paris");
  return { fake, ui, page };
}

describe("chat", () => {
  test("a question streams its answer from /v1/chat/completions with the options, then the stats", async (t) => {
    const fake = await fakeServer();
    t.after(() => fake.close());
    const ui = await openChat(t, {
      server_status: () => running(fake.address),
      chat_api_key: () => "sk-test-key",
    });
    const { page } = ui;
    assert.deepEqual(await page.locator("#chat-model option").allTextContents(), [MODEL.name], "only models that can chat");
    await page.click("#chat-options summary");
    await page.fill("#chat-system", "Answer in one sentence.");
    await page.fill("#chat-temperature", "0");
    await page.fill("#chat-stop", "###, END");
    await page.fill("#chat-max-tokens", "64");
    await page.fill("#chat-input", "What is the capital of France?");
    await page.press("#chat-input", "Enter");
    await until("the answer", async () => (await page.textContent('#chat-transcript [data-role="assistant"] .text')) === "Paris is the capital.");
    await until("the stats", async () => /tokens\/s/.test(await page.textContent("#chat-stats")));
    await snap(page, "chat-pane");
    await page.emulateMedia({ colorScheme: "dark" });
    await snap(page, "chat-pane-dark");
    await page.emulateMedia({ colorScheme: "light" });
    assert.match(await page.textContent("#chat-stats"), /^\d+\.\d\d s to first token · \d+(\.\d)? tokens\/s · 4 tokens$/);
    assert.equal(fake.requests.length, 1);
    assert.equal(fake.requests[0].path, "/v1/chat/completions");
    assert.equal(fake.requests[0].authorization, "Bearer sk-test-key");
    assert.deepEqual(fake.requests[0].body, {
      model: MODEL.name,
      messages: [{ role: "system", content: "Answer in one sentence." }, { role: "user", content: "What is the capital of France?" }],
      stream: true, stream_options: { include_usage: true }, temperature: 0, stop: ["###", "END"], max_tokens: 64,
    });
    assert.equal(await page.isVisible("#chat-send"), true);
    assert.equal(await page.isVisible("#chat-stop-button"), false);

    // The conversation goes on with the answer in it.
    await page.fill("#chat-input", "And of Italy?");
    await page.click("#chat-send");
    await until("the second request", () => fake.requests.length === 2);
    assert.deepEqual(fake.requests[1].body.messages.slice(1), [
      { role: "user", content: "What is the capital of France?" },
      { role: "assistant", content: "Paris is the capital." },
      { role: "user", content: "And of Italy?" },
    ]);
    assert.deepEqual(ui.errors, []);
  });

  test("Stop cancels a running answer: the request is closed and what came stays", async (t) => {
    const { fake, ui, page } = await startHeldAnswer(t);
    assert.equal(await page.isVisible("#chat-stop-button"), true);
    assert.equal(fake.requests[0].authorization, null, "no key, no Authorization header");
    await page.click("#chat-stop-button");
    await until("the stopped mark", async () => (await page.locator("#chat-transcript .stopped").count()) === 1);
    await until("the server to see the client go", () => fake.closedByClient());
    assert.equal(await page.isVisible("#chat-send"), true);
    assert.equal(await page.textContent("#chat-message"), "");
    assert.deepEqual(ui.errors, []);
  });

  test("New chat while an answer streams starts clean: the cut answer stays out of the next conversation", async (t) => {
    const { fake, ui, page } = await startHeldAnswer(t);
    await page.click("#chat-clear");
    await until("the pane to be free", () => page.isVisible("#chat-send"));
    assert.equal(await page.locator("#chat-transcript [data-role]").count(), 0);
    await page.fill("#chat-input", "Hello?");
    await page.click("#chat-send");
    await until("the second request", () => fake.requests.length === 2);
    assert.deepEqual(fake.requests[1].body.messages, [{ role: "user", content: "Hello?" }]);
    assert.deepEqual(ui.errors, []);
  });

  test("with the server stopped the pane offers to start it; a refused request shows its message", async (t) => {
    const fake = await fakeServer({ status: 404 });
    t.after(() => fake.close());
    const ui = await openChat(t, {
      server_status: () => ({ state: "stopped" }),
      server_start: () => running(fake.address),
      chat_api_key: () => null,
    });
    const { page } = ui;
    await until("the offer", async () => /not running/.test(await page.textContent("#chat-message")));
    assert.equal(await page.isVisible("#chat-start-server"), true);
    await page.click("#chat-start-server");
    await until("server_start", () => ui.callsOf("server_start").length === 1);
    await until("the offer to go", async () => !(await page.isVisible("#chat-start-server")));
    await page.fill("#chat-input", "Hello");
    await page.click("#chat-send");
    await until("the refusal", async () => /not in the cache/.test(await page.textContent("#chat-message")));
    assert.match(await page.getAttribute("#chat-message", "class"), /\berror\b/);
    // The browser logs the refused request itself; nothing else went wrong.
    assert.deepEqual(ui.errors.filter((e) => !/Failed to load resource: .* 404/.test(e)), []);
  });

  test("Chat… in the details pane opens the pane on that model", async (t) => {
    const other = { ...MODEL, name: "mlx-community/Qwen3-4B-4bit", display_name: "mlx-community/Qwen3-4B-4bit" };
    const ui = await openPage(browser, pages.url, "library", {
      list_models: () => ({ ...library(), models: [MODEL, other, BROKEN, EMBEDDER, WHISPER] }),
      model_details: ({ name }) => ({
        summary: [other, EMBEDDER, WHISPER].find((m) => m.name === name) ?? MODEL, refs: [], snapshots: [], path: "/x", architecture: null,
        context_length: null, capabilities: name === WHISPER.name ? ["audio"] : [], problems: [], files: [], config_json: null,
      }),
    });
    t.after(() => ui.close());
    const { page } = ui;
    await page.click(`#model-rows tr[data-model="${EMBEDDER.name}"]`);
    await until("the embedder's details", async () => (await page.textContent("#details")).includes("embedding"));
    assert.equal(await page.locator("#try-chat").count(), 0, "no chat with an embedding model");
    await page.click(`#model-rows tr[data-model="${WHISPER.name}"]`);
    await until("the speech model's details", async () => (await page.textContent("#details")).includes("Capabilitiesaudio"));
    assert.equal(await page.locator("#try-chat").count(), 0, "no chat with a speech-to-text model");
    await page.click(`#model-rows tr[data-model="${other.name}"]`);
    await page.click("#try-chat");
    assert.equal(await page.isVisible("#chat"), true);
    assert.equal(await page.isVisible("#model-rows"), false);
    assert.equal(await page.inputValue("#chat-model"), other.name);
    assert.deepEqual(ui.errors, []);
  });
});
