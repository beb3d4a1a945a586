"""Helpers for scenarios that fill a context length with documents, in the served model's tokens.

A scenario's `samples()` receives a `TokenCounter` (a round trip to the endpoint's /tokenize per
call). `TokenCache` counts each distinct text once; `fill` takes documents from a stream until
the next would pass a token budget, counting them in a few batches sized from what was measured
so far; `depth_index` says where a needle goes for a depth. Documents are joined with "\\n\\n"
(harness.prompting.join_documents), counted as SEP_TOKENS each: the true count depends on the
tokenizer's merges at the seam, within a token or two per join.

    cache = TokenCache(count_tokens)
    background = fill(stream_of_documents(), budget=L - needle_tokens, cache=cache, text=lambda d: d.text)
    k = depth_index([cache[d.text] for d in background], depth)
    documents = background[:k] + [needle] + background[k:]
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from harness.scenario import TokenCounter

T = TypeVar("T")
SEP_TOKENS = 1  # tokens counted for each "\n\n" between documents
CHARS_PER_TOKEN_GUESS = 3.0  # sizes the first batch (low, to rarely overshoot); measured afterwards


class TokenCache:
    """Counts each distinct text once, batching whatever is not counted yet into one call."""

    def __init__(self, count_tokens: TokenCounter):
        self.count_tokens = count_tokens
        self.counts: dict[str, int] = {}

    @classmethod
    def reuse(cls, cache: TokenCache | None, count_tokens: TokenCounter) -> TokenCache:
        """`cache` when it counts with `count_tokens` (a scenario asked for another grid), else a fresh one."""
        return cache if cache is not None and cache.count_tokens is count_tokens else cls(count_tokens)

    def ensure(self, texts: Iterable[str]) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self.counts))
        if not todo:
            return
        got = list(self.count_tokens(todo))
        if len(got) != len(todo):
            raise RuntimeError(f"token counter returned {len(got)} counts for {len(todo)} texts")
        self.counts.update(zip(todo, (int(n) for n in got)))

    def count(self, texts: Sequence[str]) -> list[int]:
        self.ensure(texts)
        return [self.counts[t] for t in texts]

    def __getitem__(self, text: str) -> int:
        return self.counts[text]


def joined_tokens(counts: Sequence[int]) -> int:
    """Tokens of documents joined with separators: their counts plus one SEP_TOKENS per join."""
    return sum(counts) + SEP_TOKENS * max(0, len(counts) - 1)


def fill(
    source: Iterable[T], budget: int, cache: TokenCache, text: Callable[[T], str] = str, sep_tokens: int = SEP_TOKENS
) -> list[T]:
    """The longest prefix of `source` whose texts, joined, fit in `budget` tokens.

    Each item costs its tokens plus `sep_tokens` for the join before it (none before the first).
    Items are drawn and counted in batches aimed a little past the remaining budget, so a few
    more may be counted than are taken (they stay in the cache). `source` may be endless."""
    it = iter(source)
    taken: list[T] = []
    used = 0
    chars_per_token = CHARS_PER_TOKEN_GUESS
    counted_chars = counted_tokens = 0
    while True:
        remaining = budget - used
        if remaining <= 0:
            return taken
        batch: list[T] = []
        estimate = 0.0
        while estimate < remaining * 1.05 + 1:
            item = next(it, _END)
            if item is _END:
                break
            batch.append(item)
            estimate += len(text(item)) / chars_per_token + sep_tokens
        if not batch:
            return taken
        cache.ensure(text(x) for x in batch)
        for x in batch:
            n = cache[text(x)]
            counted_chars += len(text(x))
            counted_tokens += n
            cost = n + (sep_tokens if taken else 0)
            if used + cost > budget:
                return taken
            taken.append(x)
            used += cost
        if counted_tokens:
            chars_per_token = max(counted_chars / counted_tokens, 0.5)


_END = object()


def plant(
    background: Sequence[T], counts: Sequence[int], planted: Sequence[tuple[int, T, int]]
) -> tuple[list[T], list[int]]:
    """The background with each planted (k, item, tokens) put before background item k (k = len: at the end;
    equal k in the order given), and every item's token count in the same order (for `joined_tokens`)."""
    items: list[T] = []
    tokens: list[int] = []
    for k in range(len(background) + 1):
        for at, item, n in planted:
            if at == k:
                items.append(item)
                tokens.append(n)
        if k < len(background):
            items.append(background[k])
            tokens.append(counts[k])
    return items, tokens


def depth_index(counts: Sequence[int], depth: float, sep_tokens: int = SEP_TOKENS) -> int:
    """Where a needle goes among documents of these token counts for `depth` percent: the document
    boundary k (0..len) whose token offset is nearest depth% of their joined length (ties go
    earlier), so depth 0 puts it first and depth 100 last."""
    ends = [0]
    for n in counts:
        ends.append(ends[-1] + n + sep_tokens)
    span = ends[-1]
    target = depth / 100 * span
    j = bisect.bisect_left(ends, target)
    if j >= len(ends):
        return len(counts)
    if j > 0 and target - ends[j - 1] <= ends[j] - target:
        return j - 1
    return j


def grid(scenario: str, lengths: Sequence[int], depths: Sequence[float], needles: int) -> tuple[list[int], list[float]]:
    """The grid's lengths and depths without repeats, in the order given, checked (`check_grid`)."""
    lengths, depths = list(dict.fromkeys(lengths)), [float(d) for d in dict.fromkeys(depths)]
    check_grid(scenario, lengths, depths, needles)
    return lengths, depths


def check_grid(scenario: str, lengths: Sequence[int], depths: Sequence[float], needles: int) -> None:
    """One-line UsageErrors for a grid no scenario can build (no lengths, depth outside 0-100, ...)."""
    from harness.errors import UsageError

    if not lengths:
        raise UsageError(f"{scenario}: no context lengths given")
    for L in lengths:
        if isinstance(L, bool) or not isinstance(L, int) or L < 1:
            raise UsageError(f"{scenario}: context length {L!r} is not a positive integer")
    if not depths:
        raise UsageError(f"{scenario}: no depths given")
    for d in depths:
        if not 0 <= d <= 100:
            raise UsageError(f"{scenario}: depth {d:g} is outside 0-100 (percent)")
    if isinstance(needles, bool) or not isinstance(needles, int) or needles < 1:
        raise UsageError(f"{scenario}: needles per cell must be at least 1 (got {needles!r})")
