"""How the strategies that call the model several times behaved: agents' steps and failures, routes.

Agents (records whose steps use tools): how many steps and calls a query took, how often a limit
stopped it, whether it searched for the name the question asks about and found the needle — and,
for each wrong answer, where it went wrong:
  ran_out        a limit stopped it (max_steps, token_budget, context_window, an invalid action);
  never_searched it never searched for the subject's name, and never saw the needle;
  not_found      it searched for the name but never saw the needle;
  misread        the needle was shown and the answer is still wrong.
Agents' actions, as users of agent frameworks expect them measured:
  valid_actions        the share of the agent's actions (search, read, answer, invalid) that were
                       valid; invalid ones by class: invalid_json (not a JSON action / unparsable
                       tool arguments), unknown_tool, bad_arguments (missing, empty, off-schema, a
                       document that does not exist);
  search_hit           the share of searches whose results held a gold document;
  steps_to_first_hit   over queries that saw a gold document, the steps up to and including the
                       first that showed one;
  repeated_queries     searches per query that repeated an earlier query of the same query.
Routes (records with a `route`, e.g. self-route): the share answered by each route, the accuracy
of each, and — with prices — the cost against always using full context. The route is checked
against an oracle route: the question is answerable from retrieval exactly when the retrieved
chunks showed the whole needle (needle coverage 1). `route_confusion` counts (said, oracle) pairs
(`answerable/answerable`, `answerable/not`, `not/answerable`, `not/not`); `route_accuracy` is the
share where they agree (`route_agrees_with_retrieval`, its older name, is kept).
Both agents and routes get `token_share`: the tokens (prompt + completion, all calls) a strategy
spent against what full context spent on the same queries (the Self-Route paper's measure), or,
when the run has no full-context arm, against the haystack's tokens (`token_share_of` says which).
Computed from records alone, like everything in the summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.record import Record

TOOL_STEPS = ("search", "read")
ACTION_STEPS = ("search", "read", "answer", "invalid")
FAILURES = ("ran_out", "never_searched", "not_found", "misread")
INVALID = ("invalid_json", "unknown_tool", "bad_arguments")  # retrievers/agent_actions.py writes these
FULL_CONTEXT = "full-context"


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


def invalid_class(step) -> str:
    """The INVALID class of an invalid step (records before classes existed: a reply that was not JSON)."""
    error = step.arguments.get("error")
    return error if error in INVALID else "invalid_json"


def action_rows(rs: Sequence[Record]) -> dict[str, Any]:
    """Tool-call validity, per-search hits, steps to the first hit and repeated queries of one agent's records."""
    steps = [s for r in rs for s in r.steps if s.kind in ACTION_STEPS]
    invalid = [invalid_class(s) for s in steps if s.kind == "invalid"]
    hits = [bool(h) for r in rs for h in r.shown.retrieval.get("search_hits") or []]
    first = [r.shown.retrieval.get("needle_step") for r in rs]
    first = [n + 1 for n in first if isinstance(n, int)]
    repeated = [r.shown.retrieval.get("repeated_queries") for r in rs]
    repeated = [n for n in repeated if isinstance(n, int)]
    return {
        "actions": len(steps),
        "valid_actions": (1 - len(invalid) / len(steps)) if steps else None,
        **{c: invalid.count(c) for c in INVALID},
        "searches_scored": len(hits),
        "search_hit": (sum(hits) / len(hits)) if hits else None,
        "steps_to_first_hit": (sum(first) / len(first)) if first else None,
        "repeated_queries": (sum(repeated) / len(repeated)) if repeated else None,
    }


def _tokens(r: Record) -> int:
    return (r.prompt_tokens or 0) + (r.completion_tokens or 0)


def token_share(rs: Sequence[Record], records: Sequence[Record]) -> dict[str, Any]:
    """Tokens spent against full context's on the same queries (or against the haystack's tokens)."""
    full = {r.sample_id: _tokens(r) for r in records if r.strategy == FULL_CONTEXT and not r.error}
    paired = [r for r in rs if full.get(r.sample_id)]
    if paired:
        return {
            "token_share": sum(_tokens(r) for r in paired) / sum(full[r.sample_id] for r in paired),
            "token_share_of": FULL_CONTEXT,
        }
    context = sum(r.context_tokens for r in rs)
    return {"token_share": (sum(_tokens(r) for r in rs) / context) if context else None, "token_share_of": "haystack"}


def agent_rows(records: Sequence[Record]) -> list[dict[str, Any]]:
    """Per agentic strategy: steps, calls, limits, search behaviour, action validity and the failure classes."""
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
                **action_rows(rs),
                **token_share(rs, records),
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
        # the oracle route: the first route could answer exactly when it saw the whole needle
        said = [(r.route == "rag", _first_route_saw_needle(r)) for r in rs]
        known = [(a, s) for a, s in said if s is not None]
        row["route_accuracy"] = (sum(a == s for a, s in known) / len(known)) if known else None
        row["route_agrees_with_retrieval"] = row["route_accuracy"]
        row["route_confusion"] = {
            f"{_said(a)}/{_said(s)}": sum(1 for k in known if k == (a, s)) for a in (True, False) for s in (True, False)
        }
        row.update(token_share(rs, records))
        out.append(row)
    return out


def _said(answerable: bool) -> str:
    return "answerable" if answerable else "not"


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
