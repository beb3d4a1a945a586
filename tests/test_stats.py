"""Intervals over needles, paired tests, and the verdict they decide (no server)."""

import numpy as np
import pytest

from harness.config import AdaptiveConfig
from harness.report import stats
from harness.report.verdict import comparison_line, p_value, recommend, recommend_lines, verdict, verdict_lines


# -- intervals -------------------------------------------------------------------------------------------
def test_interval_holds_the_mean_and_narrows_with_needles():
    rng = np.random.default_rng(0)
    few, many = rng.random(8), rng.random(200)
    lo, hi = stats.bootstrap_ci(few)
    assert lo < few.mean() < hi
    lo2, hi2 = stats.bootstrap_ci(many)
    assert lo2 < many.mean() < hi2 and (hi2 - lo2) < (hi - lo) / 2


def test_interval_edge_cases():
    assert stats.bootstrap_ci([0.4]) == (None, None)  # one needle: no interval
    lo, hi = stats.bootstrap_ci([0.2, 0.2, 0.2])
    assert lo == pytest.approx(0.2) and hi == pytest.approx(0.2)
    lo, hi = stats.bootstrap_ci(np.array([[0.2, 1.0, 0.0], [0.4, 1.0, 1.0], [0.6, 1.0, 0.0]]))
    assert list(lo[1:2]) == [1.0] and list(hi[1:2]) == [1.0]  # a constant column
    assert lo[0] <= 0.4 <= hi[0] and lo[2] <= 1 / 3 <= hi[2]


def test_interval_coverage_is_near_nominal():
    """Per-needle accuracies of a 30% reader, 30 needles: the 95% interval holds 30% most of the time."""
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(200):
        x = rng.binomial(5, 0.3, size=30) / 5  # five fields per needle
        lo, hi = stats.bootstrap_ci(x)
        hits += lo <= 0.3 <= hi
    assert hits >= 0.9 * 200


# -- paired tests ----------------------------------------------------------------------------------------
def test_sign_flip_is_exact_and_cannot_overclaim_with_few_needles():
    assert stats.sign_flip_p(np.ones(2)) == pytest.approx(0.5)  # two needles can never be significant
    assert stats.sign_flip_p(np.ones(8)) == pytest.approx(2 / 256)
    assert stats.sign_flip_p(np.zeros(5)) == 1.0
    assert stats.min_needles(0.05) == 6 and stats.min_needles(0.05, two_sided=False) == 5


def _brute_sign_flip(d, alternative="two-sided"):
    """Every sign pattern, written out: the reference the exact test must equal."""
    import itertools

    d = np.asarray(d, dtype=float)
    t = d.sum()
    null = np.array(list(itertools.product([-1.0, 1.0], repeat=d.size))) @ d
    eps = 1e-9 * np.abs(d).sum()
    if alternative == "greater":
        return float(np.mean(null >= t - eps))
    if alternative == "less":
        return float(np.mean(null <= t + eps))
    return 1.0 if abs(t) <= eps else float(np.mean(np.abs(null) >= abs(t) - eps))


