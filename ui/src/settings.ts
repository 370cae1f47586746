// Settings: the base URLs to paste into clients (OpenAI, Anthropic, Ollama) with Copy while the
// server runs; who may reach the server (only this Mac, or other devices with an API key), how
// long a model stays loaded, and under Advanced its address, port and CORS origins, which apply
// on the next start (Restart Server when they differ from the running server's); the server's
// API key and the Hugging Face token (OS keyring, shown masked); launch at login.
import { commands, events, type SecretName, type SecretStatus, type SettingsView, type TokenSource } from "./bindings";
import { clientUrlList, describeStatus, h, messageOf, say, serverLine, unhandled, unwrap } from "./common";

const banner = h("div", { id: "exposed-banner", class: "banner danger", hidden: true });

/** Where the tested token came from, in words. */
function tokenSource(source: TokenSource): string {
  switch (source) {
    case "keyring":
      return "the keyring";
    case "environment":
      return "HF_TOKEN";
    case "token_file":
      return "the token file";
    default:
      return unhandled(source, String(source));
  }
}

function secretSection(name: SecretName, title: string, hint: string, withTest: boolean): HTMLElement {
  const prefix = name === "hub_token" ? "token" : "api-key";
  const masked = h("code", { id: `${prefix}-masked` });
  const input = h("input", { id: `${prefix}-input`, type: "password", autocomplete: "off", placeholder: hint });
  const save = h("button", { id: `${prefix}-save`, type: "button" }, "Save");
  const remove = h("button", { id: `${prefix}-remove`, type: "button" }, "Remove");
  const test = withTest ? h("button", { id: `${prefix}-test`, type: "button" }, "Test") : null;
  const result = h("p", { id: `${prefix}-result`, class: "message" });
  const show = (status: SecretStatus) => {
    masked.textContent = status.error ? "keyring unavailable" : status.masked ?? "not set";
    remove.disabled = !status.stored;
    if (status.error) say(result, status.error, true);
  };
  const run = async (work: () => Promise<void>) => {
    try {
      await work();
    } catch (error) {
      say(result, messageOf(error), true);
    }
  };
  save.addEventListener("click", () => run(async () => {
    if (!input.value.trim()) return say(result, "Type or paste a value first.", true);
    show(unwrap(await commands.secretSet(name, input.value)));
    input.value = "";
    say(result, "Stored in the OS keyring.");
  }));
  remove.addEventListener("click", () => run(async () => {
    show(unwrap(await commands.secretRemove(name)));
    say(result, "Removed from the OS keyring.");
  }));
  test?.addEventListener("click", () => run(async () => {
    say(result, "Asking the Hub…");
    const account = unwrap(await commands.tokenTest());
    const orgs = account.orgs.length ? ` (orgs: ${account.orgs.map((o) => o.name).join(", ")})` : "";
    say(result, `Logged in as ${account.name}${orgs}, token from ${tokenSource(account.token_source)}, ${account.endpoint}`);
  }));
  void run(async () => show(unwrap(await commands.secretStatus(name))));
  return h("section", {},
    h("h2", {}, title),
    h("p", {}, "Stored: ", masked),
    h("div", { class: "row" }, input, save, test, remove),
    result);
}

/** Who may reach the server, in words: the two hosts a person means; any other address is
 * set under Advanced. */
const ONLY_THIS_MAC = "127.0.0.1";
const MY_NETWORK = "0.0.0.0";
const LOOPBACK = new Set(["127.0.0.1", "localhost", "::1"]);

