"""An OpenAI-compatible endpoint: vLLM (ours or anyone's) or a hosted API.

Requests are plain JSON POSTs over one pooled `httpx.AsyncClient` per session
(`/v1/completions`, `/v1/chat/completions`, vLLM's `/tokenize` unless the served model's tokenizer
is at hand: harness/endpoints/tokens.py), with the harness's own
bounded retry policy rather than the `openai` client's: it counts the attempts of every
query, puts a hard total deadline on each attempt, decodes the body itself (invalid UTF-8,
malformed envelopes and megabytes of text become an *invalid* answer with a reason, never an
exception) and costs less CPU per request.

Retry policy (`RetryPolicy`): 429, 408/409/425 and 5xx, connection errors and timeouts are
retried up to `max_retries` times with exponential backoff and jitter (a `Retry-After` header
is honoured, capped). The final failure is a `RequestFailed` with its reason, recorded for
that query while the run goes on; 401/403 end the run (the key is wrong for every query), and
so does a connection failure when the server no longer answers at all (`EndpointError`).

API keys are read from an environment variable at call time, sent only in the Authorization
header, never stored, and scrubbed from every error text the server sends back.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel

from harness.endpoints import served, tokens
from harness.errors import EndpointError
from harness.prompting import Prompt

Api = Literal["completions", "chat"]

RETRY_STATUS = frozenset({408, 409, 425, 429})
FATAL_STATUS = frozenset({401, 403})
MAX_REASON = 300


class Completion(BaseModel):
    text: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    finish_reason: str | None = None
    latency_s: float
    attempts: int = 1
    # Set when the response itself was broken (not valid UTF-8, not the API's JSON shape):
    # the query is recorded as invalid with this reason.
    problem: str | None = None
    # Chat tool calls, as {"id", "name", "arguments"} (arguments: the JSON text the model wrote).
    tool_calls: list[dict[str, Any]] | None = None


class ReplicaDown(EndpointError):
    """A connection error from one replica of a pool (`Session.failover`): the pool decides whether the
    replica is gone and sends the request to another; never raised by a lone endpoint's session."""

    def __init__(self, reason: str, attempts: int):
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


