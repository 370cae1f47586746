// Small helpers shared by the windows: building elements, formatting, and the server line.
import "./style.css";
import { commands, events, type AppWindow, type ClientUrl, type CommandError, type FileState, type ModelType, type ProblemCode, type ServerStatus, type Severity, type TransferView } from "./bindings";

/** Creates an element with attributes and children (strings become text, never HTML). */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string | boolean | undefined> = {},
  ...children: (Node | string | null | undefined)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

/** The present ones of `items` (for `replaceChildren`, which takes no null). */
export function present(...items: (Node | string | null | undefined)[]): (Node | string)[] {
  return items.filter((i): i is Node | string => i !== null && i !== undefined);
}

/** Chat and base models answer text; embedding models make vectors and speech models read audio. */
export function canChat(m: { healthy: boolean; runnable: boolean; model_type: ModelType }): boolean {
  return m.healthy && m.runnable && (m.model_type === "chat" || m.model_type === "base");
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

export function formatDate(rfc3339: string): string {
  const date = new Date(rfc3339);
  return Number.isNaN(date.getTime()) ? rfc3339 : date.toLocaleDateString();
}

/** The exact date and time, for a hover. */
export function formatExact(rfc3339: string): string {
  const date = new Date(rfc3339);
  return Number.isNaN(date.getTime()) ? rfc3339 : date.toLocaleString();
}

const relative = new Intl.RelativeTimeFormat("en", { numeric: "auto" });
/** Each unit and how many of it make the next one. */
const UNITS: [Intl.RelativeTimeFormatUnit, number][] = [["second", 60], ["minute", 60], ["hour", 24], ["day", 7], ["week", 4.35], ["month", 12], ["year", Infinity]];

/** "just now", "5 minutes ago", "yesterday", "3 days ago"… */
export function formatRelative(rfc3339: string, now = Date.now()): string {
  const then = new Date(rfc3339).getTime();
  if (Number.isNaN(then)) return rfc3339;
  let value = (then - now) / 1000;
  if (Math.abs(value) < 45) return "just now";
  for (const [unit, size] of UNITS) {
    if (Math.abs(value) < size) return relative.format(Math.round(value), unit);
    value /= size;
  }
  return formatDate(rfc3339);
}

/** A time as "3 days ago", the exact time on hover. */
export function timeAgo(rfc3339: string): HTMLTimeElement {
  return h("time", { datetime: rfc3339, title: formatExact(rfc3339) }, formatRelative(rfc3339));
}

/** The value of a command's result, or throws its error (shown by `report`). */
export function unwrap<T>(result: { status: "ok"; data: T } | { status: "error"; error: CommandError }): T {
  if (result.status === "error") throw result.error;
  return result.data;
}

/** A message for anything a command threw. */
export function messageOf(error: unknown): string {
  if (error && typeof error === "object" && "message" in error) return String((error as CommandError).message);
  return String(error);
}

/** Shows `text` in the element (an error style when `isError`). */
export function say(target: HTMLElement, text: string, isError = false): void {
  target.textContent = text;
  target.classList.toggle("error", isError);
}

/** The `default` of a switch over a union from bindings.ts: it compiles only while the cases
 * cover every member (`value` is then `never`), so a member the core adds is a type error here
 * until the UI handles it. At run time (never, with matching bindings) it falls back. */
export function unhandled<T>(value: never, fallback: T): T {
  console.warn("unhandled value from the core:", value);
  return fallback;
}

/** How a finding of a push check reads: errors block a push, warnings do not. */
export function severityLook(severity: Severity): { label: string; badge: "bad" | "warn" } {
  switch (severity) {
    case "error":
      return { label: "error", badge: "bad" };
    case "warning":
      return { label: "warning", badge: "warn" };
    default:
      return unhandled(severity, { label: String(severity), badge: "bad" });
  }
}

/** What kind of problem a health check found, and what a person can do about it (a workspace
 * is made again by clone or convert, a cached model by pulling it). */
export function problemAdvice(code: ProblemCode, workspace: boolean): { kind: "incomplete" | "damaged" | "malformed" | "tokenizer"; advice: string } {
  const again = workspace ? "clone or convert it again" : "pull it again";
  switch (code) {
    case "no_snapshot":
    case "snapshot_missing":
    case "incomplete_download":
      return { kind: "incomplete", advice: `The download did not finish: ${again} (a pull resumes).` };
    case "broken_symlink":
    case "missing_shard":
    case "empty_file":
    case "lfs_pointer":
    case "content_mismatch":
      return { kind: "damaged", advice: `Files are missing or damaged: ${again}, or delete it.` };
    case "config_missing":
    case "config_invalid":
    case "no_weights":
    case "index_invalid":
    case "safetensors_invalid":
    case "gguf_invalid":
      return { kind: "malformed", advice: "Its files do not form a usable model as they are: check where it came from." };
    case "tokenizer_missing":
    case "tokenizer_invalid":
      return { kind: "tokenizer", advice: "Without a usable tokenizer it cannot chat; its weights may be fine." };
    default:
      return unhandled(code, { kind: "damaged", advice: "" });
  }
}

export function openWindow(window: AppWindow): void {
  void commands.openWindow(window);
}

export function describeStatus(status: ServerStatus): string {
  switch (status.state) {
    case "stopped":
      return "Server stopped";
    case "starting":
      return `Server starting on ${status.address}…`;
    case "running":
      return `Server running on http://${status.address}`;
    case "error":
      return `Server error: ${status.message}`;
  }
}

/** A part of a window that follows the server's state (see `serverLine`). */
export type ServerView = { element: HTMLElement; show: (status: ServerStatus) => void };

/** Puts `url` on the clipboard (the app's clipboard plugin); the button says how it went.
 * `apis` names the APIs it serves, space-separated (`data-api`). */
function copyButton(apis: string, names: string, url: string): HTMLButtonElement {
  const copy = h("button", { type: "button", class: "copy-url", "data-api": apis, title: `Copy the ${names} base URL` }, "Copy");
  copy.addEventListener("click", async () => {
    const result = await commands.copyText(url);
    copy.textContent = result.status === "ok" ? "Copied" : "Copy failed";
    if (result.status === "error") copy.title = result.error.message;
    setTimeout(() => (copy.textContent = "Copy"), 1500);
  });
  return copy;
}

/** Settings' row for one API: its name, the URL over who uses it, Copy. */
function detailedRow({ api, name, url, used_by }: ClientUrl): HTMLElement {
  return h("div", { class: "client-url", "data-api": api },
    h("strong", {}, name),
    h("span", {}, h("code", {}, url), h("span", { class: "used-by muted" }, used_by)),
    copyButton(api, name, url));
}

/** The Library's one line: an entry per distinct URL, so that the APIs sharing the bare root
 * (Anthropic's, Ollama's) share one entry and the line stays one line. */
function compactEntries(urls: ClientUrl[]): HTMLElement[] {
  const byUrl = new Map<string, ClientUrl[]>();
  for (const u of urls) byUrl.set(u.url, [...(byUrl.get(u.url) ?? []), u]);
  return [...byUrl].map(([url, same]) => {
    const apis = same.map((u) => u.api).join(" ");
    const names = same.map((u) => u.name).join(", ");
    return h("span", { class: "client-url", "data-api": apis, title: same.map((u) => `${u.name}: ${u.used_by}`).join("\n") },
      `${names} `, h("code", {}, url), " ", copyButton(apis, names, url));
  });
}

/** The base URLs to paste into clients, each with Copy, while the server runs: one line in
 * the Library; in Settings a row per API with who uses it. Both say when clients need the API
 * key (never the key). The URLs come made by the app from the address the server bound
 * (src-tauri/src/client_urls.rs): nothing is derived here. */
export function clientUrlList(detailed: boolean): ServerView {
  const element = h("div", { id: "client-urls", class: detailed ? "client-urls detailed" : "client-urls", hidden: !detailed });
  const show = (status: ServerStatus) => {
    if (status.state !== "running") {
      element.hidden = !detailed;
      return element.replaceChildren(...present(detailed
        ? h("p", { class: "muted" }, "While the server runs, the base URLs for OpenAI, Anthropic and Ollama clients are here to copy.")
        : null));
    }
    element.hidden = false;
    const keyNote = status.key_required
      ? h("span", { id: "client-key-note", class: "note" }, detailed
          ? "Clients must send the server's API key (Server API key, below)."
          : "Clients need the server's API key.")
      : null;
    const networkNote = detailed && status.every_interface
      ? h("span", { id: "client-network-note", class: "note muted" }, "These work on this Mac. Other devices use this Mac's network address (e.g. 192.168.1.20) with the same port.")
      : null;
    element.replaceChildren(...present(
      detailed ? h("h3", {}, "Base URLs for clients") : h("span", { class: "muted" }, "Base URLs for clients:"),
      ...(detailed ? status.urls.map(detailedRow) : compactEntries(status.urls)),
      keyNote,
      networkNote,
    ));
  };
  return { element, show };
}

/** A status line with a Start/Stop button that follows the server's state, as do `followers`
 * (placed elsewhere in the window, e.g. the base URLs for clients). */
export function serverLine(...followers: ServerView[]): HTMLElement {
  const text = h("span", { id: "server-status", "data-state": "stopped" });
  const warning = h("span", { id: "server-exposed", class: "warning", hidden: true },
    "⚠ reachable from other machines");
  const button = h("button", { id: "server-toggle", type: "button" });
  let current: ServerStatus = { state: "stopped" };
  const show = (status: ServerStatus) => {
    current = status;
    for (const follower of followers) follower.show(status);
    text.textContent = describeStatus(status);
    text.dataset.state = status.state;
    warning.hidden = !(status.state === "running" && status.exposed);
    button.textContent = status.state === "running" || status.state === "starting" ? "Stop Server" : "Start Server";
  };
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const active = current.state === "running" || current.state === "starting";
      show(unwrap(active ? await commands.serverStop() : await commands.serverStart()));
    } catch (error) {
      show({ state: "error", message: messageOf(error) });
    } finally {
      button.disabled = false;
    }
  });
  void commands.serverStatus().then(show);
  void events.serverStatusChanged.listen((event) => show(event.payload));
  return h("div", { class: "server-line" }, text, warning, button);
}

