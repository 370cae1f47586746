// UI logic of the three windows, in headless Chromium with Tauri's IPC mocked (see harness.mjs).
// Run by scripts/ui-test.sh (`node --test ui/tests/` after building ui/dist). The real app is
// tested end to end by scripts/e2e.sh; these tests cover the UI's own behaviour quickly.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { fail, launch, openPage, running, serveDist, snap, until } from "./harness.mjs";

let browser;
let server;
before(async () => {
  [browser, server] = await Promise.all([launch(), serveDist()]);
});
after(async () => {
  await browser?.close();
  await server?.close();
});

/** Opens a page for one test and closes it afterwards; fails the test on page errors. */
async function open(t, pageName, handlers) {
  const ui = await openPage(browser, server.url, pageName, handlers);
  t.after(async () => {
    await ui.close();
  });
  return ui;
}
const noPageErrors = (ui) => assert.deepEqual(ui.errors, [], "the page logged errors");
const texts = (page, selector) => page.locator(selector).allTextContents();
/** Waits until `selector`'s text satisfies `check` (a RegExp or a string it must contain). */
async function textWhen(page, selector, check) {
  const ok = (text) => (check instanceof RegExp ? check.test(text) : text.includes(check));
  try {
    return await until(`${selector} to show ${check}`, async () => {
      const text = (await page.locator(selector).textContent({ timeout: 1000 }).catch(() => null)) ?? "";
      return ok(text) ? text : null;
    });
  } catch (error) {
    const text = await page.locator(selector).textContent({ timeout: 100 }).catch(() => "(absent)");
    throw new Error(`${error.message}; it shows ${JSON.stringify(text)}`);
  }
}

// --- Fixtures -------------------------------------------------------------------------------

const summary = (name, extra = {}) => ({
  name,
  display_name: name,
  source: { kind: "cache" },
  commit: "0123456789abcdef0123456789abcdef01234567",
  size_bytes: 1_000,
  framework: "MLX",
  model_type: "chat",
  quantization: "4-bit",
  healthy: true,
  health_reason: "all integrity checks passed",
  runnable: true,
  runtime_reason: null,
  last_modified: "2026-05-01T10:00:00Z",
  last_used: null,
  download: null,
  ...extra,
});
const DAY = 86_400_000;
const daysAgo = (days) => new Date(Date.now() - days * DAY).toISOString();

const MODELS = [
  summary("mlx-community/Qwen3-4B-4bit", { size_bytes: 2_262_000_000, last_used: daysAgo(3) }),
  summary("mlx-community/Llama-3.2-1B-Instruct-8bit", { size_bytes: 1_310_500_000, quantization: "8-bit" }),
  summary("TheBloke/Mistral-7B-GGUF", {
    size_bytes: 812_340, framework: "GGUF", quantization: null, runnable: false,
    runtime_reason: "GGUF models cannot be run by mlxk",
  }),
  summary("acme/broken-model", {
    size_bytes: 999, healthy: false, health_reason: "model.safetensors is missing", runnable: false,
  }),
];
const library = (models = MODELS) => ({
  cache_root: "/home/me/.cache/huggingface/hub",
  workspace_home: null,
  models,
  total_bytes: models.reduce((sum, m) => sum + m.size_bytes, 0),
});

const details = (name) => {
  const s = MODELS.find((m) => m.name === name);
  return {
    summary: s,
    refs: ["main"],
    snapshots: [{ commit: s.commit, refs: ["main"] }],
    path: `/home/me/.cache/huggingface/hub/models--${name.replace("/", "--")}/snapshots/${s.commit}`,
    architecture: "Qwen3ForCausalLM",
    context_length: 40960,
    capabilities: ["chat", "tools"],
    problems: s.healthy ? [] : [{ code: "broken_symlink", message: s.health_reason }],
    files: [
      { name: "config.json", size_bytes: 1_234 },
      { name: "model.safetensors", size_bytes: s.healthy ? s.size_bytes - 1_234 : null },
    ],
    config_json: '{\n  "model_type": "qwen3"\n}',
  };
};

const planFor = (name) => {
  const folder = `/home/me/.cache/huggingface/hub/models--${name.replace("/", "--")}`;
  return { model: name, source: { kind: "cache" }, snapshot: null, targets: [folder, `${folder}.lock`], freed_bytes: 2_262_000_000, held_locks: [] };
};

// --- Library ----------------------------------------------------------------------------------

