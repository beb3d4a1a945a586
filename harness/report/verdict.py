"""The decision: per context length, which strategy to use, and how sure the data is of it.

verdict (end of `harness compare`, top of the report), per length:
  * the most accurate strategy (mean field accuracy; ties go to the cheaper one), with its 95%
    interval over needles;
  * every other strategy compared with it on the same needles (report/stats.py `paired_family`):
    worse, no detectable difference (equivalent within `tolerance`), or too few needles to tell,
    decided by anytime-valid confidence sequences for the mean per-needle difference (by betting,
    harness/sequential.py: valid for bounded differences of any shape, and at whatever round an
    --until-decided run stopped). Alpha is split over every pair of the length's strategies, so one
    error rate covers every claim made there, "better" and "equivalent" together. An undecided
    comparison says how many more needles the rule itself would need (simulated forward from the
    differences seen, with its 10-90 % range) and the narrowest margin within which the sequence
    already lies (`margin`: the --tolerance at which it would be settled as equivalent);
  * the cheapest strategy among the best and those shown equivalent to it: "cheapest within
    tolerance" only when the data supports it. A strategy that is within tolerance on the point
    estimate but not shown equivalent is named as a candidate, not as the answer.
  * `settled`: no comparison left undecided (what `--until-decided` waits for).
recommend (`harness recommend RUN_DIR --min-accuracy 0.9 [--max-cost-per-1k X]`), per length:
  the cheapest strategy whose accuracy meets the target (and whose $ per 1k queries is within
  the budget), whether the interval (95%; 1 - alpha / planned looks for an --until-decided run)
  supports it, and cheaper strategies the data cannot rule out.
Both read `summary["by_strategy_length"]` rows (strategy, length, n, accuracy, its interval,
cost_per_1k) and `summary["per_needle"]` (each needle's accuracy, for the paired tests).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.report.stats import LEVEL, bootstrap_ci, one_sided_meets, paired_family
from harness.scoring.cost import fmt_money

DEFAULT_TOLERANCE = 0.02
DEFAULT_ALPHA = 0.05


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


def _needles(summary: dict[str, Any], strategy: str, length: int) -> dict[str, float]:
    return ((summary.get("per_needle") or {}).get(strategy) or {}).get(str(length)) or {}


def _needle_order(key: str) -> tuple:
    """Needles in the order they were asked (index order): the confidence sequence is built in it."""
    return (0, int(key), "") if key.isdigit() else (1, 0, key)


def pairs_at_length(k: int) -> int:
    """How many pairs of strategies `k` strategies make: the split of the length's alpha."""
    return max(1, k * (k - 1) // 2)


def compare_pairs(
    summary: dict[str, Any],
    best: dict[str, Any],
    others: Sequence[dict[str, Any]],
    length: int,
    alpha: float,
    tolerance: float,
    *,
    plan: bool = True,
) -> list[dict[str, Any]]:
    """`best` against each of `others` at `length`, each on the needles both were asked.

    The best strategy is chosen from the data, so alpha is split over every pair of the length's
    strategies (stats.paired_family): whichever pairs are compared, all claims hold together.
    """
    pairs = []
    for other in others:
        a, b = _needles(summary, best["strategy"], length), _needles(summary, other["strategy"], length)
        common = sorted((k for k in a if k in b), key=_needle_order)
        pairs.append(([a[k] for k in common], [b[k] for k in common]))
    family = pairs_at_length(len(others) + 1)
    out = []
    for other, p in zip(others, paired_family(pairs, alpha=alpha, tolerance=tolerance, family=family, plan=plan)):
        status = {"better": "worse", "worse": "better"}.get(p.status, p.status)  # said of `other`
        out.append(
            {
                "strategy": other["strategy"],
                "accuracy": other["accuracy"],
                "accuracy_lo": other.get("accuracy_lo"),
                "accuracy_hi": other.get("accuracy_hi"),
                "cost_per_1k": _cost(other),
                **p.as_dict(),
                "status": status,
                "alpha": alpha,  # the level over every claim at the length
            }
        )
    return out


def verdict_level(config: dict[str, Any] | None, alpha: float | None = None) -> dict[str, Any]:
    """The level the verdict tests at, and why in words, from a run's saved `config` (RunConfig dump).

    The verdict's confidence sequences are anytime-valid, so an --until-decided run's looks after
    every round cost nothing: its verdict is at the run's alpha, like any other. `looks` (the
    planned rounds) is kept for `recommend`, whose accuracy intervals are fixed-sample bootstraps
    and are widened to 1 - alpha / looks there. `alpha` defaults to the run's own --alpha.
    """
    adaptive = (config or {}).get("adaptive")
    if not adaptive:
        a = DEFAULT_ALPHA if alpha is None else float(alpha)
        return {"alpha": a, "family_alpha": a, "looks": 1, "adaptive": False, "text": f"alpha {a:.3g}"}
    from harness.config import AdaptiveConfig, RunConfig

    plan = AdaptiveConfig(**adaptive).schedule(int(config.get("needles") or RunConfig.model_fields["needles"].default))
    a = float(adaptive.get("alpha", DEFAULT_ALPHA) if alpha is None else alpha)
    text = f"alpha {a:.3g} at every round (--until-decided; anytime-valid)"
    return {"alpha": a, "family_alpha": a, "looks": len(plan), "adaptive": True, "text": text}


def verdict(
    summary: dict[str, Any], tolerance: float = DEFAULT_TOLERANCE, alpha: float = DEFAULT_ALPHA, *, plan: bool = True
) -> list[dict[str, Any]]:
    """Per length: the most accurate strategy, every other compared with it, the cheapest shown
    within tolerance. `plan`: forecast the needles undecided comparisons need (off in --until-decided's rounds)."""
    out = []
    for length, rows in _by_length(summary.get("by_strategy_length") or []).items():
        top = max(r["accuracy"] for r in rows)
        tied = [r for r in rows if r["accuracy"] == top]
        best = _cheapest(tied) or tied[0]
        comps = compare_pairs(summary, best, [r for r in rows if r is not best], length, alpha, tolerance, plan=plan)
        equivalent = {c["strategy"] for c in comps if c["status"] == "equivalent"}
        undecided = [c["strategy"] for c in comps if c["status"] == "undecided"]
        cheap = _cheapest([best] + [r for r in rows if r["strategy"] in equivalent])
        # On the point estimates alone (what the verdict said before it had tests): a candidate.
        near = _cheapest([r for r in rows if r["accuracy"] >= top - tolerance - 1e-12])
        ratio = None
        if cheap is not None and _cost(best) and _cost(cheap):
            ratio = _cost(best) / _cost(cheap)
        out.append(
            {
                "length": length,
                "best": best["strategy"],
                "best_accuracy": best["accuracy"],
                "best_accuracy_lo": best.get("accuracy_lo"),
                "best_accuracy_hi": best.get("accuracy_hi"),
                "best_cost_per_1k": _cost(best),
                "comparisons": comps,
                "settled": not undecided,
                "undecided": undecided,
                "cheapest_within_tolerance": None if cheap is None else cheap["strategy"],
                "cheapest_accuracy": None if cheap is None else cheap["accuracy"],
                "cheapest_cost_per_1k": None if cheap is None else _cost(cheap),
                "cost_ratio": ratio,
                "candidate": None
                if near is None or cheap is None or near["strategy"] == cheap["strategy"]
                else near["strategy"],
                "choice": (cheap or best)["strategy"],
                "tolerance": tolerance,
                "alpha": alpha,
                "pairs": pairs_at_length(len(rows)),
                "n": best.get("n"),
                "n_needles": best.get("n_needles"),
            }
        )
    return out


def _pts(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "-"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def interval(lo: float | None, hi: float | None) -> str:
    """'[20.0–32.5]' in percent, or '' when there is no interval (fewer than two needles)."""
    return "" if lo is None or hi is None or lo != lo or hi != hi else f"[{_pts(lo)}–{_pts(hi)}]"


def p_value(p: float, alpha: float | None = None) -> str:
    """p to two significant digits, or more where two would round it across `alpha`: a p of 0.0499
    that decided a comparison at 0.05 is not printed "0.05"."""
    for digits in range(2, 7):
        out = f"{p:.{digits}g}"
        if alpha is None or (p < alpha) == (float(out) < alpha):
            break
    return out


def p_text(c: dict[str, Any], equivalent: bool = False) -> str:
    """'p = 0.012, over 3 pairs (raw p = 0.004)': the p the status was decided on.

    A run decided by the confidence sequences (`rule` "betting-cs") says over how many pairs of
    strategies alpha was split; an older summary, decided by sign-flip tests, prints as it did.
    """
    raw = c["p_equivalent"] if equivalent else c["p"]
    if c.get("rule"):
        adj = c.get("p_equivalent_adjusted" if equivalent else "p_adjusted", raw)
        m = c.get("pairs") or 1
        out = f"p = {p_value(adj, c.get('alpha'))}"
        return out + (f", over {m} pairs (raw p = {p_value(raw)})" if m > 1 else "")
    adj = c.get("p_equivalent_holm" if equivalent else "p_holm", raw)
    m = c.get("comparisons") or 1
    out = f"p = {p_value(adj, c.get('alpha'))}"
    if m > 1:
        out += f", Holm-adjusted over {m} comparisons (raw p = {p_value(raw)})"
    if c.get("method", "exact") != "exact":
        out += f"; {c['method']}"
    return out


def method_words(rows: Sequence[dict[str, Any]]) -> str:
    """What the verdict's header adds about its tests ('' for a lone pair of an older summary)."""
    comps = [c for v in rows for c in v.get("comparisons") or []]
    if any(c.get("rule") for c in comps):
        out = " (anytime-valid confidence sequences; one error rate for every claim at a length"
        if any((c.get("pairs") or 1) > 1 for c in comps):
            out += ", alpha split over its pairs of strategies"
        return out + ")"
    out = ""
    if any(c.get("method", "exact") != "exact" for c in comps):
        out += " (exact, or Monte Carlo where marked)"
    if any((c.get("comparisons") or 1) > 1 for c in comps):
        out += ", Holm-adjusted over the comparisons at each length"
    return out


MARGIN_SHOWN = 0.5  # an undecided comparison's margin is said only where it rules something out


def _more_text(c: dict[str, Any]) -> str:
    more, rng = c.get("more_needles"), c.get("more_needles_range")
    if more:
        span = f" (10-90 %: {rng[0]}-{rng[1]})" if rng and rng[0] != rng[1] else ""
        return f" — about {more} more needles would be needed{span}"
    if rng is not None:  # simulated, and mostly not decided within the cap
        return f" — more than {rng[1]:,} more needles would likely be needed"
    return ""


def comparison_line(v: dict[str, Any], c: dict[str, Any]) -> str:
    """One comparison of the verdict: the best against another strategy at one length."""
    where = f"at {v['length']:,} tokens"
    if c["status"] == "worse":
        return f"{v['best']} better than {c['strategy']} {where} by {_pts(c['diff'])} pts ({p_text(c)})"
    if c["status"] == "better":  # only with a tie on the point estimate
        return f"{c['strategy']} better than {v['best']} {where} by {_pts(-c['diff'])} pts ({p_text(c)})"
    ci = interval(c["diff_lo"], c["diff_hi"])
    what = "interval" if c.get("rule") else "95% CI"
    if c["status"] == "equivalent":
        return (
            f"{v['best']} vs {c['strategy']}: no detectable difference {where} ({_pts(c['diff'], True)} pts"
            f"{f', {what} ' + ci if ci else ''}; within ±{100 * v['tolerance']:g} pts, {p_text(c, True)})"
        )
    margin = c.get("margin")
    if c.get("rule") and margin is not None and margin >= MARGIN_SHOWN:
        margin = None
    return (
        f"{v['best']} vs {c['strategy']}: too few samples to tell {where} ({_pts(c['diff'], True)} pts, "
        f"{p_text(c)}, {c['needles']} needles)"
        + _more_text(c)
        + (
            f"; shown within ±{100 * margin:g} pts (equivalent at --tolerance {100 * margin:g})"
            if margin is not None
            else ""
        )
    )


def verdict_lines(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per length: a head line, then one indented line per comparison."""
    lines = []
    for v in rows:
        ci = interval(v.get("best_accuracy_lo"), v.get("best_accuracy_hi"))
        nn = v.get("n_needles")
        head = (
            f"{v['length']:,} tokens: most accurate {v['best']} ({_pts(v['best_accuracy'])}%"
            f"{' ' + ci if ci else ''}, {fmt_money(v['best_cost_per_1k'])}/1k queries"
            f"{f', {nn} needles' if nn else ''})"
        )
        tol = f"{100 * v['tolerance']:g} pts"
        cheap = v["cheapest_within_tolerance"]
        if cheap is None:
            tail = f"; cheapest within {tol}: unknown (no price; pass --prices)"
        elif cheap == v["best"]:
            tail = f"; it is also the cheapest within {tol}"
        else:
            ratio = f", {v['cost_ratio']:.1f}x cheaper" if v["cost_ratio"] else ""
            tail = (
                f"; cheapest within {tol}: {cheap} "
                f"({_pts(v['cheapest_accuracy'])}%, {fmt_money(v['cheapest_cost_per_1k'])}/1k{ratio})"
            )
        if v.get("candidate"):
            tail += f"; {v['candidate']} is cheaper and within {tol} on average, but not shown equivalent yet"
        if not v.get("settled", True):
            tail += f" — not settled: {', '.join(v['undecided'])} undecided"
        lines.append(head + tail)
        lines += [f"  {comparison_line(v, c)}" for c in v.get("comparisons") or []]
    return lines


def recommend(
    summary: dict[str, Any], min_accuracy: float, max_cost_per_1k: float | None = None
) -> list[dict[str, Any]]:
    """Per length: the cheapest strategy meeting the target, and whether its interval backs that.

    The interval is the usual 95% one, except for an --until-decided run (summary["level"]):
    there it is the 1 - alpha / planned looks interval, the level the run's rounds tested at,
    so that looking after every round buys no false certainty here either.
    """
    level = summary.get("level") or {}
    adaptive = bool(level.get("adaptive"))
    looks = int(level.get("looks") or 1)
    family = float(level.get("family_alpha", level.get("alpha", DEFAULT_ALPHA)))
    conf = 1 - family / looks if adaptive else LEVEL
    why = f"{100 * conf:.3g}% = 1 - alpha {family:.3g} / {looks} planned looks (--until-decided)" if adaptive else ""

    def upper(r: dict[str, Any], length: int) -> float:
        values = list(_needles(summary, r["strategy"], length).values())
        if conf == LEVEL or len(values) < 2:
            return r.get("accuracy_hi") or 0
        return bootstrap_ci(values, conf)[1]

    out = []
    for length, rows in _by_length(summary.get("by_strategy_length") or []).items():
        ok = [r for r in rows if r["accuracy"] >= min_accuracy - 1e-12]
        unpriced = max_cost_per_1k is not None and any(_cost(r) is None for r in ok)
        if max_cost_per_1k is not None:
            ok = [r for r in ok if _cost(r) is not None and _cost(r) <= max_cost_per_1k]
        choice = _cheapest(ok) or (max(ok, key=lambda r: r["accuracy"]) if ok else None)
        closest = max(rows, key=lambda r: (r["accuracy"], -(_cost(r) or 0)))
        support = None
        maybe: list[str] = []
        if choice is not None:
            support = one_sided_meets(list(_needles(summary, choice["strategy"], length).values()), min_accuracy, conf)
            # Cheaper strategies below the target on average whose interval still reaches it.
            maybe = [
                r["strategy"]
                for r in rows
                if r not in ok
                and _cost(r) is not None
                and _cost(choice) is not None
                and _cost(r) < _cost(choice)
                and upper(r, length) >= min_accuracy
                and (max_cost_per_1k is None or _cost(r) <= max_cost_per_1k)
            ]
        out.append(
            {
                "length": length,
                "strategy": None if choice is None else choice["strategy"],
                "accuracy": None if choice is None else choice["accuracy"],
                "accuracy_lo": None if choice is None else choice.get("accuracy_lo"),
                "accuracy_hi": None if choice is None else choice.get("accuracy_hi"),
                "cost_per_1k": None if choice is None else _cost(choice),
                "supported": None if support is None else support["sure"],
                "more_needles": None if support is None else support["more_needles"],
                "level": conf,  # of the interval that decides `supported` (and `cannot_rule_out`)
                "level_why": why,
                "support_lo": None if support is None else support["lo"],
                "support_hi": None if support is None else support["hi"],
                "cannot_rule_out": maybe,
                "closest": closest["strategy"],
                "closest_accuracy": closest["accuracy"],
                "closest_cost_per_1k": _cost(closest),
                "unpriced": unpriced,
            }
        )
    return out


def _support(r: dict[str, Any], min_accuracy: float) -> str:
    """Whether the interval backs the choice, and which cheaper ones it cannot rule out."""
    adjusted = bool(r.get("level_why"))
    ci = interval(
        *((r.get("support_lo"), r.get("support_hi")) if adjusted else (r.get("accuracy_lo"), r.get("accuracy_hi")))
    )
    pct = f"{100 * r.get('level', LEVEL):.3g}%"
    out = ""
    if r.get("supported"):
        out = f"; the {pct} interval {ci} is above the target"
    elif r.get("supported") is False:
        out = f"; on average only: the {pct} interval {ci or '(one needle)'} reaches below the target" + (
            f" — about {r['more_needles']} more needles would tell" if r.get("more_needles") else ""
        )
    if r.get("cannot_rule_out"):
        out += f"; cheaper {', '.join(r['cannot_rule_out'])} cannot be ruled out (interval reaches the target)"
    if adjusted and out:
        out += f" ({r['level_why']})"
    return out


def recommend_lines(rows: Sequence[dict[str, Any]], min_accuracy: float, max_cost_per_1k: float | None) -> list[str]:
    target = f">= {100 * min_accuracy:.1f}% accuracy" + (
        f" at <= {fmt_money(max_cost_per_1k)}/1k queries" if max_cost_per_1k is not None else ""
    )
    lines = []
    for r in rows:
        if r["strategy"] is not None and r["cost_per_1k"] is None:
            lines.append(
                f"{r['length']:,} tokens: {r['strategy']} ({100 * r['accuracy']:.1f}%) meets {target}; "
                "no price to find the cheapest (pass --prices)" + _support(r, min_accuracy)
            )
        elif r["strategy"] is not None:
            lines.append(
                f"{r['length']:,} tokens: {r['strategy']} ({100 * r['accuracy']:.1f}%, "
                f"{fmt_money(r['cost_per_1k'])}/1k queries) is the cheapest that meets {target}"
                + _support(r, min_accuracy)
            )
        else:
            extra = " (some strategies have no price; pass --prices)" if r["unpriced"] else ""
            lines.append(
                f"{r['length']:,} tokens: none meets {target}; closest is {r['closest']} "
                f"({100 * r['closest_accuracy']:.1f}%, {fmt_money(r['closest_cost_per_1k'])}/1k){extra}"
            )
    return lines
