"""Aggregate records into the comparison: accuracy per strategy x context length, and chance level.

Computed from records alone (the latest record of each query), so the summary of a
resumed or merged run is the same as that of an uninterrupted one.

Every accuracy (mean and per field; per strategy x length, per strategy, and per strategy x
length x depth cell in `by_cell`) carries `_lo`/`_hi`: a 95% interval that resamples needles
(report/stats.py), and `n_needles`. `per_needle` keeps each needle's accuracy per strategy and
length: the paired tests of the verdict read it.

Retrieval diagnostics and error attribution: every RAG record carries
`shown.retrieval.needle_retrieved` / `needle_rank` / `tokens_retrieved`. Each wrong field of an
answered query is either a *retrieval miss* (the needle's document was not among the retrieved
chunks) or a *reading error* (the model was shown it and still got the field wrong); for arms
without retrieval (full context) `shown.needle_shown` decides. Queries whose request failed are
counted in `failed` and attributed to neither, so wrong_fields = retrieval_misses + reading_errors.
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
            "needle": r.get("needle_index", r["sample_id"]),  # the unit intervals resample
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
        row.update(_attribution(r, fields))
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in _NUMERIC:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


_NUMERIC = ("needle_retrieved", "needle_rank", "tokens_retrieved", "prompt_tokens", "completion_tokens", "latency_s")


def needle_seen(record: dict[str, Any]) -> bool | None:
    """Whether the model was shown the needle: the retriever's verdict, else what was shown."""
    shown = record.get("shown") or {}
    retrieved = (shown.get("retrieval") or {}).get("needle_retrieved")
    return retrieved if retrieved is not None else shown.get("needle_shown")


def _attribution(r: dict[str, Any], fields: Sequence[str]) -> dict[str, Any]:
    retrieval = (r.get("shown") or {}).get("retrieval") or {}
    answered = not r.get("error")
    wrong = [f for f in fields if not r["marks"].get(f, False)] if answered else []
    missed = needle_seen(r) is False
    out: dict[str, Any] = {
        "needle_retrieved": retrieval.get("needle_retrieved"),
        "needle_rank": retrieval.get("needle_rank"),
        "tokens_retrieved": retrieval.get("tokens_retrieved"),
        "wrong_fields": len(wrong),
        "retrieval_misses": len(wrong) if missed else 0,
        "reading_errors": 0 if missed else len(wrong),
    }
    for f in fields:
        out[f"_miss_{f}"] = int(f in wrong and missed)
        out[f"_read_{f}"] = int(f in wrong and not missed)
    return out


def attribution(df: pd.DataFrame, fields: Sequence[str], order: Sequence[str]) -> list[dict[str, Any]]:
    """Per strategy and field: wrong answers split into retrieval misses and reading errors."""
    out = []
    for strategy in order:
        part = df[df["strategy"] == strategy]
        for f in fields:
            miss, read = int(part[f"_miss_{f}"].sum()), int(part[f"_read_{f}"].sum())
            out.append({"strategy": strategy, "field": f, "wrong": miss + read,
                        "retrieval_misses": miss, "reading_errors": read})
    return out


def with_intervals(table: pd.DataFrame, df: pd.DataFrame, keys: Sequence[str], cols: Sequence[str]) -> pd.DataFrame:
    """`table` (one row per group of `keys`) plus n_needles and a 95% interval for each column's mean.

    A needle's value is the mean of its records in the group (its depths, and lengths when those
    are pooled); the interval resamples needles (report/stats.py).
    """
    from harness.report.stats import bootstrap_ci

    per_needle = df.groupby([*keys, "needle"], sort=False)[list(cols)].mean()
    rows = []
    for key, part in per_needle.groupby(level=list(range(len(keys))), sort=False):
        lo, hi = bootstrap_ci(part.to_numpy())
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        row["n_needles"] = len(part)
        for c, a, b in zip(cols, lo, hi):
            row[f"{c}_lo"], row[f"{c}_hi"] = a, b
        rows.append(row)
    return table.merge(pd.DataFrame(rows), on=list(keys), how="left")


