"""Expand the grid, ask the endpoint, score, and write one record per query as it finishes.

The runner owns scheduling only: samples come from the scenario, contexts from the
strategies, answers from the endpoint, marks from the scorers. Requests that share a
haystack go out back to back so the server's prefix cache can reuse it; every finished
query is appended to the run folder at once, and queries already there are skipped, so
an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.endpoints.client import Completion, Endpoint
from harness.errors import EndpointError, UsageError
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
        raise UsageError(
            f"length {worst.sample.length} makes a {worst.prompt_tokens_counted}-token prompt "
            f"(+{max_tokens} to answer), over the served window of {window} tokens; "
            "serve with a larger --max-model-len (and RoPE scaling past the native window) or drop that length"
        )


def make_record(run_id: str, job: Job, scenario, completion: Completion | None, error: str | None) -> dict[str, Any]:
    s, shown = job.sample, job.shown
    doc_ids = {d.id for d in s.documents}
    answer, reason = (None, error) if completion is None else parse_answer(completion.text, scenario.answer_schema())
    marks, score = mark(scenario, answer, s.gold)
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
        "raw": completion.text if completion else None,
        "answer": answer,
        "valid": answer is not None,
        "invalid_reason": reason,
        "error": error,
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


async def _count_prompts(endpoint: Endpoint, jobs: Sequence[Job], concurrency: int) -> None:
    sem = asyncio.Semaphore(concurrency)

    async def one(j: Job):
        async with sem:
            j.prompt_tokens_counted = await endpoint.count_prompt_tokens(j.prompt)

    await asyncio.gather(*(one(j) for j in jobs))


async def _ask_all(
    jobs: Sequence[Job],
    endpoint: Endpoint,
    scenario,
    store: RunStore,
    run_id: str,
    concurrency: int,
    max_tokens: int,
    on_done: Callable[[dict[str, Any]], None],
) -> None:
    import openai

    client = endpoint.client()
    sem = asyncio.Semaphore(concurrency)
    schema = scenario.answer_schema()

    async def one(job: Job) -> None:
        async with sem:
            completion, error = None, None
            try:
                completion = await endpoint.complete(client, job.prompt, schema, max_tokens)
            except openai.APIConnectionError as e:
                if not isinstance(e, openai.APITimeoutError):
                    raise EndpointError(f"lost the endpoint {endpoint.base_url}: {e}") from None
                error = f"timeout after {endpoint.timeout_s:g} s"
            except openai.APIStatusError as e:
                error = f"HTTP {e.status_code}: {str(e.message)[:300]}"
        record = make_record(run_id, job, scenario, completion, error)
        store.append(record)
        on_done(record)

    tasks = [asyncio.ensure_future(one(j)) for j in jobs]
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()


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
    on_planned: Callable[[int], None] = lambda n: None,
    on_done: Callable[[dict[str, Any]], None] = lambda r: None,
) -> int:
    """Ask every query not yet in the store; returns how many were asked."""
    jobs = plan_jobs(scenario, strategies, samples, shots, store.done_keys())
    if not jobs:
        return 0
    if endpoint.token_counter.startswith("server"):
        asyncio.run(_count_prompts(endpoint, jobs, max(concurrency, 8)))
    check_window(jobs, window, max_tokens)
    on_planned(len(jobs))
    asyncio.run(_ask_all(jobs, endpoint, scenario, store, run_id, concurrency, max_tokens, on_done))
    return len(jobs)
