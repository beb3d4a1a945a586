"""The Strategy interface: how a query is answered, in as many model calls as it takes.

A strategy is an async function of (sample, query) — like inspect_ai's solver with its
`generate` — that may call `query.generate(...)` any number of times and returns an `Outcome`:
the final answer's text plus what the model was shown and how it got there. The `Query` handle
does everything per call that must not be left to each strategy: the response cache, retries,
the context-window check, token counting and recording the call in the query's record.

One-shot arms (full context, the RAG pipelines) subclass `OneShot`: they only say what the
model is shown (`show`); asking is the one-call case of the same interface. Their prompts are
known before any request, so a grid that cannot fit the window is refused before anything is
paid for (`preflight`, or a cheaper upper bound of it, `window_bound`, where preparing is slow).

Parameters are a pydantic model so that `--strategies rag-dense:chunk_size=256,top_k=4` is
validated and recorded verbatim. Strategies live in plug-in packages (`retrievers/`, users'
files) and import this module; the core never imports them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import UsageError
from harness.record import Step
from harness.samples import Sample, Shown

if TYPE_CHECKING:
    from harness.prompting import Prompt
    from harness.query import Query


class StrategyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(BaseModel):
    """Shared things strategies may use: where to cache, how to count the served model's tokens."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    cache_dir: Path
    count_tokens: Any = None  # harness.scenario.TokenCounter (synchronous; not from inside the event loop)


class Outcome(BaseModel):
    """What a strategy returns: the final answer's text and how it was reached."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str | None  # the answer as the model wrote it, in the scenario's answer schema; None: no answer
    shown: Shown  # what the model was shown for that answer (every tool result, for an agent)
    steps: list[Step] = Field(default_factory=list)
    route: str | None = None
    limit: str | None = None  # max_steps | token_budget | context_window: why it stopped early
    reason: str | None = None  # why there is no answer (text None)


class Strategy(ABC):
    name: ClassVar[str] = ""
    Params: ClassVar[type[StrategyParams]] = StrategyParams
    one_call: ClassVar[bool] = False  # True: exactly one model call per query (the runner plans accordingly)
    # What a tuned reader must have learned to read this arm's calls: "answer" (extract the answer), "route"
    # (say whether retrieved chunks answer the question), "agent" (the JSON action protocol). A run's default
    # reader is a shipped one trained on every arm's skill where there is one (harness.reader).
    reader_skill: ClassVar[str] = "answer"

    def __init__(self, params: StrategyParams, resources: Resources):
        self.params = params
        self.resources = resources

    @property
    def label(self) -> str:
        """Name plus the parameters that differ from defaults: tells two settings of one arm apart."""
        changed = {k: v for k, v in self.params.model_dump().items() if v != type(self.params).model_fields[k].default}
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in changed.items()) if changed else "")

    def prepare(self, samples: Sequence[Sample]) -> None:  # noqa: B027 (an optional hook: nothing by default)
        """Optional batch work before the strategy's first query (e.g. embed every unique chunk once):
        before any request, or, where `window_bound` shows the strategy's prompts fit, just before the
        strategy's own turn."""

    def preflight(self, sample: Sample, query: Query) -> list[Prompt]:
        """Prompts this strategy will send for `sample` that are known before any call.

        The runner counts them and refuses a grid whose prompts exceed the window before any request;
        calls it cannot foresee are checked one by one as they are made."""
        return []

    def window_bound(self, sample: Sample, query: Query) -> list[Prompt] | None:
        """Without `prepare`: prompts no smaller than any `preflight` will name for `sample` (each of those
        no larger, as `Asker.surely_fits` measures prompts, than one of these); None, the default, when the
        strategy cannot tell before it is prepared.

        When every bound of a strategy surely fits the window, the runner prepares and preflights the
        strategy only when its first query is due, so the strategies before it start asking at once (a
        retrieval arm's embedding is not paid up front); otherwise it is prepared up front, as before.
        Either way no request is sent before the grid is known to fit. Raise whatever `preflight` would
        refuse (UsageError): this runs before any request in its place."""
        return None

    @abstractmethod
    async def solve(self, sample: Sample, query: Query) -> Outcome:
        """Answer one sample, calling `query.generate` as often as needed."""


class OneShot(Strategy):
    """A strategy that shows the model one context and asks once: subclasses implement `show`."""

    one_call = True

    def __init__(self, params: StrategyParams, resources: Resources):
        super().__init__(params, resources)
        self._shown: dict[str, Shown] = {}

    @abstractmethod
    def show(self, sample: Sample) -> Shown:
        """What the model sees for this sample, and where each piece came from."""

    def preflight(self, sample: Sample, query: Query) -> list[Prompt]:
        shown = self._shown[sample.id] = self.show(sample)
        return [query.prompt(shown.context)]

    async def solve(self, sample: Sample, query: Query) -> Outcome:
        shown = self._shown.pop(sample.id, None)
        if shown is None:
            shown = self.show(sample)
        gen = await query.generate(query.prompt(shown.context))
        if gen.problem:
            return Outcome(text=None, reason=gen.problem, shown=shown)
        return Outcome(text=gen.text, shown=shown)


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """`rag-dense:chunk_size=256,top_k=4` -> ('rag-dense', {'chunk_size': '256', 'top_k': '4'})."""
    name, _, rest = spec.strip().partition(":")
    params: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise UsageError(f"strategy {spec!r}: expected key=value, got {item!r}")
        params[key.strip()] = value.strip()
    if not name:
        raise UsageError(f"strategy {spec!r}: missing name")
    return name, params


def build_params(model: type[BaseModel], raw: dict[str, Any], what: str) -> BaseModel:
    """Validate user-given parameters, turning pydantic's report into one line."""
    try:
        return model(**raw)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'params'}: {err['msg']}" for err in e.errors())
        raise UsageError(f"{what}: {problems}") from None
