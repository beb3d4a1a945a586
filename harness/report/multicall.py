"""How the strategies that call the model several times behaved: agents' steps and failures, routes.

Agents (records whose steps use tools): how many steps and calls a query took, how often a limit
stopped it, whether it searched for the name the question asks about and found the needle — and,
for each wrong answer, where it went wrong:
  ran_out        a limit stopped it (max_steps, token_budget, context_window, an invalid action);
  never_searched it never searched for the subject's name, and never saw the needle;
  not_found      it searched for the name but never saw the needle;
  misread        the needle was shown and the answer is still wrong.
Routes (records with a `route`, e.g. self-route): the share answered by each route, the accuracy
of each, and — with prices — the cost against always using full context.
Computed from records alone, like everything in the summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.record import Record

TOOL_STEPS = ("search", "read")
FAILURES = ("ran_out", "never_searched", "not_found", "misread")


def is_agent(r: Record) -> bool:
    return any(s.kind in TOOL_STEPS or s.kind in ("answer", "final", "invalid") for s in r.steps) and r.route is None


def agent_outcome(r: Record) -> str | None:
    """correct, or where a wrong answer went wrong (see the module docstring); None for a failed request."""
    if r.error:
        return None
    if r.score >= 1:
        return "correct"
    if r.limit:
        return "ran_out"
    retrieval = r.shown.retrieval
    if not retrieval.get("needle_retrieved"):
        return "not_found" if retrieval.get("searched_subject") else "never_searched"
    return "misread"


def agent_rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Per agentic strategy: steps, calls, limits, search behaviour and the failure classes."""
    by: dict[str, list[Record]] = {}
    for r in records:
        if is_agent(r) and not r.error:
            by.setdefault(r.strategy, []).append(r)
    out = []
    for strategy, rs in by.items():
        n = len(rs)
        outcomes = [agent_outcome(r) for r in rs]
        limits: dict[str, int] = {}
        for r in rs:
            if r.limit:
                limits[r.limit] = limits.get(r.limit, 0) + 1
        out.append(
            {
                "strategy": strategy,
                "n": n,
                "steps": sum(sum(s.kind in TOOL_STEPS for s in r.steps) for r in rs) / n,
                "calls": sum(r.n_calls for r in rs) / n,
                "searched_subject": sum(bool(r.shown.retrieval.get("searched_subject")) for r in rs) / n,
                "needle_found": sum(bool(r.shown.retrieval.get("needle_retrieved")) for r in rs) / n,
                "limited": sum(bool(r.limit) for r in rs) / n,
                "limits": limits,
                "correct": outcomes.count("correct"),
                **{f: outcomes.count(f) for f in FAILURES},
            }
        )
    return out


def route_rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Per strategy that routes: each route's share and accuracy (cost is added by the summary)."""
    by: dict[str, list[Record]] = {}
    for r in records:
        if r.route is not None and not r.error:
            by.setdefault(r.strategy, []).append(r)
    out = []
    for strategy, rs in by.items():
        routes: dict[str, dict[str, Any]] = {}
        for r in rs:
            g = routes.setdefault(r.route, {"n": 0, "score": 0.0, "needle_first": 0})
            g["n"] += 1
            g["score"] += r.score
        row: dict[str, Any] = {"strategy": strategy, "n": len(rs)}
        for route, g in routes.items():
            row[f"share_{route}"] = g["n"] / len(rs)
            row[f"accuracy_{route}"] = g["score"] / g["n"]
            row[f"n_{route}"] = g["n"]
        # did the first route see the needle when it declared the question answerable (or not)?
        said = [(r.route == "rag", _first_route_saw_needle(r)) for r in rs]
        known = [(a, s) for a, s in said if s is not None]
        row["route_agrees_with_retrieval"] = (sum(a == s for a, s in known) / len(known)) if known else None
        out.append(row)
    return out


def _first_route_saw_needle(r: Record) -> bool | None:
    retrieval = r.shown.retrieval
    first = retrieval.get("first_route", retrieval)
    seen = first.get("needle_coverage")
    return None if seen is None else seen >= 0.999


def add_costs(rows: list[dict[str, Any]], by_strategy: Sequence[dict[str, Any]], full_context: str | None) -> None:
    """Each routing strategy's $ per query against full context's, when both are priced."""
    cost = {s["strategy"]: s.get("cost_per_query") for s in by_strategy}
    fc = cost.get(full_context) if full_context else None
    for row in rows:
        mine = cost.get(row["strategy"])
        row["cost_per_query"] = mine
        row["saved_vs_full_context"] = (1 - mine / fc) if mine is not None and fc else None
