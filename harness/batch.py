"""Many requests to one model outside a run (labelling files, data tools): the endpoint opened as a
compare opens it, answers taken from the shared response cache first, the rest asked concurrently
with the client's retries, and complete answers stored — so a rerun after a crash pays for nothing twice.

    with open_model(EndpointConfig(url=..., model=...)) as (endpoint, cache):
        answers = asyncio.run(ask_many(endpoint, [endpoint.request(p, schema, 160) for p in prompts], cache=cache))
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from harness.config import EndpointConfig


class Answer(NamedTuple):
    """One request's outcome: the answer's text, or None and why (a failed request, a malformed response)."""

    text: str | None
    problem: str | None
    cached: bool


@contextlib.contextmanager
def open_model(ec: EndpointConfig, use_cache: bool = True, log_path=None) -> Iterator[tuple[Any, Any]]:
    """(Endpoint, response cache or None): `ec`'s URL, or the embedded model on a vLLM started here and
    stopped on exit; the cache is the one runs share ($HARNESS_RESPONSE_CACHE)."""
    from harness.build import response_cache_path
    from harness.endpoints.cache import ResponseCache
    from harness.launch import open_endpoint

    cache = ResponseCache(response_cache_path()) if use_cache else None
    try:
        with open_endpoint(ec, log_path) as (endpoint, _):
            yield endpoint, cache
    finally:
        if cache is not None:
            cache.close()


async def ask_many(
    endpoint, requests: Sequence[tuple[str, dict[str, Any]]], *, concurrency: int = 4, cache=None
) -> list[Answer]:
    """Answers to `requests` ((path, body) pairs from `endpoint.request`), in order. Stored answers
    come from `cache`; an unreadable entry is asked again; only complete answers are stored."""
    from harness.endpoints.cache import entry, read_entry, request_key
    from harness.endpoints.client import RequestFailed

    identity = endpoint.identity()
    keys = [request_key(identity, *r) for r in requests]
    hits = cache.get_many(list(dict.fromkeys(keys))) if cache is not None else {}
    out: list[Answer | None] = [None] * len(requests)
    to_store: list[tuple[str, dict[str, Any]]] = []
    async with endpoint.session(max(1, concurrency)) as session:

        async def one(i: int) -> None:
            stored = read_entry(hits.get(keys[i]))
            if stored is not None:
                out[i] = Answer(stored[0].text, None, True)
                return
            try:
                completion = await session.send(*requests[i])
            except RequestFailed as e:
                out[i] = Answer(None, f"request failed: {e.reason}", False)
                return
            if completion.problem:
                out[i] = Answer(None, completion.problem, False)
                return
            to_store.append((keys[i], entry(completion, None)))
            out[i] = Answer(completion.text, None, False)

        await asyncio.gather(*(one(i) for i in range(len(requests))))
    if cache is not None and to_store:
        cache.put_many(to_store)
    return [a for a in out if a is not None]