describe("library", () => {
  test("rows come from list_models: names, sizes, health badges and the total", async (t) => {
    const ui = await open(t, "library", { list_models: () => library() });
    const { page } = ui;
    await page.locator("#model-rows tr[data-model]").nth(MODELS.length - 1).waitFor();
    assert.deepEqual(await texts(page, "#model-rows tr[data-model] td:nth-child(1)"), MODELS.map((m) => m.name));
    assert.deepEqual(await texts(page, "#model-rows tr[data-model] td:nth-child(4)"), ["2.3 GB", "1.3 GB", "812.3 KB", "999 B"]);
    assert.deepEqual(await texts(page, "#model-rows tr[data-model] td:nth-child(3)"), ["4-bit", "8-bit", "—", "4-bit"]);
    const used = await texts(page, "#model-rows tr[data-model] td:nth-child(6)");
    assert.deepEqual(used.slice(1), ["never", "never", "never"], "only the first model was ever used");
    assert.equal(used[0], "3 days ago", "relative dates");
    assert.equal(await page.getAttribute("#model-rows tr[data-model] td.used time", "title"),
      new Date(MODELS[0].last_used).toLocaleString("en-US"), "the exact time on hover");
    const badges = await page.locator("#model-rows .badge").evaluateAll((nodes) =>
      nodes.map((n) => ({ text: n.textContent, health: n.dataset.health, cls: n.className, title: n.title })));
    assert.deepEqual(badges, [
      { text: "healthy", health: "healthy", cls: "badge good", title: "healthy and runnable" },
      { text: "healthy", health: "healthy", cls: "badge good", title: "healthy and runnable" },
      { text: "healthy*", health: "healthy*", cls: "badge warn", title: "GGUF models cannot be run by mlxk" },
      { text: "unhealthy", health: "unhealthy", cls: "badge bad", title: "model.safetensors is missing" },
    ]);
    assert.equal(await page.textContent("#total-size"), "4 models, 3.6 GB on disk in /home/me/.cache/huggingface/hub");
    assert.deepEqual(ui.callsOf("list_models"), [{}]);
    noPageErrors(ui);
  });

  test("an empty cache and a failing list_models are both shown", async (t) => {
    const empty = await open(t, "library", { list_models: () => library([]) });
    await textWhen(empty.page, "#model-rows", "No models in the cache.");
    const broken = await open(t, "library", { list_models: () => fail("cache_unreadable", "cannot read /nope: permission denied") });
    assert.equal(await textWhen(broken.page, "#library-message", "permission denied"), "cannot read /nope: permission denied");
    assert.match(await broken.page.getAttribute("#library-message", "class"), /\berror\b/);
  });

  test("the search box filters the rows (case-insensitive, by name)", async (t) => {
    const ui = await open(t, "library", { list_models: () => library() });
    const { page } = ui;
    const names = () => texts(page, "#model-rows tr[data-model] td:nth-child(1)");
    await page.locator("#model-rows tr[data-model]").first().waitFor();
    await page.fill("#search", "MLX-COMMUNITY");
    assert.deepEqual(await names(), ["mlx-community/Qwen3-4B-4bit", "mlx-community/Llama-3.2-1B-Instruct-8bit"]);
    await page.fill("#search", "gguf");
    assert.deepEqual(await names(), ["TheBloke/Mistral-7B-GGUF"]);
    await page.fill("#search", "no-such-model");
    assert.deepEqual(await names(), []);
    assert.equal(await page.textContent("#model-rows"), "No model matches.");
    await page.fill("#search", "");
    assert.equal((await names()).length, MODELS.length);
    assert.equal(ui.callsOf("list_models").length, 1, "filtering must not ask the backend again");
    noPageErrors(ui);
  });

  test("selecting a row shows model_details in the details pane", async (t) => {
    const ui = await open(t, "library", {
      list_models: () => library(),
      model_details: ({ name }) => details(name),
    });
    const { page } = ui;
    await page.click('#model-rows tr[data-model="acme/broken-model"]');
    await textWhen(page, "#details h2", "acme/broken-model");
    assert.deepEqual(ui.callsOf("model_details"), [{ name: "acme/broken-model" }]);
    assert.equal(await page.getAttribute('#model-rows tr[data-model="acme/broken-model"]', "class"), "selected");
    const fields = Object.fromEntries(await page.locator("#details .field").evaluateAll((nodes) =>
      nodes.map((n) => [n.querySelector("dt").textContent, n.querySelector("dd").textContent])));
    assert.equal(fields.Health, "model.safetensors is missing");
    assert.equal(fields.Architecture, "Qwen3ForCausalLM");
    assert.equal(fields["Context length"], "40960");
    assert.equal(fields.Capabilities, "chat, tools");
    assert.equal(fields.Size, "999 B");
    assert.equal(fields.Commit, "0123456789abcdef0123456789abcdef01234567");
    assert.equal(fields.Snapshots, "1");
    assert.match(fields.Path, /models--acme--broken-model\/snapshots\//);
    assert.deepEqual(await texts(page, "#details .problems li"), ["model.safetensors is missing"]);
    assert.equal(await page.getAttribute("#details .problems li", "data-kind"), "damaged");
    assert.deepEqual(await texts(page, "#details .advice"), ["Files are missing or damaged: pull it again, or delete it."]);
    assert.equal(fields.Source, "Hugging Face cache");
    assert.deepEqual(await texts(page, "#details .files li"), ["config.json  1.2 KB", "model.safetensors  (missing)"]);

    // Another row replaces the pane.
    await page.click('#model-rows tr[data-model="mlx-community/Qwen3-4B-4bit"]');
    await textWhen(page, "#details h2", "mlx-community/Qwen3-4B-4bit");
    assert.equal(await page.locator("#details .problems").count(), 0);
    assert.equal(await page.locator("#model-rows tr.selected").count(), 1);
    noPageErrors(ui);
  });

  test("Delete… confirms the plan's targets and deletes exactly those", async (t) => {
    const name = "mlx-community/Qwen3-4B-4bit";
    let deleted = false;
    const ui = await open(t, "library", {
      list_models: () => library(deleted ? MODELS.filter((m) => m.name !== name) : MODELS),
      model_details: ({ name: n }) => details(n),
      delete_plan: ({ name: n }) => planFor(n),
      delete_model: ({ name: n, confirmedTargets }) => {
        deleted = true;
        return { model: n, freed_bytes: 2_262_000_000, removed: confirmedTargets };
      },
    });
    const { page } = ui;
    await page.click(`#model-rows tr[data-model="${name}"]`);
    await page.click("#delete");
    await page.locator("#confirm").waitFor({ state: "visible" });
    assert.deepEqual(ui.callsOf("delete_plan"), [{ name }]);
    assert.equal(await page.textContent("#confirm h2"), `Delete ${name} (all snapshots)?`);
    assert.deepEqual(await texts(page, "#confirm-targets li"), planFor(name).targets);
    assert.match(await page.textContent("#confirm .modal-box"), /frees 2\.3 GB/);
    assert.equal(ui.callsOf("delete_model").length, 0, "nothing is deleted before the confirmation");

    await page.click("#confirm-delete");
    await page.locator("#confirm").waitFor({ state: "hidden" });
    assert.deepEqual(ui.callsOf("delete_model"), [{ name, confirmedTargets: planFor(name).targets }]);
    await textWhen(page, "#library-message", `Deleted ${name} (all snapshots), freed 2.3 GB.`);
    assert.doesNotMatch(await page.getAttribute("#library-message", "class"), /\berror\b/);
    // The list is read again: the row is gone, and so is the details pane.
    await until("the row to disappear", async () => (await page.locator(`#model-rows tr[data-model="${name}"]`).count()) === 0);
    assert.equal(await page.locator("#details h2").count(), 0);
    assert.equal(ui.callsOf("list_models").length, 2);
    noPageErrors(ui);
  });

  test("Cancel deletes nothing; a held lock disables the Delete button", async (t) => {
    const name = "mlx-community/Llama-3.2-1B-Instruct-8bit";
    const ui = await open(t, "library", {
      list_models: () => library(),
      model_details: ({ name: n }) => details(n),
      delete_plan: ({ name: n }, call) => ({ ...planFor(n), held_locks: call === 1 ? [] : [`/hub/.locks/${n}/abc.lock`] }),
    });
    const { page } = ui;
    await page.click(`#model-rows tr[data-model="${name}"]`);
    await page.click("#delete");
    await page.locator("#confirm").waitFor({ state: "visible" });
    await page.click("#confirm-cancel");
    await page.locator("#confirm").waitFor({ state: "hidden" });
    await page.click("#delete");
    await page.locator("#confirm").waitFor({ state: "visible" });
    assert.equal(await page.isDisabled("#confirm-delete"), true);
    assert.match(await page.textContent("#confirm .modal-box"), /A download is running \(it holds \/hub\/\.locks\/.*abc\.lock\)/);
    assert.equal(ui.callsOf("delete_model").length, 0);
    noPageErrors(ui);
  });

  test("a plan_changed refusal from delete_model is shown as an error", async (t) => {
    const name = "TheBloke/Mistral-7B-GGUF";
    const refusal = "The cache changed since you confirmed: nothing was deleted. Look again and confirm anew.";
    const ui = await open(t, "library", {
      list_models: () => library(),
      model_details: ({ name: n }) => details(n),
      delete_plan: ({ name: n }) => planFor(n),
      delete_model: () => fail("plan_changed", refusal),
    });
    const { page } = ui;
    await page.click(`#model-rows tr[data-model="${name}"]`);
    await page.click("#delete");
    await page.click("#confirm-delete");
    assert.equal(await textWhen(page, "#library-message", "nothing was deleted"), refusal);
    assert.match(await page.getAttribute("#library-message", "class"), /\berror\b/);
    assert.equal(await page.isVisible("#library-message"), true);
    assert.equal(await page.isHidden("#confirm"), true);
    assert.deepEqual(ui.callsOf("delete_model"), [{ name, confirmedTargets: planFor(name).targets }]);
    // Still listed: nothing was deleted.
    await until("the list to be read again", () => ui.callsOf("list_models").length === 2);
    assert.equal(await page.locator(`#model-rows tr[data-model="${name}"]`).count(), 1);
    noPageErrors(ui);
  });

  // Workspaces of $MLXK_WORKSPACE_HOME: the row shows the folder name and a badge; the commands
  // get the absolute path (the row's `name`).
  const HOME = "/home/me/mlxk-workspaces";
  const workspace = (folder, content, extra = {}) => summary(`${HOME}/${folder}`, {
    display_name: folder,
    source: {
      kind: "workspace", path: `${HOME}/${folder}`, content, managed: content !== "unknown",
      origin: content === "unknown" ? null : "mlx-community/Qwen3-4B-4bit",
      content_hash: content === "unknown" ? null : "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    },
    commit: null,
    ...extra,
  });
  const WORKSPACES = [
    workspace("qwen-clean", "clean"),
    workspace("qwen-edited", "modified"),
    workspace("by-hand", "unknown", { quantization: null }),
  ];
  const withWorkspaces = () => ({ ...library([...MODELS, ...WORKSPACES]), workspace_home: HOME });
  const workspaceDetails = (name) => {
    const s = WORKSPACES.find((m) => m.name === name);
    return { ...details(MODELS[0].name), summary: s, refs: [], snapshots: [], path: name };
  };

  test("workspace rows show the folder name and a workspace/modified badge; details keep the path", async (t) => {
    const ui = await open(t, "library", { list_models: () => withWorkspaces(), model_details: ({ name }) => workspaceDetails(name) });
    const { page } = ui;
    const rowsOf = "#model-rows tr[data-model]";
    await page.locator(rowsOf).nth(MODELS.length + WORKSPACES.length - 1).waitFor();
    assert.deepEqual((await texts(page, `${rowsOf} td:nth-child(1) .name`)).slice(MODELS.length), ["qwen-clean", "qwen-edited", "by-hand"]);
    assert.equal(await page.locator(`${rowsOf} .badge.source`).count(), WORKSPACES.length, "cached models have no source badge");
    const badges = await page.locator(`${rowsOf} .badge.source`).evaluateAll((nodes) =>
      nodes.map((n) => ({ text: n.textContent, source: n.dataset.source, cls: n.className, model: n.closest("tr").dataset.model })));
    assert.deepEqual(badges, [
      { text: "workspace", source: "clean", cls: "badge source info", model: `${HOME}/qwen-clean` },
      { text: "modified", source: "modified", cls: "badge source warn", model: `${HOME}/qwen-edited` },
      { text: "workspace?", source: "unknown", cls: "badge source info", model: `${HOME}/by-hand` },
    ]);
    assert.match(await page.getAttribute(`${rowsOf}[data-model="${HOME}/qwen-edited"] .badge.source`, "title"), /changed since it was cloned or converted/);
    assert.equal(await page.getAttribute(`${rowsOf}[data-model="${HOME}/qwen-edited"] td:nth-child(1)`, "title"), `${HOME}/qwen-edited`);
    assert.match(await page.textContent("#total-size"), new RegExp(`^7 models, .* on disk in /home/me/\\.cache/huggingface/hub and ${HOME}$`));

    // The search matches folder names, not the home's path every workspace shares.
    await page.fill("#search", "qwen-");
    assert.deepEqual(await texts(page, `${rowsOf} td:nth-child(1) .name`), ["qwen-clean", "qwen-edited"]);
    await page.fill("#search", "mlxk-workspaces");
    assert.deepEqual(await texts(page, `${rowsOf} td:nth-child(1) .name`), []);
    await page.fill("#search", "");

    await page.click(`${rowsOf}[data-model="${HOME}/qwen-edited"]`);
    await textWhen(page, "#details h2", "qwen-edited");
    assert.deepEqual(ui.callsOf("model_details"), [{ name: `${HOME}/qwen-edited` }]);
    const fields = Object.fromEntries(await page.locator("#details .field").evaluateAll((nodes) =>
      nodes.map((n) => [n.querySelector("dt").textContent, n.querySelector("dd").textContent])));
    assert.match(fields.Source, /^workspace, changed since it was cloned or converted/);
    assert.equal(fields["Cloned from"], "mlx-community/Qwen3-4B-4bit");
    assert.match(fields["Content hash"], /^sha256:9f86d0/);
    assert.equal(fields.Path, `${HOME}/qwen-edited`);
    assert.equal(fields.Commit, undefined, "a workspace has no commit, refs or snapshots to show");
    noPageErrors(ui);
  });

  test("Delete… on a workspace names its folder, warns that edits are lost, and sends its path", async (t) => {
    const name = `${HOME}/qwen-edited`;
    const plan = {
      model: "qwen-edited", source: WORKSPACES[1].source, snapshot: null, targets: [name], freed_bytes: 2_262_000_000, held_locks: [],
    };
    const ui = await open(t, "library", {
      list_models: () => withWorkspaces(),
      model_details: ({ name: n }) => workspaceDetails(n),
      delete_plan: () => plan,
      delete_model: ({ name: n, confirmedTargets }) => ({ model: n, freed_bytes: plan.freed_bytes, removed: confirmedTargets }),
    });
    const { page } = ui;
    await page.click(`#model-rows tr[data-model="${name}"]`);
    await page.click("#delete");
    await page.locator("#confirm").waitFor({ state: "visible" });
    assert.deepEqual(ui.callsOf("delete_plan"), [{ name }]);
    assert.equal(await page.textContent("#confirm h2"), "Delete the workspace qwen-edited?");
    assert.match(await page.textContent("#confirm .modal-box"), /deletes its folder and everything in it \(2\.3 GB\)/);
    assert.deepEqual(await texts(page, "#confirm-targets li"), [name]);
    assert.equal(await page.textContent("#confirm-caution"), "It was changed since it was cloned or converted: those changes are lost.");
    await page.click("#confirm-delete");
    await page.locator("#confirm").waitFor({ state: "hidden" });
    assert.deepEqual(ui.callsOf("delete_model"), [{ name, confirmedTargets: [name] }]);
    await textWhen(page, "#library-message", "Deleted the workspace qwen-edited, freed 2.3 GB.");
    noPageErrors(ui);
  });

  test("a refused workspace delete shows the reason and opens no confirmation", async (t) => {
    const name = `${HOME}/by-hand`;
    const reason = `refusing to delete: ${name} is not a workspace folder directly inside the workspace home ${HOME}`;
    const ui = await open(t, "library", {
      list_models: () => withWorkspaces(),
      model_details: ({ name: n }) => workspaceDetails(n),
      delete_plan: () => fail("unsafe_deletion", reason),
    });
    const { page } = ui;
    await page.click(`#model-rows tr[data-model="${name}"]`);
    await page.click("#delete");
    assert.equal(await textWhen(page, "#library-message", "refusing"), reason);
    assert.match(await page.getAttribute("#library-message", "class"), /\berror\b/);
    assert.equal(await page.isHidden("#confirm"), true);
    assert.equal(ui.callsOf("delete_model").length, 0);
    noPageErrors(ui);
  });

  test("the server line follows server_status and server-status-changed", async (t) => {
    const ui = await open(t, "library", {
      list_models: () => library(),
      server_status: () => running("0.0.0.0:8000", { exposed: true, everyInterface: true, root: "http://127.0.0.1:8000" }),
      server_stop: () => ({ state: "stopped" }),
      server_start: () => running("127.0.0.1:8000"),
    });
    const { page } = ui;
    await textWhen(page, "#server-status", "Server running on http://0.0.0.0:8000");
    assert.equal(await page.getAttribute("#server-status", "data-state"), "running");
    assert.equal(await page.isVisible("#server-exposed"), true, "running + exposed shows the warning");
    assert.match(await page.textContent("#server-exposed"), /reachable from other machines/);
    assert.equal(await page.textContent("#server-toggle"), "Stop Server");

    // Pushed by the app when the state changes.
    await ui.listening("server-status-changed");
    await ui.emit("server-status-changed", running("127.0.0.1:8000"));
    await textWhen(page, "#server-status", "Server running on http://127.0.0.1:8000");
    assert.equal(await page.isVisible("#server-exposed"), false);
    await ui.emit("server-status-changed", { state: "error", message: "port 8000 is in use" });
    await textWhen(page, "#server-status", "Server error: port 8000 is in use");
    assert.equal(await page.textContent("#server-toggle"), "Start Server");

    // The button: Start when not running, Stop when running.
    await page.click("#server-toggle");
    await textWhen(page, "#server-status", "Server running on http://127.0.0.1:8000");
    assert.equal(ui.callsOf("server_start").length, 1);
    await page.click("#server-toggle");
    await textWhen(page, "#server-status", "Server stopped");
    assert.equal(ui.callsOf("server_stop").length, 1);
    assert.equal(await page.isVisible("#server-exposed"), false);
    noPageErrors(ui);
  });
});

// --- Settings ---------------------------------------------------------------------------------

const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1"]);
/** A settings backend: stores what save_settings gets and derives `exposed` from the host. */
function settingsBackend({ startedWith = null } = {}) {
  let server = { host: "127.0.0.1", port: 8000, keep_alive_secs: 300, cors_origins: [], insecure_no_auth: false };
  const view = () => ({
    server,
    exposed: !LOOPBACK.has(server.host),
    restart_needed: startedWith !== null && JSON.stringify(startedWith) !== JSON.stringify(server),
  });
  return {
    get_settings: () => view(),
    save_settings: ({ server: next }) => {
      if (!next.host) fail("invalid_settings", "host: must not be empty");
      server = next;
      return view();
    },
  };
}
const secrets = (tokens = {}) => ({
  secret_status: ({ name }) => ({ name, stored: name in tokens, masked: tokens[name]?.masked ?? null, error: null }),
});

describe("transfers", () => {
  const transfer = (id, kind, state, extra = {}) => ({
    id, kind, target: "org/tiny", phase: "Downloading…", files: [], total_bytes: 0, done_bytes: 0, state, ...extra,
  });

  test("a pull shows per-file progress, Cancel reaches transfer_cancel, the end refreshes the list", async (t) => {
    const ui = await open(t, "library", {
      list_models: () => library(),
      pull_start: () => 7,
      transfers_list: () => [],
      transfer_cancel: () => true,
    });
    const { page } = ui;
    await page.locator("#model-rows tr[data-model]").first().waitFor();
    await page.fill("#pull-name", "org/tiny");
    await page.click("#pull-start");
    await until("pull_start", () => ui.callsOf("pull_start").length === 1);
    assert.deepEqual(ui.callsOf("pull_start"), [{ name: "org/tiny" }]);
    await ui.listening("transfer-changed");
    await ui.emit("transfer-changed", transfer(7, "pull", { state: "running" }, {
      total_bytes: 2_000_000, done_bytes: 500_000,
      files: [
        { path: "config.json", size: 100, done_bytes: 100, state: "cached" },
        { path: "model.safetensors", size: 2_000_000, done_bytes: 500_000, state: "downloading" },
        { path: "tokenizer.json", size: 300, done_bytes: 0, state: "waiting" },
      ],
    }));
    await page.locator('[data-transfer="7"] [data-file="model.safetensors"]').waitFor();
    assert.deepEqual(await page.locator('[data-transfer="7"] .transfer-files li').evaluateAll((n) => n.map((li) => li.dataset.file)),
      ["model.safetensors", "tokenizer.json"], "only files still to come are listed");
    assert.match(await page.textContent('[data-transfer="7"]'), /500\.0 KB of 2\.0 MB, 1\/3 files/);
    assert.match(await page.textContent('[data-file="model.safetensors"]'), /500\.0 KB of 2\.0 MB/);
    await page.click('[data-transfer="7"] .transfer-cancel');
    await until("transfer_cancel", () => ui.callsOf("transfer_cancel").length === 1);
    assert.deepEqual(ui.callsOf("transfer_cancel"), [{ id: 7 }]);
    const listed = ui.callsOf("list_models").length;
    await ui.emit("transfer-changed", transfer(7, "pull", { state: "done", message: "org/tiny at 0123: 3 files", link: null }));
    await textWhen(page, '[data-transfer="7"] .transfer-outcome', "org/tiny at 0123: 3 files");
    await until("a refresh after the pull", () => ui.callsOf("list_models").length > listed);
    assert.equal(await page.locator('[data-transfer="7"] .transfer-cancel').count(), 0, "no Cancel once ended");
    noPageErrors(ui);
  });

  test("a bad pull name is refused with the backend's message", async (t) => {
    const ui = await open(t, "library", {
      list_models: () => library(),
      pull_start: ({ name }) => fail("invalid_name", `'${name}' has no organisation: a pull needs ORG/NAME`),
    });
    await ui.page.fill("#pull-name", "tiny");
    await ui.page.press("#pull-name", "Enter");
    await textWhen(ui.page, "#library-message", "has no organisation");
    assert.equal(await ui.page.locator("#library-message.error").count(), 1);
    noPageErrors(ui);
  });

  test("Push sends the form, shows progress and ends with the link, which opens in the browser", async (t) => {
    const folder = "/home/me/models/tiny";
    const link = "http://127.0.0.1:9999/me/tiny/commit/abc";
    const ui = await open(t, "push", {
      push_check: ({ folder: f }) => ({
        folder: f, files: [{ path: "config.json", size_bytes: 10 }], total_bytes: 10, healthy: true, anomalies: [],
      }),
      push_start: () => 3,
      open_link: () => null,
    });
    const { page } = ui;
    await ui.listening("tauri://drag-drop");
    await drop(ui, [folder]);
    await textWhen(page, "#check-summary", "ready to push");
    await page.fill("#repo-id", "me/tiny");
    await page.fill("#branch", "dev");
    await page.click("#push");
    await until("push_start", () => ui.callsOf("push_start").length === 1);
    assert.deepEqual(ui.callsOf("push_start"), [{ folder, repoId: "me/tiny", branch: "dev", message: "Upload with MLX Knife", makePublic: false }]);
    assert.equal(await page.isDisabled("#push"), true, "one push at a time");
    await ui.emit("transfer-changed", transfer(3, "push", { state: "running" }, { phase: "Uploading…", total_bytes: 1000, done_bytes: 250 }));
    await textWhen(page, "#push-progress", "Uploading…");
    await ui.emit("transfer-changed", transfer(3, "push", { state: "done", message: "Pushed 1 file(s)", link }));
    await textWhen(page, "#push-progress .transfer-outcome", "Pushed 1 file(s)");
    await page.click("#push-progress .transfer-link");
    await until("open_link", () => ui.callsOf("open_link").length === 1);
    assert.deepEqual(ui.callsOf("open_link"), [{ url: link }]);
    assert.equal(await page.isDisabled("#push"), false);
    noPageErrors(ui);
  });
});

describe("settings", () => {
  test("host 0.0.0.0 shows the red exposure banner; 127.0.0.1 hides it", async (t) => {
    const ui = await open(t, "settings", { ...settingsBackend(), ...secrets() });
    const { page } = ui;
    await until("the settings", async () => (await page.inputValue("#server-host")) === "127.0.0.1");
    assert.equal(await page.isVisible("#exposed-banner"), false);
    await page.check("#reach-network");
    await page.click("#server-advanced summary");
    await page.fill("#server-port", "8080");
    await page.click("#server-save");
    await page.locator("#exposed-banner").waitFor({ state: "visible" });
    assert.deepEqual(ui.callsOf("save_settings"), [{
      server: { host: "0.0.0.0", port: 8080, keep_alive_secs: 300, cors_origins: [], insecure_no_auth: false },
    }]);
    const banner = await page.textContent("#exposed-banner");
    assert.match(banner, /^Other devices can use your models: the server is set to listen on 0\.0\.0\.0, and every machine that can reach this one on port 8080 can send it requests/);
    const color = await page.$eval("#exposed-banner", (n) => getComputedStyle(n).backgroundColor);
    const [r, g, b] = color.match(/\d+/g).map(Number);
    assert.ok(r > 200 && r > g + 20 && r > b + 20, `the banner is red (${color})`);
    assert.equal(await textWhen(page, "#server-result", "Saved."), "Saved. Changes apply when the server is (re)started.");

    await page.check("#reach-local");
    await page.click("#server-save");
    await page.locator("#exposed-banner").waitFor({ state: "hidden" });
    assert.equal(ui.callsOf("save_settings")[1].server.host, "127.0.0.1");
    noPageErrors(ui);
  });

  test("the form sends every field, and a refused save shows the error", async (t) => {
    const ui = await open(t, "settings", { ...settingsBackend(), ...secrets() });
    const { page } = ui;
    await until("the settings", async () => (await page.inputValue("#server-port")) === "8000");
    await page.click("#server-advanced summary");
    await page.fill("#server-keep-alive", "0");
    await page.fill("#server-cors", " https://a.example \n\nhttps://b.example\n");
    await page.check("#server-insecure");
    await page.fill("#server-host", "  ");
    await page.click("#server-save");
    assert.equal(await textWhen(page, "#server-result", "host"), "host: must not be empty");
    assert.match(await page.getAttribute("#server-result", "class"), /\berror\b/);
    assert.deepEqual(ui.callsOf("save_settings"), [{
      server: { host: "", port: 8000, keep_alive_secs: 0, cors_origins: ["https://a.example", "https://b.example"], insecure_no_auth: true },
    }]);
    noPageErrors(ui);
  });

  test("Test names the account, its organisations and where the token came from", async (t) => {
    const ui = await open(t, "settings", {
      ...settingsBackend(),
      ...secrets({ hub_token: { masked: "hf_…(37 chars)" } }),
      token_test: () => ({
        name: "alice", fullname: null, token_role: "write",
        orgs: [{ name: "alice-org", role: "admin" }, { name: "mlx-community", role: null }],
        token_source: "token_file", endpoint: "https://huggingface.co",
      }),
    });
    const { page } = ui;
    await textWhen(page, "#token-masked", "hf_");
    await page.click("#token-test");
    assert.equal(await textWhen(page, "#token-result", "Logged in"),
      "Logged in as alice (orgs: alice-org, mlx-community), token from the token file, https://huggingface.co");
    noPageErrors(ui);
  });

  test("the token is only ever shown masked", async (t) => {
    const token = "hf_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ";
    const mask = (value) => `${value.slice(0, 3)}…(${value.length} chars)`;
    const stored = { server_api_key: { masked: "sk-…(20 chars)" } };
    const ui = await open(t, "settings", {
      ...settingsBackend(),
      secret_status: ({ name }) => ({ name, stored: name in stored, masked: stored[name]?.masked ?? null, error: null }),
      secret_set: ({ name, value }) => {
        stored[name] = { masked: mask(value.trim()) };
        return { name, stored: true, masked: stored[name].masked, error: null };
      },
      secret_remove: ({ name }) => {
        delete stored[name];
        return { name, stored: false, masked: null, error: null };
      },
    });
    const { page } = ui;
    await textWhen(page, "#api-key-masked", "sk-…(20 chars)");
    assert.equal(await page.textContent("#token-masked"), "not set");
    assert.equal(await page.isDisabled("#token-remove"), true);
    assert.equal(await page.getAttribute("#token-input", "type"), "password");

    await page.fill("#token-input", `  ${token} `);
    await page.click("#token-save");
    await textWhen(page, "#token-result", "Stored in the OS keyring.");
    assert.deepEqual(ui.callsOf("secret_set"), [{ name: "hub_token", value: `  ${token} ` }]);
    assert.equal(await page.textContent("#token-masked"), mask(token));
    assert.equal(await page.inputValue("#token-input"), "", "the field is cleared after saving");
    assert.equal(await page.isDisabled("#token-remove"), false);
    // Nowhere in the page: not in the text, the markup, nor any field's value.
    assert.ok(!(await page.content()).includes(token));
    assert.ok(!(await page.evaluate(() => document.body.innerText)).includes(token));
    const values = await page.$$eval("input, textarea", (nodes) => nodes.map((n) => n.value));
    assert.ok(!values.some((v) => v.includes(token)));

    await page.click("#token-remove");
    await textWhen(page, "#token-result", "Removed from the OS keyring.");
    assert.equal(await page.textContent("#token-masked"), "not set");
    assert.deepEqual(ui.callsOf("secret_remove"), [{ name: "hub_token" }]);
    noPageErrors(ui);
  });

  test("an unreachable keyring is reported, not shown as a value", async (t) => {
    const ui = await open(t, "settings", {
      ...settingsBackend(),
      secret_status: ({ name }) => ({ name, stored: false, masked: null, error: "no Secret Service on the session bus" }),
    });
    const { page } = ui;
    await textWhen(page, "#token-masked", "keyring unavailable");
    assert.equal(await textWhen(page, "#token-result", "Secret Service"), "no Secret Service on the session bus");
    assert.match(await page.getAttribute("#token-result", "class"), /\berror\b/);
    noPageErrors(ui);
  });

  test("a restart-needed note when the running server has other settings", async (t) => {
    // The server runs with the saved settings: no note until they change.
    const startedWith = { host: "127.0.0.1", port: 8000, keep_alive_secs: 300, cors_origins: [], insecure_no_auth: false };
    const ui = await open(t, "settings", {
      ...settingsBackend({ startedWith }),
      ...secrets(),
      server_status: () => running("127.0.0.1:8000"),
    });
    const { page } = ui;
    await until("the settings", async () => (await page.inputValue("#server-port")) === "8000");
    await textWhen(page, "#server-status", "Server running");
    assert.equal(await page.textContent("#server-result"), "");
    assert.equal(await page.isVisible("#server-restart"), false);
    await page.click("#server-advanced summary");
    await page.fill("#server-port", "9000");
    await page.click("#server-save");
    assert.equal(
      await textWhen(page, "#server-result", "restart"),
      "Saved. The running server keeps its old settings until you restart it.",
    );
    assert.equal(ui.callsOf("save_settings")[0].server.port, 9000);
    noPageErrors(ui);
  });

  test("the note is there on opening when get_settings says restart_needed", async (t) => {
    const ui = await open(t, "settings", {
      ...secrets(),
      get_settings: () => ({ server: { host: "127.0.0.1", port: 8001 }, exposed: false, restart_needed: true }),
    });
    await textWhen(ui.page, "#server-result", "until you restart it");
    assert.equal(await ui.page.inputValue("#server-keep-alive"), "300", "missing fields show their defaults");
    noPageErrors(ui);
  });
});

// --- Push -------------------------------------------------------------------------------------

const drop = (ui, paths) => ui.emit("tauri://drag-drop", { paths, position: { x: 10, y: 10 } });

describe("push", () => {
  test("dropping a file: push_check's not_a_folder error is shown clearly", async (t) => {
    const ui = await open(t, "push", {
      push_check: ({ folder }) => fail("not_a_folder", `${folder} is a file, not a folder: drop the model's folder`),
    });
    const { page } = ui;
    await ui.listening("tauri://drag-drop");
    await ui.emit("tauri://drag-enter", { paths: ["/home/me/model.safetensors"], position: { x: 10, y: 10 } });
    assert.match(await page.getAttribute("#drop-zone", "class"), /\bover\b/);
    await drop(ui, ["/home/me/model.safetensors", "/home/me/other"]);
    const shown = await textWhen(page, "#push-message", "not a folder");
    assert.equal(shown, "/home/me/model.safetensors is a file, not a folder: drop the model's folder");
    assert.match(await page.getAttribute("#push-message", "class"), /\berror\b/);
    assert.equal(await page.isVisible("#push-message"), true);
    assert.doesNotMatch(await page.getAttribute("#drop-zone", "class"), /\bover\b/);
    assert.deepEqual(ui.callsOf("push_check"), [{ folder: "/home/me/model.safetensors" }], "only the first dropped path");
    assert.equal(await page.textContent("#check-result"), "");
    assert.equal(await page.isDisabled("#preview"), true);
    noPageErrors(ui);
  });

  test("a successful check lists the files' total and the anomalies", async (t) => {
    const folder = "/home/me/models/qwen3-4b-4bit";
    const ui = await open(t, "push", {
      pick_folder: () => folder,
      push_check: ({ folder: f }) => ({
        folder: f,
        files: [
          { path: "config.json", size_bytes: 1_500 },
          { path: "model.safetensors", size_bytes: 2_261_000_000 },
          { path: ".DS_Store", size_bytes: 6_148 },
        ],
        total_bytes: 2_261_007_648,
        healthy: false,
        anomalies: [
          { severity: "error", code: "safetensors_invalid", message: "model.safetensors: the header is not valid JSON" },
          { severity: "warning", code: "tokenizer_missing", message: "no tokenizer.json or tokenizer.model" },
        ],
      }),
    });
    const { page } = ui;
    await page.click("#choose-folder");
    await textWhen(page, "#check-result h2", folder);
    assert.deepEqual(ui.callsOf("push_check"), [{ folder }]);
    assert.equal(await page.textContent("#check-summary"), "3 files, 2.3 GB: not a healthy model folder");
    assert.equal(await page.getAttribute("#check-summary", "data-healthy"), "false");
    const anomalies = await page.locator("#anomalies li").evaluateAll((nodes) =>
      nodes.map((n) => [n.dataset.severity, n.dataset.code, n.querySelector(".badge").className, n.textContent]));
    assert.deepEqual(anomalies, [
      ["error", "safetensors_invalid", "badge bad", "error model.safetensors: the header is not valid JSON"],
      ["warning", "tokenizer_missing", "badge warn", "warning no tokenizer.json or tokenizer.model"],
    ]);
    assert.equal(await page.textContent("#push-message"), "");
    assert.equal(await page.isDisabled("#preview"), false);
    assert.equal(await page.isDisabled("#push"), true, "a folder with errors is not pushed (as mlxk push without --force)");
    assert.match(await page.getAttribute("#push", "title"), /mlxk push --force/);
    noPageErrors(ui);
  });

  test("a dropped healthy folder, then the dry-run preview", async (t) => {
    const folder = "/home/me/models/tiny";
    const ui = await open(t, "push", {
      push_check: ({ folder: f }) => ({
        folder: f, files: [{ path: "config.json", size_bytes: 10 }], total_bytes: 10, healthy: true, anomalies: [],
      }),
      secret_status: ({ name }) => ({ name, stored: false, masked: null, error: null }),
      push_preview: ({ repoId, branch }) => ({
        repo_id: repoId, branch, repo_url: `https://huggingface.co/${repoId}`, repo_exists: false, branch_exists: false,
        added: ["config.json"], changed: [], unchanged: [], remote_only: [], deleted: [], no_changes: false,
      }),
    });
    const { page } = ui;
    await ui.listening("tauri://drag-drop");
    await drop(ui, [folder]);
    await textWhen(page, "#check-summary", "ready to push");
    assert.equal(await page.textContent("#check-result .muted"), "No anomalies.");
    await page.fill("#repo-id", "noslash");
    await page.click("#preview");
    await textWhen(page, "#push-message", "org/name");
    assert.equal(ui.callsOf("push_preview").length, 0);
    await page.fill("#repo-id", "me/tiny");
    await page.click("#preview");
    await textWhen(page, "#preview-summary", "me/tiny does not exist yet: it would be created private.");
    assert.deepEqual(ui.callsOf("push_preview"), [{ folder, repoId: "me/tiny", branch: "main" }]);
    await textWhen(page, "#push-message", "No Hugging Face token in the keyring");
    noPageErrors(ui);
  });
});

// --- Library: downloads, layout, shortcuts, dark mode, base URLs -----------------------------

describe("library, the first hour", () => {
  const downloading = summary("org/arriving", {
    healthy: false, runnable: false, download: "running", health_reason: "partial download in blobs/abc.incomplete (interrupted or still running)",
  });
  const cut = summary("org/cut-short", {
    healthy: false, runnable: false, download: "interrupted", health_reason: "partial download in blobs/def.incomplete (interrupted or still running)",
  });
  const pulled = summary("org/pulled-here", { healthy: false, runnable: false, download: "running", health_reason: "partial download" });

  test("a model still downloading is 'downloading' (with the app's pull progress), one cut short 'incomplete'", async (t) => {
    const ui = await open(t, "library", { list_models: () => library([...MODELS, downloading, cut, pulled]) });
    const { page } = ui;
    const health = (name) => page.locator(`#model-rows tr[data-model="${name}"] .badge`);
    await health(pulled.name).waitFor();
    assert.equal(await health(downloading.name).textContent(), "downloading");
    assert.equal(await health(downloading.name).getAttribute("class"), "badge info");
    assert.equal(await health(cut.name).textContent(), "incomplete");
    assert.equal(await health(cut.name).getAttribute("class"), "badge warn");
    assert.match(await health(cut.name).getAttribute("title"), /pull it again \(a pull resumes\)/);
    assert.equal(await health("acme/broken-model").textContent(), "unhealthy", "other problems stay red");

    await ui.listening("transfer-changed");
    await ui.emit("transfer-changed", {
      id: 4, kind: "pull", target: pulled.name, phase: "Downloading…", files: [], total_bytes: 2_000_000, done_bytes: 900_000, state: { state: "running" },
    });
    await textWhen(page, `#model-rows tr[data-model="${pulled.name}"] .badge`, "downloading 45%");
    assert.match(await health(pulled.name).getAttribute("title"), /900\.0 KB of 2\.0 MB/);
    noPageErrors(ui);
  });

  test("layout: names on one line, no word split, details and Delete in view, the page itself does not scroll", async (t) => {
    const long = summary("mlx-community/DeepSeek-R1-Distill-Qwen-14B-4bit-DWQ-Instruct", { last_used: daysAgo(400) });
    const ui = await open(t, "library", {
      list_models: () => library([...MODELS, long, ...Array.from({ length: 40 }, (_, i) => summary(`org/model-${i}`))]),
      model_details: ({ name }) => ({ ...details(MODELS[0].name), summary: [...MODELS, long].find((m) => m.name === name) ?? MODELS[0],
        files: Array.from({ length: 60 }, (_, i) => ({ name: `model-${i}-of-60.safetensors`, size_bytes: 1 })) }),
    });
    const { page } = ui;
    const row = page.locator(`#model-rows tr[data-model="${long.name}"]`);
    await row.waitFor();
    const lineHeight = await page.$eval("#model-rows td", (td) => parseFloat(getComputedStyle(td).lineHeight) || 20);
    const nameHeight = (await row.locator(".name").boundingBox()).height;
    assert.ok(nameHeight < lineHeight * 1.5, `the name fits on one line (${nameHeight}px)`);
    await row.click();
    await textWhen(page, "#details h2", long.name);
    const deleteBox = await page.locator("#delete").boundingBox();
    assert.ok(deleteBox && deleteBox.y + deleteBox.height <= 700, `Delete is in view (${JSON.stringify(deleteBox)})`);
    const pageScrolls = await page.evaluate(() => document.scrollingElement.scrollHeight > window.innerHeight + 1);
    assert.equal(pageScrolls, false, "the lists scroll inside the window, not the page around them");
    const breaks = await page.$$eval("h2, dd, td, .files li", (nodes) => nodes.map((n) => getComputedStyle(n).wordBreak));
    assert.ok(!breaks.includes("break-all"), "no word-break: break-all");
    assert.equal(await row.locator("td.used").textContent(), "last year");
    noPageErrors(ui);
  });

  test("shortcuts: Ctrl/⌘F searches, Ctrl/⌘R refreshes, Delete/⌫ asks to delete the selection", async (t) => {
    const ui = await open(t, "library", {
      list_models: () => library(),
      model_details: ({ name }) => details(name),
      delete_plan: ({ name }) => planFor(name),
    });
    const { page } = ui;
    await page.locator("#model-rows tr[data-model]").first().waitFor();
    await page.evaluate(() => document.activeElement?.blur()); // the search box has focus at first
    await page.keyboard.press("Control+f");
    assert.equal(await page.evaluate(() => document.activeElement?.id), "search");
    await page.keyboard.press("Meta+f");
    assert.equal(await page.evaluate(() => document.activeElement?.id), "search");
    const before = ui.callsOf("list_models").length;
    await page.keyboard.press("Control+r");
    await until("a refresh", () => ui.callsOf("list_models").length === before + 1);
    assert.equal(await page.locator("#model-rows tr[data-model]").count(), MODELS.length, "the page was not reloaded");

    // In the search box ⌫ edits the text; on a selected row it asks to delete.
    await page.fill("#search", "qwen");
    await page.press("#search", "Backspace");
    assert.equal(await page.inputValue("#search"), "qwe");
    assert.equal(ui.callsOf("delete_plan").length, 0);
    await page.fill("#search", "");
    await page.click('#model-rows tr[data-model="mlx-community/Qwen3-4B-4bit"]');
    await textWhen(page, "#details h2", "Qwen3");
    await page.keyboard.press("Delete");
    await page.locator("#confirm").waitFor({ state: "visible" });
    assert.deepEqual(ui.callsOf("delete_plan"), [{ name: "mlx-community/Qwen3-4B-4bit" }]);
    assert.equal(ui.callsOf("delete_model").length, 0, "only the confirmation deletes");
    await page.keyboard.press("Escape");
    await page.locator("#confirm").waitFor({ state: "hidden" });
    await page.keyboard.press("Backspace");
    await page.locator("#confirm").waitFor({ state: "visible" });
    assert.equal(ui.callsOf("delete_plan").length, 2);
    noPageErrors(ui);
  });

  test("dark mode follows the system's colour scheme", async (t) => {
    const ui = await open(t, "library", {
      list_models: () => library(),
      model_details: ({ name }) => details(name),
      server_status: () => running("127.0.0.1:8000"),
    });
    const { page } = ui;
    await page.click('#model-rows tr[data-model="acme/broken-model"]');
    await textWhen(page, "#details h2", "acme/broken-model");
    const look = () => page.evaluate(() => {
      const rgb = (c) => c.match(/\d+/g).slice(0, 3).map(Number);
      const luminance = ([r, g, b]) => 0.2126 * r + 0.7152 * g + 0.0722 * b;
      return {
        page: luminance(rgb(getComputedStyle(document.documentElement).backgroundColor)),
        text: luminance(rgb(getComputedStyle(document.body).color)),
        table: luminance(rgb(getComputedStyle(document.querySelector("table")).backgroundColor)),
      };
    });
    await page.emulateMedia({ colorScheme: "light" });
    const light = await look();
    assert.ok(light.page > 200 && light.text < 60 && light.table > 200, JSON.stringify(light));
    await page.emulateMedia({ colorScheme: "dark" });
    const dark = await look();
    assert.ok(dark.page < 60 && dark.text > 200 && dark.table < 60, JSON.stringify(dark));
    await snap(page, "library-dark");
    await page.emulateMedia({ colorScheme: "light" });
    await snap(page, "library-light");
    noPageErrors(ui);
  });

  test("while the server runs, the Library shows the base URLs on one line, one Copy per distinct URL", async (t) => {
    const ui = await open(t, "library", {
      list_models: () => library(),
      server_status: () => running("0.0.0.0:8123", { exposed: true, everyInterface: true, root: "http://127.0.0.1:8123" }),
      copy_text: () => null,
    });
    const { page } = ui;
    await page.setViewportSize({ width: 1100, height: 700 }); // the Library window's size
    await textWhen(page, "#client-urls", "http://127.0.0.1:8123/v1");
    // Anthropic's and Ollama's clients take the same bare root: one entry for both.
    assert.deepEqual(await texts(page, "#client-urls .client-url"), ["OpenAI http://127.0.0.1:8123/v1 Copy", "Anthropic, Ollama http://127.0.0.1:8123 Copy"]);
    assert.deepEqual(await page.locator("#client-urls .client-url").evaluateAll((rows) => rows.map((r) => r.dataset.api)), ["openai", "anthropic ollama"]);
    assert.match(await page.getAttribute('#client-urls .client-url[data-api~="ollama"]', "title"), /Claude Code[\s\S]*Open WebUI/, "who uses it, on hover");
    const tops = await page.locator("#client-urls .client-url").evaluateAll((rows) => rows.map((r) => Math.round(r.getBoundingClientRect().top)));
    assert.equal(new Set(tops).size, 1, `one line in the window's width: ${tops}`);
    assert.equal(await page.locator("#client-key-note").count(), 0, "no key, no note");
    await page.click('#client-urls .copy-url[data-api~="ollama"]');
    await until("copy_text", () => ui.callsOf("copy_text").length === 1);
    assert.deepEqual(ui.callsOf("copy_text"), [{ text: "http://127.0.0.1:8123" }]);
    await textWhen(page, '#client-urls .copy-url[data-api~="ollama"]', "Copied");
    await page.click('#client-urls .copy-url[data-api="openai"]');
    await until("the second copy", () => ui.callsOf("copy_text").length === 2);
    assert.deepEqual(ui.callsOf("copy_text")[1], { text: "http://127.0.0.1:8123/v1" });
    await ui.listening("server-status-changed");
    await ui.emit("server-status-changed", running("127.0.0.1:8000", { keyRequired: true }));
    await textWhen(page, "#client-key-note", "Clients need the server's API key.");
    await ui.emit("server-status-changed", { state: "stopped" });
    await page.locator("#client-urls").waitFor({ state: "hidden" });
    noPageErrors(ui);
  });

  test("a copy the clipboard refuses says so on its button", async (t) => {
    const ui = await open(t, "library", {
      list_models: () => library(),
      server_status: () => running("127.0.0.1:8000"),
      copy_text: () => fail("clipboard_unavailable", "cannot copy: no display"),
    });
    const { page } = ui;
    await page.click('#client-urls .copy-url[data-api~="ollama"]');
    await textWhen(page, '#client-urls .copy-url[data-api~="ollama"]', "Copy failed");
    assert.equal(await page.getAttribute('#client-urls .copy-url[data-api~="ollama"]', "title"), "cannot copy: no display");
    noPageErrors(ui);
  });
});

describe("settings, the base URLs for clients", () => {
  test("while the server runs: a row per API with who uses it and Copy; the key is required but never shown", async (t) => {
    const key = "sk-never-shown-0123456789";
    const ui = await open(t, "settings", {
      ...settingsBackend(),
      ...secrets(),
      server_status: () => running("0.0.0.0:8000", { exposed: true, everyInterface: true, keyRequired: true, root: "http://127.0.0.1:8000" }),
      chat_api_key: () => key,
      copy_text: () => null,
    });
    const { page } = ui;
    await textWhen(page, "#client-urls", "Base URLs for clients");
    // In the Server section, first.
    assert.equal(await page.evaluate(() => document.querySelector("#client-urls").closest("section").querySelector("h2").textContent), "Server");
    const rows = await page.locator("#client-urls .client-url").evaluateAll((rows) => rows.map((r) => ({
      api: r.dataset.api,
      name: r.querySelector("strong").textContent,
      url: r.querySelector("code").textContent,
      usedBy: r.querySelector(".used-by").textContent,
    })));
    assert.deepEqual(rows, [
      { api: "openai", name: "OpenAI", url: "http://127.0.0.1:8000/v1", usedBy: "OpenAI SDKs, Codex (Responses API)" },
      { api: "anthropic", name: "Anthropic", url: "http://127.0.0.1:8000", usedBy: "Claude Code, Anthropic SDKs" },
      { api: "ollama", name: "Ollama", url: "http://127.0.0.1:8000", usedBy: "Ollama clients, Open WebUI, VS Code" },
    ]);
    await textWhen(page, "#client-key-note", "Clients must send the server's API key");
    await textWhen(page, "#client-network-note", "Other devices use this Mac's network address");
    assert.doesNotMatch(await page.evaluate(() => document.body.innerText), new RegExp(key.slice(3)), "the key itself is never shown");
    await snap(page, "settings-client-urls");
    for (const [api, url] of [["ollama", "http://127.0.0.1:8000"], ["openai", "http://127.0.0.1:8000/v1"]]) {
      await page.click(`#client-urls .copy-url[data-api="${api}"]`);
      await textWhen(page, `#client-urls .copy-url[data-api="${api}"]`, "Copied");
      assert.deepEqual(ui.callsOf("copy_text").at(-1), { text: url });
    }
    assert.equal(ui.callsOf("copy_text").length, 2);
    noPageErrors(ui);
  });

  test("stopped: no URLs, a line saying where they appear; they come with the server", async (t) => {
    const ui = await open(t, "settings", { ...settingsBackend(), ...secrets(), server_start: () => running("127.0.0.1:8000") });
    const { page } = ui;
    await textWhen(page, "#client-urls", "While the server runs, the base URLs");
    assert.equal(await page.locator("#client-urls .client-url").count(), 0);
    await page.click("#server-toggle");
    await textWhen(page, "#client-urls", "http://127.0.0.1:8000/v1");
    assert.equal(await page.locator("#client-urls .copy-url").count(), 3);
    assert.equal(await page.locator("#client-key-note, #client-network-note").count(), 0, "local, no key: no notes");
    noPageErrors(ui);
  });
});

describe("settings, the first hour", () => {
  test("who may reach the server is a choice; address, port and CORS sit under Advanced", async (t) => {
    const ui = await open(t, "settings", { ...settingsBackend(), ...secrets() });
    const { page } = ui;
    await until("the settings", async () => (await page.inputValue("#server-host")) === "127.0.0.1");
    assert.equal(await page.isChecked("#reach-local"), true);
    assert.equal(await page.isChecked("#reach-network"), false);
    assert.match(await page.textContent("label:has(#reach-local)"), /^Only this Mac$/);
    assert.match(await page.textContent("label:has(#reach-network)"), /^Other devices on my network \(needs an API key\)$/);
    for (const id of ["#server-host", "#server-port", "#server-cors", "#server-insecure"]) {
      assert.equal(await page.isVisible(id), false, `${id} is folded away`);
    }
    assert.doesNotMatch(await page.evaluate(() => document.body.innerText), /loopback/i, "no jargon in view");
    await snap(page, "settings");
    await page.check("#reach-network");
    await page.click("#server-advanced summary");
    assert.equal(await page.inputValue("#server-host"), "0.0.0.0");
    await page.fill("#server-host", "192.168.1.20");
    assert.equal(await page.isChecked("#reach-network"), true);
    await page.check("#reach-local");
    assert.equal(await page.inputValue("#server-host"), "127.0.0.1");
    await page.check("#reach-network");
    await page.click("#server-save");
    await page.locator("#exposed-banner").waitFor({ state: "visible" });
    assert.equal(ui.callsOf("save_settings")[0].server.host, "0.0.0.0");
    await snap(page, "settings-other-devices-advanced");
    noPageErrors(ui);
  });

  test("the exposure banner stays above the fields: scrolling never puts it over one", async (t) => {
    const ui = await open(t, "settings", { ...settingsBackend(), ...secrets() });
    const { page } = ui;
    await page.setViewportSize({ width: 560, height: 420 });
    await until("the settings", async () => (await page.inputValue("#server-host")) === "127.0.0.1");
    await page.check("#reach-network");
    await page.click("#server-save");
    await page.locator("#exposed-banner").waitFor({ state: "visible" });
    await page.click("#server-advanced summary");
    for (const top of [0, 150, 400, 10_000]) {
      await page.$eval("#settings-body", (n, y) => n.scrollTo(0, y), top);
      const overlaps = await page.evaluate(() => {
        const banner = document.querySelector("#exposed-banner").getBoundingClientRect();
        const body = document.querySelector("#settings-body").getBoundingClientRect();
        // The fields in view (those scrolled out are clipped by their container, not covered).
        return [...document.querySelectorAll("#settings-body input, #settings-body textarea, #settings-body button")]
          .map((n) => ({ id: n.id, r: n.getBoundingClientRect() }))
          .filter(({ r }) => r.height > 0 && r.bottom > body.top && r.top < body.bottom)
          .filter(({ r }) => r.top < banner.bottom && r.bottom > banner.top && r.left < banner.right && r.right > banner.left)
          .map(({ id }) => id);
      });
      assert.deepEqual(overlaps, [], `at scroll ${top}`);
      const [bannerBottom, bodyTop] = await page.evaluate(() =>
        [document.querySelector("#exposed-banner").getBoundingClientRect().bottom, document.querySelector("#settings-body").getBoundingClientRect().top]);
      assert.ok(bannerBottom <= bodyTop, "the banner sits above the scrolling fields");
      assert.equal(await page.isVisible("#exposed-banner"), true);
    }
    noPageErrors(ui);
  });

  test("Restart Server appears when the saved settings differ from the running server's", async (t) => {
    let restartNeeded = true;
    const server = { host: "127.0.0.1", port: 9000, keep_alive_secs: 300, cors_origins: [], insecure_no_auth: false };
    const ui = await open(t, "settings", {
      ...secrets(),
      get_settings: () => ({ server, exposed: false, restart_needed: restartNeeded }),
      server_status: () => running("127.0.0.1:8000"),
      server_restart: () => {
        restartNeeded = false;
        return running("127.0.0.1:9000");
      },
    });
    const { page } = ui;
    await page.locator("#server-restart").waitFor({ state: "visible" });
    await textWhen(page, "#server-status", "Server running on http://127.0.0.1:8000");
    await snap(page, "settings-restart-needed");
    await page.click("#server-restart");
    await textWhen(page, "#server-result", "The server runs with the saved settings.");
    assert.equal(ui.callsOf("server_restart").length, 1);
    await page.locator("#server-restart").waitFor({ state: "hidden" });
    await ui.emit("server-status-changed", running("127.0.0.1:9000"));
    await textWhen(page, "#client-urls", "http://127.0.0.1:9000/v1");
    noPageErrors(ui);
  });
});

describe("library, models in memory", () => {
  const QWEN = "mlx-community/Qwen3-4B-4bit";
  const minutes = (n) => new Date(Date.now() + n * 60_000).toISOString();
  const loaded = (name, extra = {}) => ({ name, memory_bytes: 540_000_000, loaded_at: minutes(-2), expires_at: minutes(5), ...extra });
  const loadedRows = (page) => page.locator("#model-rows tr[data-model] .badge.loaded")
    .evaluateAll((nodes) => nodes.map((n) => ({ model: n.closest("tr").dataset.model, text: n.textContent })));

  test("the resident model's row says Loaded with its memory; the details say when it unloads, and Unload frees it", async (t) => {
    let resident = [loaded(QWEN)];
    const ui = await open(t, "library", {
      list_models: () => library(),
      model_details: ({ name }) => details(name),
      resident_models: () => resident,
      unload_model: ({ name }) => {
        const held = resident.some((r) => r.name === name);
        resident = resident.filter((r) => r.name !== name);
        return held;
      },
    });
    const { page } = ui;
    await page.locator("#model-rows .badge.loaded").waitFor();
    assert.deepEqual(await loadedRows(page), [{ model: QWEN, text: "Loaded · 540.0 MB" }], "only the resident model");
    assert.equal(await page.locator("#model-rows .badge[data-health]").count(), MODELS.length, "the health badges stay");

    await page.click('#model-rows tr[data-model="mlx-community/Llama-3.2-1B-Instruct-8bit"]');
    await textWhen(page, "#details h2", "Llama-3.2-1B");
    assert.equal(await page.isHidden("#loaded"), true, "a model not in memory has no Unload");
    assert.equal(await page.locator("#unload").count(), 0);

    await page.click(`#model-rows tr[data-model="${QWEN}"]`);
    await textWhen(page, "#details h2", "Qwen3");
    await textWhen(page, "#loaded", "Loaded · 540.0 MB");
    assert.match(await page.textContent("#unloads-at"), /^Unloads by itself in [45] minutes if idle\.$/);
    assert.ok(await page.getAttribute("#unloads-at", "title"), "the exact time on hover");
    assert.match(await page.textContent("#loaded"), /since 2 minutes ago/);
    await snap(page, "library-loaded");

    await page.click("#unload");
    await textWhen(page, "#library-message", `Unloaded ${QWEN}.`);
    assert.deepEqual(ui.callsOf("unload_model"), [{ name: QWEN }]);
    assert.deepEqual(await loadedRows(page), []);
    assert.equal(await page.isHidden("#loaded"), true);
    noPageErrors(ui);
  });

  test("the list's refresh shows a model loaded meanwhile, and one answering stays until its answers end", async (t) => {
    let resident = [];
    const ui = await open(t, "library", {
      list_models: () => library(),
      model_details: ({ name }) => details(name),
      resident_models: () => resident,
      unload_model: () => true, // answering: it goes when its answers end
    });
    const { page } = ui;
    await page.click(`#model-rows tr[data-model="${QWEN}"]`);
    await textWhen(page, "#details h2", "Qwen3");
    assert.equal(await page.isHidden("#loaded"), true);

    // A chat (or a client) loads it; the next refresh (the 5 s poll, focus, ⌘R) shows it.
    resident = [loaded(QWEN, { expires_at: null, memory_bytes: 1_234_000_000 })];
    await page.evaluate(() => document.activeElement?.blur());
    await page.keyboard.press("Control+r");
    await textWhen(page, `#model-rows tr[data-model="${QWEN}"] .badge.loaded`, "Loaded · 1.2 GB");
    await textWhen(page, "#unloads-at", "Stays loaded while it answers.");
    await page.click("#unload");
    await textWhen(page, "#library-message", `${QWEN} unloads when its answers end.`);
    assert.equal(await page.isVisible("#unload"), true);
    noPageErrors(ui);
  });

  test("a workspace in memory is matched by its folder name; a refused unload is shown", async (t) => {
    const folder = summary("/home/me/mlxk-workspaces/my-qwen", {
      display_name: "my-qwen",
      source: { kind: "workspace", path: "/home/me/mlxk-workspaces/my-qwen", content: "clean", managed: true, origin: QWEN, content_hash: null },
      commit: null,
    });
    const ui = await open(t, "library", {
      list_models: () => ({ ...library([...MODELS, folder]), workspace_home: "/home/me/mlxk-workspaces" }),
      model_details: ({ name }) => ({ ...details(QWEN), summary: name === folder.name ? folder : MODELS.find((m) => m.name === name), path: name }),
      resident_models: () => [loaded("my-qwen")],
      unload_model: () => fail("shutting_down", "the server is shutting down"),
    });
    const { page } = ui;
    await page.locator("#model-rows .badge.loaded").waitFor();
    assert.deepEqual(await loadedRows(page), [{ model: folder.name, text: "Loaded · 540.0 MB" }]);
    await page.click(`#model-rows tr[data-model="${folder.name}"]`);
    await page.click("#unload");
    await textWhen(page, "#library-message", "the server is shutting down");
    assert.match(await page.getAttribute("#library-message", "class"), /\berror\b/);
    assert.deepEqual(ui.callsOf("unload_model"), [{ name: "my-qwen" }], "the server's name, not the path");
    noPageErrors(ui);
  });
});
