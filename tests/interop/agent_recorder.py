"""A loopback HTTP server that records every request an agent client sends and answers with one
short canned reply, so a client finishes its turn and shows all it would send to a real server.

Used by hand to see what Claude Code and Codex send (the notes in the brief of
tests/interop/test_agents.py came from it):

    python tests/interop/agent_recorder.py --port 8765 --out /tmp/recorded

Each request is written as NNN.json (method, path, headers, the body parsed when it is JSON).
`POST .../messages` gets an Anthropic message, `POST .../responses` a Responses API response
(both streamed when the body asks for it); anything else gets a 404 in the OpenAI error shape.
With `--call NAME='{"arg": 1}'` a request offering tool NAME is first answered with a call of it
(Anthropic `tool_use`, Responses `function_call`), so the client's tool-result turn is recorded too.
"""

import argparse
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPLY = "Hello from the recorder."


def _sse(events: list[tuple[str, dict]]) -> bytes:
    return b"".join(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in events)


def anthropic_reply(model: str, stream: bool, call: tuple[str, dict] | None) -> tuple[str, bytes]:
    usage = {"input_tokens": 10, "output_tokens": 5}
    if call:
        block = {"type": "tool_use", "id": "toolu_recorded", "name": call[0], "input": call[1]}
        start, delta = ({**block, "input": {}},
                        {"type": "input_json_delta", "partial_json": json.dumps(call[1])})
    else:
        block = {"type": "text", "text": REPLY}
        start, delta = {"type": "text", "text": ""}, {"type": "text_delta", "text": REPLY}
    stop = "tool_use" if call else "end_turn"
    message = {"id": "msg_recorded", "type": "message", "role": "assistant", "model": model,
               "content": [block], "stop_reason": stop, "stop_sequence": None, "usage": usage}
    if not stream:
        return "application/json", json.dumps(message).encode()
    return "text/event-stream", _sse([
        ("message_start", {"type": "message_start",
                           "message": {**message, "content": [], "stop_reason": None,
                                       "usage": {**usage, "output_tokens": 0}}}),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": start}),
        ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta}),
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        ("message_delta", {"type": "message_delta",
                           "delta": {"stop_reason": stop, "stop_sequence": None},
                           "usage": {"output_tokens": 5}}),
        ("message_stop", {"type": "message_stop"}),
    ])


def responses_reply(model: str, stream: bool, call: tuple[str, dict] | None) -> tuple[str, bytes]:
    if call:
        item = {"type": "function_call", "id": "fc_recorded", "call_id": "call_recorded",
                "name": call[0], "arguments": json.dumps(call[1]), "status": "completed"}
    else:
        item = {"type": "message", "id": "msg_recorded", "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": REPLY, "annotations": []}]}
    usage = {"input_tokens": 10, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
             "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 15}
    response = {"id": "resp_recorded", "object": "response", "created_at": int(time.time()),
                "status": "completed", "model": model, "output": [item], "usage": usage}
    if not stream:
        return "application/json", json.dumps(response).encode()
    started = {**response, "status": "in_progress", "output": [], "usage": None}
    if call:
        added = {**item, "status": "in_progress", "arguments": ""}
        delta = ("response.function_call_arguments.delta",
                 {"item_id": item["id"], "output_index": 0, "delta": item["arguments"]})
    else:
        added = {**item, "status": "in_progress", "content": []}
        delta = ("response.output_text.delta",
                 {"item_id": item["id"], "output_index": 0, "content_index": 0, "delta": REPLY})
    events = [
        ("response.created", {"response": started}),
        ("response.output_item.added", {"output_index": 0, "item": added}),
        delta,
        ("response.output_item.done", {"output_index": 0, "item": item}),
        ("response.completed", {"response": response}),
    ]
    return "text/event-stream", _sse([(name, {"type": name, "sequence_number": number, **data})
                                      for number, (name, data) in enumerate(events)])


def call_to_make(body: dict, call: tuple[str, dict] | None) -> tuple[str, dict] | None:
    """The call to answer with: only while the tool is offered and no tool result came back yet."""
    if not call:
        return None
    offered = [t.get("name") for t in body.get("tools") or []]
    turns = body.get("messages") or body.get("input") or []
    answered = "tool_result" in json.dumps(turns) or "function_call_output" in json.dumps(turns)
    return call if call[0] in offered and not answered else None


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, out: Path, call: tuple[str, dict] | None = None):
        self.out = out
        self.call = call
        self.numbers = itertools.count(1)
        self.lock = threading.Lock()
        out.mkdir(parents=True, exist_ok=True)
        super().__init__(("127.0.0.1", port), Handler)

    def record(self, entry: dict) -> None:
        with self.lock:
            number = next(self.numbers)
        (self.out / f"{number:03}.json").write_text(json.dumps(entry, indent=1))


class Handler(BaseHTTPRequestHandler):
    server: Recorder

    def log_message(self, *args) -> None:  # the files are the log
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        self.server.record({"method": self.command, "path": self.path,
                            "headers": dict(self.headers.items()), "body": body})
        wants = body if isinstance(body, dict) else {}
        path = self.path.split("?")[0]
        if self.command == "POST" and path.endswith("/messages"):
            kind, payload = anthropic_reply(wants.get("model", ""), bool(wants.get("stream")),
                                            call_to_make(wants, self.server.call))
            status = 200
        elif self.command == "POST" and path.endswith("/responses"):
            kind, payload = responses_reply(wants.get("model", ""), bool(wants.get("stream")),
                                            call_to_make(wants, self.server.call))
            status = 200
        else:
            kind, status = "application/json", 404
            payload = json.dumps({"error": {"message": f"not recorded: {self.command} {path}",
                                            "type": "not_found_error"}}).encode()
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    # CONNECT: with HTTPS_PROXY pointed here, a connection to any other host shows up too.
    do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = do_CONNECT = _handle


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--call", help="NAME=JSON: answer a request offering tool NAME with a call")
    args = parser.parse_args()
    call = None
    if args.call:
        name, arguments = args.call.split("=", 1)
        call = (name, json.loads(arguments))
    with Recorder(args.port, args.out, call) as server:
        server.serve_forever()


if __name__ == "__main__":
    main()
