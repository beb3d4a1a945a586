"""Aggregate records into the comparison: accuracy per strategy x context length, and chance level.

Computed from records alone (the latest record of each query), so the summary of a
resumed or merged run is the same as that of an uninterrupted one.

Every accuracy (mean and per field; per strategy x length, per strategy, and per strategy x
length x depth cell in `by_cell`) carries `_lo`/`_hi`: a 95% interval that resamples needles
(report/stats.py), and `n_needles`. `per_needle` keeps each needle's accuracy per strategy and
length: the paired tests of the verdict read it.

Retrieval diagnostics and error attribution: every RAG record carries
`shown.retrieval.needle_retrieved` / `gold_recall` / `needle_rank` / `needle_coverage` / `tokens_retrieved`
(needle recall is the mean `gold_recall`: the share of a sample's gold documents retrieved). Each
wrong field of an answered query is one of
  * a *retrieval miss*: none of the needle's text was shown;
  * a *partial miss*: only part of it was (a chunk holding the needle's last words is not the
    needle: `needle_coverage` below 1), so the field may simply not have been shown;
  * a *reading error*: all of it was shown and the model still got the field wrong.
Coverage comes from the strategy (the fraction of the gold documents' characters it showed); arms
without it (full context) count as fully shown when `shown.needle_shown`. Queries whose request
failed are counted in `failed` and attributed to none, so
wrong_fields = retrieval_misses + partial_misses + reading_errors.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from harness.record import Record, as_records
from harness.report.multicall import add_costs, agent_rows, route_rows
from harness.scoring.answers import mark


def frame(records: Sequence[Record], fields: Sequence[str]) -> pd.DataFrame:
    rows = []
    for r in records:
        row = {
            "strategy": r.strategy,
            "length": r.length,
            "depth": r.depth,
            "sample_id": r.sample_id,
            "needle": r.needle_index,  # the unit intervals resample
            "score": r.score,
            "valid": bool(r.valid),
            "failed": bool(r.error),
            "scoring_error": bool(r.scoring_error),
            "prompt_tokens": r.prompt_tokens,
            "completion_tokens": r.completion_tokens,
            "latency_s": r.latency_s,
            "calls": r.n_calls,
            "steps": len(r.steps),
            "limited": bool(r.limit),
            "routed_long": (r.route == "full-context") if r.route is not None else None,
            "needle_shown": r.shown.needle_shown,
            "gold": has_gold(r),
        }
        for f in fields:
            row[f] = float(r.marks.get(f, 0.0))
        row.update(_attribution(r, fields))
        rows.append(row)
    df = pd.DataFrame(rows)
    for col in _NUMERIC:
        if col in df:
            df[col] = pd.to_numeric(df[col], errors="coerce")
    return df


_NUMERIC = (
    "needle_retrieved",
    "gold_recall",
    "needle_rank",
    "needle_coverage",
    "needle_partial",
    "tokens_retrieved",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "routed_long",
)


def needle_seen(record: Record) -> bool | None:
    """Whether the model was shown the needle: the retriever's verdict, else what was shown."""
    retrieved = record.shown.retrieval.get("needle_retrieved")
    return retrieved if retrieved is not None else record.shown.needle_shown


FULL = 0.999  # coverage at or above this counts as the whole needle shown


def needle_coverage(record: Record) -> float | None:
    """Fraction of the needle's text the model was shown: the strategy's figure, else all or nothing."""
    cov = record.shown.retrieval.get("needle_coverage")
    if cov is not None:
        return float(cov)
    seen = needle_seen(record)
    return None if seen is None else float(bool(seen))


def has_gold(r: Record) -> bool:
    """Whether the data marks the documents that answer the query (a question-answer file may not:
    the runner then records neither a needle id nor whether the needle was shown)."""
    return r.needle_id is not None or r.shown.needle_shown is not None


