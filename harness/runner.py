"""Expand the grid, ask the endpoint, score, and write one record per query as it finishes.

The runner owns scheduling only: samples come from the scenario, contexts from the
strategies, answers from the endpoint, marks from the scorers. Requests that share a
haystack go out back to back so the server's prefix cache can reuse it; every finished
query is appended to the run folder at once, and queries already there are skipped, so
an interrupted run resumes where it stopped.

Throughput: `concurrency` workers share one job iterator over one `Session` (kept-alive
connections); records are written by a writer thread in group commits (one write + fsync per
batch, never on the event loop); parse_answer builds the schema validator once. Against a
zero-latency server the whole loop runs at several hundred queries a second on two cores
(bench/overhead.py). With a response cache, queries whose exact request was answered before
are recorded from it without a model call (and without counting their prompt again).
Faults: a request's final failure (after the client's retries) is a record with `error`, asked
again on resume; a lost endpoint or Ctrl-C cancels what is in flight, writes what finished, and
stops; a store lock keeps a second harness process out of the same run folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


from harness.endpoints.cache import ResponseCache, request_key
from harness.endpoints.client import Completion, Endpoint, RequestFailed, Session
from harness.errors import UsageError
from harness.prompting import Prompt, build_prompt
from harness.samples import Sample, Shown
from harness.scoring.answers import mark, parse_answer
from harness.store import RunStore
from retrievers.base import Strategy


@dataclass
class Job:
    strategy: Strategy
    sample: Sample
    shown: Shown
    prompt: Prompt
    prompt_tokens_counted: int | None = None
    request: tuple[str, dict[str, Any]] | None = None  # (path, body) as sent
    cache_key: str | None = None


def plan_jobs(scenario, strategies: Sequence[Strategy], samples: Sequence[Sample], shots, done) -> list[Job]:
    """Every (strategy, sample) not yet in the store, ordered for prefix-cache reuse."""
    jobs = []
    for strategy in strategies:
        todo = [s for s in samples if (strategy.label, s.id) not in done]
        if not todo:
            continue
        strategy.prepare(todo)
        for s in todo:
            shown = strategy.show(s)
            prompt = build_prompt(scenario.instructions, shots, shown.context, s.question)
            jobs.append(Job(strategy, s, shown, prompt))
    # Same strategy and length together; deepest needles first, so consecutive prompts share
    # the longest haystack prefix.
    order = {st.label: i for i, st in enumerate(strategies)}
    jobs.sort(key=lambda j: (order[j.strategy.label], j.sample.length, -j.sample.depth, j.sample.needle_index))
    return jobs


def check_window(jobs: Sequence[Job], window: int | None, max_tokens: int) -> None:
    """Refuse, before any request, a prompt that cannot fit the served context window."""
    if not window:
        return
    worst = max((j for j in jobs if j.prompt_tokens_counted), key=lambda j: j.prompt_tokens_counted, default=None)
    if worst is not None and worst.prompt_tokens_counted + max_tokens > window:
        need = worst.prompt_tokens_counted + max_tokens
        n = 1 << (need - 1).bit_length()  # the next power of two that holds it
        raise UsageError(
            f"length {worst.sample.length} makes a {worst.prompt_tokens_counted}-token prompt "
            f"(+{max_tokens} to answer), over the served context window of {window:,} tokens; extend the window: "
            f"`--max-model-len {n}` (past the model's native window that implies YaRN; explicitly: "
            f"`--max-model-len {n} --rope-scaling yarn --rope-factor F`, F = {n} / native window), "
            "on `harness compare` or on the `harness serve` behind --endpoint; or drop that length"
        )


def surely_fits(job: Job, window: int | None, max_tokens: int) -> bool:
    """True when the prompt cannot exceed the window whatever the tokenizer: a token covers at least one
    byte of text, plus a margin for special and template tokens. Only the others must be counted
    before the first request; these are counted alongside their own request."""
    if not window:
        return True
    p = job.prompt
    size = len(p.text.encode()) if job.request is None or "prompt" in job.request[1] else (
        sum(len(m.get("content", "").encode()) + 16 for m in p.messages))
    return size + 64 + max_tokens <= window


def make_record(
    run_id: str,
    job: Job,
    scenario,
    completion: Completion | None,
    error: str | None,
    *,
    attempts: int | None = None,
    from_cache: bool = False,
    schema: dict[str, Any] | None = None,
) -> dict[str, Any]:
    s, shown = job.sample, job.shown
    doc_ids = {d.id for d in s.documents}
    if completion is None:
        answer, reason = None, error
    elif completion.problem:
        answer, reason = None, completion.problem
    else:
        answer, reason = parse_answer(completion.text, schema if schema is not None else scenario.answer_schema())
    marks, score = mark(scenario, answer, s.gold)
    if attempts is None:
        attempts = 0 if from_cache or completion is None else completion.attempts
    return {
        "run_id": run_id,
        "scenario": s.scenario,
        "strategy": job.strategy.label,
        "strategy_name": job.strategy.name,
        "strategy_params": job.strategy.params.model_dump(),
        "sample_id": s.id,
        "length": s.length,
        "depth": s.depth,
        "needle_index": s.needle_index,
        "needle_id": s.gold_ids[0] if s.gold_ids else None,
        "subject": s.subject,
        "context_tokens": s.context_tokens,
        "prompt_tokens": completion.prompt_tokens if completion else None,
        "prompt_tokens_counted": job.prompt_tokens_counted,
        "completion_tokens": completion.completion_tokens if completion else None,
        "cached_tokens": completion.cached_tokens if completion else None,
        "latency_s": round(completion.latency_s, 4) if completion else None,
        "finish_reason": completion.finish_reason if completion else None,
        "raw": completion.text[:MAX_RAW] if completion else None,
        **({"raw_chars": len(completion.text)} if completion and len(completion.text) > MAX_RAW else {}),
        "answer": answer,
        "valid": answer is not None,
        "invalid_reason": reason,
        "error": error,
        "attempts": attempts,
        "from_cache": from_cache,
        "gold": s.gold,
        "marks": marks,
        "score": score,
        "shown": {
            "pieces": [
                # Documents are in corpus.jsonl; only chunk text needs keeping here.
                p.model_dump(exclude={"text"} if p.id in doc_ids else None)
                for p in shown.pieces
            ],
            "doc_ids": shown.doc_ids(),
            "needle_shown": any(shown.holds(g) for g in s.gold_ids),
            "retrieval": shown.retrieval,
        },
        "time": time.time(),
    }


# A record keeps at most this much of a response's text (a broken server can send megabytes);
# `raw_chars` then says how long it was. Parsing and scoring always see the whole text.
MAX_RAW = 1_000_000


async def _count_prompts(session: Session, jobs: Sequence[Job], concurrency: int) -> None:
    it = iter(jobs)

    async def worker() -> None:
        for j in it:
            j.prompt_tokens_counted = await session.count_prompt_tokens(j.prompt)

    await _all(worker() for _ in range(min(concurrency, len(jobs))))


async def _all(coros) -> None:
    """Run coroutines together; the first error cancels the rest (and is raised once they stopped)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _Writer:
    """Records (and cache entries) are written by one thread in group commits.

    The event loop hands finished queries over and goes on; the thread writes everything waiting
    with one `write` + `fsync` (store) and one transaction (cache), so the disk's sync latency is paid
    once per batch, not once per query, and never blocks requests. `close()` writes what is left:
    on Ctrl-C the queries already answered are kept.
    """

    def __init__(self, store: RunStore, cache: ResponseCache | None):
        self.store, self.cache = store, cache
        self.cache_error: BaseException | None = None
        self._error: BaseException | None = None
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name="harness-records", daemon=True)
        self._thread.start()

    def put(self, record: dict[str, Any], cache_item: tuple[str, dict[str, Any]] | None = None) -> None:
        if self._error is not None:
            raise self._error
        self._q.put((record, cache_item))

    def _loop(self) -> None:
        while True:
            batch = [self._q.get()]
            with contextlib.suppress(queue.Empty):
                while True:
                    batch.append(self._q.get_nowait())
            items = [b for b in batch if b is not None]
            if items:
                if self.cache is not None and self.cache_error is None:
                    try:
                        self.cache.put_many(c for _, c in items if c is not None)
                    except Exception as e:  # the cache is an accelerator: records matter, go on without it
                        self.cache_error = e
                try:
                    self.store.append_many(r for r, _ in items)
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