def test_sign_flip_is_exact_past_fourteen_needles_and_with_ties():
    """Beyond 2**14 patterns the test used to sample: it must still equal the full enumeration."""
    rng = np.random.default_rng(7)
    for n in (16, 17):
        # accuracies' differences repeat (multiples of 1/10 here), and many are exactly 0
        d = rng.integers(-3, 4, n) / 10
        d[:4] = 0.0
        for alt in ("two-sided", "greater", "less"):
            assert stats.sign_flip_p(d, alt) == pytest.approx(_brute_sign_flip(d, alt), abs=1e-12), (n, alt)
        distinct = rng.normal(0.05, 0.2, n)  # no two alike: no merging helps
        assert stats.sign_flip_p(distinct) == pytest.approx(_brute_sign_flip(distinct), abs=1e-12)
    # closed forms: all n differences positive -> only the observed pattern and its mirror are as extreme
    for n in (20, 32):
        assert stats.sign_flip_p(np.full(n, 0.2)) == 2 / 2**n
        assert stats.sign_flip_p(np.full(n, 0.2), "greater") == 1 / 2**n
    # a tie flips to itself: 15 positive among 20 needles is 2 / 2**15, not 2 / 2**20
    assert stats.sign_flip_p(np.r_[np.full(15, 0.4), np.zeros(5)]) == 2 / 2**15
    assert stats.sign_flip_p(np.full(200, 0.1)) == 2 / 2**200  # many alike: still exact
    # 300 needles at +-0.1 (half each way) and 20 at +0.3: in steps of 0.1 the sum is
    # (2 B1 - 300) + 3 (2 B2 - 20) with B1 ~ Bin(300, 1/2), B2 ~ Bin(20, 1/2), observed 60
    from fractions import Fraction
    from math import comb

    ref = sum(
        Fraction(comb(300, b1) * comb(20, b2), 2**320)
        for b1 in range(301)
        for b2 in range(21)
        if abs((2 * b1 - 300) + 3 * (2 * b2 - 20)) >= 60
    )
    mixed = stats.sign_flip(np.r_[np.full(150, 0.1), np.full(150, -0.1), np.full(20, 0.3)])
    assert mixed.exact and mixed.p == pytest.approx(float(ref), rel=1e-9)
    assert stats.sign_flip(np.full(32, 0.2)).method == "exact"


def test_sign_flip_says_monte_carlo_where_it_is_not_exact():
    rng = np.random.default_rng(8)
    distinct = rng.normal(0.1, 0.3, 40)  # 2**20 distinct sums per half: past EXACT_LIMIT
    lattice = rng.integers(-4, 6, 40) / 10  # the same number of needles, few distinct sums
    mc, exact = stats.sign_flip(distinct), stats.sign_flip(lattice)
    assert not mc.exact and mc.method == f"Monte Carlo, {stats.MC_RESAMPLES:,} resamples"
    assert exact.exact and exact.method == "exact"
    # the Monte Carlo p is near the normal approximation's, and never 0 (the observed pattern counts)
    z = abs(distinct.sum()) / np.sqrt((distinct**2).sum())
    assert mc.p == pytest.approx(2 * (1 - norm_cdf(z)), abs=0.01) and mc.p > 0
    p = stats.paired(0.5 + distinct, np.full(40, 0.5))
    assert p.method == mc.method and stats.paired(0.5 + lattice, np.full(40, 0.5)).method == "exact"
    v = {"length": 1000, "best": "a", "tolerance": 0.02}
    assert f"Monte Carlo, {stats.MC_RESAMPLES:,} resamples" in comparison_line(v, {"strategy": "b", **p.as_dict()})


def norm_cdf(z: float) -> float:
    from scipy.stats import norm

    return float(norm.cdf(z))


def test_holm_adjusts_step_down():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.2]) == [0.2] and stats.holm([]) == []
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_type_one_error_is_controlled():
    """Two strategies with the same accuracy: 'better' at alpha 0.05 in about 5% of runs, not more."""
    rng = np.random.default_rng(2)
    wrong = 0
    for _ in range(300):
        a, b = rng.binomial(5, 0.5, size=12) / 5, rng.binomial(5, 0.5, size=12) / 5
        wrong += stats.paired(a, b, tolerance=0.0).status in ("better", "worse")
    assert wrong <= 0.08 * 300


def test_paired_statuses():
    rng = np.random.default_rng(3)
    base = rng.random(12)
    assert stats.paired(base + 0.3, base).status == "better"
    assert stats.paired(base, base + 0.3).status == "worse"
    same = stats.paired(base + rng.normal(0, 0.002, 12), base, tolerance=0.02)
    assert same.status == "equivalent" and same.p_equivalent < 0.05
    few = stats.paired(base[:3] + 0.3, base[:3])
    assert few.status == "undecided" and few.p >= 0.25 and few.more_needles >= 3
    # the sample-size estimate grows as the difference shrinks, and is "too many" for none at all
    noisy = rng.normal(0, 0.2, 10)
    assert stats.more_needles(0.03 + noisy, 0.05, 0.0) > stats.more_needles(0.1 + noisy, 0.05, 0.0) > 0
    assert stats.more_needles(noisy - noisy.mean(), 0.05, 0.0) is None


