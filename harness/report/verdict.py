"""The decision: per context length, which strategy to use.

verdict (end of `harness compare`, top of the report), per length:
  * the most accurate strategy (mean field accuracy; ties go to the cheaper one);
  * the cheapest strategy whose accuracy is within `tolerance` (default 2 percentage points) of
    it, and the cost ratio most-accurate / cheapest ("5.1x cheaper"). Without prices the cheapest
    is not known and the verdict says so.
recommend (`harness recommend RUN_DIR --min-accuracy 0.9 [--max-cost-per-1k X]`), per length:
  the cheapest strategy whose accuracy meets the target (and whose $ per 1k queries is within
  the budget), or a line saying that none does and what came closest.
Both read `summary["by_strategy_length"]` rows (strategy, length, n, accuracy, cost_per_1k).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.scoring.cost import fmt_money

DEFAULT_TOLERANCE = 0.02


def _by_length(rows: Sequence[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        if r.get("accuracy") is not None:
            out.setdefault(int(r["length"]), []).append(r)
    return dict(sorted(out.items()))


def _cost(r: dict[str, Any]) -> float | None:
    c = r.get("cost_per_1k")
    return None if c is None or c != c else float(c)


def _cheapest(rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    priced = [r for r in rows if _cost(r) is not None]
    return min(priced, key=lambda r: (_cost(r), -r["accuracy"])) if priced else None


def verdict(summary: dict[str, Any], tolerance: float = DEFAULT_TOLERANCE) -> list[dict[str, Any]]:
    out = []
    for length, rows in _by_length(summary.get("by_strategy_length") or []).items():
        top = max(r["accuracy"] for r in rows)
        tied = [r for r in rows if r["accuracy"] == top]
        best = _cheapest(tied) or tied[0]
        near = [r for r in rows if r["accuracy"] >= top - tolerance - 1e-12]
        cheap = _cheapest(near)
        ratio = None
        if cheap is not None and _cost(best) and _cost(cheap):
            ratio = _cost(best) / _cost(cheap)
        out.append({
            "length": length,
            "best": best["strategy"],
            "best_accuracy": best["accuracy"],
            "best_cost_per_1k": _cost(best),
            "cheapest_within_tolerance": None if cheap is None else cheap["strategy"],
            "cheapest_accuracy": None if cheap is None else cheap["accuracy"],
            "cheapest_cost_per_1k": None if cheap is None else _cost(cheap),
            "cost_ratio": ratio,
            "tolerance": tolerance,
            "n": best.get("n"),
        })
    return out


def verdict_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """One plain-text line per length."""
    lines = []
    for v in rows:
        head = (f"{v['length']:,} tokens: most accurate {v['best']} ({100 * v['best_accuracy']:.1f}%, "
                f"{fmt_money(v['best_cost_per_1k'])}/1k queries)")
        tol = f"{100 * v['tolerance']:g} pts"
        if v["cheapest_within_tolerance"] is None:
            tail = f"; cheapest within {tol}: unknown (no price; pass --prices)"
        elif v["cheapest_within_tolerance"] == v["best"]:
            tail = f"; it is also the cheapest within {tol}"
        else:
            ratio = f", {v['cost_ratio']:.1f}x cheaper" if v["cost_ratio"] else ""
            tail = (f"; cheapest within {tol}: {v['cheapest_within_tolerance']} "
                    f"({100 * v['cheapest_accuracy']:.1f}%, {fmt_money(v['cheapest_cost_per_1k'])}/1k{ratio})")
        lines.append(head + tail)
    return lines


def recommend(summary: dict[str, Any], min_accuracy: float, max_cost_per_1k: float | None = None) -> list[dict[str, Any]]:
    out = []
    for length, rows in _by_length(summary.get("by_strategy_length") or []).items():
        ok = [r for r in rows if r["accuracy"] >= min_accuracy - 1e-12]
        unpriced = max_cost_per_1k is not None and any(_cost(r) is None for r in ok)
        if max_cost_per_1k is not None:
            ok = [r for r in ok if _cost(r) is not None and _cost(r) <= max_cost_per_1k]
        choice = _cheapest(ok) or (max(ok, key=lambda r: r["accuracy"]) if ok else None)
        closest = max(rows, key=lambda r: (r["accuracy"], -(_cost(r) or 0)))
        out.append({
            "length": length,
            "strategy": None if choice is None else choice["strategy"],
            "accuracy": None if choice is None else choice["accuracy"],
            "cost_per_1k": None if choice is None else _cost(choice),
            "closest": closest["strategy"],
            "closest_accuracy": closest["accuracy"],
            "closest_cost_per_1k": _cost(closest),
            "unpriced": unpriced,
        })
    return out


def recommend_lines(rows: Sequence[dict[str, Any]], min_accuracy: float, max_cost_per_1k: float | None) -> list[str]:
    target = f">= {100 * min_accuracy:.1f}% accuracy" + (
        f" at <= {fmt_money(max_cost_per_1k)}/1k queries" if max_cost_per_1k is not None else "")
    lines = []
    for r in rows:
        if r["strategy"] is not None and r["cost_per_1k"] is None:
            lines.append(f"{r['length']:,} tokens: {r['strategy']} ({100 * r['accuracy']:.1f}%) meets {target}; "
                         "no price to find the cheapest (pass --prices)")
        elif r["strategy"] is not None:
            lines.append(f"{r['length']:,} tokens: {r['strategy']} ({100 * r['accuracy']:.1f}%, "
                         f"{fmt_money(r['cost_per_1k'])}/1k queries) is the cheapest that meets {target}")
        else:
            extra = " (some strategies have no price; pass --prices)" if r["unpriced"] else ""
            lines.append(f"{r['length']:,} tokens: none meets {target}; closest is {r['closest']} "
                         f"({100 * r['closest_accuracy']:.1f}%, {fmt_money(r['closest_cost_per_1k'])}/1k){extra}")
    return lines
