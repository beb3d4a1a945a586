"""A run folder's own files, typed: config.yaml as a `RunManifest`, read back by `load_run(dir)`
(as inspect_ai's `read_eval_log` reads an eval log), so code asks `run.manifest.endpoint.model`
instead of walking `.get()` chains through a dict.

Versioned: a manifest written before the version field existed is version 1 and loads as it is
(every run folder in tests/data does); unknown keys a later version adds are kept, not refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.config import RunConfig
from harness.errors import UsageError

MANIFEST_VERSION = 2  # 1: before config.yaml said its version (same fields, no `version`)


class ServedEndpoint(BaseModel):
    """Who answered, as the server said when the run began (config.yaml's `endpoint`)."""

    model_config = ConfigDict(extra="allow")

    base_url: str | None = None
    model: str | None = None
    api: str | None = None
    max_model_len: int | None = None  # read back from /v1/models
    server_version: str | None = None  # read back from /version
    model_root: str | None = None  # the weights the server loaded (/v1/models)
    token_counter: str | None = None
    # a server the harness started: model path/revision, RoPE overrides, every argument, where it ran
    launch: dict[str, Any] | None = None
    # what a harness-started server behind --endpoint said it runs on (harness/endpoints/served.py)
    served_by: dict[str, Any] | None = None
    # a pool (--endpoint given again): every replica and its limit of requests in flight
    replicas: list[dict[str, Any]] | None = None
    identity: dict[str, Any] | None = None  # what a resume must match (record.ModelIdentity.key())

    @property
    def hardware(self) -> str | None:
        """Where the server ran ("cpu" or "gpu"): a self-started one's launch, else what a harness-started
        server behind --endpoint said; None for any other --endpoint."""
        for facts in (self.launch, self.served_by):
            flavour = (facts or {}).get("flavour")
            if flavour in ("cpu", "gpu"):
                return flavour
        return None


class StrategyEntry(BaseModel):
    model_config = ConfigDict(extra="allow")

    label: str
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class RunManifest(BaseModel):
    """config.yaml: the run's settings, who answered, the strategies' parameters, the chance level
    and the installed versions — what a replay or a resume needs."""

    model_config = ConfigDict(extra="allow")

    version: int = 1
    run_id: str
    config: RunConfig
    endpoint: ServedEndpoint = Field(default_factory=ServedEndpoint)
    reader: dict[str, Any] | None = None  # reader.Reader.record(): tuned or not, the adapter's provenance, shots
    strategies: list[StrategyEntry] = Field(default_factory=list)
    null_answer: Any = None
    null_source: str | None = None
    input_notes: list[str] = Field(default_factory=list)
    versions: dict[str, str] = Field(default_factory=dict)
    host: dict[str, Any] | None = None

    @property
    def model(self) -> str | None:
        """The served model's name: as the server said, else as the run asked."""
        return self.endpoint.model or self.config.endpoint.model

    def dump(self) -> dict[str, Any]:
        """The YAML-ready form written to config.yaml (`config` as RunConfig dumps it)."""
        return self.model_dump(mode="json")


def read_manifest(run_dir: Path, raw: dict[str, Any] | None = None) -> RunManifest:
    """The typed config.yaml of a run folder (`raw`: its content, when already read); a one-line
    UsageError when there is none or it is not a harness run's."""
    if raw is None:
        import yaml

        path = Path(run_dir) / "config.yaml"
        if not path.is_file():
            raise UsageError(f"{run_dir}: not a run folder (no config.yaml)")
        try:
            raw = yaml.safe_load(path.read_text())
        except (yaml.YAMLError, OSError, UnicodeDecodeError) as e:
            raise UsageError(f"{path}: not readable YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{run_dir}/config.yaml: not a harness run's (expected a mapping)")
    try:
        return RunManifest.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(map(str, first.get("loc", ()))) or "value"
        msg = first.get("msg", "").replace("Value error, ", "")
        raise UsageError(f"{run_dir}/config.yaml: not a harness config ({where}: {msg})") from None


# -- summary.json --------------------------------------------------------------------------------
SUMMARY_VERSION = 2  # 1: before summary.json said its version


class Comparison(BaseModel):
    """One strategy against a length's best (report/verdict.py): the paired difference, its tests
    and what they settle."""

    model_config = ConfigDict(extra="allow")

    strategy: str
    status: str  # better | worse | equivalent | undecided
    accuracy: float | None = None
    accuracy_lo: float | None = None
    accuracy_hi: float | None = None
    cost_per_1k: float | None = None
    needles: int | None = None
    diff: float | None = None
    diff_lo: float | None = None
    diff_hi: float | None = None
    p: float | None = None  # A and B differ (a betting confidence sequence: anytime-valid; v1: sign-flip test)
    p_equivalent: float | None = None  # |A - B| within the tolerance
    p_adjusted: float | None = None  # over every pair of strategies at the length
    p_equivalent_adjusted: float | None = None
    pairs: int | None = None  # pairs of strategies the length's alpha is split over
    rule: str | None = None  # the rule that decided (None: a summary from before the confidence sequences)
    alpha: float | None = None  # the level over every claim at the length
    more_needles: int | None = None  # undecided: about how many more needles would settle it
    more_needles_range: tuple[int, int] | None = None  # its 10th-90th percentile
    more_needles_share: float | None = None  # share of forecasts decided within the planned maximum
    margin: float | None = None  # undecided: the narrowest ±tolerance the data shows them within


class Verdict(BaseModel):
    """One length's verdict: the best strategy, every other compared with it, and the choice."""

    model_config = ConfigDict(extra="allow")

    length: int
    best: str | None = None
    best_accuracy: float | None = None
    best_cost_per_1k: float | None = None
    comparisons: list[Comparison] = Field(default_factory=list)
    settled: bool = False
    undecided: list[str] = Field(default_factory=list)
    cheapest_within_tolerance: str | None = None
    cost_ratio: float | None = None
    candidate: str | None = None
    choice: str | None = None
    tolerance: float | None = None
    alpha: float | None = None
    pairs: int | None = None  # pairs of strategies at the length (alpha is split over them)
    n: int | None = None
    n_needles: int | None = None


class Summary(BaseModel):
    """summary.json: accuracy per strategy, length and cell (rows keyed by the scenario's fields, so
    kept as mappings), chance level, attribution, grounding, money, server metrics, the verdict."""

    model_config = ConfigDict(extra="allow")

    version: int = 1
    fields: list[str] = Field(default_factory=list)
    by_strategy_length: list[dict[str, Any]] = Field(default_factory=list)
    by_strategy: list[dict[str, Any]] = Field(default_factory=list)
    by_cell: list[dict[str, Any]] = Field(default_factory=list)
    per_needle: dict[str, Any] = Field(default_factory=dict)
    null_answer: Any = None
    null_baseline: dict[str, Any] | None = None
    null_source: str | None = None
    attribution: list[dict[str, Any]] = Field(default_factory=list)
    agents: list[dict[str, Any]] = Field(default_factory=list)  # harness.report.multicall.agent_rows
    routes: list[dict[str, Any]] = Field(default_factory=list)  # harness.report.multicall.route_rows
    grounding: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None
    faithfulness: dict[str, Any] | None = None
    server: dict[str, Any] | None = None
    replicas: Any = None
    run: dict[str, Any] | None = None
    tolerance: float | None = None
    alpha: float | None = None
    level: dict[str, Any] | None = None
    verdict: list[Verdict] = Field(default_factory=list)

    def verdict_at(self, length: int) -> Verdict | None:
        return next((v for v in self.verdict if v.length == length), None)


class Run(BaseModel):
    """A run folder read back: its manifest and, once a report was made, its summary."""

    path: Path
    manifest: RunManifest
    summary: Summary | None = None


def read_summary(run_dir: Path) -> Summary | None:
    """The typed summary.json of a run folder; None before the first report."""
    import json

    path = Path(run_dir) / "summary.json"
    if not path.is_file():
        return None
    try:
        return Summary.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError) as e:  # ValidationError is a ValueError
        first = e.errors()[0] if isinstance(e, ValidationError) else None
        why = f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else str(e).splitlines()[0]
        raise UsageError(f"{path}: not a harness summary ({why})") from None


def load_run(run_dir: str | Path) -> Run:
    """A run folder's config.yaml and summary.json, typed (as inspect_ai's read_eval_log reads a log)."""
    run_dir = Path(run_dir)
    return Run(path=run_dir, manifest=read_manifest(run_dir), summary=read_summary(run_dir))
