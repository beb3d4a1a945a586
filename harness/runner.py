"""Run every (strategy, sample) not yet in the store: plan, check, ask, score, write a record each.

The runner owns scheduling only: samples come from the scenario, answers from the strategies
(through `Query.generate`, which owns the per-call cache, window check and retries), marks
from the scorers. The order of work:

  1. plan: each strategy prepares its samples (batch work such as embedding) and names the
     prompts it will send that are known now (`Strategy.preflight`); the response cache is
     looked up for those in one go. A strategy whose `window_bound` (no preparing) shows that
     every such prompt surely fits the window is deferred instead: it is prepared and
     preflighted when its turn comes (step 3), so the first query does not wait for, say,
     every retrieval chunk of the grid to be embedded;
  2. check: preflight prompts that might not fit are counted with the server's /tokenize, and
     a grid with one over the window is refused before any request;
  3. ask: strategies one after another (so /metrics deltas taken at the boundaries belong to one
     strategy; a deferred strategy is prepared, counted and checked before its first request),
     queries concurrently within one; the number of *calls* in flight is the run's
     concurrency, while more multi-call queries may be in progress, each waiting on its next
     step; queries that share a haystack go back to back for the server's prefix cache;
  4. record: each finished query is one typed `Record`, handed to a writer thread that appends
     records in group commits (one write + fsync per batch, never on the event loop).

Faults: a request's final failure (after the client's retries) is a record with `error`, asked
again on resume; a call that cannot fit the window ends its query with `limit`; a lost endpoint
or Ctrl-C cancels what is in flight, writes what finished, and stops; a store lock keeps a second
harness process out of the same run folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.endpoints.cache import ResponseCache
from harness.endpoints.client import Endpoint, RequestFailed
from harness.errors import UsageError
from harness.prompting import Prompt
from harness.query import Asker, Query, WindowExceeded
from harness.record import MAX_RAW, ModelIdentity, Record, ShownRecord
from harness.samples import Sample, Shown
from harness.scoring.answers import mark_checked, read_answer, wire_schema
from harness.store import RunStore
from harness.strategy import Outcome, Strategy

# Multi-call queries in progress per call slot: an agent waiting on a tool or its next step holds
# no request slot, so a few more queries than slots keep the endpoint busy.
PROGRESS_PER_SLOT = 4


@dataclass
class Planned:
    """One query of the plan: its strategy and sample, and the prompts known before any call."""

    strategy: Strategy
    sample: Sample
    query: Query
    prompts: list[Prompt] = field(default_factory=list)
    counts: list[int | None] = field(default_factory=list)
    # Not prepared yet: the samples its strategy prepares when its turn comes (`prepare_deferred`), in the
    # run's order (as an up-front prepare would see them), shared by the strategy's deferred queries.
    deferred: tuple[Sample, ...] | None = None


def order_key(strategies: Sequence[Strategy]) -> Callable[[Planned], tuple]:
    """Same strategy and length together; deepest needles first, so consecutive prompts share the
    longest haystack prefix."""
    order = {st.label: i for i, st in enumerate(strategies)}
    return lambda p: (order[p.strategy.label], p.sample.length, -p.sample.depth, p.sample.needle_index)


def check_window(plan: Sequence[Planned], window: int | None, max_tokens: int) -> None:
    """Refuse, before any request, a prompt that cannot fit the served context window."""
    if not window:
        return
    worst = None
    for p in plan:
        for n in p.counts:
            if n is not None and (worst is None or n > worst[0]):
                worst = (n, p)
    if worst is not None and worst[0] + max_tokens > window:
        tokens, p = worst
        need = tokens + max_tokens
        n = 1 << (need - 1).bit_length()  # the next power of two that holds it
        raise UsageError(
            f"length {p.sample.length} makes a {tokens}-token prompt "
            f"(+{max_tokens} to answer), over the served context window of {window:,} tokens; extend the window: "
            f"`--max-model-len {n}` (past the model's native window that implies YaRN; explicitly: "
            f"`--max-model-len {n} --rope-scaling yarn --rope-factor F`, F = {n} / native window), "
            "on `harness compare` or on the `harness serve` behind --endpoint; or drop that length"
        )


def make_record(
    run_id: str,
    strategy: Strategy,
    sample: Sample,
    query: Query,
    outcome: Outcome | None,
    *,
    error: str | None = None,
    identity: dict[str, Any] | None = None,
) -> Record:
    """The record of one query from what its strategy returned (or the error that stopped it)."""
    scenario = query.scenario
    doc_ids = {d.id for d in sample.documents}
    shown = outcome.shown if outcome is not None else Shown(context="", pieces=[])
    text = outcome.text if outcome is not None else None
    if error is not None:
        answer, reason = None, error
    elif text is None:
        answer, reason = None, (outcome.reason if outcome is not None else None) or "no answer"
    else:
        answer, reason = read_answer(text, scenario)
    marks, score, scoring_error = mark_checked(scenario, answer, sample.gold)
    return Record(
        run_id=run_id,
        scenario=sample.scenario,
        strategy=strategy.label,
        strategy_name=strategy.name,
        strategy_params=strategy.params.model_dump(),
        sample_id=sample.id,
        length=sample.length,
        depth=sample.depth,
        needle_index=sample.needle_index,
        needle_id=sample.gold_ids[0] if sample.gold_ids else None,
        subject=sample.subject,
        context_tokens=sample.context_tokens,
        model=ModelIdentity(**identity) if identity else None,
        calls=list(query.calls),
        raw=None if text is None else text[:MAX_RAW],
        raw_chars=len(text) if text is not None and len(text) > MAX_RAW else None,
        answer=answer,
        valid=answer is not None,
        invalid_reason=reason if answer is None else None,
        error=error,
        scoring_error=scoring_error,
        gold=sample.gold,
        marks=marks,
        score=score,
        shown=ShownRecord(
            # Documents are in corpus.jsonl; only chunk text needs keeping here.
            pieces=[p.model_dump(exclude={"text"} if p.id in doc_ids else None) for p in shown.pieces],
            doc_ids=shown.doc_ids(),
            needle_shown=any(shown.holds(g) for g in sample.gold_ids)
            if sample.gold_ids
            else None,  # None: no gold marked
            retrieval=shown.retrieval,
        ),
        steps=list(outcome.steps) if outcome is not None else [],
        route=outcome.route if outcome is not None else None,
        limit=outcome.limit if outcome is not None else None,
        time=time.time(),
    )


class _Writer:
    """Records (and cache entries) are written by one thread in group commits.

    The event loop hands finished queries over and goes on; the thread writes everything waiting
    with one `write` + `fsync` (store) and one transaction (cache), so the disk's sync latency is paid
    once per batch, not once per query, and never blocks requests. `close()` writes what is left:
    on Ctrl-C the queries already answered are kept. A failed cache write is kept in `cache_error`
    (the run goes on without the cache; the CLI reports it).
    """

    def __init__(self, store: RunStore, cache: ResponseCache | None):
        self.store, self.cache = store, cache
        self.cache_error: BaseException | None = None
        self.cache_dropped = 0  # entries not stored because the cache failed
        self._error: BaseException | None = None
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="harness-records", daemon=True)
        self._thread.start()

    def put(self, record: Record) -> None:
        if self._error is not None:
            raise self._error
        self._q.put(("record", record))

    def put_cache(self, key: str, value: dict[str, Any]) -> None:
        self._q.put(("cache", (key, value)))

    def _loop(self) -> None:
        while True:
            batch = [self._q.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._q.get_nowait())
            items = [b for b in batch if b is not None]
            entries = [v for kind, v in items if kind == "cache"]
            if entries and self.cache is not None:
                if self.cache_error is None:
                    try:
                        self.cache.put_many(entries)
                    except Exception as e:  # the cache is an accelerator: records matter, go on without it
                        self.cache_error = e
                        self.cache_dropped += len(entries)
                else:
                    self.cache_dropped += len(entries)
            records = [v for kind, v in items if kind == "record"]
            if records:
                try:
                    self.store.append_many(r.to_json() for r in records)
                except BaseException as e:
                    self._error = e
                    return
            if len(items) < len(batch):
                return

    def close(self) -> None:
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join()
        if self._error is not None:
            raise self._error


@dataclass
class RunStats:
    """What the run did, for the CLI's closing lines."""

    planned: int = 0
    cache_error: str | None = None
    cache_dropped: int = 0


