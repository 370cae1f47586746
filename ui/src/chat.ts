// The chat pane: try a model against the embedded server's OpenAI API, streamed as it is
// generated, with a system prompt, temperature, stop strings and a token limit; shows time to first token and
// tokens per second. It talks to /v1/chat/completions like any client would: the server must
// be running (it offers to start it).
import { commands, events, type ModelSummary, type ServerStatus } from "./bindings";
import { canChat, h, messageOf, say, unwrap } from "./common";

type Message = { role: "system" | "user" | "assistant"; content: string };

/** What one streamed answer measured. */
export type ChatStats = { firstTokenMs: number | null; tokens: number; tokensPerSecond: number | null };

/** The `data:` payloads of a server-sent event stream, as they arrive (split across chunks). */
export async function* sseData(body: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end: number;
    while ((end = buffer.search(/\r?\n\r?\n/)) !== -1) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, "");
      const data = event.split(/\r?\n/).filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
      if (data) yield data;
    }
  }
}

/** The error message of a refused request (OpenAI's `{error: {message}}`), or its status. */
async function refusal(response: Response): Promise<string> {
  const text = await response.text();
  try {
    const message = JSON.parse(text)?.error?.message;
    if (message) return String(message);
  } catch {
    // not JSON: fall through
  }
  return `the server answered ${response.status} ${response.statusText}`.trim();
}

