"""Several replicas of one model as one endpoint: `--endpoint A --endpoint B ...`.

`Pool` is an `Endpoint` to everything above it (the Asker, the runner, token counting), so a run
with one replica and a run with several go through the same code. Underneath:

  * balancing: each request goes to the replica with the fewest requests outstanding (ties: the one
    sent fewest so far, so an idle pool alternates), within each replica's own limit of generation
    requests in flight (`cap`); /tokenize requests go to the least loaded replica, outside the caps;
  * failover: a connection error on a replica (the session hands it over at once: `Session.failover`)
    makes the pool probe that replica; one that does not answer is taken out, and the request is
    sent to another. A health check (GET /v1/models, every `health_s`) takes out a replica that stops
    answering — cancelling its in-flight requests, which are sent again elsewhere — and puts back
    one that answers again. With every replica out the run stops (`EndpointError`), as with one
    endpoint. HTTP errors (429, 5xx, timeouts) are retried on the same replica by the client's policy:
    a replica that answers is not taken out;
  * identity: every replica must serve the same model (name, weights, window, API). The pool's
    identity is the replicas' own, with the hosts they run on, so loopback replicas have exactly the
    identity of one loopback endpoint: the response cache, resume and the records do not depend on
    which replica answered (`Call.attempts` counts the attempts a moved request made on the replica
    it left);
  * counts: requests answered, final errors and requests moved away, per replica (`stats()`), saved
    by `harness compare` in the run folder's replicas.jsonl and shown in the summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from harness.endpoints.client import Completion, Endpoint, ReplicaDown, RequestFailed, Session
from harness.errors import EndpointError

# Identity keys every replica must share (the host may differ: several machines serve one model).
SAME = ("model", "served", "api", "max_model_len", "path")


@dataclass
class Replica:
    index: int
    endpoint: Endpoint
    cap: int = 8
    up: bool = True
    down_reason: str | None = None
    requests: int = 0  # generation requests answered
    errors: int = 0  # generation requests that failed there for good (after the client's retries)
    moved: int = 0  # requests taken off it (connection lost, health check failed) and sent elsewhere
    downs: int = 0  # times it was taken out
    strikes: int = 0  # consecutive failed health checks that were not a refused connection
    inflight: set = field(default_factory=set)

    @property
    def url(self) -> str:
        return self.endpoint.base_url


class Pool(Endpoint):
    """Replicas of one model behind one `Endpoint` face (see the module docstring)."""

    def __init__(self, endpoints: Sequence[Endpoint], *, health_s: float = 1.0, strikes: int = 3):
        if not endpoints:
            raise ValueError("a pool needs at least one endpoint")
        first = endpoints[0]
        super().__init__(first.base_url, first.model, first.api, first.api_key_env, first.timeout_s, first.max_retries)
        self.replicas = [Replica(i, ep) for i, ep in enumerate(endpoints)]
        self.health_s = health_s
        self.max_strikes = strikes
        self.notes: list[str] = []  # replicas taken out / put back, for the CLI

    # -- what the rest of the harness reads --------------------------------------------------------
    @property
    def requests_sent(self) -> int:  # type: ignore[override]
        return sum(r.endpoint.requests_sent for r in self.replicas)

    @requests_sent.setter
    def requests_sent(self, value: int) -> None:  # Endpoint.__init__ sets it; the replicas count
        pass

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.replicas]

    def set_caps(self, total: int, per_replica: int = 0) -> None:
        """Each replica's limit of generation requests in flight: `per_replica`, else total / replicas."""
        cap = per_replica or max(1, math.ceil(total / len(self.replicas)))
        for r in self.replicas:
            r.cap = cap

    def describe(self) -> dict[str, Any]:
        """Every replica must answer and serve the same model; returns the first one's facts."""
        infos = [r.endpoint.describe() for r in self.replicas]
        ids = [r.endpoint.identity() for r in self.replicas]
        for r, ident in zip(self.replicas[1:], ids[1:]):
            diff = [k for k in SAME if ident.get(k) != ids[0].get(k)]
            if diff:
                what = ", ".join(f"{k} {ids[0].get(k)!r} vs {ident.get(k)!r}" for k in diff)
                raise EndpointError(
                    f"--endpoint {r.url} serves another model than {self.replicas[0].url} ({what}); "
                    "replicas of a pool must serve the same model"
                )
        self.info = dict(infos[0])
        self.info["replicas"] = [{"url": r.url, "cap": r.cap} for r in self.replicas]
        return self.info

    def identity(self) -> dict[str, Any]:
        ident = dict(self.replicas[0].endpoint.identity())
        hosts = sorted({r.endpoint.identity()["host"] for r in self.replicas})
        ident["host"] = hosts[0] if len(hosts) == 1 else ",".join(hosts)
        ident["settings"] = self.settings
        return ident

    def session(self, concurrency: int = 8, transport: httpx.AsyncBaseTransport | None = None) -> PoolSession:
        return PoolSession(self, concurrency, transport)

    def stats(self) -> list[dict[str, Any]]:
        return [
            {
                "url": r.url,
                "cap": r.cap,
                "requests": r.requests,
                "errors": r.errors,
                "moved": r.moved,
                "taken_out": r.downs,
                "up": r.up,
                "down_reason": r.down_reason,
            }
            for r in self.replicas
        ]

    # -- state shared by every session -------------------------------------------------------------
    def mark_down(self, r: Replica, reason: str) -> None:
        if not r.up:
            return
        r.up, r.down_reason, r.downs = False, reason, r.downs + 1
        self.notes.append(f"replica {r.url} taken out ({reason})")
        for task in list(r.inflight):  # sent again elsewhere by their senders
            task.cancel()

    def mark_up(self, r: Replica) -> None:
        if not r.up:
            r.up, r.down_reason = True, None
            self.notes.append(f"replica {r.url} answers again: back in the pool")