async def _all(coros) -> None:
    """Run coroutines together; the first error cancels the rest (and is raised once they stopped)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _answer(p: Planned, run_id: str, identity: dict[str, Any]) -> Record:
    """Solve one query and turn what happened into its record (EndpointError and Ctrl-C propagate)."""
    if p.prompts and p.counts:  # counted in preflight: not counted again when sent
        p.query.known_counts.update({_prompt_id(pr): n for pr, n in zip(p.prompts, p.counts) if n is not None})
    try:
        outcome = await p.strategy.solve(p.sample, p.query)
    except RequestFailed as e:
        return make_record(run_id, p.strategy, p.sample, p.query, None, error=e.reason, identity=identity)
    except WindowExceeded as e:
        outcome = Outcome(text=None, shown=Shown(context="", pieces=[]), limit="context_window", reason=str(e))
    return make_record(run_id, p.strategy, p.sample, p.query, outcome, identity=identity)


def _prompt_id(prompt: Prompt) -> str:
    return prompt.text


async def count_preflight(plan: Sequence[Planned], asker: Asker, concurrency: int, max_tokens: int) -> None:
    """Preflight prompts that might not fit are counted before any request (and a grid with one over
    the window is refused: `check_window`); the rest are counted from their own answer's usage. With the
    served model's tokenizer at hand they are counted here, in one batch, without a request."""
    session = asker.session
    chat = asker.endpoint.api == "chat"
    unsure = [
        (p, i)
        for p in plan
        for i, pr in enumerate(p.prompts)
        if asker.counting and not asker.surely_fits(pr, chat, max_tokens)
    ]
    for p in plan:
        p.counts = [None] * len(p.prompts)
    local = asker.endpoint.count_prompts_locally([p.prompts[i] for p, i in unsure]) if unsure else None
    if local is not None:  # the served model's tokenizer, here: in one batch, no request
        for (p, i), n in zip(unsure, local):
            p.counts[i] = n
        return
    it = iter(unsure)

    async def count_worker() -> None:
        for p, i in it:
            p.counts[i] = await session.count_prompt_tokens(p.prompts[i])

    await _all(count_worker() for _ in range(min(max(concurrency, 8), len(unsure))))