def _cache_value(job: Job, completion: Completion) -> dict[str, Any]:
    return {"completion": completion.model_dump(), "prompt_tokens_counted": job.prompt_tokens_counted}


async def _run_jobs(
    jobs: Sequence[Job],
    endpoint: Endpoint,
    scenario,
    store: RunStore,
    run_id: str,
    concurrency: int,
    max_tokens: int,
    window: int | None,
    cache: ResponseCache | None,
    on_planned: Callable[[int], None],
    on_done: Callable[[dict[str, Any]], None],
    on_strategy: Callable[[str | None], None] | None = None,
) -> None:
    schema = scenario.answer_schema()
    for j in jobs:
        j.request = endpoint.request(j.prompt, schema, max_tokens)
    hits: dict[str, tuple[Completion, int | None]] = {}
    if cache is not None:
        identity = endpoint.identity()
        for j in jobs:
            j.cache_key = request_key(identity, *j.request)
        for key, value in cache.get_many([j.cache_key for j in jobs]).items():
            with contextlib.suppress(Exception):  # an unreadable entry is asked again
                hits[key] = (Completion(**value["completion"]), value.get("prompt_tokens_counted"))
    to_send = [j for j in jobs if j.cache_key not in hits]

    writer = _Writer(store, cache)
    session = endpoint.session(max(2 * concurrency, 8))  # a worker may count its prompt while it asks
    counting = endpoint.token_counter.startswith("server")
    try:
        # Prompts that might not fit are counted before any request (and a grid with one over the
        # window is refused); the rest are counted concurrently with their own request.
        unsure = [j for j in to_send if not surely_fits(j, window, max_tokens)]
        if unsure and counting:
            await _count_prompts(session, unsure, max(concurrency, 8))
        check_window(unsure, window, max_tokens)
        on_planned(len(jobs))

        for j in jobs:
            if j.cache_key not in hits:
                continue
            completion, j.prompt_tokens_counted = hits[j.cache_key]
            record = make_record(run_id, j, scenario, completion, None, from_cache=True, schema=schema)
            writer.put(record)
            on_done(record)

        async def worker(it) -> None:
            for job in it:  # one shared iterator: each job is taken by exactly one worker
                completion, error, attempts = None, None, None
                count = None
                if counting and job.prompt_tokens_counted is None:
                    count = asyncio.ensure_future(session.count_prompt_tokens(job.prompt))
                try:
                    completion = await session.send(*job.request)
                except RequestFailed as e:
                    error, attempts = e.reason, e.attempts
                finally:
                    if count is not None:
                        if not count.done() and completion is None and error is None:
                            count.cancel()  # leaving (lost endpoint, Ctrl-C): do not wait for it
                        try:
                            job.prompt_tokens_counted = await count
                        except (asyncio.CancelledError, Exception):
                            job.prompt_tokens_counted = None
                record = make_record(run_id, job, scenario, completion, error, attempts=attempts, schema=schema)
                keep = cache is not None and completion is not None and completion.problem is None
                writer.put(record, (job.cache_key, _cache_value(job, completion)) if keep else None)
                on_done(record)

        # With on_strategy, one strategy at a time: every request of a strategy has finished before the
        # next strategy's first is sent, so server counters read at the boundaries (/metrics) belong to
        # exactly one strategy whatever the concurrency.
        groups = _by_strategy(to_send) if on_strategy is not None else [(None, list(to_send))]
        for label, group in groups:
            if on_strategy is not None:
                on_strategy(label)
            it = iter(group)
            await _all(worker(it) for _ in range(min(concurrency, len(group))))
        if on_strategy is not None and to_send:
            on_strategy(None)
    finally:
        try:
            writer.close()
        finally:
            await session.aclose()


