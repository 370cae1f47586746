// The Library window: the cached models and the workspaces of $MLXK_WORKSPACE_HOME, a search
// box, a details pane, delete with a confirmation naming what is removed, health re-checks and
// total disk use; pulls with their progress; a chat pane to try a model; keyboard shortcuts
// (Ctrl/⌘F search, Delete/⌫ delete, Ctrl/⌘R refresh); the models the server holds in memory
// ("Loaded · 540 MB") with Unload.
import { getCurrentWindow } from "@tauri-apps/api/window";
import { commands, events, type ContentState, type DeletePlanView, type ModelDetails, type ModelSource, type ModelSummary, type ResidentModel, type TransferView } from "./bindings";
import { chatPane } from "./chat";
import { canChat, clientUrlList, formatBytes, formatExact, formatRelative, h, messageOf, openWindow, present, problemAdvice, renderTransfer, say, serverLine, timeAgo, unhandled, unwrap } from "./common";

const search = h("input", { id: "search", type: "search", placeholder: "Search models…", autofocus: true });
const total = h("span", { id: "total-size", class: "muted" });
const message = h("p", { id: "library-message", class: "message" });
const rows = h("tbody", { id: "model-rows" });
const details = h("section", { id: "details", class: "details" }, h("p", { class: "muted" }, "Select a model to see its details."));
const dialog = h("div", { id: "confirm", class: "modal", hidden: true });

const pullName = h("input", { id: "pull-name", type: "text", placeholder: "org/model[@revision]" });
const pullButton = h("button", { id: "pull-start", type: "button" }, "Pull");
const transfers = h("section", { id: "transfers" });
const pulls = new Map<number, TransferView>();

let models: ModelSummary[] = [];
let selected: string | null = null;
/** The models the running server holds in memory (one at most today, a list for later). */
let resident: ResidentModel[] = [];
/** The details pane's part about memory, filled again at every refresh. */
let loadedBox: HTMLElement | null = null;

/** The resident model a row is, if it is one: the server names models as rows show them. */
const residentOf = (model: ModelSummary) => resident.find((r) => r.name === model.display_name);

/** "Loaded · 540 MB" on the row of a model in memory. */
function loadedBadge(model: ModelSummary): HTMLElement | null {
  const r = residentOf(model);
  if (!r) return null;
  return h("span", { class: "badge loaded", "data-loaded": r.name, title: `In the server's memory since ${formatExact(r.loaded_at)}` },
    `Loaded · ${formatBytes(r.memory_bytes)}`);
}

/** The app's own pull of `model`, while it runs. */
function runningPull(model: ModelSummary): TransferView | undefined {
  return [...pulls.values()].find((p) => p.state.state === "running" && p.target.split("@")[0] === model.name);
}

/** The health badge: a download still running or cut short is not "unhealthy". */
function badge(model: ModelSummary): HTMLElement {
  const pull = runningPull(model);
  const look = (label: string, kind: string, title: string, text = label) =>
    h("span", { class: `badge ${kind}`, title, "data-health": label }, text);
  if (pull) {
    const percent = pull.total_bytes > 0 ? Math.min(100, Math.floor((pull.done_bytes / pull.total_bytes) * 100)) : 0;
    return look("downloading", "info", `Pulling: ${formatBytes(pull.done_bytes)} of ${formatBytes(pull.total_bytes)}`, `downloading ${percent}%`);
  }
  switch (model.download) {
    case "running":
      return look("downloading", "info", "A download is still running (another program holds its lock)");
    case "interrupted":
      return look("incomplete", "warn", `The download did not finish: pull it again (a pull resumes). ${model.health_reason}`);
    case null:
      break;
    default:
      unhandled(model.download, null);
  }
  const [label, kind] = !model.healthy ? ["unhealthy", "bad"] : model.runnable ? ["healthy", "good"] : ["healthy*", "warn"];
  return look(label, kind, !model.healthy ? model.health_reason : model.runtime_reason ?? "healthy and runnable");
}

