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
    # an older summary, decided by these tests, still says so on its verdict line
    old = {"strategy": "b", "status": "worse", "diff": 0.1, "p": mc.p, "p_holm": mc.p, "method": mc.method}
    v = {"length": 1000, "best": "a", "tolerance": 0.02}
    assert f"Monte Carlo, {stats.MC_RESAMPLES:,} resamples" in comparison_line(v, old)


def norm_cdf(z: float) -> float:
    from scipy.stats import norm

    return float(norm.cdf(z))


def test_holm_adjusts_step_down():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.2]) == [0.2] and stats.holm([]) == []
    assert stats.holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])


def test_type_one_error_is_controlled():
    """Two strategies with the same accuracy: 'better' in at most about 5% of runs."""
    rng = np.random.default_rng(2)
    wrong = 0
    for _ in range(300):
        a, b = rng.binomial(5, 0.5, size=30) / 5, rng.binomial(5, 0.5, size=30) / 5
        wrong += stats.paired(a, b, tolerance=0.0, plan=False).status in ("better", "worse")
    assert wrong <= 0.08 * 300


def test_paired_statuses():
    rng = np.random.default_rng(3)
    base = rng.random(40)
    assert stats.paired(base + 0.3, base).status == "better"
    assert stats.paired(base, base + 0.3).status == "worse"
    few = stats.paired(base[:3] + 0.3, base[:3])
    assert few.status == "undecided" and few.p >= 0.25 and few.more_needles >= 3
    lo, hi = few.more_needles_range
    assert lo <= few.more_needles <= hi and few.more_needles_share > 0.5
    # identical answers on every needle: equivalence within ±2 pts is shown only past ~240 needles
    # (bounded scores: a strategy that fails one needle in fifty looks identical on n needles with
    # probability 0.98**n), within ±10 pts far sooner
    same = np.full(260, 0.6)
    assert stats.paired(same[:200], same[:200], plan=False).status == "undecided"
    assert stats.paired(same, same).status == "equivalent"
    assert stats.paired(same[:60], same[:60], tolerance=0.1).status == "equivalent"
    # the forecast grows as the difference shrinks
    noisy = rng.choice([-0.2, 0.0, 0.2], size=10)
    near, far = (stats.paired(base[:10] + g + noisy, base[:10]) for g in (0.05, 0.2))
    assert near.more_needles is None or near.more_needles > far.more_needles > 0


def test_a_lopsided_difference_is_not_called_equivalent():
    """The audit's case: identical on most needles, 0.2 lost on 15 % (3 pts apart against ±2): the
    sign-flip TOST called it equivalent in about a quarter of runs at 8 needles; the rule never may
    more than alpha, at any number of needles (bench/verdict_sim.py measures it properly)."""
    rng = np.random.default_rng(11)
    false = 0
    for _ in range(200):
        d = rng.choice([0.0, -0.2], p=[0.85, 0.15], size=64)
        for n in (8, 16, 32, 64):
            if stats.paired(0.6 + d[:n], np.full(n, 0.6), plan=False).status == "equivalent":
                false += 1
                break
    assert false <= 0.05 * 200 + 2 * np.sqrt(0.05 * 0.95 * 200)


