"""How sure each number is: intervals over needles, paired tests between strategies.

The unit that varies is the needle (one hidden item the questions are about). The fields of
one answer, and the depths and lengths one needle is asked at, are not independent draws, so every interval resamples whole
needles: a needle's value is the mean of its records in the cell, and the bootstrap draws needles
with replacement (scipy's BCa, percentile when BCa degenerates; a fixed seed, so a summary is the
same every time it is computed).

Strategies are asked the same needles, so they are compared pair-wise on per-needle differences
(`paired_family`): decided by anytime-valid confidence sequences for the mean difference, by
betting (harness/sequential.py), which hold for bounded differences of any shape and at whatever
round an --until-decided run stopped; alpha is split over every pair of strategies at a length, so
one error rate covers every claim there, "better" and "equivalent" alike.

The previous rule — an exact sign-flip test for "better", its TOST for "equivalent", each
Holm-adjusted on its own — is kept here (`sign_flip`, `equivalence`, `holm`) for
bench/verdict_sim.py, which measures both rules: a sign-flip test assumes the differences are
symmetric, and the common shape (identical answers with an occasional retrieval miss) is not,
so its equivalence claims were false far more often than alpha.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0
POWER = 0.8
MAX_PLANNED = 5_000  # needles: past this a sample-size estimate is no longer advice
RULE = "betting-cs"  # how paired comparisons are decided (summary.json says which rule decided a run)


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def bootstrap_ci(values, level: float = LEVEL):
    """`level` interval of the mean of `values`, one value per needle.

    1-D: (lo, hi) floats, (None, None) with fewer than two needles. 2-D (needles x columns): two
    arrays, one bound per column (NaN with fewer than two needles).
    """
    x = np.asarray(values, dtype=float)
    flat = x.ndim == 1
    if x.size == 0:
        return (None, None) if flat else (np.full(x.shape[1:], np.nan),) * 2
    x = x.reshape(len(x), -1)
    if x.shape[0] < 2:
        nan = np.full(x.shape[1], np.nan)
        return (None, None) if flat else (nan, nan.copy())
    const = np.all(x == x[:1], axis=0)  # every needle alike: resampling cannot move the mean
    lo, hi = x[0].copy(), x[0].copy()
    if not const.all():
        lo[~const], hi[~const] = _resample(x[:, ~const], level)
    # The interval holds the mean it is about (BCa can leave it a hair outside with few needles).
    m = x.mean(axis=0)
    lo, hi = np.fmin(lo, m), np.fmax(hi, m)
    return (float(lo[0]), float(hi[0])) if flat else (lo, hi)


def _resample(x: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """BCa bootstrap per column; percentile where BCa degenerates (few distinct values)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = None
        for method in ("BCa", "percentile"):
            res = stats.bootstrap(
                (x,),
                _mean,
                n_resamples=RESAMPLES,
                confidence_level=level,
                method=method,
                axis=0,
                random_state=SEED,
                vectorized=True,
            )
            lo, hi = np.asarray(res.confidence_interval.low, float), np.asarray(res.confidence_interval.high, float)
            if out is None:
                out = (lo, hi)
            else:
                bad = ~(np.isfinite(out[0]) & np.isfinite(out[1]))
                out[0][bad], out[1][bad] = lo[bad], hi[bad]
            if np.isfinite(out[0]).all() and np.isfinite(out[1]).all():
                break
    return out


# Sign-flip tests are exact while each half of the needles (meet in the middle: the two halves'
# sums are enumerated apart and paired by sorting) has at most this many distinct sums of signed
# differences: every needle with a non-zero difference when the differences are all distinct (34
# needles), far more when they repeat (per-needle accuracies are multiples of 1 / (fields x depths),
# so their sums take few distinct values). Past it, Monte Carlo over MC_RESAMPLES sign patterns.
EXACT_LIMIT = 2**17
MC_RESAMPLES = 2**16


@dataclass
class SignFlip:
    """A sign-flip test's p and how it was found: every sign pattern, or a Monte Carlo sample."""

    p: float
    exact: bool

    @property
    def method(self) -> str:
        return "exact" if self.exact else f"Monte Carlo, {MC_RESAMPLES:,} resamples"


def sign_flip_p(d: np.ndarray, alternative: str = "two-sided") -> float:
    """p of the mean of per-needle differences `d` under "no difference" (signs exchangeable)."""
    return sign_flip(d, alternative).p