/** A workspace's files against its recorded hash, in words: [badge, kind, explanation]. */
function contentLook(content: ContentState): [string, string, string] {
  switch (content) {
    case "clean":
      return ["workspace", "info", "unchanged since it was cloned or converted"];
    case "modified":
      return ["modified", "warn", "changed since it was cloned or converted (mlxk show --recalc-hash re-pins it)"];
    case "unknown":
      return ["workspace?", "info", "no content hash to compare with (not made by clone or convert, or an older hash)"];
    default:
      return unhandled(content, ["workspace", "info", ""]);
  }
}

/** Where a model lives, as a small badge: none for the cache, else the workspace's state. */
function sourceBadge(source: ModelSource): HTMLElement | null {
  switch (source.kind) {
    case "cache":
      return null;
    case "workspace": {
      const [label, kind, why] = contentLook(source.content);
      return h("span", { class: `badge source ${kind}`, "data-source": source.content, title: `A workspace in ${source.path}: ${why}` }, label);
    }
    default:
      return unhandled(source, null);
  }
}

/** The Source field of the details pane. */
function sourceText(source: ModelSource): string {
  switch (source.kind) {
    case "cache":
      return "Hugging Face cache";
    case "workspace":
      return `workspace, ${contentLook(source.content)[2]}`;
    default:
      return unhandled(source, "");
  }
}

function renderRows(): void {
  const query = search.value.trim().toLowerCase();
  const shown = models.filter((m) => m.display_name.toLowerCase().includes(query));
  rows.replaceChildren(
    ...shown.map((m) => {
      const row = h("tr", { "data-model": m.name, class: m.name === selected ? "selected" : undefined },
        h("td", { title: m.source.kind === "workspace" ? m.source.path : undefined }, h("span", { class: "name" }, m.display_name), sourceBadge(m.source), loadedBadge(m)),
        h("td", {}, m.model_type),
        h("td", {}, m.quantization ?? "—"),
        h("td", { class: "num" }, formatBytes(m.size_bytes)),
        h("td", {}, badge(m)),
        h("td", { class: "used" }, m.last_used ? timeAgo(m.last_used) : "never"),
      );
      row.addEventListener("click", () => void select(m.name));
      return row;
    }),
  );
  if (shown.length === 0) {
    rows.append(h("tr", {}, h("td", { colspan: "6", class: "muted" }, models.length ? "No model matches." : "No models in the cache.")));
  }
}

async function refresh(): Promise<void> {
  try {
    const [library, inMemory] = await Promise.all([commands.listModels(), commands.residentModels()]);
    models = unwrap(library).models;
    resident = inMemory.status === "ok" ? inMemory.data : [];
    renderLoaded();
    const { cache_root: root, workspace_home: home, total_bytes: bytes } = unwrap(library);
    const where = home ? `${root} and ${home}` : root;
    total.textContent = `${models.length} model${models.length === 1 ? "" : "s"}, ${formatBytes(bytes)} on disk in ${where}`;
    if (selected && !models.some((m) => m.name === selected)) {
      selected = null;
      loadedBox = null;
      details.replaceChildren(h("p", { class: "muted" }, "Select a model to see its details."));
    }
    renderRows();
    chat.refreshModels();
  } catch (error) {
    say(message, messageOf(error), true);
  }
}

function field(label: string, value: Node | string | number | null | undefined): HTMLElement {
  const shown = value === null || value === undefined || value === "" ? "—" : value instanceof Node ? value : String(value);
  return h("div", { class: "field" }, h("dt", {}, label), h("dd", {}, shown));
}

/** A time in the details: "3 days ago (2026-11-20 09:00)", exact on hover too. */
function when(rfc3339: string): HTMLElement {
  return h("span", { title: formatExact(rfc3339) }, `${formatRelative(rfc3339)} (${formatExact(rfc3339)})`);
}