def test_the_interval_is_the_decisions():
    """The printed interval is the confidence sequence the status was decided on."""
    rng = np.random.default_rng(12)
    for g in (0.0, 0.1, 0.3):
        a = np.clip(0.5 + g + rng.choice([-0.2, 0, 0.2], size=40), 0, 1)
        p = stats.paired(a, np.full(40, 0.5), tolerance=0.1, plan=False)
        assert p.diff_lo <= p.diff_hi
        if p.status == "better":
            assert p.diff_lo > 0 and p.p_adjusted < 0.05
        elif p.status == "equivalent":
            assert -0.1 < p.diff_lo and p.diff_hi < 0.1 and p.p_equivalent_adjusted < 0.05
        else:
            assert p.diff_lo <= 0 <= p.diff_hi or p.diff_lo <= -0.1 or p.diff_hi >= 0.1
            assert p.margin == pytest.approx(max(abs(p.diff_lo), abs(p.diff_hi)), abs=0.0011)


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
    base = rng.uniform(0.3, 0.7, 40)
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
    base = rng.uniform(0.3, 0.7, 60)
    jitter = rng.normal(0, 0.003, 60)
    s = make_summary(
        {"full-context": {1000: list(base + 0.004)}, "rag-dense": {1000: list(base + jitter)}},
        {"full-context": 10.0, "rag-dense": 2.0},
    )
    v = verdict(s, tolerance=0.1)[0]
    assert v["comparisons"][0]["status"] == "equivalent" and v["settled"]
    assert v["cheapest_within_tolerance"] == "rag-dense" and v["cost_ratio"] == pytest.approx(5.0)
    assert "no detectable difference" in "\n".join(verdict_lines([v]))
    # the same averages on three needles: rag-dense is a candidate, not the answer
    s3 = make_summary(
        {"full-context": {1000: list(base[:3] + 0.004)}, "rag-dense": {1000: list(base[:3] + jitter[:3])}},
        {"full-context": 10.0, "rag-dense": 2.0},
    )
    v3 = verdict(s3, tolerance=0.1)[0]
    assert v3["cheapest_within_tolerance"] == "full-context" and v3["candidate"] == "rag-dense"
    assert "not shown equivalent yet" in verdict_lines([v3])[0]


def test_alpha_is_split_over_every_pair_of_strategies():
    """Five strategies make ten pairs: a p of 0.015 that decides a lone pair decides nothing among five
    (the best is picked from the same data, so every pair, not only the four compared, shares alpha)."""
    base = [0.6] * 24
    s = make_summary(
        {
            "full-context": {1000: [0.9] * 24},  # +0.3 on every needle: anytime p = 0.015
            "rag-a": {1000: base},
            "rag-b": {1000: [0.9] * 12 + [0.6] * 12},
            "rag-c": {1000: [0.6, 0.9] * 12},
            "rag-d": {1000: [0.9] * 20 + [0.6] * 4},
        },
        {"full-context": 10.0, "rag-a": 1.0, "rag-b": 2.0, "rag-c": 3.0, "rag-d": 4.0},
    )
    v = verdict(s)[0]
    assert v["best"] == "full-context" and v["pairs"] == 10
    c = {x["strategy"]: x for x in v["comparisons"]}
    assert 0.01 < c["rag-a"]["p"] < 0.05  # below 0.05 alone ...
    assert c["rag-a"]["status"] == "undecided" and not v["settled"]  # ... but not "worse" among five
    assert c["rag-a"]["pairs"] == 10 and c["rag-a"]["p_adjusted"] == pytest.approx(10 * c["rag-a"]["p"])
    assert all(x["p_adjusted"] >= x["p"] and x["p_equivalent_adjusted"] >= x["p_equivalent"] for x in c.values())
    line = next(l for l in verdict_lines([v]) if "rag-a" in l and "too few samples" in l)
    assert f", over 10 pairs (raw p = {p_value(c['rag-a']['p'])})" in line
    from harness.report.verdict import method_words

    assert "one error rate for every claim at a length, alpha split over its pairs of strategies" in method_words([v])
    # with the same data and only two strategies there is nothing to split: the same p decides
    two = verdict(
        make_summary({"full-context": {1000: [0.9] * 24}, "rag-a": {1000: base}}, {"full-context": 10.0, "rag-a": 1.0})
    )[0]
    assert (
        two["comparisons"][0]["status"] == "worse" and two["comparisons"][0]["p_adjusted"] == two["comparisons"][0]["p"]
    )
    assert "pairs" not in verdict_lines([two])[1] and "alpha split" not in method_words([two])
    assert "one error rate for every claim at a length" in method_words([two])


