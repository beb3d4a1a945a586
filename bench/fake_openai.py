"""A stand-in OpenAI-compatible server: canned JSON, zero latency, on 127.0.0.1 only.

Used by bench/overhead.py (the harness's own overhead, with the model out of the picture) and by
the fault tests that need a server they can kill. A bare asyncio HTTP/1.1 server with keep-alive
(no framework), so it costs the client side as little CPU as possible.

    python bench/fake_openai.py [--port 0] [--latency 0] [--exit-after N] [--echo-auth] [--strict]
                                [--tool-call NAME]
    -> prints "listening http://127.0.0.1:PORT/v1" and serves until killed

Routes: GET /v1/models, GET /version, GET /health, POST /tokenize (count = characters / 4),
POST /v1/completions and /v1/chat/completions (the canned answer, usage included),
GET /__stats (how many generation and /tokenize requests it answered).
--exit-after N: the process dies abruptly (os._exit) on the (N+1)-th generation request, like
a crashed server. --echo-auth: every 5th generation request answers HTTP 500 with the received
Authorization header in the body (a server leaking the key back; the harness must scrub it).
--strict: enforce OpenAI's documented rules for strict structured output (`strict_problems`) on
every `response_format` json_schema and every tool marked `"strict": true`, answering HTTP 400
with the first broken rule, as OpenAI does; /__stats counts the refusals. --tool-call NAME: when a
chat request offers a tool of that name, call it with `{}` instead of answering text.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys

MODEL = "gemma-3-270m"
# A valid bio-needle answer in its default (compact) answer form.
ANSWER = {
    "nationality": "unknown",
    "occupation": "unknown",
    "born": "0",
    "died": "0",
    "sportsperson": False,
    "politician": False,
}


def strict_problems(schema, path: str = "$") -> list[str]:
    """Where `schema` breaks OpenAI's rules for strict structured output (Structured Outputs, "Supported
    schemas"): the root is an object and not an anyOf; every object sets additionalProperties to false
    and lists every property in required; the rules hold in nested objects, array items, anyOf
    branches and $defs. [] when it is accepted."""
    out: list[str] = []
    if path == "$":
        if not isinstance(schema, dict) or schema.get("type") != "object":
            out.append("$: the root schema must be an object")
        if isinstance(schema, dict) and "anyOf" in schema:
            out.append("$: the root schema must not be anyOf")
    if not isinstance(schema, dict):
        return out
    props = schema.get("properties")
    if schema.get("type") == "object" or props is not None:
        if schema.get("additionalProperties") is not False:
            out.append(f"{path}: additionalProperties must be false")
        missing = [k for k in props or {} if k not in (schema.get("required") or [])]
        if missing:
            out.append(f"{path}: every property must be required (missing {', '.join(missing)})")
    for k, v in (props or {}).items():
        out += strict_problems(v, f"{path}.{k}")
    if isinstance(schema.get("items"), dict):
        out += strict_problems(schema["items"], f"{path}[]")
    for i, v in enumerate(schema.get("anyOf") or []):
        out += strict_problems(v, f"{path}.anyOf[{i}]")
    for k, v in (schema.get("$defs") or {}).items():
        out += strict_problems(v, f"{path}.$defs.{k}")
    return out


def request_problems(req: dict) -> list[str]:
    """Strict-rule problems of one generation request's response_format and strict tools."""
    out: list[str] = []
    rf = req.get("response_format") or {}
    if rf.get("type") == "json_schema" and (rf.get("json_schema") or {}).get("strict"):
        out += [f"response_format: {p}" for p in strict_problems(rf["json_schema"].get("schema"))]
    for tool in req.get("tools") or []:
        fn = tool.get("function") or {}
        if fn.get("strict"):
            out += [f"tool {fn.get('name')}: {p}" for p in strict_problems(fn.get("parameters"))]
    return out


class HTTPServer:
    """Minimal HTTP/1.1 keep-alive server: subclasses implement `route`."""

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                method, path, _ = lines[0].split(b" ", 2)
                headers = {}
                for line in lines[1:]:
                    k, _, v = line.partition(b":")
                    if k:
                        headers[k.strip().lower()] = v.strip()
                n = int(headers.get(b"content-length", b"0"))
                body = await reader.readexactly(n) if n else b""
                status, payload, *extra = await self.route(method, path.split(b"?")[0], headers, body)
                more = b"".join(b"%s: %s\r\n" % kv for kv in (extra[0] if extra else {}).items())
                writer.write(
                    b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n%s\r\n"
                    % (status, b"OK" if status == 200 else b"ERR", len(payload), more)
                    + payload
                )
                if headers.get(b"connection", b"").lower() == b"close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()

    async def route(self, method: bytes, path: bytes, headers: dict, body: bytes) -> tuple:
        raise NotImplementedError