/** The details pane's memory line: loaded since when, when it unloads by itself, Unload. */
function renderLoaded(): void {
  const model = models.find((m) => m.name === selected);
  const r = model && residentOf(model);
  if (!loadedBox) return;
  if (!model || !r) {
    loadedBox.hidden = true;
    loadedBox.replaceChildren();
    return;
  }
  const unload = h("button", { id: "unload", type: "button", title: "Free its memory now (the next request loads it again)" }, "Unload");
  unload.addEventListener("click", () => void unloadModel(model, r, unload));
  const idle = r.expires_at
    ? h("span", { id: "unloads-at", title: formatExact(r.expires_at) }, `Unloads by itself ${formatRelative(r.expires_at)} if idle.`)
    : h("span", { id: "unloads-at" }, "Stays loaded while it answers.");
  loadedBox.hidden = false;
  loadedBox.replaceChildren(
    h("span", { class: "badge loaded" }, `Loaded · ${formatBytes(r.memory_bytes)}`),
    h("span", { class: "muted" }, " since ", timeAgo(r.loaded_at), ". ", idle),
    unload,
  );
}

async function unloadModel(model: ModelSummary, r: ResidentModel, button: HTMLButtonElement): Promise<void> {
  button.disabled = true;
  try {
    const held = unwrap(await commands.unloadModel(r.name));
    await refresh();
    const still = residentOf(model);
    say(message, !held ? `${model.display_name} was not loaded.`
      : still ? `${model.display_name} unloads when its answers end.` : `Unloaded ${model.display_name}.`);
  } catch (error) {
    say(message, messageOf(error), true);
    button.disabled = false;
  }
}

function renderDetails(d: ModelDetails): void {
  const s = d.summary;
  const recheck = h("button", { id: "recheck", type: "button" }, "Re-check health (deep)");
  const remove = h("button", { id: "delete", type: "button", class: "danger", title: "Delete (Delete or ⌫)" }, "Delete…");
  const tryIt = canChat(s) ? h("button", { id: "try-chat", type: "button" }, "Chat…") : null;
  tryIt?.addEventListener("click", () => {
    chat.choose(s.name);
    showTab("chat");
  });
  recheck.addEventListener("click", async () => {
    recheck.disabled = true;
    try {
      const [checked] = unwrap(await commands.checkHealth(s.name, true));
      say(message, `${s.display_name}: ${checked.healthy ? "healthy" : checked.health_reason}`, !checked.healthy);
      await refresh();
      await select(s.name);
    } catch (error) {
      say(message, messageOf(error), true);
    } finally {
      recheck.disabled = false;
    }
  });
  remove.addEventListener("click", () => void confirmDelete(s.name));
  const workspace = s.source.kind === "workspace" ? s.source : null;
  const advice = [...new Set(d.problems.map((p) => problemAdvice(p.code, workspace !== null).advice))];
  details.replaceChildren(...present(
    h("h2", {}, s.display_name),
    // First, so that they are in view without scrolling the pane.
    h("div", { class: "actions" }, tryIt, recheck, remove),
    (loadedBox = h("div", { id: "loaded", class: "loaded-box", hidden: true })),
    h("dl", {},
      field("Source", sourceText(s.source)),
      workspace ? field("Cloned from", workspace.origin ?? (workspace.managed ? null : "— (not made by clone or convert)")) : null,
      workspace ? field("Content hash", workspace.content_hash) : null,
      field("Health", s.healthy ? "healthy" : s.health_reason),
      field("Runs here", s.runnable ? "yes" : s.runtime_reason),
      field("Framework", s.framework),
      field("Type", s.model_type),
      field("Architecture", d.architecture),
      field("Quantization", s.quantization),
      field("Context length", d.context_length),
      field("Capabilities", d.capabilities.join(", ")),
      field("Size", formatBytes(s.size_bytes)),
      field("Last used", s.last_used ? when(s.last_used) : "never (by mlxk run or the server)"),
      field("Modified", when(s.last_modified)),
      workspace ? null : field("Commit", s.commit),
      workspace ? null : field("Refs", d.refs.join(", ")),
      workspace ? null : field("Snapshots", d.snapshots.length),
      field("Path", d.path),
    ),
    d.problems.length
      ? h("ul", { class: "problems" }, ...d.problems.map((p) =>
          h("li", { "data-code": p.code, "data-kind": problemAdvice(p.code, workspace !== null).kind }, p.message)))
      : null,
    ...advice.map((a) => h("p", { class: "advice muted" }, a)),
    h("details", {}, h("summary", {}, `Files (${d.files.length})`),
      h("ul", { class: "files" }, ...d.files.map((f) => h("li", {}, `${f.name}  ${f.size_bytes === null ? "(missing)" : formatBytes(f.size_bytes)}`)))),
    d.config_json ? h("details", {}, h("summary", {}, "config.json"), h("pre", {}, d.config_json)) : null,
  ));  renderLoaded();
}

