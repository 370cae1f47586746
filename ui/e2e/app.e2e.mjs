// End to end: the real app under Xvfb, driven through WebDriver (tauri-driver in front of
// WebKitWebDriver), with a fixture cache as HF_HOME and a private Secret Service. Run by
// scripts/e2e.sh, which sets up all of that; this file speaks the W3C WebDriver protocol with
// Node's fetch (no client library).
//   env: APP (binary), DRIVER_URL, SCREENSHOTS (folder), SERVER_PORT, PUSH_FOLDER, EXPECTED_MODELS,
//        HUB_URL and HUB_TOKEN (the local test Hub the app's HF_ENDPOINT names), DEMO_MODEL (a model
//        the real engine runs), E2E_APPEARANCE ("light", the whole run, or "dark": the app under a
//        dark GTK theme, its windows' look and screenshots only)
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const driver = process.env.DRIVER_URL ?? "http://127.0.0.1:4444";
const shots = process.env.SCREENSHOTS;
mkdirSync(shots, { recursive: true });
const ELEMENT = "element-6066-11e4-a52e-4f735466cecf";

async function wd(method, path, body) {
  const response = await fetch(`${driver}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await response.json();
  if (!response.ok) throw new Error(`${method} ${path}: ${JSON.stringify(json.value)}`);
  return json.value;
}

const session = (await wd("POST", "/session", {
  capabilities: { alwaysMatch: { "tauri:options": { application: process.env.APP } } },
})).sessionId;
const s = (path) => `/session/${session}${path}`;
const find = async (css) => (await wd("POST", s("/element"), { using: "css selector", value: css }))[ELEMENT];
const findAll = async (css) => (await wd("POST", s("/elements"), { using: "css selector", value: css })).map((e) => e[ELEMENT]);
/** WebKitWebDriver does not scroll an element inside a scrolling pane into view by itself. By
 * selector, so that a click finds its element right before clicking (the Library re-renders
 * its rows every few seconds: a found row can go stale). */
const inView = (css) => wd("POST", s("/execute/sync"), { script: "document.querySelector(arguments[0])?.scrollIntoView({ block: 'nearest' })", args: [css] });
const click = async (css) => {
  await inView(css);
  await wd("POST", s(`/element/${await find(css)}/click`), {});
};
const text = async (css) => wd("GET", s(`/element/${await find(css)}/text`));
const type = async (css, value) => {
  await inView(css);
  const id = await find(css);
  await wd("POST", s(`/element/${id}/clear`), {});
  await wd("POST", s(`/element/${id}/value`), { text: value });
};
const script = (body, args = []) => wd("POST", s("/execute/sync"), { script: body, args });
const screenshot = async (name) => {
  writeFileSync(join(shots, `${name}.png`), Buffer.from(await wd("GET", s("/screenshot")), "base64"));
  console.log(`screenshot: ${join(shots, `${name}.png`)}`);
};
async function until(what, check, timeout = 15000) {
  const end = Date.now() + timeout;
  let last;
  while (Date.now() < end) {
    try {
      last = await check();
      if (last) return last;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what} (last: ${last})`);
}
const step = (name) => console.log(`== ${name}`);
/** The tray icon as the desktop shows it: trayer's strip at the top right of the 1280x800 screen
 * (scripts/e2e.sh), read from a screen capture. The icon is a glyph of one dark ink (src-tauri/
 * src/glyph.rs): a ring when stopped, a filled disc when running, a ring struck through on error.
 * Returns "none" (no ink), "ring" (an empty middle), "disc" (a full middle, ink over most of its
 * box) or "struck" (a full middle, much less ink). */