def sign_flip(d: np.ndarray, alternative: str = "two-sided") -> SignFlip:
    """The sign-flip test of mean(d) = 0: exact over all 2**n sign patterns where that is cheap.

    Two-sided: P(|sum s*d| >= |sum d|) over random signs s, the same as twice the smaller
    one-sided p (the null distribution is symmetric). A difference of exactly 0 (a tie) is the
    same under either sign, so the ties only multiply every pattern's count alike: the exact
    distribution is that of the non-zero differences, and n needles of which m differ can give
    no p below 2 / 2**m.
    """
    d = np.asarray(d, dtype=float)
    x = d[d != 0]
    if x.size == 0:
        return SignFlip(1.0, True)
    t = float(x.sum())
    tie = 1e-9 * float(np.abs(x).sum())  # sums this close count as equal (floating-point noise)
    if alternative == "two-sided" and abs(t) <= tie:
        return SignFlip(1.0, True)
    dist = _null_halves(x)
    if dist is None:
        return SignFlip(_monte_carlo(x, t, tie, alternative), False)
    (va, pa), (vb, pb) = dist
    order = np.argsort(vb)
    vb, pb = vb[order], pb[order]
    below = np.concatenate(([0.0], np.cumsum(pb)))  # P(b < vb[i]), summed from each end so that
    above = np.concatenate((np.cumsum(pb[::-1])[::-1], [0.0]))  # small tails keep their digits

    def at_least(c: float) -> float:  # P(a + b >= c)
        return float(pa @ above[np.searchsorted(vb, c - va, side="left")])

    def at_most(c: float) -> float:  # P(a + b <= c)
        return float(pa @ below[np.searchsorted(vb, c - va, side="right")])

    if alternative == "greater":
        p = at_least(t - tie)
    elif alternative == "less":
        p = at_most(t + tie)
    else:
        p = at_least(abs(t) - tie) + at_most(tie - abs(t))
    return SignFlip(float(min(1.0, p)), True)


def _null_halves(x: np.ndarray):
    """The distribution of sum(s*x) over random signs, for each half of `x`: (values, probabilities).

    Equal |x| go together through the binomial (k equal values give k + 1 sums), and equal sums
    are merged, so repeated values keep the lists short. None past EXACT_LIMIT sums in a half.
    """
    a = np.sort(np.abs(x))
    scale = float(a.sum())
    out = []
    for half in (a[0::2], a[1::2]):
        vals, probs = np.zeros(1), np.ones(1)
        keys, counts = np.unique(np.round(half / scale, 12), return_counts=True)
        for key, k in zip(keys, counts.tolist()):  # Python ints: 2 ** k must not overflow
            step = key * scale * (k - 2 * np.arange(k + 1))
            vals = (vals[:, None] + step[None, :]).ravel()
            binom = np.array([math.comb(k, j) / 2**k for j in range(k + 1)])  # correctly rounded
            probs = (probs[:, None] * binom[None, :]).ravel()
            _, first, inv = np.unique(np.round(vals / scale, 9), return_index=True, return_inverse=True)
            probs = np.bincount(inv.ravel(), weights=probs)
            vals = vals[first]
            if vals.size > EXACT_LIMIT:
                return None
        out.append((vals, probs))
    return out