async function select(name: string): Promise<void> {
  selected = name;
  renderRows();
  try {
    renderDetails(unwrap(await commands.modelDetails(name)));
  } catch (error) {
    say(message, messageOf(error), true);
  }
}

async function confirmDelete(name: string): Promise<void> {
  let plan: DeletePlanView;
  try {
    plan = unwrap(await commands.deletePlan(name));
  } catch (error) {
    say(message, messageOf(error), true);
    return;
  }
  const workspace = plan.source.kind === "workspace" ? plan.source : null;
  const what = workspace
    ? `the workspace ${plan.model}`
    : plan.snapshot ? `${plan.model} at ${plan.snapshot.slice(0, 12)} (this snapshot only)` : `${plan.model} (all snapshots)`;
  const caution = !workspace
    ? null
    : workspace.content === "modified"
      ? "It was changed since it was cloned or converted: those changes are lost."
      : !workspace.managed
        ? "It was not made by clone or convert: nothing records where its files came from."
        : null;
  const cancel = h("button", { id: "confirm-cancel", type: "button" }, "Cancel");
  const go = h("button", { id: "confirm-delete", type: "button", class: "danger", disabled: plan.held_locks.length > 0 }, "Delete");
  dialog.replaceChildren(
    h("div", { class: "modal-box", role: "dialog", "aria-modal": "true" },
      h("h2", {}, `Delete ${what}?`),
      h("p", {}, workspace
        ? `This deletes its folder and everything in it (${formatBytes(plan.freed_bytes)}):`
        : `This frees ${formatBytes(plan.freed_bytes)} and removes:`),
      h("ul", { id: "confirm-targets", class: "files" }, ...plan.targets.map((t) => h("li", {}, t))),
      caution ? h("p", { id: "confirm-caution", class: "warning" }, caution) : null,
      plan.held_locks.length
        ? h("p", { class: "error" }, `A download is running (it holds ${plan.held_locks[0]}): wait for it to finish.`)
        : null,
      h("div", { class: "actions" }, cancel, go),
    ),
  );
  dialog.hidden = false;
  cancel.addEventListener("click", () => (dialog.hidden = true));
  cancel.focus();
  go.addEventListener("click", async () => {
    go.disabled = true;
    try {
      const done = unwrap(await commands.deleteModel(name, plan.targets));
      say(message, `Deleted ${what}, freed ${formatBytes(done.freed_bytes)}.`);
    } catch (error) {
      say(message, messageOf(error), true);
    }
    dialog.hidden = true;
    await refresh();
  });
}

function toolbarButton(id: string, text: string, action: () => void): HTMLButtonElement {
  const button = h("button", { id, type: "button" }, text);
  button.addEventListener("click", action);
  return button;
}

const recheckAll = toolbarButton("recheck-all", "Re-check all", async () => {
  recheckAll.disabled = true;
  try {
    const checked = unwrap(await commands.checkHealth(null, false));
    const bad = checked.filter((m) => !m.healthy).length;
    say(message, `${checked.length} models checked, ${bad} unhealthy.`, bad > 0);
    await refresh();
  } catch (error) {
    say(message, messageOf(error), true);
  } finally {
    recheckAll.disabled = false;
  }
});

function renderPulls(): void {
  transfers.replaceChildren(...[...pulls.values()].reverse().map(renderTransfer));
}

function showPull(view: TransferView): void {
  if (view.kind !== "pull") return;
  const before = pulls.get(view.id)?.state.state;
  pulls.set(view.id, view);
  renderPulls();
  renderRows(); // the badge of the model being pulled
  // A finished pull adds a model (or completes one): show it.
  if (before === "running" && view.state.state !== "running") {
    say(message, ""); // the transfer's box says how it ended
    void refresh();
  }
}