class RequestFailed(Exception):
    """One request's final failure after its retries: recorded for that query, the run goes on."""

    def __init__(self, reason: str, attempts: int, status: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts
        self.status = status


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    base_s: float = 0.5
    cap_s: float = 30.0
    max_retry_after_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt `attempt` (1-based): exponential, jittered."""
        d = min(self.cap_s, self.base_s * 2 ** (attempt - 1))
        d *= random.uniform(0.5, 1.0)
        if retry_after is not None:
            d = max(d, min(retry_after, self.max_retry_after_s))
        return d


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after-ms")
    if value:
        try:
            return float(value) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError):
        return None


if hasattr(asyncio, "timeout"):  # Python 3.11+
    _deadline = asyncio.timeout
else:  # pragma: no cover - Python 3.10

    @contextlib.asynccontextmanager
    async def _deadline(seconds: float):
        task = asyncio.current_task()
        handle = asyncio.get_running_loop().call_later(seconds, task.cancel)
        try:
            yield
        except asyncio.CancelledError:
            if handle.when() <= asyncio.get_running_loop().time():
                raise TimeoutError from None
            raise
        finally:
            handle.cancel()


def _is_loopback(host: str) -> bool:
    return host in ("localhost", "::1", "") or host.startswith("127.")


class Endpoint:
    """One model behind an OpenAI-compatible base URL (ending in /v1)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api: Api = "chat",
        api_key_env: str | None = "OPENAI_API_KEY",
        timeout_s: float = 600.0,
        max_retries: int = 3,
        tokenizer: str | None = None,
    ):
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.root = self.base_url[: -len("/v1")]
        self.model = model
        self.api = api
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.policy = RetryPolicy(max_retries=max_retries)
        self.info: dict[str, Any] = {}
        # Server settings that change answers but not the served weights (RoPE overrides), set by
        # whoever launched the server; part of the response-cache identity.
        self.settings: dict[str, Any] = {}
        self.requests_sent = 0  # generation requests, attempts included (the bench reads it)
        self._tokenize_ok: bool | None = None
        self._token_cache: dict[str, int] = {}
        # The served model's tokenizer folder, where the harness knows it (given, or told by a server the
        # harness started: harness/endpoints/served.py): tokens counted locally instead of by /tokenize.
        self.tokenizer = tokenizer if tokens.has_tokenizer(tokenizer) else None

    # -- identity -----------------------------------------------------------------
    def _key(self) -> str | None:
        return (os.environ.get(self.api_key_env) or None) if self.api_key_env else None

    def _headers(self) -> dict[str, str]:
        key = self._key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    def redact(self, text: str) -> str:
        """`text` with the API key (if any) replaced: servers echo headers in error bodies."""
        key = self._key()
        if key and len(key) >= 4 and key in text:
            text = text.replace(key, "***")
        return text

    def describe(self) -> dict[str, Any]:
        """Check the endpoint answers and return what it says about the model (one-line error if not)."""
        r = None
        for attempt in range(1, self.max_retries + 2):
            try:
                r = httpx.get(f"{self.base_url}/models", headers=self._headers(), timeout=min(30.0, self.timeout_s))
            except httpx.HTTPError as e:
                reason = f"cannot reach {self.base_url}: {type(e).__name__}: {self.redact(str(e))}"
                if isinstance(e, httpx.ConnectError) or attempt > self.max_retries:
                    raise EndpointError(reason) from None
            else:
                if r.status_code == 200:
                    break
                if (r.status_code not in RETRY_STATUS and r.status_code < 500) or attempt > self.max_retries:
                    raise EndpointError(
                        f"{self.base_url}/models answered HTTP {r.status_code}: {self.redact(r.text[:200])}"
                    )
            time.sleep(self.policy.delay(attempt))
        try:
            data = r.json().get("data", [])
            models = {m.get("id"): m for m in data if isinstance(m, dict)}
        except (ValueError, AttributeError):
            raise EndpointError(f"{self.base_url}/models did not answer the OpenAI models JSON") from None
        if models and self.model not in models:
            raise EndpointError(
                f"model {self.model!r} is not served at {self.base_url}; it serves: {', '.join(map(str, models))}"
            )
        info = dict(models.get(self.model, {}))
        try:
            v = httpx.get(f"{self.root}/version", timeout=5)
            if v.status_code == 200:
                info["server_version"] = v.json().get("version")
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        record = served.lookup(self.base_url, self.model)
        if record is not None:  # a server the harness started: it says where it runs and what it counts with
            info["served_by"] = record.hardware()
            if self.tokenizer is None and tokens.has_tokenizer(record.tokenizer):
                self.tokenizer = record.tokenizer
        self.info = info
        return info

    def identity(self) -> dict[str, Any]:
        """What makes two endpoints give the same answers: the model, the weights it serves, where.

        A local server's port changes at every start, so loopback hosts count as one place and the
        served weights (vLLM's `root` in /v1/models) tell models apart; remote hosts count by name.
        """
        host = urlsplit(self.base_url).hostname or ""
        return {
            "model": self.model,
            "served": self.info.get("root"),
            "host": "loopback" if _is_loopback(host) else host,
            "path": urlsplit(self.base_url).path,
            "api": self.api,
            # A context-extended server answers differently from the native one on the same weights.
            "max_model_len": self.info.get("max_model_len"),
            "settings": self.settings,
        }

    # -- requests -----------------------------------------------------------------------
    def request(
        self,
        prompt: Prompt,
        schema: dict[str, Any] | None,
        max_tokens: int,
        *,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
    ) -> tuple[str, dict[str, Any]]:
        """(path, JSON body) of one generation request at temperature 0; the cache keys on exactly this.

        `tools` (OpenAI function tools) need the chat API."""
        body: dict[str, Any] = {"model": self.model, "temperature": 0, "max_tokens": max_tokens}
        if self.api == "chat":
            path = "/chat/completions"
            body["messages"] = prompt.messages
            if tools:
                body["tools"] = tools
                if tool_choice is not None:
                    body["tool_choice"] = tool_choice
        else:
            if tools:
                raise ValueError("tool calls need the chat API")
            path = "/completions"
            body["prompt"] = prompt.text
        if schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": True},
            }
        return path, body

    def session(self, concurrency: int = 8, transport: httpx.AsyncBaseTransport | None = None) -> Session:
        return Session(self, concurrency, transport)

    # -- tokens ---------------------------------------------------------------------
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text in the served model's own tokenizer (read locally where the harness knows the
        served folder, else vLLM `/tokenize`), no special tokens.

        Each unique text is counted once per endpoint. Servers without `/tokenize`
        (hosted APIs) get an approximation of 4 characters a token, flagged in `token_counter`.
        """
        todo = [t for t in dict.fromkeys(texts) if t not in self._token_cache]
        if todo:
            if self.tokenizer is not None:
                counts = tokens.count(self.tokenizer, todo, special=False)
            elif self._tokenize_ok is not False:
                counts = _run_sync(self._tokenize_many(todo))
            else:
                counts = None
            if counts is None:
                counts = [max(1, round(len(t) / 4)) for t in todo]
            self._token_cache.update(zip(todo, counts))
        return [self._token_cache[t] for t in texts]

    @property
    def token_counter(self) -> str:
        if self.tokenizer is not None:
            return "served tokenizer (local)"
        return "server /tokenize" if self._tokenize_ok is not False else "approx 4 chars/token"

    @property
    def counts_exactly(self) -> bool:
        """Token counts come from the served model's tokenizer (local or /tokenize), not an approximation."""
        return self.tokenizer is not None or self._tokenize_ok is not False

    def count_prompts_locally(self, prompts: Sequence[Prompt]) -> list[int] | None:
        """Tokens of whole prompts as the server counts them (special tokens included), from the local
        tokenizer; None where it cannot (no local tokenizer, or chat prompts: the server's template)."""
        if self.tokenizer is None or self.api == "chat":
            return None
        return tokens.count(self.tokenizer, [p.text for p in prompts], special=True)

    async def _tokenize_many(self, texts: list[str]) -> list[int] | None:
        async with self.session(16) as s:
            first = await s.tokenize(texts[0], add_special_tokens=False)
            if first is None:
                return None
            sem = asyncio.Semaphore(16)

            async def one(t: str) -> int:
                async with sem:
                    return int(await s.tokenize(t, add_special_tokens=False) or 0)

            rest = await asyncio.gather(*(one(t) for t in texts[1:]))
            return [first, *rest]