# -- the verdict on per-needle data ----------------------------------------------------------------------
def make_summary(data: dict[str, dict[int, list[float]]], costs: dict[str, float | None]) -> dict:
    rows, per = [], {}
    for s, by_len in data.items():
        for L, xs in by_len.items():
            lo, hi = stats.bootstrap_ci(xs)
            rows.append(
                {
                    "strategy": s,
                    "length": L,
                    "n": 5 * len(xs),
                    "n_needles": len(xs),
                    "accuracy": float(np.mean(xs)),
                    "accuracy_lo": lo,
                    "accuracy_hi": hi,
                    "cost_per_1k": costs.get(s),
                }
            )
            per.setdefault(s, {})[str(L)] = {str(i): float(x) for i, x in enumerate(xs)}
    return {"by_strategy_length": rows, "per_needle": per}


def test_verdict_names_a_winner_only_when_the_test_says_so():
    rng = np.random.default_rng(4)
    base = rng.uniform(0.3, 0.7, 12)
    s = make_summary(
        {
            "full-context": {1000: list(base + 0.25), 4000: list(base[:3] + 0.25)},
            "rag-dense": {1000: list(base), 4000: list(base[:3])},
        },
        {"full-context": 10.0, "rag-dense": 2.0},
    )
    v = {x["length"]: x for x in verdict(s)}
    assert v[1000]["settled"] and v[1000]["comparisons"][0]["status"] == "worse"
    assert v[1000]["comparisons"][0]["p"] < 0.01
    assert v[1000]["cheapest_within_tolerance"] == "full-context" and v[1000]["choice"] == "full-context"
    assert not v[4000]["settled"] and v[4000]["undecided"] == ["rag-dense"]
    lines = verdict_lines(verdict(s))
    assert any("full-context better than rag-dense at 1,000 tokens by 25.0 pts (p = " in l for l in lines)
    assert any("too few samples to tell at 4,000 tokens" in l and "more needles would be needed" in l for l in lines)
    assert any(l.startswith("4,000 tokens:") and "not settled: rag-dense undecided" in l for l in lines)


def test_cheapest_within_tolerance_needs_equivalence_shown():
    rng = np.random.default_rng(5)
    base = rng.uniform(0.3, 0.7, 16)
    jitter = rng.normal(0, 0.003, 16)
    s = make_summary(
        {"full-context": {1000: list(base + 0.004)}, "rag-dense": {1000: list(base + jitter)}},
        {"full-context": 10.0, "rag-dense": 2.0},
    )
    v = verdict(s)[0]
    assert v["comparisons"][0]["status"] == "equivalent" and v["settled"]
    assert v["cheapest_within_tolerance"] == "rag-dense" and v["cost_ratio"] == pytest.approx(5.0)
    assert "no detectable difference" in "\n".join(verdict_lines([v]))
    # the same averages on three needles: rag-dense is a candidate, not the answer
    s3 = make_summary(
        {"full-context": {1000: list(base[:3] + 0.004)}, "rag-dense": {1000: list(base[:3] + jitter[:3])}},
        {"full-context": 10.0, "rag-dense": 2.0},
    )
    v3 = verdict(s3)[0]
    assert v3["cheapest_within_tolerance"] == "full-context" and v3["candidate"] == "rag-dense"
    assert "not shown equivalent yet" in verdict_lines([v3])[0]