function serverSection(clientUrls: HTMLElement): HTMLElement {
  const local = h("input", { id: "reach-local", type: "radio", name: "reach", value: "local" });
  const network = h("input", { id: "reach-network", type: "radio", name: "reach", value: "network" });
  const host = h("input", { id: "server-host", type: "text" });
  const port = h("input", { id: "server-port", type: "number", min: "0", max: "65535" });
  const keepAlive = h("input", { id: "server-keep-alive", type: "number", min: "0" });
  const cors = h("textarea", { id: "server-cors", rows: "2", placeholder: "https://example.com (one per line)" });
  const insecure = h("input", { id: "server-insecure", type: "checkbox" });
  const advanced = h("details", { id: "server-advanced", class: "advanced" }, h("summary", {}, "Advanced"));
  const save = h("button", { id: "server-save", type: "button" }, "Save");
  const restart = h("button", { id: "server-restart", type: "button", hidden: true }, "Restart Server");
  const result = h("p", { id: "server-result", class: "message" });
  // The radio buttons and the host field say the same thing: each follows the other.
  const followHost = () => {
    const loopback = LOOPBACK.has(host.value.trim());
    local.checked = loopback;
    network.checked = !loopback;
  };
  local.addEventListener("change", () => (host.value = ONLY_THIS_MAC));
  network.addEventListener("change", () => {
    if (LOOPBACK.has(host.value.trim())) host.value = MY_NETWORK;
  });
  host.addEventListener("input", followHost);
  const show = (view: SettingsView) => {
    host.value = view.server.host ?? ONLY_THIS_MAC;
    port.value = String(view.server.port ?? 8000);
    keepAlive.value = String(view.server.keep_alive_secs ?? 300);
    cors.value = (view.server.cors_origins ?? []).join("\n");
    insecure.checked = view.server.insecure_no_auth ?? false;
    followHost();
    banner.hidden = !view.exposed;
    banner.textContent = view.exposed
      ? `Other devices can use your models: the server is set to listen on ${view.server.host}, and every machine that can reach this one on port ${view.server.port} can send it requests. Set an API key below, or choose "Only this Mac".`
      : "";
    restart.hidden = !view.restart_needed;
    if (view.restart_needed) say(result, "Saved. The running server keeps its old settings until you restart it.");
  };
  save.addEventListener("click", async () => {
    try {
      const view = unwrap(await commands.saveSettings({
        host: host.value.trim(),
        port: Number(port.value),
        keep_alive_secs: Number(keepAlive.value),
        cors_origins: cors.value.split("\n").map((o) => o.trim()).filter(Boolean),
        insecure_no_auth: insecure.checked,
      }));
      say(result, "Saved. Changes apply when the server is (re)started.");
      show(view);
    } catch (error) {
      say(result, messageOf(error), true);
    }
  });
  restart.addEventListener("click", async () => {
    restart.disabled = true;
    say(result, "Restarting the server…");
    try {
      const status = unwrap(await commands.serverRestart());
      say(result, status.state === "running" ? "The server runs with the saved settings." : describeStatus(status), status.state === "error");
      show(await commands.getSettings());
    } catch (error) {
      say(result, messageOf(error), true);
    } finally {
      restart.disabled = false;
    }
  });
  // Started or stopped elsewhere (the tray, the Library): whether a restart is due changes.
  void events.serverStatusChanged.listen(async () => {
    const view = await commands.getSettings();
    restart.hidden = !view.restart_needed;
  });
  void commands.getSettings().then(show);
  const label = (text: string, control: HTMLElement) => h("label", {}, h("span", {}, text), control);
  advanced.append(
    label("Listen on address", host),
    label("Port", port),
    label("Extra web origins allowed (CORS)", cors),
    h("label", { class: "check" }, insecure, h("span", {}, "Let other devices in without an API key (not recommended)")),
  );
  return h("section", {},
    h("h2", {}, "Server"),
    clientUrls,
    h("p", { class: "muted" }, "Who can use your models through the server:"),
    h("label", { class: "choice" }, local, h("span", {}, "Only this Mac")),
    h("label", { class: "choice" }, network, h("span", {}, "Other devices on my network (needs an API key)")),
    label("Keep a model loaded (seconds idle, 0 = always)", keepAlive),
    advanced,
    h("div", { class: "row" }, save, restart),
    result);
}

function appSection(): HTMLElement {
  const atLogin = h("input", { id: "launch-at-login", type: "checkbox" });
  const result = h("p", { id: "launch-at-login-result", class: "message" });
  atLogin.addEventListener("change", async () => {
    try {
      atLogin.checked = unwrap(await commands.setLaunchAtLogin(atLogin.checked));
      say(result, atLogin.checked ? "MLX Knife starts when you log in." : "MLX Knife no longer starts at login.");
    } catch (error) {
      say(result, messageOf(error), true);
    }
  });
  void commands.launchAtLogin().then((r) => {
    if (r.status === "ok") atLogin.checked = r.data;
    else say(result, r.error.message, true);
  });
  return h("section", {},
    h("h2", {}, "App"),
    h("label", { class: "check" }, atLogin, h("span", {}, "Launch at login")),
    result);
}

const clientUrls = clientUrlList(true);
const app = document.querySelector<HTMLElement>("#app")!;
app.classList.add("fill");
app.append(
  h("header", {}, h("h1", {}, "Settings")),
  // Above the scrolling part: the warning stays in view and never covers a field.
  banner,
  serverLine(clientUrls),
  h("div", { id: "settings-body", class: "scroll" },
    serverSection(clientUrls.element),
    secretSection("server_api_key", "Server API key", "a key clients must send", false),
    secretSection("hub_token", "Hugging Face token", "hf_…", true),
    appSection(),
  ),
);
