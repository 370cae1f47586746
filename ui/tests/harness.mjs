// The UI in headless Chromium with Tauri's IPC mocked: no Rust app. Serves the built pages
// (ui/dist) on 127.0.0.1, launches the system Chromium through playwright-core and installs in
// every page, before its scripts run, what Tauri 2 would put in `window.__TAURI_INTERNALS__`
// (as @tauri-apps/api/mocks.js's mockIPC + mockWindows do, events included). Every `invoke`
// goes to a handler table in the test (keyed by the command names of bindings.ts) and is
// recorded, so tests can assert on the arguments the UI sent.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const DIST = fileURLToPath(new URL("../dist/", import.meta.url));
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png" };

/** A static server for ui/dist on a free port; resolves to its base URL and a close function. */
export async function serveDist() {
  const server = createServer(async (request, response) => {
    const path = decodeURIComponent(new URL(request.url, "http://x").pathname);
    if (path === "/favicon.ico") {
      response.writeHead(204).end();
      return;
    }
    const file = normalize(join(DIST, path === "/" ? "library.html" : path));
    if (!file.startsWith(DIST.endsWith(sep) ? DIST : DIST + sep)) {
      response.writeHead(403).end();
      return;
    }
    try {
      const body = await readFile(file);
      response.writeHead(200, { "content-type": TYPES[extname(file)] ?? "application/octet-stream" }).end(body);
    } catch {
      response.writeHead(404).end("not found");
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

export function launch() {
  return chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--disable-gpu", "--no-first-run"] });
}

/** Thrown by a handler: the command fails with this CommandError (`{ kind, message }`). */
export class CommandFailure {
  constructor(kind, message) {
    this.error = { kind, message };
  }
}
export const fail = (kind, message) => {
  throw new CommandFailure(kind, message);
};

// Runs in the page before any of its scripts. `label` is the window's label; `__mlxkInvoke` is
// the Node side (page.exposeFunction), answering { ok } or { err }.
function installMockInternals(label) {
  const callbacks = new Map();
  const listeners = new Map(); // event name -> [{ id, handler, target }]
  let nextId = 1;
  const transformCallback = (callback, once = false) => {
    const id = nextId++;
    callbacks.set(id, (data) => {
      if (once) callbacks.delete(id);
      return callback && callback(data);
    });
    return id;
  };
  const runCallback = (id, data) => {
    const callback = callbacks.get(id);
    if (callback) callback(data);
  };
  const eventPlugin = (cmd, args) => {
    switch (cmd) {
      case "plugin:event|listen": {
        if (!listeners.has(args.event)) listeners.set(args.event, []);
        listeners.get(args.event).push({ id: args.handler, target: args.target });
        return args.handler;
      }
      case "plugin:event|unlisten": {
        const list = listeners.get(args.event) ?? [];
        const index = list.findIndex((l) => l.id === args.eventId);
        if (index !== -1) list.splice(index, 1);
        return null;
      }
      case "plugin:event|emit":
      case "plugin:event|emit_to":
        window.__mlxkEmit(args.event, args.payload);
        return null;
    }
    throw new Error(`unknown event command ${cmd}`);
  };
  // What the Rust side's emit would do: run every listener of `event`.
  window.__mlxkEmit = (event, payload) => {
    for (const { id } of [...(listeners.get(event) ?? [])]) runCallback(id, { event, id, payload });
  };
  window.__mlxkListeners = () => Object.fromEntries([...listeners].map(([event, list]) => [event, list.length]));
  window.__TAURI_INTERNALS__ = {
    metadata: { currentWindow: { label }, currentWebview: { windowLabel: label, label } },
    transformCallback,
    unregisterCallback: (id) => callbacks.delete(id),
    runCallback,
    callbacks,
    convertFileSrc: (path, protocol = "asset") => `${protocol}://localhost/${encodeURIComponent(path)}`,
    invoke: async (cmd, args = {}) => {
      if (cmd.startsWith("plugin:event|")) return eventPlugin(cmd, args);
      const answer = await window.__mlxkInvoke(cmd, args);
      if ("err" in answer) throw answer.err;
      return answer.ok;
    },
  };
  window.__TAURI_EVENT_PLUGIN_INTERNALS__ = { unregisterListener: () => {} };
}

/** A running server's status as the app sends it. `root` stands for what the app makes of the
 * bound address (src-tauri/src/client_urls.rs, tested there): given, never derived here. */
export function running(address, { root = `http://${address}`, exposed = false, everyInterface = false, keyRequired = false } = {}) {
  return {
    state: "running", address, exposed, every_interface: everyInterface, key_required: keyRequired,
    urls: [
      { api: "openai", name: "OpenAI", url: `${root}/v1`, used_by: "OpenAI SDKs, Codex (Responses API)" },
      { api: "anthropic", name: "Anthropic", url: root, used_by: "Claude Code, Anthropic SDKs" },
      { api: "ollama", name: "Ollama", url: root, used_by: "Ollama clients, Open WebUI, VS Code" },
    ],
  };
}

/** Handlers every page needs unless a test replaces them. */
export const defaultHandlers = () => ({
  server_status: () => ({ state: "stopped" }),
  open_window: () => null,
  transfers_list: () => [],
  launch_at_login: () => false,
  resident_models: () => [],
});

/**
 * Opens `page` ("library", "settings", "push") in a fresh browser context with the IPC mocked by
 * `handlers` (command name -> (args, call number) => value; throw via `fail(kind, message)`).
 * Returns { page, calls, callsOf, emit, errors, close }: `calls` is every invoke in order, as
 * { cmd, args }; `errors` the page's uncaught errors and console errors.
 */
export async function openPage(browser, baseUrl, pageName, handlers = {}) {
  const table = { ...defaultHandlers(), ...handlers };
  const calls = [];
  const errors = [];
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  context.setDefaultTimeout(5000); // a failing wait fails fast (Playwright's default is 30 s)
  const page = await context.newPage();
  page.on("pageerror", (error) => errors.push(`pageerror: ${error.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") errors.push(`console: ${msg.text()}`);
  });
  await page.exposeFunction("__mlxkInvoke", async (cmd, args) => {
    calls.push({ cmd, args });
    const handler = table[cmd];
    if (!handler) return { err: { kind: "not_mocked", message: `no mock for command ${cmd}` } };
    try {
      return { ok: (await handler(args, calls.filter((c) => c.cmd === cmd).length)) ?? null };
    } catch (error) {
      if (error instanceof CommandFailure) return { err: error.error };
      errors.push(`handler ${cmd} threw: ${error.stack ?? error}`); // a bug in the test
      throw error;
    }
  });
  await page.addInitScript(installMockInternals, pageName);
  await page.goto(`${baseUrl}/${pageName}.html`);
  return {
    page,
    calls,
    errors,
    callsOf: (cmd) => calls.filter((c) => c.cmd === cmd).map((c) => c.args),
    /** Emits a Tauri event to the page's listeners (as the Rust side would). */
    emit: (event, payload) => page.evaluate(([e, p]) => window.__mlxkEmit(e, p), [event, payload]),
    /** Waits until the page listens to `event` (listeners register asynchronously). */
    listening: (event) => page.waitForFunction((e) => (window.__mlxkListeners()[e] ?? 0) > 0, event),
    close: () => context.close(),
  };
}

/** With $UI_SCREENSHOTS set, saves a screenshot of `page` there as `name`.png (for notes and
 * reviews; the tests do not depend on it). */
export async function snap(page, name) {
  const dir = process.env.UI_SCREENSHOTS;
  if (dir) await page.screenshot({ path: join(dir, `${name}.png`) });
}

/** Polls `check` until it returns something truthy (for calls that arrive asynchronously). */
export async function until(what, check, timeout = 5000) {
  const end = Date.now() + timeout;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