async function startPull(): Promise<void> {
  const name = pullName.value.trim();
  if (!name) return say(message, "Enter a Hub repository as org/name to pull.", true);
  pullButton.disabled = true;
  try {
    const id = unwrap(await commands.pullStart(name));
    say(message, `Pulling ${name}…`);
    pullName.value = "";
    if (!pulls.has(id)) {
      const started = (await commands.transfersList()).find((t) => t.id === id);
      if (started) showPull(started);
    }
  } catch (error) {
    say(message, messageOf(error), true);
  } finally {
    pullButton.disabled = false;
  }
}

pullButton.addEventListener("click", () => void startPull());
pullName.addEventListener("keydown", (event) => {
  if (event.key === "Enter") void startPull();
});
search.addEventListener("input", renderRows);

const chat = chatPane(() => models);
const modelsTab = h("button", { id: "tab-models", type: "button", role: "tab" }, "Models");
const chatTab = h("button", { id: "tab-chat", type: "button", role: "tab" }, "Chat");
const split = h("main", { class: "split" },
  h("div", { class: "list" },
    h("table", {},
      h("thead", {}, h("tr", {}, ...["Name", "Type", "Quant.", "Size", "Health", "Last used"].map((t) => h("th", {}, t)))),
      rows)),
  details);

function showTab(tab: "models" | "chat"): void {
  split.hidden = tab !== "models";
  chat.element.hidden = tab !== "chat";
  modelsTab.setAttribute("aria-selected", String(tab === "models"));
  chatTab.setAttribute("aria-selected", String(tab === "chat"));
  if (tab === "chat") chat.refreshModels();
}
modelsTab.addEventListener("click", () => showTab("models"));
chatTab.addEventListener("click", () => showTab("chat"));
showTab("models");

/** Whether a key goes to a field being typed in (so it is no shortcut). */
const typing = (target: EventTarget | null) =>
  target instanceof HTMLElement && target.closest("input, textarea, select, [contenteditable]") !== null;

document.addEventListener("keydown", (event) => {
  const command = event.metaKey || event.ctrlKey;
  const key = event.key.toLowerCase();
  if (command && key === "f") {
    event.preventDefault();
    showTab("models");
    search.focus();
    search.select();
  } else if (command && key === "r") {
    event.preventDefault(); // not a reload of the page
    void refresh();
  } else if (event.key === "Escape" && !dialog.hidden) {
    dialog.hidden = true;
  } else if ((event.key === "Delete" || event.key === "Backspace") && !event.ctrlKey && !event.altKey
    && !typing(event.target) && dialog.hidden && !split.hidden && selected) {
    event.preventDefault();
    void confirmDelete(selected);
  }
});

const clientUrls = clientUrlList(false);
const app = document.querySelector<HTMLElement>("#app")!;
app.classList.add("fill");
app.append(
  h("header", {},
    h("h1", {}, "Library"),
    search,
    toolbarButton("refresh", "Refresh", () => void refresh()),
    recheckAll,
    toolbarButton("open-push", "Push a Folder…", () => openWindow("push")),
    toolbarButton("open-settings", "Settings…", () => openWindow("settings")),
  ),
  serverLine(clientUrls),
  clientUrls.element,
  h("div", { class: "row" }, pullName, pullButton),
  transfers,
  total,
  message,
  h("div", { class: "tabs", role: "tablist" }, modelsTab, chatTab),
  split,
  chat.element,
  dialog,
);
// The CLI may change the cache meanwhile: look again whenever the window comes to the front.
void getCurrentWindow().onFocusChanged(({ payload: focused }) => {
  if (focused) void refresh();
});
// ... and every few seconds while the window is visible (a pull or rm in a terminal).
setInterval(() => {
  if (document.visibilityState === "visible") void refresh();
}, 5000);
void events.transferChanged.listen((event) => showPull(event.payload));
void commands.transfersList().then((all) => all.forEach(showPull));
void refresh();
