"""Money per query, from the tokens and latency every record already holds.

Prices come from the table shipped in the package (harness/prices.yaml), overridden or extended
by `--prices FILE` (same format; its entries replace the shipped ones of the same name).

Cost of one query is the sum over its model calls (an agent or self-route makes several):
  API model (input/output prices):
      (prompt_tokens - cached_tokens) x input + cached_tokens x cached_input + completion_tokens x output,
      all per 1M tokens; cached_tokens is what the server reported as served from its prompt cache
      (vLLM's prompt_tokens_details.cached_tokens; absent: 0), cached_input defaults to input.
  Self-hosted model, charged by the hour of the machine that served it, for the busy time of each
  call (its measured latency: exact for one request at a time, an upper bound when requests
  overlap, since the server batches them; cached prefixes make calls faster, so they are priced in):
      gpu_hour  when the server ran on a GPU (the run's launch says so, or a harness-started server
                behind --endpoint said so, or else the price entry's `hardware: gpu`);
      cpu_hour  when it ran on a CPU: the price of the CPU machine, not of a GPU it did not have.
                Latency measured on a CPU is not a GPU's latency, so a GPU price times CPU seconds
                would be meaningless; an entry with only gpu_hour gives no $ for a CPU run, and
                says so.
  The report names the basis next to every figure ("self-hosted on CPU: $0.05/hour x busy time").
Failed requests (no usage) are left out of the means; invalid answers cost what they cost.

Summary columns per (strategy, length) and per strategy:
  cost_per_query, cost_per_1k          mean $ per query, and per 1,000 queries
  cost_per_correct_field               total $ / number of correctly filled fields
  cost_ratio_full_context              full context's $ per query / this strategy's (same length):
                                       "full context costs N x this arm"
  cached_tokens                        mean cached prompt tokens per query
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, NonNegativeFloat, ValidationError, model_validator

from harness.errors import UsageError
from harness.record import Call, Record

FULL_CONTEXT = "full-context"


class Price(BaseModel):
    """One model's prices: the prices file's entry as checked (strict numbers, never negative) and as held."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")

    model: str = ""  # the key it was found under
    input: NonNegativeFloat | None = None
    output: NonNegativeFloat | None = None
    cached_input: NonNegativeFloat | None = None
    gpu_hour: NonNegativeFloat | None = None
    cpu_hour: NonNegativeFloat | None = None
    hardware: Literal["cpu", "gpu"] | None = None  # where a self-hosted model runs (decided per run, see `on`)
    note: str = ""
    cpu_note: str = ""

    @model_validator(mode="after")
    def _priced(self) -> Price:
        if self.gpu_hour is None and self.cpu_hour is None and (self.input is None or self.output is None):
            raise ValueError("give input and output ($ per 1M tokens), or gpu_hour / cpu_hour")
        return self

    @property
    def basis(self) -> str:
        if self.input is not None and self.hardware is None:
            return "tokens"
        if self.hardware == "cpu":
            return "cpu_hour"
        return "gpu_hour" if self.gpu_hour is not None or self.input is None else "tokens"

    @property
    def rate(self) -> float | None:
        """$ per hour of the machine, for a self-hosted basis."""
        return {"cpu_hour": self.cpu_hour, "gpu_hour": self.gpu_hour}.get(self.basis)

    def on(self, hardware: str | None) -> Price:
        """This price for a run served on `hardware` ("cpu" or "gpu"; None: unknown, keep the entry's)."""
        if hardware is None or (self.gpu_hour is None and self.cpu_hour is None):
            return self
        return self.model_copy(update={"hardware": hardware})

    def describe(self) -> str:
        if self.basis == "cpu_hour":
            if self.cpu_hour is None:
                return (
                    f"{self.model}: self-hosted on CPU, no cpu_hour price (a GPU price x CPU time would be "
                    "meaningless); pass --prices with cpu_hour"
                )
            what = f" ({self.cpu_note})" if self.cpu_note else ""
            return f"{self.model}: self-hosted on CPU, ${self.cpu_hour:g}/hour{what} x server-busy time (latency)"
        if self.basis == "gpu_hour":
            return f"{self.model}: self-hosted on GPU, ${self.gpu_hour:g}/GPU-hour x server-busy time (latency)"
        cached = f", cached input ${self.cached_input:g}" if self.cached_input is not None else ""
        return f"{self.model}: ${self.input:g} in / ${self.output:g} out per 1M tokens{cached}"