/** Where a pulled file is, for the progress list; the switch covers every state the core has. */
function fileStage(state: FileState, running = false): "moving" | "arrived" | "stopped" {
  switch (state) {
    case "downloading":
      return "moving";
    case "waiting":
      return running ? "moving" : "stopped";
    case "done":
    case "cached":
      return "arrived";
  }
}

/** A pull's or push's progress: a total bar, one line per file still moving, Cancel while it
 * runs, and the outcome (with the Hub link for a push) when it ends. */
export function renderTransfer(view: TransferView): HTMLElement {
  const percent = (done: number, total: number) => (total > 0 ? Math.min(100, Math.round((done / total) * 100)) : 0);
  const bar = (done: number, total: number) => h("progress", { max: "100", value: String(percent(done, total)) });
  const running = view.state.state === "running";
  const cancel = running ? h("button", { type: "button", class: "transfer-cancel" }, "Cancel") : null;
  cancel?.addEventListener("click", async () => {
    cancel.disabled = true;
    await commands.transferCancel(view.id);
  });
  let outcome: HTMLElement | null = null;
  switch (view.state.state) {
    case "done": {
      const link = view.state.link;
      const open = link ? h("a", { href: "#", class: "transfer-link" }, link) : null;
      open?.addEventListener("click", (event) => {
        event.preventDefault();
        void commands.openLink(link!);
      });
      outcome = h("p", { class: "transfer-outcome" }, view.state.message, open ? " " : null, open);
      break;
    }
    case "failed":
      outcome = h("p", { class: "transfer-outcome error" }, view.state.error.message);
      break;
    case "cancelled":
      outcome = h("p", { class: "transfer-outcome muted" }, "Cancelled: nothing more was transferred (a pull resumes where it stopped).");
      break;
  }
  const moving = view.files.filter((f) => fileStage(f.state, running) === "moving");
  const finished = view.files.filter((f) => fileStage(f.state) === "arrived").length;
  return h("div", { class: "transfer", "data-transfer": String(view.id), "data-kind": view.kind, "data-state": view.state.state },
    h("div", { class: "row" },
      h("strong", {}, `${view.kind === "pull" ? "Pull" : "Push"} ${view.target}`),
      h("span", { class: "muted" }, running ? view.phase : view.state.state),
      cancel),
    ...present(
      running || view.total_bytes > 0
        ? h("div", { class: "row" }, bar(view.done_bytes, view.total_bytes),
            h("span", { class: "muted" }, `${formatBytes(view.done_bytes)} of ${formatBytes(view.total_bytes)}${view.files.length ? `, ${finished}/${view.files.length} files` : ""}`))
        : null,
      moving.length
        ? h("ul", { class: "transfer-files" },
            ...moving.map((f) => h("li", { "data-file": f.path, "data-state": f.state }, bar(f.done_bytes, f.size), ` ${f.path} `,
              h("span", { class: "muted" }, f.state === "waiting" ? "waiting" : `${formatBytes(f.done_bytes)} of ${formatBytes(f.size)}`))))
        : null,
      outcome,
    ),
  );
}
