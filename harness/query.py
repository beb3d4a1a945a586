"""The model as a strategy sees it while answering one query: `await query.generate(prompt)`.

Every call goes through here, however many a strategy makes, so each one is:
  * answered from the response cache when the exact request was answered before (temperature 0);
  * checked against the served window before it is sent (counted with the served model's own
    tokenizer where the harness has it, else the server's /tokenize when the prompt might not fit) — a call that cannot fit raises `WindowExceeded`, which the
    runner records as the query's limit, not as a failure to retry;
  * sent with the client's retries, within the run's limit of calls in flight (the runner
    schedules calls, not queries: an agent waiting on its next step holds no request slot);
  * recorded as a `Call` of the query (tokens, latency, cache hit, finish reason), in order.

`Query` also knows the scenario's side of a prompt (instructions, shots, answer schema), so a
strategy only decides what the model is shown: `query.prompt(context)`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.endpoints.cache import ResponseCache, entry, read_entry, request_key
from harness.endpoints.client import Completion, Endpoint, RequestFailed, Session
from harness.errors import HarnessError
from harness.prompting import Prompt, build_prompt
from harness.record import MAX_RAW, Call
from harness.samples import Sample
from harness.scoring.answers import wire_answer, wire_schema

DEFAULT = object()  # "the scenario's answer schema"


class WindowExceeded(HarnessError):
    """A call's prompt (plus its answer budget) does not fit the served context window."""

    def __init__(self, prompt_tokens: int, max_tokens: int, window: int):
        super().__init__(
            f"a {prompt_tokens}-token prompt (+{max_tokens} to answer) does not fit the {window:,}-token window"
        )
        self.prompt_tokens, self.max_tokens, self.window = prompt_tokens, max_tokens, window


@dataclass
class Generation:
    """One call's answer: its text (and tool calls, on a chat endpoint) and the recorded call."""

    text: str
    call: Call
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None  # the response itself was broken (not the API's shape)
    completion: Completion | None = None  # as the client parsed it (what the cache stores)


