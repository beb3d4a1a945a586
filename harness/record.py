"""One query's record: who answered, every model call it took, the final answer, its marks.

A record is the unit of `records.jsonl` and the only thing the summary, verdict, report and
`recommend` read, so it must be complete enough to recompute all of them. Since strategies may
call the model several times (agents, self-route), a record holds the list of its `calls`;
tokens, latency and money are sums over them. The sums are also written out flat
(`prompt_tokens`, `latency_s`, ...) so a record line reads on its own, in pandas or jq.

Records written before calls existed (milestone 1: one flat call) load unchanged: their flat
fields become one call.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field, model_validator

# A record keeps at most this much of a response's text (a broken server can send megabytes);
# `raw_chars` then says how long it was. Parsing and scoring always see the whole text.
MAX_RAW = 1_000_000


class ModelIdentity(BaseModel):
    """What answered: the served name, the weights behind it, the window and RoPE, where it ran.

    Two records with different identities are answers of different models; a run folder holds
    one identity (resuming with another is refused)."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    served: str | None = None  # the weights the server loaded (vLLM's `root` in /v1/models)
    host: str | None = None
    api: str | None = None
    max_model_len: int | None = None
    settings: dict[str, Any] = Field(default_factory=dict)  # RoPE overrides and other answer-changing settings

    def key(self) -> dict[str, Any]:
        """The parts that decide the answers (the port of a local server does not)."""
        return self.model_dump(mode="json")

    def differences(self, other: ModelIdentity) -> list[str]:
        mine, theirs = self.key(), other.key()
        return [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]


class Call(BaseModel):
    """One request to the model, as part of answering a query."""

    model_config = ConfigDict(extra="ignore")

    purpose: str = "answer"  # answer | route | agent | final ...: what the strategy asked it for
    prompt_tokens: int | None = None  # as the server reported (usage)
    prompt_tokens_counted: int | None = None  # as /tokenize counted before sending
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    latency_s: float | None = None
    finish_reason: str | None = None
    attempts: int = 0
    from_cache: bool = False
    error: str | None = None  # the request's final failure, after retries
    raw: str | None = None  # the response text (truncated to MAX_RAW)
    raw_chars: int | None = None  # the full length, when truncated


class Step(BaseModel):
    """One step of a multi-call strategy: a tool it used (or the route it took) and what came back."""

    model_config = ConfigDict(extra="allow")

    kind: str  # search | read | answer | route | invalid ...
    arguments: dict[str, Any] = Field(default_factory=dict)
    result_chars: int | None = None
    result_ids: list[str] = Field(default_factory=list)  # chunk or document ids the tool returned
    call: int | None = None  # index into Record.calls of the call that chose this step
    note: str | None = None


class ShownRecord(BaseModel):
    """What the model was shown for its final answer, with where each piece came from."""

    model_config = ConfigDict(extra="allow")

    pieces: list[dict[str, Any]] = Field(default_factory=list)
    doc_ids: list[str] = Field(default_factory=list)
    needle_shown: bool | None = None
    retrieval: dict[str, Any] = Field(default_factory=dict)


_FLAT_CALL = (
    "prompt_tokens",
    "prompt_tokens_counted",
    "completion_tokens",
    "cached_tokens",
    "latency_s",
    "finish_reason",
    "raw",
    "raw_chars",
)


class Record(BaseModel):
    """One query of a run: (strategy, sample), its calls, answer and marks."""

    model_config = ConfigDict(extra="ignore")

    run_id: str = ""
    scenario: str = ""
    strategy: str
    strategy_name: str = ""
    strategy_params: dict[str, Any] = Field(default_factory=dict)
    sample_id: str = ""
    length: int = 0
    depth: float = 0.0
    needle_index: int = 0
    needle_id: str | None = None
    subject: str | None = None
    context_tokens: int = 0
    model: ModelIdentity | None = None
    calls: list[Call] = Field(default_factory=list)
    raw: str | None = None  # the final answer's text as the model wrote it (truncated to MAX_RAW)
    raw_chars: int | None = None  # its full length, when truncated
    answer: Any = None  # the decoded answer (the scored form), None when invalid
    valid: bool = False
    invalid_reason: str | None = None
    error: str | None = None  # the query could not be answered (a request failed for good): asked again on resume
    scoring_error: str | None = None  # the scorer raised: fields marked wrong, the reason kept
    gold: Any = None
    marks: dict[str, float] = Field(default_factory=dict)
    score: float = 0.0
    shown: ShownRecord = Field(default_factory=ShownRecord)
    steps: list[Step] = Field(default_factory=list)
    route: str | None = None  # self-route: "rag" or "full-context"
    limit: str | None = None  # a multi-call strategy stopped by a limit: max_steps | token_budget | context_window
    time: float = Field(default_factory=time.time)
    # Filled in memory by the summary (never written): grounding classes and $ of this query.
    grounding: dict[str, Any] | None = Field(None, exclude=True)
    cost: float | None = Field(None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _one_flat_call(cls, data: Any) -> Any:
        """A milestone-1 record (no `calls`): its flat usage fields are its one call."""
        if isinstance(data, dict) and "calls" not in data and any(k in data for k in _FLAT_CALL):
            data = dict(data)
            call = {k: data.get(k) for k in _FLAT_CALL if k in data}
            call.update(
                attempts=data.get("attempts") or 0, from_cache=bool(data.get("from_cache")), error=data.get("error")
            )
            data["calls"] = [call]
        return data

    # -- sums over calls (written out flat, recomputed on load) -------------------------------
    def _sum(self, attr: str) -> int | float | None:
        values = [getattr(c, attr) for c in self.calls if getattr(c, attr) is not None]
        return sum(values) if values else None

    @computed_field
    @property
    def prompt_tokens(self) -> int | None:
        return self._sum("prompt_tokens")

    @computed_field
    @property
    def prompt_tokens_counted(self) -> int | None:
        return self._sum("prompt_tokens_counted")

    @computed_field
    @property
    def completion_tokens(self) -> int | None:
        return self._sum("completion_tokens")

    @computed_field
    @property
    def cached_tokens(self) -> int | None:
        return self._sum("cached_tokens")

    @computed_field
    @property
    def latency_s(self) -> float | None:
        total = self._sum("latency_s")
        return None if total is None else round(total, 4)

    @computed_field
    @property
    def attempts(self) -> int:
        return sum(c.attempts for c in self.calls)

    @computed_field
    @property
    def from_cache(self) -> bool:
        return bool(self.calls) and all(c.from_cache for c in self.calls)

    @computed_field
    @property
    def finish_reason(self) -> str | None:
        return self.calls[-1].finish_reason if self.calls else None

    @property
    def n_calls(self) -> int:
        return len(self.calls)

    @property
    def key(self) -> tuple[str, str]:
        return (self.strategy, self.sample_id)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def as_records(rows: Iterable[Record | dict[str, Any]]) -> list[Record]:
    """Records from records.jsonl rows (or Records already)."""
    return [r if isinstance(r, Record) else Record.model_validate(r) for r in rows]
