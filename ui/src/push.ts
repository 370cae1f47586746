// Push a Folder: drop a model folder (or choose one), see the offline check, set the target
// repository, preview the push as a dry run, then push with progress and a link at the end.
import { getCurrentWebview } from "@tauri-apps/api/webview";
import { commands, events, type FolderCheckView, type PushPreview, type TransferView } from "./bindings";
import { formatBytes, h, messageOf, present, renderTransfer, say, severityLook, unwrap } from "./common";

const drop = h("div", { id: "drop-zone", class: "drop" }, "Drop a model folder here");
const choose = h("button", { id: "choose-folder", type: "button" }, "Choose a Folder…");
const checkResult = h("section", { id: "check-result" });
const repo = h("input", { id: "repo-id", type: "text", placeholder: "org/model-name" });
const isPrivate = h("input", { id: "private", type: "checkbox", checked: true });
const branch = h("input", { id: "branch", type: "text", value: "main" });
const commitMessage = h("input", { id: "commit-message", type: "text", value: "Upload with MLX Knife" });
const preview = h("button", { id: "preview", type: "button", disabled: true }, "Preview (dry run)");
const push = h("button", { id: "push", type: "button", disabled: true }, "Push");
const progress = h("section", { id: "push-progress" });
let pushing: number | null = null;
let healthy = false;
const message = h("p", { id: "push-message", class: "message" });
const previewResult = h("section", { id: "preview-result" });

let folder: string | null = null;

function renderCheck(check: FolderCheckView): void {
  checkResult.replaceChildren(
    h("h2", {}, check.folder),
    h("p", { id: "check-summary", "data-healthy": String(check.healthy) },
      `${check.files.length} files, ${formatBytes(check.total_bytes)}: `,
      h("span", { class: `badge ${check.healthy ? "good" : "bad"}` }, check.healthy ? "ready to push" : "not a healthy model folder")),
    check.anomalies.length
      ? h("ul", { id: "anomalies", class: "problems" },
          ...check.anomalies.map((a) => {
            const look = severityLook(a.severity);
            return h("li", { "data-severity": a.severity, "data-code": a.code }, h("span", { class: `badge ${look.badge}` }, look.label), ` ${a.message}`);
          }))
      : h("p", { class: "muted" }, "No anomalies."),
  );
}

async function useFolder(path: string): Promise<void> {
  folder = null;
  preview.disabled = true;
  push.disabled = true;
  previewResult.replaceChildren();
  say(message, `Checking ${path}…`);
  try {
    const check = unwrap(await commands.pushCheck(path));
    renderCheck(check);
    healthy = check.healthy;
    folder = path;
    preview.disabled = false;
    // As `mlxk push` without --force: a folder with errors is not pushed.
    push.disabled = pushing !== null || !check.healthy;
    push.title = check.healthy ? "" : "Fix the errors above first (or use `mlxk push --force`)";
    say(message, "");
  } catch (error) {
    checkResult.replaceChildren();
    say(message, messageOf(error), true);
  }
}

function list(title: string, items: string[]): HTMLElement | null {
  return items.length ? h("details", { open: items.length <= 20 }, h("summary", {}, `${title} (${items.length})`), h("ul", { class: "files" }, ...items.map((i) => h("li", {}, i)))) : null;
}

function renderPreview(p: PushPreview): void {
  const where = !p.repo_exists
    ? `${p.repo_id} does not exist yet: it would be created ${isPrivate.checked ? "private" : "public"}.`
    : !p.branch_exists
      ? `Branch ${p.branch} does not exist yet: it would be created.`
      : p.no_changes
        ? `No changes: ${p.repo_id} (${p.branch}) already has these files.`
        : `${p.repo_id} (${p.branch})`;
  previewResult.replaceChildren(...present(
    h("h2", {}, "Dry run"),
    h("p", { id: "preview-summary" }, where),
    h("p", {}, `${p.added.length} to add, ${p.changed.length} to change, ${p.unchanged.length} unchanged, ${p.deleted.length} to delete; ${p.remote_only.length} remote files kept.`),
    list("Add", p.added),
    list("Change", p.changed),
    list("Delete", p.deleted),
    h("p", { class: "muted" }, p.repo_url),
  ));
}

choose.addEventListener("click", async () => {
  try {
    const picked = unwrap(await commands.pickFolder());
    if (picked) await useFolder(picked);
  } catch (error) {
    say(message, messageOf(error), true);
  }
});

preview.addEventListener("click", async () => {
  if (!folder) return;
  if (!repo.value.includes("/")) return say(message, "Enter the repository as org/name.", true);
  preview.disabled = true;
  say(message, "Comparing with the Hub…");
  try {
    const token = unwrap(await commands.secretStatus("hub_token"));
    renderPreview(unwrap(await commands.pushPreview(folder, repo.value, branch.value)));
    say(message, token.stored ? "" : "No Hugging Face token in the keyring: set one in Settings before pushing.", !token.stored);
  } catch (error) {
    say(message, messageOf(error), true);
  } finally {
    preview.disabled = false;
  }
});

push.addEventListener("click", async () => {
  if (!folder) return;
  if (!repo.value.includes("/")) return say(message, "Enter the repository as org/name.", true);
  push.disabled = true;
  say(message, `Pushing ${folder} to ${repo.value}…`);
  try {
    pushing = unwrap(await commands.pushStart(folder, repo.value, branch.value, commitMessage.value, !isPrivate.checked));
    const started = (await commands.transfersList()).find((t) => t.id === pushing);
    if (started) showPush(started);
  } catch (error) {
    pushing = null;
    push.disabled = false;
    say(message, messageOf(error), true);
  }
});

function showPush(view: TransferView): void {
  if (view.id !== pushing) return;
  progress.replaceChildren(renderTransfer(view));
  if (view.state.state !== "running") {
    pushing = null;
    push.disabled = folder === null || !healthy;
    say(message, view.state.state === "done" ? "Pushed." : view.state.state === "cancelled" ? "Push cancelled: nothing was committed." : "The push failed.", view.state.state === "failed");
  }
}
void events.transferChanged.listen((event) => showPush(event.payload));

void getCurrentWebview().onDragDropEvent((event) => {
  const kind = event.payload.type;
  drop.classList.toggle("over", kind === "enter" || kind === "over");
  if (kind === "drop") {
    const [first] = event.payload.paths;
    if (first) void useFolder(first);
  }
});

const label = (text: string, control: HTMLElement) => h("label", {}, h("span", {}, text), control);
document.querySelector("#app")!.append(
  h("header", {}, h("h1", {}, "Push a Folder")),
  h("div", { class: "row" }, drop, choose),
  message,
  checkResult,
  h("section", {},
    label("Repository", repo),
    h("label", { class: "check" }, isPrivate, h("span", {}, "Private (a new repository stays private unless you untick this)")),
    label("Branch", branch),
    label("Commit message", commitMessage),
    h("div", { class: "row" }, preview, push),
    h("p", { class: "muted" }, "The dry run shows exactly what Push would send; a new repository is created private unless you untick Private.")),
  progress,
  previewResult,
);