class Asker:
    """What every query of a run shares: the endpoint session, cache, window and the call slots.

    `cache_writes` receives (key, value) pairs to store; the runner's writer thread commits them
    with the records, in batches, off the event loop.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        session: Session,
        *,
        max_tokens: int,
        window: int | None,
        concurrency: int,
        cache: ResponseCache | None = None,
        cache_writes: Callable[[str, dict[str, Any]], None] | None = None,
    ):
        self.endpoint, self.session = endpoint, session
        self.max_tokens, self.window = max_tokens, window
        self.slots = asyncio.Semaphore(max(1, concurrency))
        self.cache, self.cache_writes = cache, cache_writes
        self.identity = endpoint.identity()
        self.counting = endpoint.counts_exactly
        self.hits: dict[str, dict[str, Any]] = {}  # prefetched cache entries (preflight)
        # Identical requests within a run share one answer (with the cache on): the first is sent, the
        # others wait for it. vLLM can answer the same temperature-0 request differently depending on
        # what its prefix cache holds, so asking twice would record two answers where the cache keeps one.
        self.answered: dict[str, asyncio.Future] = {}

    def request(
        self,
        prompt: Prompt,
        schema: dict[str, Any] | None,
        max_tokens: int,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
    ) -> tuple[str, dict[str, Any]]:
        return self.endpoint.request(prompt, schema, max_tokens, tools=tools, tool_choice=tool_choice)

    def key(self, request: tuple[str, dict[str, Any]]) -> str:
        return request_key(self.identity, *request)

    def prefetch(self, keys: Sequence[str]) -> None:
        """Look up many cache keys in one query (the one-shot arms' requests are known up front)."""
        if self.cache is not None and keys:
            self.hits.update(self.cache.get_many(list(dict.fromkeys(keys))))

    def cached(self, key: str) -> dict[str, Any] | None:
        if self.cache is None:
            return None
        if key in self.hits:
            return self.hits.pop(key)
        return self.cache.get(key)

    def surely_fits(self, prompt: Prompt, api_chat: bool, max_tokens: int) -> bool:
        """True when the prompt cannot exceed the window whatever the tokenizer: a token covers at least
        one byte of text, plus a margin for special and template tokens."""
        if not self.window:
            return True
        size = (
            sum(len((m.get("content") or "").encode()) + 16 for m in prompt.messages)
            if api_chat
            else len(prompt.text.encode())
        )
        return size + 64 + max_tokens <= self.window


class Query:
    """One (strategy, sample) being answered: the prompt builder and the model handle."""

    def __init__(self, asker: Asker, sample: Sample, scenario, shots: Sequence[Any], strategy: str = ""):
        self.asker = asker
        self.sample = sample
        self.scenario = scenario
        self.shots = list(shots)
        self.strategy = strategy
        self.calls: list[Call] = []
        self.known_counts: dict[str, int] = {}  # prompt text -> tokens, counted in preflight

    # -- the scenario's side of a prompt ---------------------------------------------------------
    @property
    def schema(self) -> dict[str, Any]:
        """The schema the model answers in (the scenario's, wrapped when it is not an object)."""
        return wire_schema(self.scenario)

    def prompt(
        self,
        context: str,
        question: str | None = None,
        instructions: str | None = None,
        shots: Sequence[Any] | None = None,
    ) -> Prompt:
        """Instructions and shots first (shared by every request), then `context`, the question last."""
        return build_prompt(
            instructions if instructions is not None else self.scenario.instructions,
            self.shots if shots is None else shots,
            context,
            question if question is not None else self.sample.question,
            lambda gold: wire_answer(self.scenario, gold),
        )

    # -- usage so far ----------------------------------------------------------------------------
    @property
    def tokens_used(self) -> int:
        return sum((c.prompt_tokens or c.prompt_tokens_counted or 0) + (c.completion_tokens or 0) for c in self.calls)

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text in the served model's tokenizer (from inside a strategy: async)."""
        ep, out = self.asker.endpoint, []
        for t in texts:
            n = await self.asker.session.tokenize(t) if ep._tokenize_ok is not False else None
            out.append(int(n) if n is not None else max(1, round(len(t) / 4)))
        return out

    # -- the model ---------------------------------------------------------------------------------
    async def generate(
        self,
        prompt: Prompt,
        *,
        schema: Any = DEFAULT,
        max_tokens: int | None = None,
        purpose: str = "answer",
        tools: list[dict[str, Any]] | None = None,
        tool_choice: Any = None,
        counted: int | None = None,
    ) -> Generation:
        """Ask the model once. Raises RequestFailed (after retries; the call is recorded with its error),
        WindowExceeded (nothing sent), or EndpointError (the endpoint is gone: the run stops)."""
        a = self.asker
        schema = self.schema if schema is DEFAULT else schema
        max_tokens = a.max_tokens if max_tokens is None else max_tokens
        request = a.request(prompt, schema, max_tokens, tools, tool_choice)
        key = a.key(request) if a.cache is not None else None
        if key is not None and key in a.answered:
            shared = await asyncio.shield(a.answered[key])
            if shared is not None:
                return self._record(purpose, shared[0], shared[1], from_cache=True)
        stored = read_entry(a.cached(key)) if key is not None else None
        if stored is not None:
            with contextlib.suppress(Exception):  # an unreadable entry is asked again
                return self._record(purpose, *stored, from_cache=True)
        shared = None
        if key is not None:
            shared = a.answered[key] = asyncio.get_running_loop().create_future()
        try:
            generation = await self._ask(request, prompt, purpose, max_tokens, counted)
        except BaseException:
            if shared is not None:  # the others ask for themselves
                a.answered.pop(key, None)
                shared.set_result(None)
            raise
        if shared is not None:
            shared.set_result((generation.completion, generation.call.prompt_tokens_counted))
            if key is not None and a.cache_writes is not None and generation.completion.problem is None:
                a.cache_writes(key, entry(generation.completion, generation.call.prompt_tokens_counted))
        return generation

    async def _ask(
        self, request: tuple[str, dict[str, Any]], prompt: Prompt, purpose: str, max_tokens: int, counted: int | None
    ) -> Generation:
        """Send one request (the window checked first when the prompt might not fit).

        A prompt not counted before it was sent is counted from the answer: the server's usage is the
        served tokenizer's own count (vLLM counts a prompt with the tokenizer /tokenize uses), so the
        request needs no second one. Only a failed request, or an answer without usage, is counted
        afterwards (the served tokenizer here, else /tokenize)."""
        a = self.asker
        chat = a.endpoint.api == "chat"
        if counted is None:
            counted = self.known_counts.get(prompt.text)
        if counted is None and a.counting and not a.surely_fits(prompt, chat, max_tokens):
            counted = await a.session.count_prompt_tokens(prompt)
        if counted is not None and a.window and counted + max_tokens > a.window:
            raise WindowExceeded(counted, max_tokens, a.window)
        count_after = counted is None and a.counting
        try:
            async with a.slots:
                completion = await a.session.send(*request)
        except RequestFailed as e:
            if count_after:
                counted = await _count(a.session, prompt)
            self.calls.append(Call(purpose=purpose, prompt_tokens_counted=counted, attempts=e.attempts, error=e.reason))
            raise
        if count_after:
            counted = (
                completion.prompt_tokens if completion.prompt_tokens is not None else await _count(a.session, prompt)
            )
        return self._record(purpose, completion, counted)

    def _record(
        self, purpose: str, completion: Completion, counted: int | None, from_cache: bool = False
    ) -> Generation:
        text = completion.text
        call = Call(
            purpose=purpose,
            prompt_tokens=completion.prompt_tokens,
            prompt_tokens_counted=counted,
            completion_tokens=completion.completion_tokens,
            cached_tokens=completion.cached_tokens,
            latency_s=round(completion.latency_s, 4),
            finish_reason=completion.finish_reason,
            attempts=0 if from_cache else completion.attempts,
            from_cache=from_cache,
            raw=text[:MAX_RAW],
            raw_chars=len(text) if len(text) > MAX_RAW else None,
        )
        self.calls.append(call)
        return Generation(
            text=text,
            call=call,
            tool_calls=list(completion.tool_calls or []),
            problem=completion.problem,
            completion=completion,
        )


async def _count(session: Session, prompt: Prompt) -> int | None:
    """The prompt's tokens for the record of a call that has no usage (None when counting fails)."""
    try:
        return await session.count_prompt_tokens(prompt)
    except Exception:
        return None