async def _run(
    plan: list[Planned],
    scenario,
    strategies: Sequence[Strategy],
    endpoint: Endpoint,
    asker: Asker,
    run_id: str,
    writer: _Writer,
    concurrency: int,
    max_tokens: int,
    window: int | None,
    on_planned: Callable[[int], None],
    on_done: Callable[[Record], None],
    on_strategy: Callable[[str | None], None] | None,
) -> None:
    await count_preflight(plan, asker, concurrency, max_tokens)
    check_window(plan, window, max_tokens)
    on_planned(len(plan))
    identity = asker.identity

    async def worker(queue_: list[Planned]) -> None:
        while queue_:
            p = queue_.pop(0)  # one shared list: each query is taken by exactly one worker
            record = await _answer(p, run_id, identity)
            writer.put(record)
            on_done(record)

    # With on_strategy, one strategy at a time: every request of a strategy has finished before the
    # next strategy's first is sent, so server counters read at the boundaries (/metrics) belong to
    # exactly one strategy whatever the concurrency.
    groups = _by_strategy(plan) if on_strategy is not None else [(None, list(plan))]
    multi = {s.label for s in strategies if not s.one_call}
    for label, group in groups:
        if any(p.deferred is not None for p in group):  # prepared now, and checked before its first request
            ready = await asyncio.to_thread(prepare_deferred, group, scenario, asker)
            await count_preflight(ready, asker, concurrency, max_tokens)
            check_window(ready, window, max_tokens)
        if on_strategy is not None:
            on_strategy(label)
        in_progress = concurrency * (PROGRESS_PER_SLOT if any(p.strategy.label in multi for p in group) else 1)
        await _all(worker(group) for _ in range(min(in_progress, len(group))))
    if on_strategy is not None and plan:
        on_strategy(None)


def _by_strategy(plan: Sequence[Planned]) -> list[tuple[str, list[Planned]]]:
    """Consecutive runs of one strategy, in plan order (the plan is sorted by strategy first)."""
    out: list[tuple[str, list[Planned]]] = []
    for p in plan:
        if out and out[-1][0] == p.strategy.label:
            out[-1][1].append(p)
        else:
            out.append((p.strategy.label, [p]))
    return out


def plan_queries(
    scenario,
    strategies: Sequence[Strategy],
    samples: Sequence[Sample],
    shots,
    done: set,
    asker: Asker,
    *,
    defer: bool = False,
) -> list[Planned]:
    """Every (strategy, sample) not yet in the store, with its preflight prompts, in asking order.

    With `defer`, a strategy whose window bounds surely fit (`bound_fits`) is neither prepared nor
    preflighted here: its queries are `deferred`, for `prepare_deferred` when its turn comes."""
    plan: list[Planned] = []
    for strategy in strategies:
        todo = [s for s in samples if (strategy.label, s.id) not in done]
        if not todo:
            continue
        queries = [(s, Query(asker, s, scenario, shots, strategy.label)) for s in todo]
        if defer and bound_fits(strategy, queries, asker):
            later = tuple(todo)
            plan += [Planned(strategy, s, q, deferred=later) for s, q in queries]
            continue
        strategy.prepare(todo)
        plan += [Planned(strategy, s, q, list(strategy.preflight(s, q))) for s, q in queries]
    plan.sort(key=order_key(strategies))
    _prefetch(plan, scenario, asker)
    return plan