def test_one_error_rate_covers_both_kinds_of_claim():
    """Three strategies: one cheaper arm shown equivalent, another shown worse, both at alpha / 3 pairs."""
    rng = np.random.default_rng(9)
    base = rng.uniform(0.4, 0.8, 120)
    s = make_summary(
        {"full-context": {1000: list(base)}, "rag-a": {1000: list(base)}, "rag-b": {1000: list(base - 0.3)}},
        {"full-context": 10.0, "rag-a": 1.0, "rag-b": 0.5},
    )
    v = verdict(s, tolerance=0.1)[0]
    c = {x["strategy"]: x for x in v["comparisons"]}
    assert v["best"] == "rag-a" and v["pairs"] == 3
    assert c["full-context"]["status"] == "equivalent" and c["full-context"]["p_equivalent_adjusted"] < 0.05
    assert c["rag-b"]["status"] == "worse"  # said of the other strategy
    assert c["rag-b"]["diff"] == pytest.approx(0.3) and c["rag-b"]["p_adjusted"] < 0.05
    assert v["settled"] and v["cheapest_within_tolerance"] == "rag-a"


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
    from harness.sequential import confidence_sequence

    a = AdaptiveConfig(max_needles=32, alpha=0.05)
    first = a.first_round()
    plan = a.schedule(first)
    assert plan[-1] == 32 and all(y == min(2 * x, 32) for x, y in zip(plan, plan[1:]))
    assert confidence_sequence([1.0] * first, a.alpha).p_zero < a.alpha  # round one can settle a clear gap
    assert confidence_sequence([1.0] * (first - 1), a.alpha).p_zero >= a.alpha  # and it is the fewest that can
    assert AdaptiveConfig(max_needles=4).schedule(3) == [3, 4]


def test_one_needle_and_none_do_not_crash():
    assert stats.sign_flip_p(np.array([0.2])) == 1.0
    assert stats.sign_flip_p(np.array([0.2]), "greater") == 0.5 and stats.sign_flip_p(np.array([0.2]), "less") == 1.0
    assert stats.bootstrap_ci([]) == (None, None)
    p = stats.paired([0.8], [0.2])
    assert p.status == "undecided" and p.more_needles >= 5
    empty = stats.paired([], [])
    assert empty.status == "undecided" and empty.needles == 0 and empty.more_needles is None


def test_an_undecided_comparison_says_the_margin_it_does_rule_out():
    """ "Too few samples to tell" at 2 points is not "nothing known": the narrowest tolerance within
    which the confidence sequence already lies is reported, and it is exactly the --tolerance at which
    the same verdict settles (a hair below it, it does not)."""
    rng = np.random.default_rng(8)
    base = rng.uniform(0.5, 0.9, 40)
    noise = np.round(rng.normal(0.01, 0.08, 40) * 25) / 25  # per-needle accuracies move in steps
    per = {"full-context": {4000: list(base + noise)}, "rag-dense": {4000: list(base)}}
    s = make_summary(per, {"full-context": 10.0, "rag-dense": 2.0})
    (c,) = verdict(s)[0]["comparisons"]
    assert c["status"] == "undecided" and 0.02 < c["margin"] < 0.5
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
    # with four needles the sequence is too wide to rule out anything worth saying: no margin is printed
    few = make_summary({k: {4000: v[4000][:4]} for k, v in per.items()}, {"full-context": 10.0, "rag-dense": 2.0})
    (c,) = verdict(few)[0]["comparisons"]
    assert c["status"] == "undecided" and c["margin"] >= 0.5 and "shown within" not in verdict_lines(verdict(few))[1]


def test_a_p_is_printed_on_its_side_of_alpha():
    """Two significant digits, more only where two would round a p across alpha."""
    assert p_value(0.0499, 0.05) == "0.0499" and p_value(0.049999, 0.05) == "0.049999"
    assert p_value(0.0504, 0.05) == "0.05" and p_value(0.062, 0.05) == "0.062" and p_value(0.3) == "0.3"
    assert p_value(0.0499) == "0.05"  # no alpha given: as before
