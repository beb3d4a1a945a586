"""Money per query, from the tokens and latency every record already holds.

Prices come from the table shipped in the package (harness/prices.yaml), overridden or extended
by `--prices FILE` (same format; its entries replace the shipped ones of the same name).

Cost of one query:
  API model (input/output prices):
      (prompt_tokens - cached_tokens) x input + cached_tokens x cached_input + completion_tokens x output,
      all per 1M tokens; cached_tokens is what the server reported as served from its prompt cache
      (vLLM's prompt_tokens_details.cached_tokens; absent: 0), cached_input defaults to input.
  Self-hosted model (gpu_hour):
      gpu_hour x busy seconds / 3600. The busy time of a query is its measured latency: exact for
      one request at a time, an upper bound when requests overlap (the server batches them), and
      on a CPU-only machine a stand-in for what the same work would occupy a GPU. Cached prefixes
      make requests faster, so they are already priced in.
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
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from harness.errors import UsageError

FULL_CONTEXT = "full-context"


@dataclass(frozen=True)
class Price:
    model: str  # the key it was found under
    input: float | None = None
    output: float | None = None
    cached_input: float | None = None
    gpu_hour: float | None = None
    note: str = ""

    @property
    def basis(self) -> str:
        return "gpu_hour" if self.gpu_hour is not None else "tokens"

    def describe(self) -> str:
        if self.basis == "gpu_hour":
            return f"{self.model}: self-hosted, ${self.gpu_hour:g}/GPU-hour x server-busy time (latency)"
        cached = f", cached input ${self.cached_input:g}" if self.cached_input is not None else ""
        return f"{self.model}: ${self.input:g} in / ${self.output:g} out per 1M tokens{cached}"


def _check_table(table: Any, source: str) -> dict[str, dict[str, Any]]:
    models = table.get("models") if isinstance(table, dict) else None
    if not isinstance(models, dict):
        raise UsageError(f"{source}: expected a mapping 'models: {{NAME: {{input, output}} or {{gpu_hour}}}}'")
    out = {}
    for name, entry in models.items():
        if not isinstance(entry, dict):
            raise UsageError(f"{source}: model {name!r}: expected a mapping of prices")
        for k in ("input", "output", "cached_input", "gpu_hour"):
            v = entry.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                raise UsageError(f"{source}: model {name!r}: {k} must be a non-negative number")
        if entry.get("gpu_hour") is None and (entry.get("input") is None or entry.get("output") is None):
            raise UsageError(f"{source}: model {name!r}: give input and output ($ per 1M tokens), or gpu_hour")
        out[str(name)] = entry
    return out


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
    e = table[key]
    num = lambda k: None if e.get(k) is None else float(e[k])  # noqa: E731
    return Price(model=key, input=num("input"), output=num("output"), cached_input=num("cached_input"),
                 gpu_hour=num("gpu_hour"), note=str(e.get("note") or ""))


def query_cost(record: dict[str, Any], price: Price | None) -> float | None:
    """$ for one query, or None (no price, failed request, no usage)."""
    if price is None or record.get("error"):
        return None
    if price.basis == "gpu_hour":
        busy = record.get("latency_s")
        return None if busy is None else price.gpu_hour * float(busy) / 3600.0
    p, c = record.get("prompt_tokens"), record.get("completion_tokens")
    if p is None or c is None:
        return None
    cached = min(int(record.get("cached_tokens") or 0), int(p))
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    return ((int(p) - cached) * price.input + cached * cached_rate + int(c) * price.output) / 1e6


def _group(records: Sequence[dict[str, Any]], price: Price | None) -> dict[str, Any]:
    costs = [(query_cost(r, price), r) for r in records]
    paid = [(c, r) for c, r in costs if c is not None]
    total = sum(c for c, _ in paid)
    correct = sum(sum(bool(v) for v in (r.get("marks") or {}).values()) for _, r in paid)
    cached = [r.get("cached_tokens") for r in records if not r.get("error")]
    mean = total / len(paid) if paid else None
    return {
        "cost_per_query": mean,
        "cost_per_1k": None if mean is None else 1000 * mean,
        "cost_per_correct_field": (total / correct) if paid and correct else None,
        "cost_total": total if paid else None,
        "cached_tokens": (sum(int(c or 0) for c in cached) / len(cached)) if cached else None,
    }


def cost_summary(records: Sequence[dict[str, Any]], model: str | None, prices: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Cost columns per (strategy, length) and per strategy, and notes for the report."""
    price = find_price(model, prices)
    notes = []
    if price is None:
        notes.append(f"no price for {model or 'the served model'}; pass --prices FILE with an entry for it")
    elif price.basis == "gpu_hour":
        notes.append("self-hosted: $ = GPU-hour price x per-query latency (an upper bound when requests overlap)")
    by_sl: dict[tuple[str, int], list] = {}
    by_s: dict[str, list] = {}
    fc_label = None
    for r in records:
        by_sl.setdefault((r["strategy"], r["length"]), []).append(r)
        by_s.setdefault(r["strategy"], []).append(r)
        if fc_label is None and r.get("strategy_name", r["strategy"].split(":")[0]) == FULL_CONTEXT:
            fc_label = r["strategy"]
    sl = {k: _group(v, price) for k, v in by_sl.items()}
    s = {k: _group(v, price) for k, v in by_s.items()}

    def ratio(fc: dict | None, row: dict) -> float | None:
        a = fc and fc.get("cost_per_query")
        b = row.get("cost_per_query")
        return a / b if a is not None and b else None

    for (name, L), row in sl.items():
        row["cost_ratio_full_context"] = ratio(sl.get((fc_label, L)), row) if fc_label else None
    for name, row in s.items():
        row["cost_ratio_full_context"] = ratio(s.get(fc_label), row) if fc_label else None
    return {
        "model": model,
        "price": None if price is None else {**price.__dict__, "basis": price.basis, "describe": price.describe()},
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