def _attribution(r: Record, fields: Sequence[str]) -> dict[str, Any]:
    """Retrieval figures and the cause of each wrong field; none where the data marks no gold document
    (nothing says what a retriever should have found)."""
    gold = has_gold(r)
    retrieval = r.shown.retrieval if gold else {}
    answered = not r.error
    wrong = [f for f in fields if r.marks.get(f, 0.0) < 1] if answered else []
    cov = needle_coverage(r) if gold else None
    where = None if not gold else "read" if cov is None or cov >= FULL else ("miss" if cov <= 0 else "part")
    out: dict[str, Any] = {
        "needle_retrieved": retrieval.get("needle_retrieved"),
        # share of the gold documents retrieved (several for an aggregate question); older records: 0/1
        "gold_recall": retrieval.get("gold_recall", retrieval.get("needle_retrieved")),
        "needle_rank": retrieval.get("needle_rank"),
        "needle_coverage": cov,
        "needle_partial": None if cov is None else float(0 < cov < FULL),
        "tokens_retrieved": retrieval.get("tokens_retrieved"),
        "wrong_fields": len(wrong),
        "retrieval_misses": len(wrong) if where == "miss" else 0,
        "partial_misses": len(wrong) if where == "part" else 0,
        "reading_errors": len(wrong) if where == "read" else 0,
    }
    for f in fields:
        for w in ("miss", "part", "read"):
            out[f"_{w}_{f}"] = int(f in wrong and where == w)
    return out


def attribution(df: pd.DataFrame, fields: Sequence[str], order: Sequence[str]) -> list[dict[str, Any]]:
    """Per strategy and field: wrong answers split into retrieval misses, partial misses and reading errors."""
    out = []
    for strategy in order:
        part = df[df["strategy"] == strategy]
        for f in fields:
            miss, partial, read = (int(part[f"_{w}_{f}"].sum()) for w in ("miss", "part", "read"))
            out.append(
                {
                    "strategy": strategy,
                    "field": f,
                    "wrong": miss + partial + read,
                    "retrieval_misses": miss,
                    "partial_misses": partial,
                    "reading_errors": read,
                }
            )
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


def summarize(
    records: Sequence[Record | dict[str, Any]], scenario, null_answer: dict[str, Any] | None = None
) -> dict[str, Any]:
    records = as_records(records)
    fields = list(scenario.fields)
    df = frame(records, fields)
    if df.empty:
        return {
            "fields": fields,
            "by_strategy_length": [],
            "by_strategy": [],
            "by_cell": [],
            "per_needle": {},
            "null_baseline": {},
            "attribution": [],
            "agents": [],
            "routes": [],
        }
    aggs = {
        "n": ("score", "size"),
        "accuracy": ("score", "mean"),
        **{f: (f, "mean") for f in fields},
        "valid_rate": ("valid", "mean"),
        "failed": ("failed", "sum"),
        "scoring_errors": ("scoring_error", "sum"),
        "calls": ("calls", "mean"),
        "steps": ("steps", "mean"),
        "limited": ("limited", "sum"),
        "routed_long": ("routed_long", "mean"),  # self-route: share answered by the long-context route
        "prompt_tokens": ("prompt_tokens", "mean"),
        "completion_tokens": ("completion_tokens", "mean"),
        "latency_s": ("latency_s", "mean"),
        "needle_shown": ("needle_shown", "mean"),
        # share of gold documents retrieved (= needles found, for one needle); NaN for arms that do not retrieve
        "needle_recall": ("gold_recall", "mean"),
        "needle_coverage": ("needle_coverage", "mean"),
        "needle_partial": ("needle_partial", "mean"),  # share of queries shown only part of the needle
        "needle_rank": ("needle_rank", "mean"),  # mean rank of the first needle chunk, when retrieved
        "tokens_retrieved": ("tokens_retrieved", "mean"),
        "wrong_fields": ("wrong_fields", "sum"),
        "retrieval_misses": ("retrieval_misses", "sum"),
        "partial_misses": ("partial_misses", "sum"),
        "reading_errors": ("reading_errors", "sum"),
    }
    order = list(dict.fromkeys(df["strategy"]))
    by_sl = df.groupby(["strategy", "length"], sort=False).agg(**aggs).reset_index()
    by_s = df.groupby("strategy", sort=False).agg(**aggs).reset_index()
    by_cell = (
        df.groupby(["strategy", "length", "depth"], sort=False)
        .agg(n=("score", "size"), accuracy=("score", "mean"))
        .reset_index()
    )
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
    golds = {r.sample_id: r.gold for r in records}
    return {
        "fields": fields,
        "by_strategy_length": _records(by_sl),
        "by_strategy": _records(by_s),
        "by_cell": _records(by_cell),  # strategy x length x depth: the heatmap
        "per_needle": per_needle(df),
        "gold_marked": float(df["gold"].mean()),  # share of queries whose data marks gold documents
        "null_answer": null_answer,
        "null_baseline": null_baseline(scenario, list(golds.values()), null_answer),
        "attribution": attribution(df, fields, order),
        "agents": agent_rows(records),  # multi-call strategies: steps, limits, where agents fail
        "routes": route_rows(records),  # self-route: share and accuracy of each route
    }


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(df.to_json(orient="records"))