def _by_strategy(jobs: Sequence[Job]) -> list[tuple[str, list[Job]]]:
    """Consecutive runs of one strategy, in plan order (plan_jobs sorts by strategy first)."""
    out: list[tuple[str, list[Job]]] = []
    for j in jobs:
        if out and out[-1][0] == j.strategy.label:
            out[-1][1].append(j)
        else:
            out.append((j.strategy.label, [j]))
    return out


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
    on_done: Callable[[dict[str, Any]], None] = lambda r: None,
    on_strategy: Callable[[str | None], None] | None = None,
) -> int:
    """Ask every query not yet in the store; returns how many were planned (cache hits included).

    Each finished query is one record, appended (fsynced) as it finishes; a request's final failure
    is a record with `error` (asked again on resume); a lost endpoint (EndpointError) or Ctrl-C
    stops the run with every finished record kept. With a `cache`, queries asked before with the
    same request get the stored answer without a model call (`from_cache` in the record).
    With `on_strategy`, strategies are sent one after another (no overlap) and it is called with a
    strategy's label before its first request and with None after the last request of the run:
    the points where the CLI scrapes the server's /metrics.
    """
    with store.lock():
        jobs = plan_jobs(scenario, strategies, samples, shots, store.done_keys())
        if not jobs:
            return 0
        asyncio.run(
            _run_jobs(jobs, endpoint, scenario, store, run_id, concurrency, max_tokens, window, cache,
                      on_planned, on_done, on_strategy)
        )
    return len(jobs)
