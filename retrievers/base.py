"""The Strategy interface: turn a sample into what the model is shown, with provenance.

Every arm (full context, dense RAG, the framework pipelines, later agentic and
self-route) implements `show`. Parameters are a pydantic model so that
`--strategies rag-dense:chunk_size=256,top_k=4` is validated and recorded verbatim.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, ValidationError

from harness.errors import UsageError
from harness.samples import Sample, Shown


class StrategyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Resources(BaseModel):
    """Shared things strategies may use: where to cache, how to count the served model's tokens."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    cache_dir: Path
    count_tokens: Any = None  # scenarios.base.TokenCounter


class Strategy(ABC):
    name: ClassVar[str] = ""
    Params: ClassVar[type[StrategyParams]] = StrategyParams

    def __init__(self, params: StrategyParams, resources: Resources):
        self.params = params
        self.resources = resources

    @property
    def label(self) -> str:
        """Name plus the parameters that differ from defaults: tells two settings of one arm apart."""
        changed = {
            k: v for k, v in self.params.model_dump().items() if v != self.Params.model_fields[k].default
        }
        return self.name + (":" + ",".join(f"{k}={v}" for k, v in changed.items()) if changed else "")

    def prepare(self, samples: Sequence[Sample]) -> None:
        """Optional batch work before any `show` (e.g. embed every unique chunk once)."""

    @abstractmethod
    def show(self, sample: Sample) -> Shown:
        """What the model sees for this sample, and where each piece came from."""


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
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or 'params'}: {err['msg']}" for err in e.errors()
        )
        raise UsageError(f"{what}: {problems}") from None
