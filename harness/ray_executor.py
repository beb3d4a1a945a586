"""`harness compare --executor ray`: the grid's cells on a Ray cluster; the driver writes the records.

Imported only when that executor is asked for (Ray is the optional extra `ray`). The design, and
what stays exactly as with the local executor (harness/runner.py):

  * the driver builds the samples, plans the work and is the only writer of the run folder: records
    (through the same writer thread: group commits, fsync), response-cache entries, config, metrics.
    Resume, the cache and the report therefore behave as locally;
  * cells — (strategy, length) groups of queries — are spread over `workers` Ray actors (one CPU
    each). An actor builds the scenario and strategies from the run's config, prepares its cells
    (chunking, embedding through the content-hash embedding cache, indexes), builds the preflight
    prompts and counts those that might not fit. The driver checks the window over every cell, as
    the local runner does, before any generation request is sent;
  * then every query is an actor call, dispatched to the actor holding its cell, in the local
    executor's order; the actor solves it (prompt, retrieval, model calls, scoring) and returns the
    record and the response-cache entries it made. Strategies still go one after another, so the
    /metrics deltas at the boundaries belong to one strategy;
  * calls, not queries, are what is limited: an async actor runs many queries at once, and every
    model call takes one of the run's `concurrency` slots from one semaphore actor, so the cluster
    has exactly as many calls in flight as `--concurrency` says, wherever they run; model calls go
    through each actor's own endpoint (or pool of replicas: balancing and failover per actor);
  * limits: in-run sharing of identical requests holds within an actor (a cell's queries are on one
    actor, so within a cell); the response cache is read by the actors from the same file (on one
    machine; on a cluster without a shared file system the actors start with an empty one, and the
    driver still stores every answer). The endpoint must be reachable from the workers (a loopback
    URL only works on one machine), with any API key in the workers' environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import types
from collections.abc import Callable, Sequence
from typing import Any

from harness.errors import HarnessError, UsageError

WORKER_CPUS = 1


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--executor ray needs Ray: pip install 'harness[ray]' (or pip install ray)") from None
    return ray


# -- the endpoint as the workers rebuild it -------------------------------------------------------------
def endpoint_spec(endpoint) -> dict[str, Any]:
    """What a worker needs to talk to the same endpoint (or pool) as the driver, without asking it again."""

    def one(ep) -> dict[str, Any]:
        return {
            "base_url": ep.base_url,
            "model": ep.model,
            "api": ep.api,
            "api_key_env": ep.api_key_env,
            "timeout_s": ep.timeout_s,
            "max_retries": ep.max_retries,
            "info": dict(ep.info),
            "settings": dict(ep.settings),
            "tokenize_ok": ep._tokenize_ok,
        }

    replicas = getattr(endpoint, "replicas", None)
    spec = one(endpoint)
    if replicas:
        spec["replicas"] = [{**one(r.endpoint), "cap": r.cap} for r in replicas]
    return spec


def endpoint_from_spec(spec: dict[str, Any]):
    from harness.endpoints.client import Endpoint

    def one(s: dict[str, Any]) -> Endpoint:
        ep = Endpoint(s["base_url"], s["model"], s["api"], s["api_key_env"], s["timeout_s"], s["max_retries"])
        ep.info, ep.settings, ep._tokenize_ok = dict(s["info"]), dict(s["settings"]), s["tokenize_ok"]
        return ep

    if not spec.get("replicas"):
        return one(spec)
    from harness.endpoints.pool import Pool

    pool = Pool([one(s) for s in spec["replicas"]])
    for r, s in zip(pool.replicas, spec["replicas"]):
        r.cap = s["cap"]
    pool.info, pool.settings, pool._tokenize_ok = dict(spec["info"]), dict(spec["settings"]), spec["tokenize_ok"]
    return pool


class RemoteSlots:
    """The run's call slots held by a semaphore actor: `async with` like the Asker's own semaphore."""

    def __init__(self, handle):
        self.handle = handle

    async def __aenter__(self):
        ref = self.handle.acquire.remote()
        try:
            await asyncio.shield(ref)  # type: ignore[arg-type]  (an ObjectRef is awaitable)
        except asyncio.CancelledError:

            async def give_back():  # acquired after we stopped waiting: hand it back
                with contextlib.suppress(Exception):
                    await ref
                    self.handle.release.remote()

            asyncio.ensure_future(give_back())
            raise
        return self

    async def __aexit__(self, *exc):
        self.handle.release.remote()


# -- the actors ----------------------------------------------------------------------------------------------
def _actor_classes():
    ray = _ray()

    @ray.remote(num_cpus=0)
    class CallSlots:
        """The run's `concurrency`: model calls in flight across the whole cluster."""

        def __init__(self, n: int):
            self.sem = asyncio.Semaphore(max(1, n))

        async def acquire(self) -> None:
            await self.sem.acquire()

        async def release(self) -> None:
            self.sem.release()

    @ray.remote(num_cpus=WORKER_CPUS)
    class CellWorker:
        """Prepares cells and answers their queries (see the module docstring)."""

        def __init__(
            self,
            config: dict[str, Any],
            spec: dict[str, Any],
            shots: list,
            run_id: str,
            cache_path: str | None,
            max_tokens: int,
            window: int | None,
            concurrency: int,
            slots,
        ) -> None:
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            from harness import registry
            from harness.build import build_scenario, build_strategies, cache_dir
            from harness.config import RunConfig

            cfg = RunConfig(**config)
            for path in cfg.includes:
                registry.include(path)
            self.scenario = build_scenario(cfg)
            self.endpoint = endpoint_from_spec(spec)
            self.strategies = {s.label: s for s in build_strategies(cfg, cache_dir(), self.endpoint.count_tokens)}
            self.shots, self.run_id = shots, run_id
            self.cache_path, self.max_tokens, self.window = cache_path, max_tokens, window
            self.concurrency, self.slots = concurrency, slots
            self.asker = None
            self.cache = None
            self.writes: list[tuple[str, dict[str, Any]]] = []
            self.planned: dict[tuple[str, str], Any] = {}

        def _asker(self):
            if self.asker is None:
                from harness.endpoints.cache import ResponseCache
                from harness.query import Asker

                self.cache = ResponseCache(self.cache_path) if self.cache_path else None
                session = self.endpoint.session(max(2 * self.concurrency, 8))
                self.asker = Asker(
                    self.endpoint,
                    session,
                    max_tokens=self.max_tokens,
                    window=self.window,
                    concurrency=self.concurrency,
                    cache=self.cache,
                    cache_writes=lambda k, v: self.writes.append((k, v)),
                )
                self.asker.slots = RemoteSlots(self.slots)
            return self.asker

        async def plan(self, label: str, samples: list) -> list[tuple[str, list[int | None]]]:
            """Prepare one cell, build its preflight prompts, count those that might not fit."""
            from harness import runner

            asker = self._asker()
            plan = await asyncio.to_thread(
                runner.plan_queries, self.scenario, [self.strategies[label]], samples, self.shots, set(), asker
            )
            await runner.count_preflight(plan, asker, self.concurrency, self.max_tokens)
            for p in plan:
                self.planned[(label, p.sample.id)] = p
            return [(p.sample.id, list(p.counts)) for p in plan]

        async def answer(self, label: str, sample_id: str) -> tuple[dict[str, Any], list]:
            """Solve one planned query: its record, and the cache entries made since the last answer."""
            from harness import runner

            p = self.planned.pop((label, sample_id))
            record = await runner._answer(p, self.run_id, self.asker.identity)
            writes, self.writes = self.writes, []
            return record.to_json(), writes

        async def close(self) -> None:
            if self.asker is not None:
                await self.asker.session.aclose()
            if self.cache is not None:
                self.cache.close()

    return CallSlots, CellWorker