class Session:
    """Kept-alive connections to one endpoint for the length of a run phase (`async with`).

    `concurrency` single-connection clients handed out one request at a time: httpx's shared pool
    scans every connection on every request, which made the client, not the server, the
    bottleneck at a few hundred requests a second; a free list of one-connection clients does not.
    """

    def __init__(self, endpoint: Endpoint, concurrency: int, transport: httpx.AsyncBaseTransport | None = None):
        self.endpoint = endpoint
        self._n = max(1, concurrency)
        self._transport = transport
        self._clients: list[httpx.AsyncClient] = []
        self._free: list[httpx.AsyncClient] = []
        self._waiters: asyncio.Semaphore | None = None
        # One replica of a pool (harness/endpoints/pool.py): a connection error is handed to the pool at
        # once (ReplicaDown) instead of being retried here, so the request moves to a replica that answers.
        self.failover = False

    def _new_client(self) -> httpx.AsyncClient:
        ep = self.endpoint
        c = httpx.AsyncClient(
            headers={"Content-Type": "application/json", **ep._headers()},
            timeout=httpx.Timeout(ep.timeout_s, connect=min(30.0, ep.timeout_s)),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            transport=self._transport,
            verify=_ssl_context(),
        )
        self._clients.append(c)
        return c

    @contextlib.asynccontextmanager
    async def _lease(self):
        if self._waiters is None:
            self._waiters = asyncio.Semaphore(self._n)
        async with self._waiters:
            c = self._free.pop() if self._free else self._new_client()
            try:
                yield c
            except (asyncio.CancelledError, GeneratorExit):
                # A request cancelled mid-flight can leave httpcore's one connection marked busy: the
                # next request on this client would wait for it forever. Drop the client instead.
                self._clients.remove(c)
                with contextlib.suppress(Exception):
                    await asyncio.shield(c.aclose())
                raise
            else:
                self._free.append(c)

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        clients, self._clients, self._free = self._clients, [], []
        for c in clients:
            with contextlib.suppress(Exception):
                await c.aclose()

    async def alive(self) -> bool:
        """Does the server still answer at all (any HTTP status)?"""
        try:
            async with self._lease() as http:
                await http.get(f"{self.endpoint.base_url}/models", timeout=5)
            return True
        except (httpx.HTTPError, OSError):
            return False

    async def post(self, url: str, body: dict[str, Any]) -> tuple[httpx.Response, int]:
        """POST with the retry policy; (response with status < 400, attempts) or RequestFailed/EndpointError."""
        ep = self.endpoint
        payload = json.dumps(body).encode()
        attempt = 0
        while True:
            attempt += 1
            retry_after, status = None, None
            try:
                async with self._lease() as http, _deadline(ep.timeout_s):
                    t0 = time.perf_counter()
                    r = await http.post(url, content=payload)
                    r.extensions["harness_latency_s"] = time.perf_counter() - t0
            except (TimeoutError, httpx.TimeoutException):
                reason = f"timeout after {ep.timeout_s:g} s"
            except (httpx.TransportError, OSError) as e:
                reason = f"connection error: {type(e).__name__}: {ep.redact(str(e))[:MAX_REASON]}".rstrip(": ")
                if self.failover:
                    raise ReplicaDown(reason, attempt) from None
                if attempt > ep.policy.max_retries:
                    if not await self.alive():
                        raise EndpointError(
                            f"lost the endpoint {ep.base_url} ({reason.removeprefix('connection error: ')})"
                        ) from None
            else:
                if r.status_code < 400:
                    return r, attempt
                status = r.status_code
                reason = f"HTTP {status}: {ep.redact(_body_text(r))[:MAX_REASON]}"
                if status in FATAL_STATUS:
                    hint = f" (the key is read from ${ep.api_key_env})" if ep.api_key_env else ""
                    raise EndpointError(f"{url} refused the request: {reason}{hint}")
                if status not in RETRY_STATUS and status < 500:
                    raise RequestFailed(reason, attempt, status)
                retry_after = _retry_after(r.headers)
            if attempt > ep.policy.max_retries:
                raise RequestFailed(f"{reason} (after {attempt} attempts)" if attempt > 1 else reason, attempt, status)
            await asyncio.sleep(ep.policy.delay(attempt, retry_after))

    # -- generation -------------------------------------------------------------------
    async def complete(self, prompt: Prompt, schema: dict[str, Any] | None, max_tokens: int) -> Completion:
        """One request at temperature 0, JSON-schema constrained when a schema is given."""
        ep = self.endpoint
        path, body = ep.request(prompt, schema, max_tokens)
        return await self.send(path, body)

    async def send(self, path: str, body: dict[str, Any]) -> Completion:
        """Send a request built by `Endpoint.request`; the answer's text and usage, never raising on a
        malformed response (that becomes `Completion.problem`)."""
        ep = self.endpoint
        r, attempts = await self.post(ep.base_url + path, body)
        ep.requests_sent += attempts
        latency = r.extensions.get("harness_latency_s", 0.0)  # the answering attempt's, not the backoff
        return parse_completion(
            r.content, chat=path.startswith("/chat"), latency_s=latency, attempts=attempts, redact=ep.redact
        )

    # -- tokens -----------------------------------------------------------------------
    async def tokenize(self, text: str, add_special_tokens: bool = False) -> int | None:
        """vLLM /tokenize count of one text; None when the server has no /tokenize."""
        ep = self.endpoint
        if ep.tokenizer is not None:
            return tokens.count(ep.tokenizer, [text], special=add_special_tokens)[0]
        if ep._tokenize_ok is False:
            return None
        if text in ep._token_cache:
            return ep._token_cache[text]
        body = {"model": ep.model, "prompt": text, "add_special_tokens": add_special_tokens}
        try:
            r, _ = await self.post(f"{ep.root}/tokenize", body)
        except RequestFailed as e:
            if e.status in (404, 405):
                ep._tokenize_ok = False
                return None
            raise EndpointError(f"{ep.root}/tokenize failed: {e.reason}") from None
        ep._tokenize_ok = True
        return _count(r)

    async def count_prompt_tokens(self, prompt: Prompt) -> int | None:
        """Tokens of a whole prompt as the server will see it (special tokens included); None if unknown."""
        ep = self.endpoint
        local = ep.count_prompts_locally([prompt])
        if local is not None:
            return local[0]
        if ep._tokenize_ok is False:
            return None
        body: dict[str, Any] = {"model": ep.model}
        if ep.api == "chat":
            body["messages"] = prompt.messages
        else:
            body["prompt"] = prompt.text
        try:
            r, _ = await self.post(f"{ep.root}/tokenize", body)
        except RequestFailed as e:
            if e.status in (404, 405):
                ep._tokenize_ok = False
            return None
        return _count(r)