class PoolSession:
    """The pool's `Session`: one session per replica underneath, a balancer and a health check on top."""

    def __init__(self, pool: Pool, concurrency: int, transport: httpx.AsyncBaseTransport | None = None):
        self.pool = pool
        self.sessions: list[Session] = []
        for r in pool.replicas:
            s = r.endpoint.session(max(concurrency, 2 * r.cap), transport)
            s.failover = len(pool.replicas) > 1
            self.sessions.append(s)
        self._transport = transport
        self.outstanding = [0] * len(pool.replicas)  # generation requests in flight, per replica
        self.sent = [0] * len(pool.replicas)
        self._cond: asyncio.Condition | None = None
        self._health: asyncio.Task | None = None
        self._probe_client: httpx.AsyncClient | None = None

    async def __aenter__(self) -> PoolSession:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._health is not None:
            self._health.cancel()
            with contextlib.suppress(BaseException):
                await self._health
            self._health = None
        if self._probe_client is not None:
            with contextlib.suppress(Exception):
                await self._probe_client.aclose()
            self._probe_client = None
        for s in self.sessions:
            await s.aclose()

    # -- choosing a replica ------------------------------------------------------------------------
    def _start(self) -> None:
        if self._cond is None:
            self._cond = asyncio.Condition()
        if self._health is None and len(self.pool.replicas) > 1 and self.pool.health_s > 0:
            self._health = asyncio.ensure_future(self._watch())

    async def _wake(self) -> None:
        if self._cond is not None:
            async with self._cond:
                self._cond.notify_all()

    def _none_up(self) -> EndpointError:
        why = "; ".join(f"{r.url}: {r.down_reason}" for r in self.pool.replicas)
        return EndpointError(f"lost every endpoint of the pool ({why})")

    async def _acquire(self, generation: bool) -> Replica:
        assert self._cond is not None
        async with self._cond:
            while True:
                up = [r for r in self.pool.replicas if r.up]
                if not up:
                    raise self._none_up()
                free = [r for r in up if not generation or self.outstanding[r.index] < r.cap]
                if free:
                    r = min(free, key=lambda r: (self.outstanding[r.index], self.sent[r.index], r.index))
                    if generation:
                        self.outstanding[r.index] += 1
                        self.sent[r.index] += 1
                    return r
                await self._cond.wait()

    async def _release(self, r: Replica, generation: bool) -> None:
        if generation:
            self.outstanding[r.index] -= 1
            await self._wake()

    async def _route(self, call: Callable[[Session], Awaitable[Any]], generation: bool) -> Any:
        """Run `call` on the best replica; again on another when that replica is lost meanwhile."""
        self._start()
        moved, last = 0, ""
        while True:
            r = await self._acquire(generation)
            task = asyncio.ensure_future(call(self.sessions[r.index]))
            r.inflight.add(task)
            try:
                await asyncio.wait({task})
            except asyncio.CancelledError:  # our own caller was cancelled: so is the request
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                raise
            finally:
                r.inflight.discard(task)
                await self._release(r, generation)
            if task.cancelled():  # the health check took the replica out
                last = f"replica {r.url} was taken out ({r.down_reason})"
            else:
                e = task.exception()
                if e is None:
                    result = task.result()
                    if generation:
                        r.requests += 1
                        if moved and isinstance(result, Completion):
                            result.attempts += moved
                    return result
                if not isinstance(e, ReplicaDown):
                    if isinstance(e, RequestFailed):
                        if generation:
                            r.errors += 1
                        e.attempts += moved
                    raise e
                last = f"{r.url}: {e.reason}"
                await self._probe(r, connection_failed=True)
                if r.up:  # a blip: the replica still answers; count it as an attempt there
                    await asyncio.sleep(self.pool.policy.delay(moved + 1))
            moved += 1
            r.moved += 1
            if moved > self.pool.max_retries + len(self.pool.replicas):
                raise RequestFailed(f"{last} (moved {moved} times)", moved)

    # -- health ------------------------------------------------------------------------------------
    async def _probe(self, r: Replica, connection_failed: bool = False) -> bool:
        """GET /v1/models on one replica: a refused connection takes it out at once, other failures
        after `strikes` in a row; an answer (any HTTP status) puts it back."""
        if self._probe_client is None:
            self._probe_client = httpx.AsyncClient(
                timeout=httpx.Timeout(5.0), transport=self._transport, headers=r.endpoint._headers()
            )
        try:
            await self._probe_client.get(f"{r.url}/models")
        except (httpx.HTTPError, OSError) as e:
            refused = isinstance(e, (httpx.ConnectError, ConnectionRefusedError)) or connection_failed
            r.strikes += 1
            if refused or r.strikes >= self.pool.max_strikes:
                self.pool.mark_down(r, f"{type(e).__name__}: {str(e)[:120]}".rstrip(": "))
                await self._wake()
            return False
        r.strikes = 0
        if not r.up:
            self.pool.mark_up(r)
            await self._wake()
        return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.pool.health_s)
            await asyncio.gather(*(self._probe(r) for r in self.pool.replicas), return_exceptions=True)

    # -- the Session interface -----------------------------------------------------------------------
    async def alive(self) -> bool:
        self._start()
        return any(await asyncio.gather(*(self._probe(r) for r in self.pool.replicas)))

    async def send(self, path: str, body: dict[str, Any]) -> Completion:
        return await self._route(lambda s: s.send(path, body), generation=True)

    async def complete(self, prompt, schema, max_tokens: int) -> Completion:
        path, body = self.pool.request(prompt, schema, max_tokens)
        return await self.send(path, body)

    async def tokenize(self, text: str, add_special_tokens: bool = False) -> int | None:
        pool = self.pool
        if pool._tokenize_ok is False:
            return None
        if text in pool._token_cache:
            return pool._token_cache[text]
        n = await self._route(lambda s: s.tokenize(text, add_special_tokens), generation=False)
        self._settle_tokenize(n)
        return n

    async def count_prompt_tokens(self, prompt) -> int | None:
        if self.pool._tokenize_ok is False:
            return None
        n = await self._route(lambda s: s.count_prompt_tokens(prompt), generation=False)
        self._settle_tokenize(n)
        return n

    def _settle_tokenize(self, n: int | None) -> None:
        pool = self.pool
        if n is not None:
            pool._tokenize_ok = True
        elif any(r.endpoint._tokenize_ok is False for r in pool.replicas):
            pool._tokenize_ok = False


def replica_rows(pool: Endpoint, run_id: str, segment: str) -> list[dict[str, Any]]:
    """replicas.jsonl lines for one segment of a run (none for a lone endpoint)."""
    if not isinstance(pool, Pool):
        return []
    return [{"run_id": run_id, "segment": segment, "time": time.time(), **row} for row in pool.stats()]


def replica_summary(run_dir) -> list[dict[str, Any]]:
    """Per replica, over every segment of a run: requests answered, errors, requests moved away,
    times taken out ([] for a run on one endpoint)."""
    import json
    from pathlib import Path

    path = Path(run_dir) / "replicas.jsonl"
    if not path.is_file():
        return []
    out: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or not isinstance(row.get("url"), str):
            continue
        acc = out.setdefault(row["url"], {"url": row["url"], "requests": 0, "errors": 0, "moved": 0, "taken_out": 0})
        for k in ("requests", "errors", "moved", "taken_out"):
            acc[k] += int(row.get(k) or 0)
        acc["cap"] = row.get("cap")
    return list(out.values())