# -- the driver ------------------------------------------------------------------------------------------------
def cells_of(strategies: Sequence, samples: Sequence, done: set) -> list[tuple[str, int, list]]:
    """(strategy label, length, samples not yet in the store) in the local executor's asking order."""
    out = []
    for st in strategies:
        by_length: dict[int, list] = {}
        for s in samples:
            if (st.label, s.id) not in done:
                by_length.setdefault(s.length, []).append(s)
        out += [(st.label, length, group) for length, group in sorted(by_length.items())]
    return out


def assign(cells: Sequence[tuple[str, int, list]], workers: int) -> list[int]:
    """Worker of each cell: the least loaded so far (by queries), each strategy's cells spread over all."""
    load = [0] * workers
    out = []
    for _, _, group in cells:
        w = min(range(workers), key=lambda i: (load[i], i))
        load[w] += len(group)
        out.append(w)
    return out


def run(
    *,
    run_id: str,
    config,
    scenario,
    strategies: Sequence,
    samples: Sequence,
    endpoint,
    store,
    shots: Sequence,
    concurrency: int,
    max_tokens: int,
    window: int | None,
    cache=None,
    on_planned: Callable[[int], None] = lambda n: None,
    on_done: Callable[[Any], None] = lambda r: None,
    on_strategy: Callable[[str | None], None] | None = None,
    address: str | None = None,
    workers: int = 0,
):
    """`runner.run` on Ray: same records, same store, same callbacks (see the module docstring)."""
    from harness import runner
    from harness.record import Record

    ray = _ray()
    stats = runner.RunStats()
    with store.lock():
        done = store.done_keys()
        cells = cells_of(strategies, samples, done)
        stats.planned = sum(len(g) for _, _, g in cells)
        if not cells:
            return stats
        started = not ray.is_initialized()
        if started:
            ray.init(
                address=address,
                include_dashboard=False,
                logging_level="WARNING",
                log_to_driver=False,
                ignore_reinit_error=True,
            )
        CallSlots, CellWorker = _actor_classes()
        n = workers or max(1, int(ray.cluster_resources().get("CPU", 1) // WORKER_CPUS))
        n = max(1, min(n, len(cells)))
        slots = CallSlots.options(max_concurrency=100_000).remote(concurrency)
        spec = endpoint_spec(endpoint)
        per_worker = max(1, math.ceil(concurrency / n))  # an actor's own queries in progress follow from this
        in_progress = per_worker * runner.PROGRESS_PER_SLOT
        actors = [
            CellWorker.options(max_concurrency=in_progress + 2).remote(
                config.dump(),
                spec,
                list(shots),
                run_id,
                str(cache.path) if cache is not None else None,
                max_tokens,
                window,
                per_worker,
                slots,
            )
            for _ in range(n)
        ]
        writer = runner._Writer(store, cache)
        try:
            owner = assign(cells, n)
            # plan every cell (prepare, preflight, counting) on the workers, then the window check here
            counted = _get(ray, [actors[w].plan.remote(label, group) for (label, _, group), w in zip(cells, owner)])
            shims = []
            for (_label, _, group), result in zip(cells, counted):
                by_id = {s.id: s for s in group}
                shims += [types.SimpleNamespace(sample=by_id[sid], counts=counts) for sid, counts in result]
            runner.check_window(shims, window, max_tokens)
            on_planned(stats.planned)
            for label in [st.label for st in strategies]:
                mine = [(c, w) for c, w in zip(cells, owner) if c[0] == label]
                if not mine:
                    continue
                if on_strategy is not None:
                    on_strategy(label)
                order = sorted(
                    ((s, w) for (_, _, group), w in mine for s in group),
                    key=lambda sw: (sw[0].length, -sw[0].depth, sw[0].needle_index),
                )
                pending = [actors[w].answer.remote(label, s.id) for s, w in order]
                while pending:
                    ready, pending = ray.wait(pending, num_returns=1)
                    for rec, writes in _get(ray, ready):
                        record = Record.model_validate(rec)
                        for k, v in writes:
                            writer.put_cache(k, v)
                        writer.put(record)
                        on_done(record)
            if on_strategy is not None:
                on_strategy(None)
        finally:
            with contextlib.suppress(Exception):
                _get(ray, [a.close.remote() for a in actors], timeout=30)
            for a in [*actors, slots]:
                with contextlib.suppress(Exception):
                    ray.kill(a)
            try:
                writer.close()
            finally:
                if writer.cache_error is not None:
                    stats.cache_error = f"{type(writer.cache_error).__name__}: {writer.cache_error}"
                    stats.cache_dropped = writer.cache_dropped
                if started:
                    ray.shutdown()
    return stats


def _get(ray, refs, timeout: float | None = None):
    """ray.get, with the harness's own errors (a lost endpoint, a usage error) raised as themselves."""
    try:
        return ray.get(refs, timeout=timeout)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, HarnessError):
            raise cause from None
        raise