class Server(HTTPServer):
    def __init__(
        self,
        model: str = MODEL,
        answer: str | None = None,
        latency: float = 0.0,
        exit_after: int | None = None,
        echo_auth: bool = False,
        max_model_len: int = 32768,
        strict: bool = False,
        tool_call: str | None = None,
    ):
        self.model = model
        self.strict = strict
        self.tool_call = tool_call
        self.refused = 0
        self.max_model_len = max_model_len
        self.answer = answer if answer is not None else json.dumps(ANSWER, separators=(",", ":"))
        self.latency = latency
        self.exit_after = exit_after
        self.echo_auth = echo_auth
        self.generations = 0
        self.tokenize = 0
        self._completion = json.dumps(
            {
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": 0,
                "model": model,
                "choices": [{"index": 0, "text": self.answer, "logprobs": None, "finish_reason": "stop"}],
                "usage": {
                    "prompt_tokens": 100,
                    "completion_tokens": 30,
                    "total_tokens": 130,
                    "prompt_tokens_details": {"cached_tokens": 0},
                },
            }
        ).encode()
        self._chat = json.dumps(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": self.answer}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 100, "completion_tokens": 30, "total_tokens": 130},
            }
        ).encode()
        self._models = json.dumps(
            {
                "object": "list",
                "data": [{"id": model, "object": "model", "root": f"fake/{model}", "max_model_len": max_model_len}],
            }
        ).encode()

    def _tool_reply(self, name: str) -> bytes:
        call = {"id": "call_fake", "type": "function", "function": {"name": name, "arguments": "{}"}}
        message = {"role": "assistant", "content": None, "tool_calls": [call]}
        return json.dumps(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 0,
                "model": self.model,
                "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
            }
        ).encode()

    async def route(self, method: bytes, path: bytes, headers: dict, body: bytes) -> tuple[int, bytes]:
        if path in (b"/v1/completions", b"/v1/chat/completions"):
            self.generations += 1
            if self.exit_after is not None and self.generations > self.exit_after:
                os._exit(1)
            if self.latency:
                await asyncio.sleep(self.latency)
            if self.echo_auth and self.generations % 5 == 0:
                return 500, json.dumps(
                    {"error": {"message": "overloaded", "auth": headers.get(b"authorization", b"").decode()}}
                ).encode()
            if self.strict or self.tool_call:
                req = json.loads(body or b"{}")
                problems = request_problems(req) if self.strict else []
                if problems:
                    self.refused += 1
                    return 400, json.dumps(
                        {"error": {"message": "; ".join(problems), "type": "invalid_request_error"}}
                    ).encode()
                names = {(t.get("function") or {}).get("name") for t in req.get("tools") or []}
                if self.tool_call in names:
                    return 200, self._tool_reply(self.tool_call)
            return 200, self._completion if path == b"/v1/completions" else self._chat
        if path == b"/__stats":
            stats = {"generations": self.generations, "tokenize": self.tokenize, "refused": self.refused}
            return 200, json.dumps(stats).encode()
        if path == b"/tokenize":
            self.tokenize += 1
            try:
                req = json.loads(body)
                text = req.get("prompt") or json.dumps(req.get("messages", ""))
            except ValueError:
                return 400, b'{"error": "bad json"}'
            return 200, json.dumps({"count": max(1, len(text) // 4), "max_model_len": self.max_model_len}).encode()
        if path == b"/v1/models":
            return 200, self._models
        if path == b"/version":
            return 200, b'{"version": "fake"}'
        if path == b"/health":
            return 200, b"{}"
        return 404, b'{"error": "not found"}'


async def serve(port: int, srv: HTTPServer | None = None, **kw) -> None:
    srv = srv or Server(**kw)
    server = await asyncio.start_server(srv.handle, "127.0.0.1", port, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"listening http://127.0.0.1:{port}/v1", flush=True)
    async with server:
        await server.serve_forever()


def start_subprocess(*args: str, script: str = __file__):
    """Start the stand-in (or another script of this folder) in a child process; (Popen, base_url)."""
    import subprocess

    p = subprocess.Popen([sys.executable, script, "--port", "0", *args], stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    if not line.startswith("listening "):
        p.kill()
        raise RuntimeError(f"stand-in server did not start: {line!r}")
    return p, line.split()[1]


@contextlib.contextmanager
def running(*args: str, script: str = __file__):
    """`start_subprocess` as a context manager (a test fixture's body): yields the base URL."""
    proc, url = start_subprocess(*args, script=script)
    try:
        yield url
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--latency", type=float, default=0.0)
    ap.add_argument("--exit-after", type=int, default=None)
    ap.add_argument("--echo-auth", action="store_true")
    ap.add_argument("--answer", default=None)
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--tool-call", default=None)
    a = ap.parse_args()
    try:
        import uvloop  # optional: a faster loop keeps the stand-in far from being the bottleneck

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(
        serve(
            a.port,
            latency=a.latency,
            exit_after=a.exit_after,
            echo_auth=a.echo_auth,
            answer=a.answer,
            strict=a.strict,
            tool_call=a.tool_call,
        )
    )


if __name__ == "__main__":
    main()