def per_needle(df: pd.DataFrame) -> dict[str, dict[str, dict[str, float]]]:
    """strategy -> length -> needle -> mean accuracy over its depths: what paired tests compare."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (s, length, needle), v in df.groupby(["strategy", "length", "needle"], sort=False)["score"].mean().items():
        out.setdefault(s, {}).setdefault(str(length), {})[str(needle)] = float(v)
    return out


def null_baseline(scenario, golds: Sequence[dict[str, Any]], null: dict[str, Any] | None = None) -> dict[str, float]:
    """Score on these needles of always giving one answer: chance level.

    `null` is the run's saved null answer (each field's most common value in the corpus);
    without one it falls back to the most common value among the needles themselves.
    """
    if not golds:
        return {}
    null = null if null is not None else scenario.null_answer(golds)
    marks = [mark(scenario, null, g)[0] for g in golds]
    out = {f: sum(m[f] for m in marks) / len(marks) for f in scenario.fields}
    out["accuracy"] = sum(out[f] for f in scenario.fields) / len(scenario.fields)
    return out


def summarize(records: Sequence[dict[str, Any]], scenario, null_answer: dict[str, Any] | None = None) -> dict[str, Any]:
    fields = list(scenario.fields)
    df = frame(records, fields)
    if df.empty:
        return {"fields": fields, "by_strategy_length": [], "by_strategy": [], "by_cell": [], "per_needle": {},
                "null_baseline": {}, "attribution": []}
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
        "needle_recall": ("needle_retrieved", "mean"),  # NaN (null) for arms that do not retrieve
        "needle_rank": ("needle_rank", "mean"),  # mean rank of the first needle chunk, when retrieved
        "tokens_retrieved": ("tokens_retrieved", "mean"),
        "wrong_fields": ("wrong_fields", "sum"),
        "retrieval_misses": ("retrieval_misses", "sum"),
        "reading_errors": ("reading_errors", "sum"),
    }
    order = list(dict.fromkeys(df["strategy"]))
    by_sl = df.groupby(["strategy", "length"], sort=False).agg(**aggs).reset_index()
    by_s = df.groupby("strategy", sort=False).agg(**aggs).reset_index()
    by_cell = df.groupby(["strategy", "length", "depth"], sort=False).agg(
        n=("score", "size"), accuracy=("score", "mean")).reset_index()
    scored = ["accuracy", *fields]
    df["accuracy"] = df["score"]
    by_sl = with_intervals(by_sl, df, ["strategy", "length"], scored)
    by_s = with_intervals(by_s, df, ["strategy"], scored)
    by_cell = with_intervals(by_cell, df, ["strategy", "length", "depth"], ["accuracy"])
    for t in (by_sl, by_s, by_cell):
        t["_o"] = t["strategy"].map(order.index)
    by_sl = by_sl.sort_values(["_o", "length"]).drop(columns="_o")
    by_s = by_s.sort_values("_o").drop(columns="_o")
    by_cell = by_cell.sort_values(["_o", "length", "depth"]).drop(columns="_o")
    golds = {r["sample_id"]: r["gold"] for r in records}
    return {
        "fields": fields,
        "by_strategy_length": _records(by_sl),
        "by_strategy": _records(by_s),
        "by_cell": _records(by_cell),  # strategy x length x depth: the heatmap
        "per_needle": per_needle(df),
        "null_answer": null_answer,
        "null_baseline": null_baseline(scenario, list(golds.values()), null_answer),
        "attribution": attribution(df, fields, order),
    }


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records"))


def write_summary(summary: dict[str, Any], run_dir: Path) -> None:
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    rows = summary["by_strategy_length"]
    pd.DataFrame(rows).to_csv(run_dir / "summary.csv", index=False, float_format="%.4f")


def summarize_run(store, scenario, *, prices: dict[str, Any] | None = None, tolerance: float | None = None,
                  alpha: float | None = None):
    """The whole summary of a run folder: accuracy, grounding, money, ragas faithfulness, verdict.

    Recomputed from the folder alone (records.jsonl, samples.jsonl + corpus.jsonl, config.yaml,
    faithfulness.jsonl when ragas ran), so `harness report RUN_DIR` reproduces what `compare`
    printed. Returns (summary, latest records with their in-memory `grounding`, samples).

    `alpha` is the verdict's level (default: the run's own). An --until-decided run's verdict is
    tested at alpha / its planned looks, as its rounds were (verdict.verdict_level); `level`
    says so in words.
    """
    from harness.report.verdict import DEFAULT_TOLERANCE, verdict, verdict_level
    from harness.scoring import cost, faithfulness, grounding

    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    saved = store.read_config() or {}
    level = verdict_level(saved.get("config"), alpha)
    records = store.latest_records()
    samples = store.read_samples() if (store.path / "samples.jsonl").exists() else []
    summary = summarize(records, scenario, saved.get("null_answer"))
    has_rules = grounding.annotate(records, samples, scenario)
    g = grounding.grounding_summary(records, scenario.fields)
    model = (saved.get("endpoint") or {}).get("model") or ((saved.get("config") or {}).get("endpoint") or {}).get("model")
    table = prices if prices is not None else cost.load_prices()
    c = cost.cost_summary(records, model, table)
    price = cost.find_price(model, table)
    for r in records:
        r["cost"] = cost.query_cost(r, price)  # in memory, for the report's per-query table
    f = faithfulness.faithfulness_summary(records, faithfulness.read_results(store.path))
    for part, key in (("by_strategy_length", lambda r: (r["strategy"], r["length"])),
                      ("by_strategy", lambda r: r["strategy"])):
        for row in summary[part]:
            k = key(row)
            row.update(g[part].get(k) or {})
            row.update(c[part].get(k) or {})
            if f["available"]:
                row.update(f[part].get(k) or {})
    summary["grounding"] = {"available": has_rules, "classes": list(grounding.CLASSES),
                            "by_strategy_field": g["by_strategy_field"]}
    summary["cost"] = {k: c[k] for k in ("model", "price", "full_context", "notes")}
    summary["faithfulness"] = {"available": f["available"]}
    from harness.endpoints.metrics import server_summary

    srv = server_summary(store.path, records, saved)  # window, prefix cache, prefill (server_metrics.jsonl)
    for row in summary["by_strategy"]:
        row.update(srv["by_strategy"].get(row["strategy"]) or {})
    summary["server"] = {k: v for k, v in srv.items() if k != "by_strategy"}
    summary["run"] = {"run_id": saved.get("run_id"), "endpoint": saved.get("endpoint"),
                      "config": saved.get("config")}
    summary["tolerance"] = tolerance
    summary["alpha"] = level["alpha"]
    summary["level"] = level
    summary["verdict"] = verdict(summary, tolerance, level["alpha"])
    return summary, records, samples