def _monte_carlo(x: np.ndarray, t: float, tie: float, alternative: str) -> float:
    """p from MC_RESAMPLES random sign patterns (seeded), counting the observed one in."""
    rng = np.random.default_rng(SEED)
    hits, chunk = 0, max(1, min(MC_RESAMPLES, 2**22 // x.size))
    for start in range(0, MC_RESAMPLES, chunk):
        k = min(chunk, MC_RESAMPLES - start)
        null = (rng.integers(0, 2, size=(k, x.size)) * 2.0 - 1.0) @ x  # floats: a BLAS product
        if alternative == "greater":
            hits += int(np.count_nonzero(null >= t - tie))
        elif alternative == "less":
            hits += int(np.count_nonzero(null <= t + tie))
        else:
            hits += int(np.count_nonzero(np.abs(null) >= abs(t) - tie))
    return min(1.0, (hits + 1) / (MC_RESAMPLES + 1))


@dataclass
class Paired:
    """Strategy A against strategy B on the needles both were asked (d = A - B per needle).

    Decided by the anytime-valid confidence sequence of the mean difference (harness/sequential.py)
    at `alpha / pairs`: "better"/"worse" when it excludes 0, "equivalent" when it lies inside
    ±tolerance, else "undecided". `pairs` is how many pairs of strategies the length's alpha is split
    over (Bonferroni over every pair, since the reference strategy is chosen from the data): every
    claim at the length, of either kind, is false with probability at most alpha together, at
    whatever round the run stopped. `p` and `p_equivalent` are the comparison's own anytime-valid
    p's; `p_adjusted` and `p_equivalent_adjusted` are them times `pairs` (capped at 1), what the
    status is decided on.
    """

    needles: int
    diff: float  # mean of A - B (accuracy, 0-1)
    diff_lo: float | None  # the confidence sequence at alpha / pairs after the last needle
    diff_hi: float | None
    p: float  # anytime-valid: A and B differ
    p_equivalent: float  # anytime-valid: |A - B| < tolerance
    status: str  # "better" (A), "worse" (A), "equivalent", "undecided"
    more_needles: int | None  # undecided only: median of the needles the rule itself would still need
    more_needles_range: tuple[int, int] | None = None  # its 10th-90th percentile over forward simulations
    more_needles_share: float | None = None  # share of simulations decided within MAX_PLANNED more needles
    margin: float | None = None  # undecided only: the narrowest ±tolerance the sequence lies within
    p_adjusted: float = 1.0
    p_equivalent_adjusted: float = 1.0
    pairs: int = 1  # pairs of strategies the alpha is split over
    rule: str = RULE

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def paired(
    a: Sequence[float], b: Sequence[float], *, alpha: float = 0.05, tolerance: float = 0.02, plan: bool = True
) -> Paired:
    """Compare per-needle accuracies `a` and `b` (same needles, in the order they were asked)."""
    return paired_family([(a, b)], alpha=alpha, tolerance=tolerance, plan=plan)[0]


def paired_family(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]],
    *,
    alpha: float = 0.05,
    tolerance: float = 0.02,
    family: int | None = None,
    plan: bool = True,
) -> list[Paired]:
    """Several comparisons made at one length, with one error rate over all their claims.

    Each pair's confidence sequence is built at alpha / `family` (default: the comparisons given;
    the verdict passes every pair of its strategies), so with probability >= 1 - alpha all of them
    hold at once, at every number of needles, and then no claim of either kind is false: "better"
    needs the sequence above 0 and "equivalent" inside ±tolerance, each false only where the
    sequence misses the truth. `plan`: forecast the needles an undecided comparison still needs
    (a forward simulation; off where only the status matters, as in --until-decided's rounds).
    """
    from harness import sequential

    m = max(1, family or len(pairs))
    level = alpha / m
    out = []
    for a, b in pairs:
        d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
        n = int(d.size)
        seq = sequential.confidence_sequence(d, level, tolerance)
        p_adj, eq_adj = min(1.0, m * seq.p_zero), min(1.0, m * seq.p_equivalent)
        status = sequential.decide(seq, level, tolerance)
        more = rng = share = margin = None
        if status == "undecided":
            # the sequence lies strictly inside ±(its farthest bound + one grid step): that tolerance settles it
            margin = round(math.ceil((seq.margin + sequential.GRID_STEP) / MARGIN_STEP - 1e-9) * MARGIN_STEP, 6)
            forecast = sequential.needles_to_decide(d, level, tolerance, cap=MAX_PLANNED) if plan and n else None
            if forecast is not None:
                med, p10, p90, share = forecast
                more, rng = (med if share >= 0.5 else None), (p10, p90)
        out.append(
            Paired(
                n,
                float(d.mean()) if n else 0.0,
                seq.lo if n else None,
                seq.hi if n else None,
                seq.p_zero,
                seq.p_equivalent,
                status,
                more,
                more_needles_range=rng,
                more_needles_share=share,
                margin=margin,
                p_adjusted=p_adj,
                p_equivalent_adjusted=eq_adj,
                pairs=m,
            )
        )
    return out


def holm(ps: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p's, in the order given: reject where adjusted < alpha.

    The k-th smallest p (from 0) is multiplied by m - k, and adjusted p's never decrease along
    that order; the chance of any false rejection among the m stays at most alpha.
    """
    m = len(ps)
    out = [1.0] * m
    running = 0.0
    for k, i in enumerate(sorted(range(m), key=lambda j: ps[j])):
        running = max(running, min(1.0, (m - k) * ps[i]))
        out[i] = running
    return out


MARGIN_STEP = 0.001  # margins are reported to 0.1 accuracy points, rounded up


def equivalence_p(d: np.ndarray, tolerance: float) -> float:
    """TOST: the larger of the one-sided p's of mean(d) > -tol and mean(d) < +tol."""
    return equivalence(d, tolerance).p


def equivalence(d: np.ndarray, tolerance: float) -> SignFlip:
    """TOST as a SignFlip: exact only when both one-sided tests are."""
    d = np.asarray(d, dtype=float)
    if d.size == 0 or tolerance <= 0:
        return SignFlip(1.0, True)
    lower = sign_flip(d + tolerance, "greater")
    upper = sign_flip(d - tolerance, "less")
    return SignFlip(max(lower.p, upper.p), lower.exact and upper.exact)


def one_sided_meets(values: Sequence[float], target: float, level: float = LEVEL) -> dict:
    """Whether per-needle accuracies support mean >= target: the interval and a sample-size hint."""
    x = np.asarray(values, dtype=float)
    lo, hi = bootstrap_ci(x, level)
    mean = float(x.mean()) if x.size else 0.0
    sure = lo is not None and lo >= target - 1e-12
    more = None
    if not sure and x.size and mean > target:
        sd = float(x.std(ddof=1)) if x.size > 1 else 0.0
        sd = sd or max(mean - target, 0.05) / 2
        z = stats.norm.ppf(1 - (1 - level) / 2) + stats.norm.ppf(POWER)
        need = max((z * sd / (mean - target)) ** 2, x.size + 1)
        more = None if need > MAX_PLANNED else int(math.ceil(need)) - int(x.size)
    return {"lo": lo, "hi": hi, "sure": sure, "more_needles": more}