def test_five_strategies_are_holm_adjusted_over_the_comparisons_of_a_length():
    """Best against four others: one raw p of 0.031 is no "better" once adjusted over the four."""
    base = [0.6] * 8
    s = make_summary(
        {
            "full-context": {1000: [0.9] * 6 + [0.6] * 2},  # +0.3 on 6 of 8 needles: raw p = 2 / 2**6
            "rag-a": {1000: base},
            "rag-b": {1000: [0.9] * 4 + [0.6] * 4},
            "rag-c": {1000: [0.9] * 5 + [0.6] * 3},
            "rag-d": {1000: [0.6, 0.9] * 4},
        },
        {"full-context": 10.0, "rag-a": 1.0, "rag-b": 2.0, "rag-c": 3.0, "rag-d": 4.0},
    )
    v = verdict(s)[0]
    assert v["best"] == "full-context"
    c = {x["strategy"]: x for x in v["comparisons"]}
    assert c["rag-a"]["p"] == pytest.approx(2 / 2**6)  # below 0.05 alone ...
    assert c["rag-a"]["status"] == "undecided" and not v["settled"]  # ... but not "worse" among four
    assert c["rag-a"]["comparisons"] == 4 and c["rag-a"]["p_holm"] == pytest.approx(4 * 2 / 2**6)  # smallest: x4
    assert all(x["p_holm"] >= x["p"] for x in c.values())
    line = next(l for l in verdict_lines([v]) if "rag-a" in l and "too few samples" in l)
    assert "p = 0.12, Holm-adjusted over 4 comparisons (raw p = 0.031)" in line
    from harness.report.verdict import method_words

    assert "Holm-adjusted over the comparisons at each length" in method_words([v])
    # with the same data and only two strategies there is nothing to adjust: p = 0.031 decides
    two = verdict(
        make_summary(
            {"full-context": {1000: [0.9] * 6 + [0.6] * 2}, "rag-a": {1000: base}}, {"full-context": 10.0, "rag-a": 1.0}
        )
    )[0]
    assert two["comparisons"][0]["status"] == "worse" and two["comparisons"][0]["p_holm"] == two["comparisons"][0]["p"]
    assert "Holm" not in "\n".join(verdict_lines([two])) and method_words([two]) == ""


def test_equivalence_claims_are_holm_adjusted_too():
    """Four cheaper strategies each alike on 5 needles (TOST p = 1 / 2**5 each): not all "within tolerance"."""
    acc = [0.2, 0.4, 0.6, 0.8, 1.0]
    strategies = ["full-context", "rag-a", "rag-b", "rag-c", "rag-d"]
    s = make_summary(
        {x: {1000: acc} for x in strategies},
        {"full-context": 10.0, "rag-a": 1.0, "rag-b": 2.0, "rag-c": 3.0, "rag-d": 4.0},
    )
    v = verdict(s)[0]
    assert v["best"] == "rag-a"  # a tie on accuracy goes to the cheapest
    assert v["cheapest_within_tolerance"] == "rag-a" and v["candidate"] is None
    for c in v["comparisons"]:
        assert c["p_equivalent"] == pytest.approx(1 / 2**5) and c["status"] == "undecided"
        assert c["p_equivalent_holm"] == pytest.approx(4 / 2**5)
    # one comparison alone is shown equivalent at the same p
    pair = verdict(
        make_summary({"full-context": {1000: acc}, "rag-b": {1000: acc}}, {"full-context": 10.0, "rag-b": 2.0})
    )
    assert pair[0]["comparisons"][0]["status"] == "equivalent" and pair[0]["cheapest_within_tolerance"] == "rag-b"


def test_recommend_says_whether_the_interval_supports_the_target():
    rng = np.random.default_rng(6)
    s = make_summary(
        {
            "full-context": {1000: list(rng.uniform(0.93, 1.0, 20))},
            "rag-dense": {1000: list(np.clip(rng.normal(0.9, 0.1, 5), 0, 1))},
        },
        {"full-context": 10.0, "rag-dense": 2.0},
    )
    # Seed 6 draws rag-dense at 88.7% on average (5 needles), below 90%: full-context (96.5% over 20
    # needles, interval [95.5-97.5]) is the cheapest that meets 90%, and the interval backs it; rag-dense's
    # interval still reaches 90%, so the cheaper one cannot be ruled out.
    rows = recommend(s, 0.9)
    line = recommend_lines(rows, 0.9, None)[0]
    assert rows[0]["strategy"] == "full-context" and rows[0]["supported"] is True
    assert rows[0]["cannot_rule_out"] == ["rag-dense"]
    assert "is above the target" in line and "cheaper rag-dense cannot be ruled out" in line
    # at 80% rag-dense (88.7%) is the cheapest that meets it, and its interval (about [83-96]) backs it
    sure = recommend(s, 0.8)
    assert sure[0]["strategy"] == "rag-dense" and sure[0]["supported"] is True and sure[0]["cannot_rule_out"] == []
    # over the target on average but on five spread needles: the interval does not back it
    few = make_summary(
        {"full-context": {1000: [1.0] * 20}, "rag-dense": {1000: [1.0, 1.0, 1.0, 0.8, 0.8]}},
        {"full-context": 10.0, "rag-dense": 2.0},
    )
    rows = recommend(few, 0.9)
    assert rows[0]["strategy"] == "rag-dense" and rows[0]["supported"] is False
    assert "reaches below the target" in recommend_lines(rows, 0.9, None)[0]


