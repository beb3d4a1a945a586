"""Aggregate records into the comparison: accuracy per strategy x context length, and chance level.

Computed from records alone (the latest record of each query), so the summary of a
resumed or merged run is the same as that of an uninterrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness.scoring.answers import mark


def frame(records: Sequence[dict[str, Any]], fields: Sequence[str]) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {
            "strategy": r["strategy"],
            "length": r["length"],
            "depth": r["depth"],
            "sample_id": r["sample_id"],
            "score": r["score"],
            "valid": bool(r["valid"]),
            "failed": bool(r.get("error")),
            "prompt_tokens": r.get("prompt_tokens"),
            "completion_tokens": r.get("completion_tokens"),
            "latency_s": r.get("latency_s"),
            "needle_shown": r.get("shown", {}).get("needle_shown"),
        }
        for f in fields:
            row[f] = float(r["marks"].get(f, False))
        rows.append(row)
    return pd.DataFrame(rows)


def null_baseline(scenario, golds: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Score of always giving the most common gold label of each field: chance level."""
    if not golds:
        return {}
    null = scenario.null_answer(golds)
    marks = [mark(scenario, null, g)[0] for g in golds]
    out = {f: sum(m[f] for m in marks) / len(marks) for f in scenario.fields}
    out["accuracy"] = sum(out[f] for f in scenario.fields) / len(scenario.fields)
    return out


def summarize(records: Sequence[dict[str, Any]], scenario) -> dict[str, Any]:
    fields = list(scenario.fields)
    df = frame(records, fields)
    if df.empty:
        return {"fields": fields, "by_strategy_length": [], "by_strategy": [], "null_baseline": {}}
    aggs = {
        "n": ("score", "size"),
        "accuracy": ("score", "mean"),
        **{f: (f, "mean") for f in fields},
        "valid_rate": ("valid", "mean"),
        "failed": ("failed", "sum"),
        "prompt_tokens": ("prompt_tokens", "mean"),
        "completion_tokens": ("completion_tokens", "mean"),
        "latency_s": ("latency_s", "mean"),
        "needle_shown": ("needle_shown", "mean"),
    }
    order = list(dict.fromkeys(df["strategy"]))
    by_sl = df.groupby(["strategy", "length"], sort=False).agg(**aggs).reset_index()
    by_s = df.groupby("strategy", sort=False).agg(**aggs).reset_index()
    for t in (by_sl, by_s):
        t["_o"] = t["strategy"].map(order.index)
    by_sl = by_sl.sort_values(["_o", "length"]).drop(columns="_o")
    by_s = by_s.sort_values("_o").drop(columns="_o")
    golds = {r["sample_id"]: r["gold"] for r in records}
    return {
        "fields": fields,
        "by_strategy_length": _records(by_sl),
        "by_strategy": _records(by_s),
        "null_baseline": null_baseline(scenario, list(golds.values())),
    }


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records"))


def write_summary(summary: dict[str, Any], run_dir: Path) -> None:
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    rows = summary["by_strategy_length"]
    pd.DataFrame(rows).to_csv(run_dir / "summary.csv", index=False, float_format="%.4f")
