// Settings: the Hugging Face token and the server's API key (OS keyring, shown masked), and
// the server's host, port, keep-alive and CORS origins, which apply on the next start.
import { commands, type SecretName, type SecretStatus, type SettingsView, type TokenSource } from "./bindings";
import { h, messageOf, say, serverLine, unhandled, unwrap } from "./common";

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

function serverSection(): HTMLElement {
  const host = h("input", { id: "server-host", type: "text" });
  const port = h("input", { id: "server-port", type: "number", min: "0", max: "65535" });
  const keepAlive = h("input", { id: "server-keep-alive", type: "number", min: "0" });
  const cors = h("textarea", { id: "server-cors", rows: "2", placeholder: "https://example.com (one per line)" });
  const insecure = h("input", { id: "server-insecure", type: "checkbox" });
  const save = h("button", { id: "server-save", type: "button" }, "Save");
  const result = h("p", { id: "server-result", class: "message" });
  const show = (view: SettingsView) => {
    host.value = view.server.host ?? "127.0.0.1";
    port.value = String(view.server.port ?? 8000);
    keepAlive.value = String(view.server.keep_alive_secs ?? 300);
    cors.value = (view.server.cors_origins ?? []).join("\n");
    insecure.checked = view.server.insecure_no_auth ?? false;
    banner.hidden = !view.exposed;
    banner.textContent = view.exposed
      ? `The server is set to listen on ${view.server.host}: every machine that can reach this one on port ${view.server.port} can use your models. Set an API key below, or use 127.0.0.1.`
      : "";
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
  void commands.getSettings().then(show);
  const label = (text: string, control: HTMLElement) => h("label", {}, h("span", {}, text), control);
  return h("section", {},
    h("h2", {}, "Server"),
    h("p", { class: "muted" }, "Changes apply when the server is (re)started."),
    label("Host", host),
    label("Port", port),
    label("Keep a model loaded (seconds idle, 0 = always)", keepAlive),
    label("Extra CORS origins", cors),
    h("label", { class: "check" }, insecure, h("span", {}, "Allow a non-loopback host without an API key (not recommended)")),
    h("div", { class: "row" }, save),
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

document.querySelector("#app")!.append(
  h("header", {}, h("h1", {}, "Settings")),
  banner,
  serverLine(),
  secretSection("hub_token", "Hugging Face token", "hf_…", true),
  secretSection("server_api_key", "Server API key", "a key clients must send", false),
  serverSection(),
  appSection(),
);
