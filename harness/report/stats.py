"""How sure each number is: intervals over needles, paired tests between strategies.

The unit that varies is the needle (one hidden item the questions are about). The fields of
one answer, and the depths and lengths one needle is asked at, are not independent draws, so every interval resamples whole
needles: a needle's value is the mean of its records in the cell, and the bootstrap draws needles
with replacement (scipy's BCa, percentile when BCa degenerates; a fixed seed, so a summary is the
same every time it is computed).

Strategies are asked the same needles, so they are compared pair-wise on per-needle differences
with a sign-flip permutation test. It is exact (every one of the 2**n sign patterns, enumerated
in two halves that meet in the middle, with equal sums merged) unless the differences take so
many distinct values that a half would pass EXACT_LIMIT sums — 34 needles of all-distinct
differences, far more of the repeated ones accuracies give — and then Monte Carlo over
MC_RESAMPLES patterns, which the result says (`SignFlip.method`, `Paired.method`). It makes no
normality assumption and cannot over-claim with few needles: with n needles the smallest
two-sided p is 2 / 2**n (2 / 2**m when only m of them differ: a tie flips to itself), so two
needles can never "prove" anything (p >= 0.5) while a bootstrap of two equal differences would.
"Within tolerance" is an equivalence test (TOST: both one-sided sign-flip tests against -tol and
+tol), so "no detectable difference" is also something the data has to show, not the absence of
a result. Comparisons made together (the best strategy against each other one at a length) are
Holm-adjusted as a family (`paired_family`).
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
MAX_PLANNED = 10_000  # needles: past this a sample-size estimate is no longer advice


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


def min_needles(alpha: float, two_sided: bool = True) -> int:
    """Fewest needles with which a sign-flip test can reach `alpha` at all."""
    return max(1, math.ceil(math.log2((2 if two_sided else 1) / alpha) + 1e-12))


@dataclass
class Paired:
    """Strategy A against strategy B on the needles both were asked (d = A - B per needle).

    `p` and `p_equivalent` are the comparison's own; `p_holm` and `p_equivalent_holm` are adjusted
    over the `comparisons` made together with it (Holm), and `status` is decided on those.
    """

    needles: int
    diff: float  # mean of A - B (accuracy, 0-1)
    diff_lo: float | None
    diff_hi: float | None
    p: float  # two-sided: A and B differ
    p_equivalent: float  # TOST: |A - B| < tolerance
    status: str  # "better" (A), "worse" (A), "equivalent", "undecided"
    more_needles: int | None  # about how many more needles would settle it (undecided only)
    margin: float | None = None  # undecided only: the smallest tolerance it is shown equivalent within
    p_holm: float = 1.0  # p, Holm-adjusted over the comparisons (= p when there is one)
    p_equivalent_holm: float = 1.0
    comparisons: int = 1  # how many comparisons were adjusted together
    method: str = "exact"  # of the sign-flip tests: "exact", or "Monte Carlo, N resamples"

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def paired(
    a: Sequence[float], b: Sequence[float], *, alpha: float = 0.05, tolerance: float = 0.02, level: float = LEVEL
) -> Paired:
    """Compare per-needle accuracies `a` and `b` (same needles, same order).

    status: "equivalent" when the data shows |A - B| < tolerance (TOST at `alpha`); else "better" or
    "worse" when the two-sided test rejects "no difference" at `alpha`; else "undecided", with an
    estimate of how many more needles would settle it.
    """
    return paired_family([(a, b)], alpha=alpha, tolerance=tolerance, level=level)[0]


def paired_family(
    pairs: Sequence[tuple[Sequence[float], Sequence[float]]],
    *,
    alpha: float = 0.05,
    tolerance: float = 0.02,
    level: float = LEVEL,
) -> list[Paired]:
    """Several comparisons made together (the best strategy against each other one at a length).

    Each is tested as in `paired`, then its p's are Holm-adjusted over the family and the status
    is decided on the adjusted ones: with m comparisons at alpha each, some "better" would come
    out of pure noise far more often than alpha. Holm keeps that chance (the family-wise error)
    at alpha, and is never less powerful than dividing alpha by m. Both kinds of claim are
    adjusted, each over the family: the differences ("better"/"worse") and the equivalences
    ("within tolerance"), since a false equivalence among many is what would name a wrong
    strategy as the cheapest within tolerance. Within one comparison the two need no split of
    alpha: "no difference" and "|A - B| >= tolerance" cannot both be true, so only one of its
    two tests can make a false claim. With one comparison this is `paired` exactly.
    """
    ds = [np.asarray(a, dtype=float) - np.asarray(b, dtype=float) for a, b in pairs]
    tests = [(sign_flip(d), equivalence(d, tolerance)) for d in ds]
    p_adj = holm([t.p for t, _ in tests])
    eq_adj = holm([e.p for _, e in tests])
    m = len(ds)
    out = []
    for d, (t, e), p_h, eq_h in zip(ds, tests, p_adj, eq_adj):
        n = int(d.size)
        diff = float(d.mean()) if n else 0.0
        lo, hi = bootstrap_ci(d, level) if n else (None, None)
        if eq_h < alpha:
            status, more = "equivalent", None
        elif p_h < alpha:
            status, more = ("better" if diff > 0 else "worse"), None
        else:  # planned as if at the strictest step of Holm's ladder: alpha / m
            status, more = "undecided", more_needles(d, alpha / m, tolerance)
        margin = equivalence_margin(d, alpha / m) if status == "undecided" else None
        method = t.method if not t.exact else e.method
        out.append(
            Paired(
                n,
                diff,
                lo,
                hi,
                t.p,
                e.p,
                status,
                more,
                p_holm=p_h,
                p_equivalent_holm=eq_h,
                comparisons=m,
                method=method,
                margin=margin,
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


MARGIN_STEP = 0.001  # equivalence margins are found to 0.1 accuracy points, rounded up


def equivalence_margin(d: np.ndarray, alpha: float) -> float | None:
    """The smallest tolerance (0-1, a multiple of MARGIN_STEP) within which TOST shows A and B
    equivalent at `alpha`: the differences an undecided comparison does rule out. None when no
    tolerance can (fewer needles than a one-sided sign-flip test needs: 1 / 2**n >= alpha).

    Found by bisection on the tolerance (the TOST p falls as it widens); the margin returned is
    always one the test passed at, so "equivalent within this margin" is what `paired_family`
    says at `--tolerance` = margin when alpha is the strictest step of Holm's ladder (alpha / m,
    what callers pass): never a claim its own test would not make.
    """
    d = np.asarray(d, dtype=float)
    if d.size == 0 or 0.5**d.size >= alpha:
        return None
    steps = math.ceil((1.0 + float(np.abs(d).max())) / MARGIN_STEP)  # every shifted value positive
    if equivalence(d, steps * MARGIN_STEP).p >= alpha:
        return None
    lo, hi = 0, steps  # hi passes; lo fails (a tolerance of 0 shows nothing)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if equivalence(d, mid * MARGIN_STEP).p < alpha:
            hi = mid
        else:
            lo = mid
    return round(hi * MARGIN_STEP, 6)


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


def more_needles(d: np.ndarray, alpha: float, tolerance: float, power: float = POWER) -> int | None:
    """About how many more needles would settle A vs B, from the differences seen so far.

    The normal-approximation sample size (power `power`) to show the difference seen when it is
    beyond the tolerance, or equivalence when it is within; never fewer than a sign-flip test
    needs to reach `alpha`. A planning figure, as good as the spread measured on few needles;
    None when it would take more than MAX_PLANNED needles (a difference too small to resolve).
    """
    d = np.asarray(d, dtype=float)
    n = int(d.size)
    mean = abs(float(d.mean())) if n else 0.0
    sd = float(d.std(ddof=1)) if n > 1 else 0.0
    if sd == 0.0:
        sd = max(abs(mean), tolerance, 0.05) / 2  # no spread seen yet: assume some
    zb = stats.norm.ppf(power)
    options = []
    if mean > 0:
        options.append(((stats.norm.ppf(1 - alpha / 2) + zb) * sd / mean) ** 2)
    if tolerance > mean:
        options.append(((stats.norm.ppf(1 - alpha) + zb) * sd / (tolerance - mean)) ** 2)
    need = min(options) if options else float("inf")
    need = max(need, min_needles(alpha), n + 1)
    return None if need > MAX_PLANNED else int(math.ceil(need)) - n


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