# -- the adaptive schedule -------------------------------------------------------------------------------
def test_adaptive_schedule_doubles_and_first_round_can_decide():
    a = AdaptiveConfig(max_needles=32, alpha=0.05)
    first = a.first_round()
    plan = a.schedule(first)
    assert plan[-1] == 32 and all(y == min(2 * x, 32) for x, y in zip(plan, plan[1:]))
    assert 2 / 2**first < a.alpha / len(plan)  # round one can already settle a clear difference
    assert 2 / 2 ** (first - 1) >= a.alpha / len(a.schedule(first - 1))  # and it is the fewest that can
    assert AdaptiveConfig(max_needles=4).schedule(3) == [3, 4]


def test_one_needle_and_none_do_not_crash():
    assert stats.sign_flip_p(np.array([0.2])) == 1.0
    assert stats.sign_flip_p(np.array([0.2]), "greater") == 0.5 and stats.sign_flip_p(np.array([0.2]), "less") == 1.0
    assert stats.bootstrap_ci([]) == (None, None)
    p = stats.paired([0.8], [0.2])
    assert p.status == "undecided" and p.more_needles >= 5


def test_an_undecided_comparison_says_the_margin_it_does_rule_out():
    """ "Too few samples to tell" at 2 points is not "nothing known": the narrowest tolerance within
    which the data already shows the two equivalent is reported, and it is exactly the --tolerance
    at which the same verdict settles (a hair below it, it does not)."""
    rng = np.random.default_rng(8)
    base = rng.uniform(0.5, 0.9, 20)
    noise = np.round(rng.normal(0.01, 0.08, 20) * 25) / 25  # per-needle accuracies move in steps
    per = {"full-context": {4000: list(base + noise)}, "rag-dense": {4000: list(base)}}
    s = make_summary(per, {"full-context": 10.0, "rag-dense": 2.0})
    (c,) = verdict(s)[0]["comparisons"]
    assert c["status"] == "undecided" and 0.02 < c["margin"] < 0.2
    assert round(c["margin"] * 1000) == c["margin"] * 1000  # found to 0.1 pts
    line = verdict_lines(verdict(s))[1]
    pts = f"{100 * c['margin']:g}"
    assert line.endswith(f"; shown within ±{pts} pts (equivalent at --tolerance {pts})")
    settled = verdict(s, tolerance=c["margin"])[0]
    assert settled["settled"] and settled["comparisons"][0]["status"] == "equivalent"
    assert settled["cheapest_within_tolerance"] == "rag-dense"
    printed = verdict_lines([settled])[1].split("pts, p = ")[1].rstrip(")")
    assert float(printed) < 0.05  # the p that settled it, never rounded up to alpha
    assert verdict(s, tolerance=c["margin"] - 0.001)[0]["comparisons"][0]["status"] == "undecided"
    # with four needles no tolerance can be shown (1 / 2**4 > 0.05): nothing is claimed
    few = make_summary({k: {4000: v[4000][:4]} for k, v in per.items()}, {"full-context": 10.0, "rag-dense": 2.0})
    (c,) = verdict(few)[0]["comparisons"]
    assert c["status"] == "undecided" and c["margin"] is None and "shown within" not in verdict_lines(verdict(few))[1]
    assert stats.equivalence_margin(np.zeros(5), 0.05) == 0.001  # five equal needles: the smallest step


def test_a_p_is_printed_on_its_side_of_alpha():
    """Two significant digits, more only where two would round a p across alpha."""
    assert p_value(0.0499, 0.05) == "0.0499" and p_value(0.049999, 0.05) == "0.049999"
    assert p_value(0.0504, 0.05) == "0.05" and p_value(0.062, 0.05) == "0.062" and p_value(0.3) == "0.3"
    assert p_value(0.0499) == "0.05"  # no alpha given: as before