class PriceTable(BaseModel):
    """A prices file: `models: {NAME: Price}`."""

    model_config = ConfigDict(extra="forbid")

    models: dict[str, Price]


def _check_table(table: Any, source: str) -> dict[str, dict[str, Any]]:
    """The file's entries, checked by `PriceTable` (one line naming the entry and field when wrong)."""
    if not isinstance(table, dict) or not isinstance(table.get("models"), dict):
        raise UsageError(f"{source}: expected a mapping 'models: {{NAME: {{input, output}} or {{gpu_hour}}}}'")
    try:
        checked = PriceTable.model_validate(table)
    except ValidationError as e:
        first = e.errors()[0]
        loc = [str(x) for x in first["loc"]]
        where = f"model {loc[1]!r}" + (f": {loc[2]}" if len(loc) > 2 else "") if len(loc) > 1 else ".".join(loc)
        raise UsageError(f"{source}: {where}: {first['msg'].removeprefix('Value error, ')}") from None
    return {name: p.model_dump(exclude_unset=True) for name, p in checked.models.items()}


def load_prices(path: str | Path | None = None) -> dict[str, dict[str, Any]]:
    """The shipped table, updated with `path`'s entries."""
    shipped = resources.files("harness").joinpath("prices.yaml").read_text(encoding="utf-8")
    table = _check_table(yaml.safe_load(shipped), "harness/prices.yaml")
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise UsageError(f"--prices: {p}: no such file")
        try:
            extra = yaml.safe_load(p.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise UsageError(f"--prices: {p}: not YAML ({str(e).splitlines()[0]})") from None
        table.update(_check_table(extra, str(p)))
    return table


def find_price(model: str | None, table: dict[str, dict[str, Any]]) -> Price | None:
    if not model:
        return None
    candidates = [model, model.lower(), model.rsplit("/", 1)[-1], model.rsplit("/", 1)[-1].lower()]
    lower = {k.lower(): k for k in table}
    key = next((c for c in candidates if c in table), None)
    key = key or next((lower[c] for c in candidates if c in lower), None)
    if key is None:  # the longest known name the model's name starts with: "gpt-4o-2024-08-06" -> gpt-4o
        base = candidates[-1]
        starts = [k for k in table if base.startswith(k.lower())]
        key = max(starts, key=len) if starts else None
    if key is None:
        return None
    return Price.model_validate({**table[key], "model": key})


def run_hardware(saved: dict[str, Any] | None) -> str | None:
    """Where the run's server ran ("cpu" or "gpu"), from config.yaml: the launch of a server the run
    started, else what a harness-started server behind --endpoint said of itself (endpoint.served_by,
    harness/endpoints/served.py); None for any other --endpoint."""
    endpoint = (saved or {}).get("endpoint") or {}
    for facts in (endpoint.get("launch"), endpoint.get("served_by")):
        flavour = (facts or {}).get("flavour")
        if flavour in ("cpu", "gpu"):
            return flavour
    return None


def call_cost(call: Call, price: Price) -> float | None:
    """$ for one call, or None (failed, or no usage/latency to charge)."""
    if call.error:
        return None
    if price.basis in ("gpu_hour", "cpu_hour"):
        if price.rate is None or call.latency_s is None:
            return None
        return price.rate * float(call.latency_s) / 3600.0
    p, c = call.prompt_tokens, call.completion_tokens
    if p is None or c is None:
        return None
    cached = min(int(call.cached_tokens or 0), int(p))
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    return ((int(p) - cached) * price.input + cached * cached_rate + int(c) * price.output) / 1e6


def query_cost(record: Record | dict[str, Any], price: Price | None) -> float | None:
    """$ for one query: the sum over its calls; None (no price, failed request, a call without usage)."""
    if isinstance(record, dict):
        record = Record.model_validate(record)
    if price is None or record.error or not record.calls:
        return None
    costs = [call_cost(c, price) for c in record.calls]
    return None if any(c is None for c in costs) else sum(costs)


def _group(records: Sequence[Record], price: Price | None) -> dict[str, Any]:
    costs = [(query_cost(r, price), r) for r in records]
    paid = [(c, r) for c, r in costs if c is not None]
    total = sum(c for c, _ in paid)
    correct = sum(sum(float(v) for v in r.marks.values()) for _, r in paid)
    cached = [r.cached_tokens for r in records if not r.error]
    mean = total / len(paid) if paid else None
    return {
        "cost_per_query": mean,
        "cost_per_1k": None if mean is None else 1000 * mean,
        "cost_per_correct_field": (total / correct) if paid and correct else None,
        "cost_total": total if paid else None,
        "cached_tokens": (sum(int(c or 0) for c in cached) / len(cached)) if cached else None,
    }


def cost_summary(
    records: Sequence[Record | dict[str, Any]],
    model: str | None,
    prices: dict[str, dict[str, Any]],
    hardware: str | None = None,
) -> dict[str, Any]:
    """Cost columns per (strategy, length) and per strategy, and notes for the report.

    `hardware`: where the run's server ran ("cpu"/"gpu", from its launch), which picks a self-hosted
    model's hourly price."""
    records = [r if isinstance(r, Record) else Record.model_validate(r) for r in records]
    price = find_price(model, prices)
    price = price.on(hardware) if price is not None else None
    notes = []
    if price is None:
        notes.append(f"no price for {model or 'the served model'}; pass --prices FILE with an entry for it")
    elif price.basis in ("gpu_hour", "cpu_hour"):
        notes.append(price.describe() + "; an upper bound when requests overlap")
    by_sl: dict[tuple[str, int], list] = {}
    by_s: dict[str, list] = {}
    fc_label = None
    for r in records:
        by_sl.setdefault((r.strategy, r.length), []).append(r)
        by_s.setdefault(r.strategy, []).append(r)
        if fc_label is None and (r.strategy_name or r.strategy.split(":")[0]) == FULL_CONTEXT:
            fc_label = r.strategy
    sl = {k: _group(v, price) for k, v in by_sl.items()}
    s = {k: _group(v, price) for k, v in by_s.items()}

    def ratio(fc: dict | None, row: dict) -> float | None:
        a = fc and fc.get("cost_per_query")
        b = row.get("cost_per_query")
        return a / b if a is not None and b else None

    for (_name, L), row in sl.items():
        row["cost_ratio_full_context"] = ratio(sl.get((fc_label, L)), row) if fc_label else None
    for row in s.values():
        row["cost_ratio_full_context"] = ratio(s.get(fc_label), row) if fc_label else None
    return {
        "model": model,
        "price": None if price is None else {**price.model_dump(), "basis": price.basis, "describe": price.describe()},
        "price_obj": price,
        "full_context": fc_label,
        "notes": notes,
        "by_strategy_length": sl,
        "by_strategy": s,
    }


def fmt_money(x: float | None) -> str:
    """$ with enough digits to tell tiny self-hosted costs apart."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if x == 0:
        return "$0"
    if abs(x) >= 100:
        return f"${x:,.0f}"
    if abs(x) >= 1:
        return f"${x:,.2f}"
    return f"${x:.2g}" if abs(x) < 0.01 else f"${x:.3f}"