def _run_sync(coro):
    """Run a coroutine to completion from synchronous code, also when this thread runs an event loop
    (then in a helper thread with its own loop: the caller blocks, as a synchronous call does)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


_SSL: list = []


def _ssl_context():
    """One TLS context for every client (building one reads the CA bundle: ~30 ms each)."""
    if not _SSL:
        _SSL.append(httpx.create_ssl_context())
    return _SSL[0]


def _count(r: httpx.Response) -> int | None:
    try:
        return int(r.json()["count"])
    except (ValueError, KeyError, TypeError):
        return None


def _body_text(r: httpx.Response) -> str:
    return r.content[: 4 * MAX_REASON].decode("utf-8", "replace").replace("\n", " ").strip()


def _tool_calls(raw: list[Any]) -> list[dict[str, Any]]:
    """OpenAI tool calls as {"id", "name", "arguments"} (arguments stay the text the model wrote)."""
    out = []
    for tc in raw:
        fn = tc.get("function") if isinstance(tc, dict) else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            args = fn.get("arguments")
            out.append(
                {
                    "id": str(tc.get("id") or ""),
                    "name": fn["name"],
                    "arguments": args if isinstance(args, str) else json.dumps(args),
                }
            )
    return out


def _int_or_none(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def parse_completion(
    content: bytes, *, chat: bool, latency_s: float = 0.0, attempts: int = 1, redact=lambda s: s
) -> Completion:
    """A response body as a Completion; never raises. A body that is not valid UTF-8, not JSON or
    not the API's shape gives `problem` (the query is then invalid with that reason)."""
    problem = None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as e:
        text = content.decode("utf-8", "replace")
        problem = f"response body is not valid UTF-8 (byte {e.start})"
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as e:
        return Completion(
            text=redact(text),
            latency_s=latency_s,
            attempts=attempts,
            problem=problem or f"response body is not JSON: {str(e)[:MAX_REASON]}",
        )
    out_text, finish, usage, tool_calls = None, None, None, None
    if isinstance(data, dict):
        choices = data.get("choices")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            c = choices[0]
            if chat:
                msg = c.get("message")
                out_text = msg.get("content") if isinstance(msg, dict) else None
                if out_text is None and isinstance(msg, dict) and "content" in msg:
                    out_text = ""  # a null content is an empty answer, not a broken response
                if isinstance(msg, dict) and isinstance(msg.get("tool_calls"), list):
                    tool_calls = _tool_calls(msg["tool_calls"])
            else:
                out_text = c.get("text")
            finish = c.get("finish_reason") if isinstance(c.get("finish_reason"), str) else None
    if not isinstance(out_text, str):
        where = "choices[0].message.content" if chat else "choices[0].text"
        return Completion(
            text=redact(text),
            latency_s=latency_s,
            attempts=attempts,
            problem=problem or f"response has no text at {where}",
        )
    cached = None
    if usage is not None and isinstance(usage.get("prompt_tokens_details"), dict):
        cached = _int_or_none(usage["prompt_tokens_details"].get("cached_tokens"))
    return Completion(
        text=redact(out_text),
        tool_calls=tool_calls,
        prompt_tokens=_int_or_none(usage.get("prompt_tokens")) if usage else None,
        completion_tokens=_int_or_none(usage.get("completion_tokens")) if usage else None,
        cached_tokens=cached,
        finish_reason=finish,
        latency_s=latency_s,
        attempts=attempts,
        problem=problem,
    )