export function chatPane(models: () => ModelSummary[]): { element: HTMLElement; choose: (name: string) => void; refreshModels: () => void } {
  const model = h("select", { id: "chat-model" });
  const system = h("textarea", { id: "chat-system", rows: "2", placeholder: "You are a helpful assistant." });
  const temperature = h("input", { id: "chat-temperature", type: "number", min: "0", max: "2", step: "0.1", placeholder: "model default" });
  const stop = h("input", { id: "chat-stop", type: "text", placeholder: "e.g. ###, one per comma" });
  const maxTokens = h("input", { id: "chat-max-tokens", type: "number", min: "1", step: "1", placeholder: "model default" });
  const transcript = h("div", { id: "chat-transcript", class: "transcript", "aria-live": "polite" });
  const input = h("textarea", { id: "chat-input", rows: "2", placeholder: "Ask something… (Enter sends, Shift+Enter for a new line)" });
  const send = h("button", { id: "chat-send", type: "button" }, "Send");
  const stopButton = h("button", { id: "chat-stop-button", type: "button", hidden: true }, "Stop");
  const clear = h("button", { id: "chat-clear", type: "button" }, "New chat");
  const stats = h("p", { id: "chat-stats", class: "muted" });
  const message = h("p", { id: "chat-message", class: "message" });
  const startServer = h("button", { id: "chat-start-server", type: "button", hidden: true }, "Start Server");

  let history: Message[] = [];
  let running: AbortController | null = null;
  let server: ServerStatus = { state: "stopped" };
  let wanted: string | null = null;

  const showServer = (status: ServerStatus) => {
    server = status;
    const down = status.state !== "running";
    startServer.hidden = !down || status.state === "starting";
    if (down) {
      say(message, status.state === "starting" ? "The server is starting…" : "The chat talks to the server, which is not running.", status.state === "error");
    } else if (message.textContent?.startsWith("The chat talks") || message.textContent === "The server is starting…") {
      say(message, "");
    }
  };
  startServer.addEventListener("click", async () => {
    startServer.disabled = true;
    try {
      showServer(unwrap(await commands.serverStart()));
    } catch (error) {
      say(message, messageOf(error), true);
    } finally {
      startServer.disabled = false;
    }
  });
  void commands.serverStatus().then(showServer);
  void events.serverStatusChanged.listen((event) => showServer(event.payload));

  const refreshModels = () => {
    const runnable = models().filter(canChat);
    const current = wanted ?? model.value;
    model.replaceChildren(...runnable.map((m) => h("option", { value: m.name, selected: m.name === current }, m.display_name)));
    if (runnable.length === 0) model.append(h("option", { value: "" }, "No model here can chat"));
  };

  const bubble = (role: Message["role"], text: string) =>
    h("div", { class: `bubble ${role}`, "data-role": role }, h("span", { class: "who" }, role === "user" ? "You" : "Model"), h("div", { class: "text" }, text));

  const setRunning = (on: boolean) => {
    send.hidden = on;
    stopButton.hidden = !on;
    input.disabled = on;
  };

  async function ask(): Promise<void> {
    const text = input.value.trim();
    if (!text || running) return;
    if (server.state !== "running") return showServer(server);
    if (!model.value) return say(message, "Choose a model that can chat.", true);
    const base = server.urls.find((u) => u.api === "openai")!.url;
    // This answer belongs to this conversation, even if "New chat" starts another meanwhile.
    const conversation = history;
    conversation.push({ role: "user", content: text });
    transcript.append(bubble("user", text));
    const answer = bubble("assistant", "");
    const answerText = answer.querySelector(".text")!;
    transcript.append(answer);
    input.value = "";
    say(message, "");
    stats.textContent = "";
    const controller = new AbortController();
    running = controller;
    setRunning(true);
    const messages: Message[] = [...(system.value.trim() ? [{ role: "system" as const, content: system.value.trim() }] : []), ...conversation];
    const body: Record<string, unknown> = { model: model.value, messages, stream: true, stream_options: { include_usage: true } };
    if (temperature.value.trim() !== "") body.temperature = Number(temperature.value);
    const stops = stop.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (stops.length) body.stop = stops;
    if (maxTokens.value.trim() !== "") body.max_tokens = Number(maxTokens.value);
    const started = performance.now();
    let first: number | null = null;
    let chunks = 0;
    let usageTokens: number | null = null;
    let content = "";
    try {
      const key = await commands.chatApiKey();
      const response = await fetch(`${base}/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", ...(key ? { authorization: `Bearer ${key}` } : {}) },
        body: JSON.stringify(body),
        signal: controller.signal,
      });
      if (!response.ok || !response.body) throw new Error(await refusal(response));
      for await (const data of sseData(response.body)) {
        if (data === "[DONE]") break;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message ?? "the server reported an error");
        if (chunk.usage?.completion_tokens !== undefined) usageTokens = chunk.usage.completion_tokens;
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) {
          first ??= performance.now();
          chunks += 1;
          content += delta;
          answerText.textContent = content;
          transcript.scrollTop = transcript.scrollHeight;
        }
      }
      conversation.push({ role: "assistant", content });
    } catch (error) {
      if (controller.signal.aborted) {
        answer.append(h("span", { class: "muted stopped" }, " (stopped)"));
        if (content) conversation.push({ role: "assistant", content });
      } else {
        answer.classList.add("failed");
        conversation.pop(); // the question was not answered: it is not part of the conversation
        say(message, messageOf(error), true);
      }
    } finally {
      running = null;
      setRunning(false);
      const tokens = usageTokens ?? chunks;
      const end = performance.now();
      const result: ChatStats = {
        firstTokenMs: first === null ? null : first - started,
        tokens,
        tokensPerSecond: first !== null && tokens > 1 && end > first ? (tokens - 1) / ((end - first) / 1000) : null,
      };
      stats.textContent = describeStats(result);
      input.focus();
    }
  }

  send.addEventListener("click", () => void ask());
  stopButton.addEventListener("click", () => running?.abort());
  clear.addEventListener("click", () => {
    running?.abort();
    history = [];
    transcript.replaceChildren();
    stats.textContent = "";
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      void ask();
    }
  });

  const label = (text: string, control: HTMLElement) => h("label", {}, h("span", {}, text), control);
  const element = h("section", { id: "chat", class: "chat" },
    h("div", { class: "row" }, label("Model", model), clear),
    h("details", { id: "chat-options" }, h("summary", {}, "Options"),
      label("System prompt", system),
      h("div", { class: "row" }, label("Temperature", temperature), label("Stop at", stop), label("Max tokens", maxTokens))),
    transcript,
    h("div", { class: "row" }, message, startServer),
    // Above the composer: in view with it when the pane is short.
    stats,
    h("div", { class: "composer" }, input, h("div", { class: "composer-buttons" }, send, stopButton)),
  );
  return {
    element,
    choose: (name: string) => {
      wanted = name;
      refreshModels();
      wanted = null;
    },
    refreshModels,
  };
}

/** "0.42 s to first token · 18.3 tokens/s · 57 tokens". */
export function describeStats(s: ChatStats): string {
  const parts = [
    s.firstTokenMs === null ? null : `${(s.firstTokenMs / 1000).toFixed(2)} s to first token`,
    s.tokensPerSecond === null ? null : `${s.tokensPerSecond.toFixed(1)} tokens/s`,
    `${s.tokens} token${s.tokens === 1 ? "" : "s"}`,
  ];
  return parts.filter(Boolean).join(" · ");
}