def write_summary(summary: dict[str, Any], run_dir: Path) -> None:
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    rows = summary["by_strategy_length"]
    pd.DataFrame(rows).to_csv(run_dir / "summary.csv", index=False, float_format="%.4f")


def summarize_run(
    store, scenario, *, prices: dict[str, Any] | None = None, tolerance: float | None = None, alpha: float | None = None
):
    """The whole summary of a run folder: accuracy, grounding, money, ragas faithfulness, verdict.

    Recomputed from the folder alone (records.jsonl, samples.jsonl + corpus.jsonl, config.yaml,
    faithfulness.jsonl when ragas ran), so `harness report RUN_DIR` reproduces what `compare`
    printed. Returns (summary, latest records with their in-memory `grounding`, samples).

    `alpha` is the verdict's level (default: the run's own). An --until-decided run's verdict is
    tested at the run's alpha, as its rounds were (anytime-valid; verdict.verdict_level); `level`
    says so in words.
    """
    from harness.report.verdict import DEFAULT_TOLERANCE, verdict, verdict_level
    from harness.runfiles import SUMMARY_VERSION, read_manifest
    from harness.scoring import cost, faithfulness, grounding

    tolerance = DEFAULT_TOLERANCE if tolerance is None else tolerance
    saved = store.read_config() or {}  # the raw form, for the parts that read it themselves
    manifest = read_manifest(store.path, saved) if saved else None
    level = verdict_level(saved.get("config"), alpha)
    records = store.latest_records()
    samples = store.read_samples() if (store.path / "samples.jsonl").exists() else []
    summary = {"version": SUMMARY_VERSION} | summarize(records, scenario, manifest.null_answer if manifest else None)
    summary["null_source"] = manifest.null_source if manifest else None  # whose labels chance level comes from
    has_rules = grounding.annotate(records, samples, scenario)
    g = grounding.grounding_summary(records, scenario.fields)
    model = manifest.model if manifest else None
    table = prices if prices is not None else cost.load_prices()
    c = cost.cost_summary(records, model, table, cost.run_hardware(saved))
    price = c.pop("price_obj")
    for r in records:
        r.cost = cost.query_cost(r, price)  # in memory, for the report's per-query table
    f = faithfulness.faithfulness_summary(records, faithfulness.read_results(store.path))
    for part, key in (
        ("by_strategy_length", lambda r: (r["strategy"], r["length"])),
        ("by_strategy", lambda r: r["strategy"]),
    ):
        for row in summary[part]:
            k = key(row)
            row.update(g[part].get(k) or {})
            row.update(c[part].get(k) or {})
            if f["available"]:
                row.update(f[part].get(k) or {})
    summary["grounding"] = {
        "available": has_rules,
        "classes": list(grounding.CLASSES),
        "by_strategy_field": g["by_strategy_field"],
    }
    summary["cost"] = {k: c[k] for k in ("model", "price", "full_context", "notes")}
    add_costs(summary.get("routes") or [], summary["by_strategy"], c["full_context"])
    summary["faithfulness"] = {"available": f["available"]}
    from harness.endpoints.metrics import server_summary

    srv = server_summary(store.path, records, saved)  # window, prefix cache, prefill (server_metrics.jsonl)
    for row in summary["by_strategy"]:
        row.update(srv["by_strategy"].get(row["strategy"]) or {})
    summary["server"] = {k: v for k, v in srv.items() if k != "by_strategy"}
    from harness.endpoints.pool import replica_summary

    summary["replicas"] = replica_summary(store.path)  # a pool's requests per replica (replicas.jsonl)
    summary["run"] = {  # as config.yaml holds them
        "run_id": manifest.run_id if manifest else None,
        "endpoint": saved.get("endpoint"),
        "config": saved.get("config"),
    }
    summary["tolerance"] = tolerance
    summary["alpha"] = level["alpha"]
    summary["level"] = level
    summary["verdict"] = verdict(summary, tolerance, level["alpha"])
    return summary, records, samples