function trayGlyph(saveAs) {
  const desktop = join(shots, ".desktop.png");
  execFileSync("import", ["-silent", "-window", "root", desktop]);
  const crop = [desktop, "-crop", "120x28+1160+0", "+repage"];
  const txt = execFileSync("convert", [...crop, "txt:-"]).toString();
  if (saveAs) {
    execFileSync("convert", [...crop, "-scale", "400%", join(shots, `${saveAs}.png`)]);
    console.log(`screenshot: ${join(shots, `${saveAs}.png`)}`);
  }
  const ink = new Set();
  for (const m of txt.matchAll(/^(\d+),(\d+): \((\d+(?:\.\d+)?),(\d+(?:\.\d+)?),(\d+(?:\.\d+)?)/gm)) {
    const [x, y] = [Number(m[1]), Number(m[2])];
    const [r, g, b] = m.slice(3, 6).map(Number).map((v) => (v > 255 ? v / 257 : v));
    if (0.2126 * r + 0.7152 * g + 0.0722 * b < 110) ink.add(`${x},${y}`);
  }
  if (ink.size < 10) return "none";
  const points = [...ink].map((p) => p.split(",").map(Number));
  const [xs, ys] = [points.map((p) => p[0]), points.map((p) => p[1])];
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const [cx, cy, reach] = [Math.round((x0 + x1) / 2), Math.round((y0 + y1) / 2), 1];
  let middle = 0;
  let cells = 0;
  for (let x = cx - reach; x <= cx + reach; x++) {
    for (let y = cy - reach; y <= cy + reach; y++) {
      cells += 1;
      if (ink.has(`${x},${y}`)) middle += 1;
    }
  }
  if (middle / cells < 0.5) return "ring";
  return ink.size / ((x1 - x0 + 1) * (y1 - y0 + 1)) > 0.6 ? "disc" : "struck";
}
const state = () => script('return document.querySelector("#server-status").dataset.state');
/** The X clipboard as any other program reads it (xclip), not as the app remembers it. */
const clipboard = () => execFileSync("xclip", ["-o", "-selection", "clipboard"], { timeout: 5000 }).toString();
/** Puts `text` on the X clipboard (xclip stays in the background serving it until another
 * program takes it: no output pipes for it to hold open). */
const setClipboard = (text) => execFileSync("xclip", ["-i", "-selection", "clipboard"], { input: text, stdio: ["pipe", "ignore", "ignore"], timeout: 5000 });
/** The open tray menu's "Copy Base URL ▸" (its second line) chooses the submenu's `nth` item
 * (1 OpenAI, 2 Anthropic, 3 Ollama) by keyboard, wherever GTK places the submenu. */
async function trayCopy(nth) {
  execFileSync("xdotool", ["mousemove", "1267", "14", "click", "1"]);
  await new Promise((r) => setTimeout(r, 800));
  execFileSync("xdotool", ["mousemove", "1042", "68"]);
  await new Promise((r) => setTimeout(r, 600));
  execFileSync("xdotool", ["key", "Right", ...Array(nth - 1).fill("Down")]);
  await new Promise((r) => setTimeout(r, 300));
  if (nth === 3) {
    execFileSync("import", ["-silent", "-window", "root", join(shots, "tray-copy-submenu.png")]);
    console.log(`screenshot: ${join(shots, "tray-copy-submenu.png")}`);
  }
  execFileSync("xdotool", ["key", "Return"]);
}
const demo = process.env.DEMO_MODEL;
const demoRow = `tr[data-model="${demo}"]`;

/** Starts the server from the chat pane, asks the demo model a short question (a few tokens,
 * greedy) and waits for the answer and its statistics line; returns them and how many times
 * the answer's text was set while it came (more than once: it was streamed in pieces). */
async function chatOnce(question) {
  await click("#tab-chat");
  if ((await state()) !== "running") {
    await until("the offer to start the server", async () => script('return !document.querySelector("#chat-start-server").hidden'));
    await click("#chat-start-server");
    await until("running", async () => (await state()) === "running", 30000);
  }
  await until("the demo model in the chat's list", async () =>
    script("return [...document.querySelectorAll('#chat-model option')].some((o) => o.value === arguments[0])", [demo]));
  await script("const s = document.querySelector('#chat-model'); s.value = arguments[0]; s.dispatchEvent(new Event('change'))", [demo]);
  if (!(await script('return document.querySelector("#chat-options").open'))) await click("#chat-options summary");
  await until("the chat's options open", async () => script('return document.querySelector("#chat-options").open'), 3000);
  await type("#chat-temperature", "0");
  await type("#chat-max-tokens", "24");
  await type("#chat-input", question);
  // Counts the changes of the answer's text as it arrives.
  await script(`window.__answerChanges = 0;
    new MutationObserver((records) => {
      window.__answerChanges += records.filter((r) => r.target instanceof Element && r.target.matches('[data-role="assistant"] .text')).length;
    })
      .observe(document.querySelector("#chat-transcript"), { subtree: true, childList: true, characterData: true });`);
  await click("#chat-send");
  const stats = await until("the statistics line", async () => {
    const line = await text("#chat-stats");
    return /tokens\/s/.test(line) ? line : null;
  }, 120000);
  const answer = await script(`const a = [...document.querySelectorAll('#chat-transcript [data-role="assistant"] .text')].pop(); return a ? a.textContent : ""`);
  const failure = await text("#chat-message");
  return { answer, stats, failure, changes: await script("return window.__answerChanges") };
}

/** The app under a dark GTK theme (GTK_THEME=Adwaita:dark): its pages follow it. */
async function darkPass() {
  step("under a dark desktop theme every window is dark: library, chat, settings");
  await until("the library's rows", async () => (await findAll("tr[data-model]")).length > 0);
  const luminance = () => script(`const [r, g, b] = getComputedStyle(document.documentElement).backgroundColor.match(/\\d+/g).map(Number);
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;`);
  const page = await luminance();
  if (page > 80) throw new Error(`the library's page is not dark under a dark theme (luminance ${page})`);
  await click(`${demoRow} td`);
  await until("the details pane", async () => (await text("#details h2")).includes("SmolLM2"));
  const chat = await chatOnce("What is the capital of France?");
  if (!chat.answer.trim()) throw new Error(`no answer in the dark pass: ${chat.failure}`);
  await screenshot("chat-dark");
  await click("#tab-models");
  await click("#refresh");
  await until("the Loaded badge", async () => (await findAll(`${demoRow} .badge.loaded`)).length === 1, 20000);
  await click(`${demoRow} td`);
  await until("Unload in the details", async () => (await findAll("#unload")).length === 1);
  await screenshot("library-dark");
  await click("#server-toggle");
  await until("stopped", async () => (await state()) === "stopped", 30000);
  await script('location.href = "settings.html"');
  await until("the settings page", async () => (await findAll("#server-save")).length === 1);
  if ((await luminance()) > 80) throw new Error("the settings page is not dark under a dark theme");
  await screenshot("settings-dark");
}

async function mainPass() {
  step("the library lists the fixture models");
  const expected = Number(process.env.EXPECTED_MODELS);
  await until(`${expected} model rows`, async () => (await findAll("tr[data-model]")).length === expected);
  await click('tr[data-model="mlx-community/Llama-3.2-1B-Instruct-4bit"] td');
  await until("the details pane", async () => (await text("#details h2")).includes("Llama-3.2-1B-Instruct-4bit"));
  await screenshot("library");

  step("Pull by name from the (local) Hub: per-file progress, then the model is listed");
  await type("#pull-name", "e2e-org/pull-me");
  await click("#pull-start");
  await until("the pull to finish", async () =>
    (await script('return document.querySelector("[data-kind=pull]")?.dataset.state')) === "done", 60000);
  await until("the pulled model's row", async () => (await findAll('tr[data-model="e2e-org/pull-me"]')).length === 1, 20000);
  const outcome = await text("[data-kind=pull] .transfer-outcome");
  if (!outcome.includes("e2e-org/pull-me at ")) throw new Error(`the pull ended with "${outcome}"`);
  await screenshot("library-pulled");

  step("Start Server makes the port answer /v1/models and fills the tray's ring; the tray menu's Stop closes it");
  const base = `http://127.0.0.1:${process.env.SERVER_PORT}`;
  const stoppedGlyph = trayGlyph("tray-stopped");
  if (stoppedGlyph !== "ring") throw new Error(`the tray shows "${stoppedGlyph}" while the server is stopped, not a ring`);
  await click("#server-toggle");
  await until("running", async () => (await script('return document.querySelector("#server-status").dataset.state')) === "running");
  await until("the tray's ring to fill", async () => trayGlyph() === "disc");
  const models = await (await fetch(`${base}/v1/models`)).json();
  if (models.object !== "list") throw new Error(`/v1/models answered ${JSON.stringify(models)}`);
  await screenshot("library-server-running");
  trayGlyph("tray-running");
  step("the tray's Copy Base URL ▸ puts the OpenAI and the Ollama base URL on the X clipboard");
  setClipboard("nothing copied yet");
  await trayCopy(1);
  await until("the OpenAI URL on the clipboard", async () => clipboard() === `${base}/v1`, 5000);
  await trayCopy(3);
  await until("the Ollama URL on the clipboard", async () => clipboard() === base, 5000);
  // The tray's menu as the desktop shows it (a click on the icon in trayer's strip).
  execFileSync("xdotool", ["mousemove", "1267", "14", "click", "1"]);
  await new Promise((r) => setTimeout(r, 800));
  execFileSync("import", ["-silent", "-window", "root", join(shots, "tray-menu.png")]);
  console.log(`screenshot: ${join(shots, "tray-menu.png")}`);
  // Its "Stop Server" item (the third line of the menu that opens under the icon).
  execFileSync("xdotool", ["mousemove", "1042", "93", "click", "1"]);
  await until("stopped", async () => (await script('return document.querySelector("#server-status").dataset.state')) === "stopped");
  await until("the port closed", async () => fetch(`${base}/health`).then(() => false, () => true));
  await until("the tray's ring again", async () => trayGlyph() === "ring");

  step("Chat with the demo model through the real embedded server: the answer streams in, then time to first token and tokens/s");
  const chat = await chatOnce("What is the capital of France?");
  if (!chat.answer.trim()) throw new Error(`no answer: ${chat.failure}`);
  if (chat.changes < 2) throw new Error(`the answer came in ${chat.changes} change(s), not streamed: "${chat.answer}"`);
  if (!/^\d+\.\d\d s to first token · \d+(\.\d)? tokens\/s · \d+ tokens$/.test(chat.stats)) throw new Error(`the statistics line: "${chat.stats}"`);
  const tokens = Number(chat.stats.match(/(\d+) tokens$/)[1]);
  if (tokens < 2 || tokens > 24) throw new Error(`${tokens} tokens with max tokens 24`);
  console.log(`answer (${chat.stats}): ${chat.answer}`);
  await screenshot("chat");

  step("the model in memory: 'Loaded · size' on its row (as the server's /api/ps says), Unload in its details frees it");
  const ps = await (await fetch(`${base}/api/ps`)).json();
  if (ps.models?.[0]?.name !== demo) throw new Error(`/api/ps: ${JSON.stringify(ps)}`);
  await click("#tab-models");
  await until("the Loaded badge", async () => (await findAll(`${demoRow} .badge.loaded`)).length === 1, 20000);
  const loadedText = await text(`${demoRow} .badge.loaded`);
  if (!/^Loaded · \d+(\.\d)? MB$/.test(loadedText)) throw new Error(`the badge says "${loadedText}"`);
  if ((await findAll("tr[data-model] .badge.loaded")).length !== 1) throw new Error("more than one model shows Loaded");
  await click(`${demoRow} td`);
  await until("Unload in the details", async () => (await findAll("#unload")).length === 1);
  // The server sets the expiry once the answer is over: a refresh (every 5 s) later at most.
  await until("when it unloads by itself", async () => /^Unloads by itself in \d+ minutes? if idle\.$/.test(await text("#unloads-at")));
  await screenshot("library-loaded");
  await click("#unload");
  await until("the unloaded message", async () => (await text("#library-message")).startsWith("Unloaded"));
  await until("the badge gone", async () => (await findAll(`${demoRow} .badge.loaded`)).length === 0);
  const after = await (await fetch(`${base}/api/ps`)).json();
  if (after.models.length !== 0) throw new Error(`still loaded after Unload: ${JSON.stringify(after)}`);
  await click("#server-toggle");
  await until("stopped", async () => (await state()) === "stopped", 30000);

  step("the token is stored in the Secret Service, shown masked");
  await script('location.href = "settings.html"');
  await until("the settings page", async () => (await findAll("#token-input")).length === 1);
  const token = "hf_e2etokene2etokene2etokene2etokenab";
  await type("#token-input", token);
  await click("#token-save");
  await until("the masked token", async () => (await text("#token-masked")).startsWith("hf_…"));
  const stored = execFileSync("secret-tool", ["lookup", "service", "mlx-knife", "username", "huggingface"]).toString();
  if (stored !== token) throw new Error("the keyring does not hold the token that was typed");
  if ((await script("return document.body.innerText")).includes(token.slice(3))) throw new Error("the token is visible");
  if (token !== process.env.HUB_TOKEN) throw new Error("e2e.sh and this test disagree on the token");
  await click("#token-test");
  await until("whoami through the keyring's token", async () => (await text("#token-result")).includes("Logged in as e2e-user"));

  step("Settings shows the three base URLs while the server runs; each Copy puts its URL on the X clipboard");
  await until("no URLs while stopped", async () => (await findAll("#client-urls .client-url")).length === 0);
  await click("#server-toggle");
  await until("running", async () => (await state()) === "running", 30000);
  const root = `http://127.0.0.1:${process.env.SERVER_PORT}`;
  const shown = await until("the base URLs", async () => {
    const rows = await script(`return [...document.querySelectorAll("#client-urls .client-url")]
      .map((r) => [r.dataset.api, r.querySelector("code").textContent, r.querySelector(".used-by").textContent])`);
    return rows.length === 3 ? rows : null;
  });
  const expectedUrls = [["openai", `${root}/v1`], ["anthropic", root], ["ollama", root]];
  if (JSON.stringify(shown.map(([api, url]) => [api, url])) !== JSON.stringify(expectedUrls)) throw new Error(`Settings shows ${JSON.stringify(shown)}`);
  if (!shown[1][2].includes("Claude Code")) throw new Error(`the Anthropic row says it is for "${shown[1][2]}"`);
  if ((await findAll("#client-key-note")).length) throw new Error("a key note without an API key");
  // Each URL answers as its clients will ask it.
  if ((await (await fetch(`${root}/v1/models`)).json()).object !== "list") throw new Error("the OpenAI base URL does not answer /models");
  if (!Array.isArray((await (await fetch(`${root}/api/tags`)).json()).models)) throw new Error("the Ollama base URL does not answer /api/tags");
  await screenshot("settings-client-urls");
  for (const [api, url] of expectedUrls) {
    setClipboard("nothing copied yet");
    await click(`#client-urls .copy-url[data-api="${api}"]`);
    await until(`"Copied" on the ${api} button`, async () => (await text(`#client-urls .copy-url[data-api="${api}"]`)) === "Copied", 3000);
    const held = clipboard();
    if (held !== url) throw new Error(`after Copy of ${api} the clipboard holds "${held}", not "${url}"`);
  }
  await click("#server-toggle");
  await until("stopped", async () => (await state()) === "stopped", 30000);

  step("Launch at login writes an XDG autostart entry for this app, and removes it");
  // auto-launch writes to ~/.config/autostart (HOME is a throwaway folder here: with-keyring.sh).
  const autostart = join(process.env.HOME, ".config", "autostart");
  const entries = () => (existsSync(autostart) ? readdirSync(autostart) : []);
  if (entries().length) throw new Error(`autostart entries before: ${entries()}`);
  await until("the checkbox's state", async () => (await script('return document.querySelector("#launch-at-login").checked')) === false);
  await click("#launch-at-login");
  await until("the autostart entry", async () => entries().length === 1);
  const entry = readFileSync(join(autostart, entries()[0])).toString();
  if (!entry.includes(`Exec=${process.env.APP}`) && !entry.includes(process.env.APP)) throw new Error(`the entry runs something else:\n${entry}`);
  await click("#launch-at-login");
  await until("the entry removed", async () => entries().length === 0);

  step("Other devices on my network shows the warning banner; Advanced holds the address");
  await click("#reach-network");
  await click("#server-save");
  await until("the banner", async () => (await script('return !document.querySelector("#exposed-banner").hidden')) === true);
  await click("#server-advanced summary");
  await until("Advanced open", async () => script('return document.querySelector("#server-advanced").open'), 3000);
  const host = await script('return document.querySelector("#server-host").value');
  if (host !== "0.0.0.0") throw new Error(`"Other devices" set the host to ${host}`);
  await screenshot("settings-exposed");
  await click("#reach-local");
  await click("#server-save");
  await until("the banner gone", async () => (await script('return document.querySelector("#exposed-banner").hidden')) === true);

  step("a dropped folder shows its check result");
  await script('location.href = "push.html"');
  await until("the push page", async () => (await findAll("#drop-zone")).length === 1);
  // The drop as Tauri delivers it to the webview (a real X11 drop needs a drag source).
  await script(
    `return window.__TAURI_INTERNALS__.invoke("plugin:event|emit", { event: "tauri://drag-drop", payload: { paths: [arguments[0]], position: { x: 10, y: 10 } } })`,
    [process.env.PUSH_FOLDER],
  );
  await until("the check result", async () => (await findAll("#check-summary")).length === 1);
  const healthy = await script('return document.querySelector("#check-summary").dataset.healthy');
  if (healthy !== "true") throw new Error(`the fixture folder checked as ${healthy}`);
  await screenshot("push-checked");

  step("Push: progress, then the link; the repository exists on the Hub, private");
  await type("#repo-id", "e2e-user/pushed");
  await click("#push");
  await until("the push to finish", async () =>
    (await script('return document.querySelector("#push-progress [data-kind=push]")?.dataset.state')) === "done", 60000);
  const link = await text("#push-progress .transfer-link");
  if (!link.startsWith(`${process.env.HUB_URL}/e2e-user/pushed`)) throw new Error(`the push linked to "${link}"`);
  const auth = { headers: { authorization: `Bearer ${token}` } };
  const info = await (await fetch(`${process.env.HUB_URL}/api/models/e2e-user/pushed`, auth)).json();
  if (info.private !== true) throw new Error(`the pushed repository: ${JSON.stringify(info).slice(0, 300)}`);
  const anonymous = await fetch(`${process.env.HUB_URL}/api/models/e2e-user/pushed`);
  if (anonymous.status !== 401 && anonymous.status !== 404) throw new Error(`a private repo answered ${anonymous.status} without a token`);
  await screenshot("push-done");
}

let failed = false;
try {
  await (process.env.E2E_APPEARANCE === "dark" ? darkPass() : mainPass());
} catch (error) {
  failed = true;
  console.error(`FAILED: ${error.message}`);
  await screenshot("failure").catch(() => {});
} finally {
  await wd("DELETE", s("")).catch(() => {});
}
process.exit(failed ? 1 : 0);