def bound_fits(strategy: Strategy, queries: Sequence[tuple[Sample, Query]], asker: Asker) -> bool:
    """True when the strategy's `window_bound`s, computed without preparing it, surely fit the window for
    every query (by their bytes: no counting, no request), so that no prompt its preflight would name
    can be over the window and preparing it can wait for its turn. Where a bound is None or might not
    fit, the strategy is prepared and its real prompts counted up front instead."""
    chat = asker.endpoint.api == "chat"
    for s, q in queries:
        bound = strategy.window_bound(s, q)
        if bound is None:
            return False
        if asker.counting and not all(asker.surely_fits(pr, chat, asker.max_tokens) for pr in bound):
            return False
    return True


def prepare_deferred(group: Sequence[Planned], scenario, asker: Asker) -> list[Planned]:
    """Prepare and preflight the deferred queries of `group` (strategy by strategy, in place), and look
    their requests up in the response cache; returns them, for counting and the window check."""
    ready = [p for p in group if p.deferred is not None]
    for strategy in dict.fromkeys(p.strategy for p in ready):
        mine = [p for p in ready if p.strategy is strategy]
        todo = list(mine[0].deferred)
        at = {s.id: i for i, s in enumerate(todo)}
        strategy.prepare(todo)
        for p in sorted(mine, key=lambda p: at[p.sample.id]):  # preflight in the same order as up front
            p.prompts = list(strategy.preflight(p.sample, p.query))
            p.deferred = None
    _prefetch(ready, scenario, asker)
    return ready


def _prefetch(plan: Sequence[Planned], scenario, asker: Asker) -> None:
    schema = wire_schema(scenario)
    asker.prefetch([asker.key(asker.request(pr, schema, asker.max_tokens)) for p in plan for pr in p.prompts])


def run(
    *,
    run_id: str,
    scenario,
    strategies: Sequence[Strategy],
    samples: Sequence[Sample],
    endpoint: Endpoint,
    store: RunStore,
    shots: Sequence[Any],
    concurrency: int,
    max_tokens: int,
    window: int | None,
    cache: ResponseCache | None = None,
    on_planned: Callable[[int], None] = lambda n: None,
    on_done: Callable[[Record], None] = lambda r: None,
    on_strategy: Callable[[str | None], None] | None = None,
) -> RunStats:
    """Ask every query not yet in the store; returns what was planned (cache hits included).

    Each finished query is one record, appended (fsynced) as it finishes; a request's final failure
    is a record with `error` (asked again on resume); a lost endpoint (EndpointError) or Ctrl-C
    stops the run with every finished record kept. With a `cache`, calls asked before with the
    same request get the stored answer without a model call (`from_cache` in the call).
    With `on_strategy`, strategies are sent one after another (no overlap) and it is called with a
    strategy's label before its first request and with None after the last request of the run:
    the points where the CLI scrapes the server's /metrics.
    """
    stats = RunStats()
    with store.lock():
        done = store.done_keys()

        async def main() -> None:
            writer = _Writer(store, cache)
            session = endpoint.session(max(2 * concurrency, 8))  # a worker may count its prompt while it asks
            asker = Asker(
                endpoint,
                session,
                max_tokens=max_tokens,
                window=window,
                concurrency=concurrency,
                cache=cache,
                cache_writes=writer.put_cache,
            )
            try:
                # Planning runs strategies' synchronous code (embedding, retrieval, token counting through
                # the endpoint's blocking client): off the event loop. Strategies whose prompts surely fit
                # are prepared when their turn comes (deferred), so the first query goes out sooner.
                plan = await asyncio.to_thread(
                    plan_queries, scenario, strategies, samples, shots, done, asker, defer=True
                )
                stats.planned = len(plan)
                if plan:
                    await _run(
                        plan,
                        scenario,
                        strategies,
                        endpoint,
                        asker,
                        run_id,
                        writer,
                        concurrency,
                        max_tokens,
                        window,
                        on_planned,
                        on_done,
                        on_strategy,
                    )
            finally:
                try:
                    writer.close()
                finally:
                    await session.aclose()
                    if writer.cache_error is not None:
                        stats.cache_error = f"{type(writer.cache_error).__name__}: {writer.cache_error}"
                        stats.cache_dropped = writer.cache_dropped

        asyncio.run(main())
    return stats
