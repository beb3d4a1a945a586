"""How sure each number is: intervals over needles, paired tests between strategies.

The unit that varies is the needle (one hidden person). The fields of one answer, and the depths
and lengths one needle is asked at, are not independent draws, so every interval resamples whole
needles: a needle's value is the mean of its records in the cell, and the bootstrap draws needles
with replacement (scipy's BCa, percentile when BCa degenerates; a fixed seed, so a summary is the
same every time it is computed).

Strategies are asked the same needles, so they are compared pair-wise on per-needle differences
with a sign-flip permutation test (exact up to 2**14 needles' flips, Monte Carlo beyond). It makes
no normality assumption and cannot over-claim with few needles: with n needles the smallest
two-sided p is 2 / 2**n, so two needles can never "prove" anything (p >= 0.5) while a bootstrap
of two equal differences would. "Within tolerance" is an equivalence test (TOST: both one-sided
sign-flip tests against -tol and +tol), so "no detectable difference" is also something the data
has to show, not the absence of a result.
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
            res = stats.bootstrap((x,), _mean, n_resamples=RESAMPLES, confidence_level=level, method=method,
                                  axis=0, random_state=SEED, vectorized=True)
            lo, hi = np.asarray(res.confidence_interval.low, float), np.asarray(res.confidence_interval.high, float)
            if out is None:
                out = (lo, hi)
            else:
                bad = ~(np.isfinite(out[0]) & np.isfinite(out[1]))
                out[0][bad], out[1][bad] = lo[bad], hi[bad]
            if np.isfinite(out[0]).all() and np.isfinite(out[1]).all():
                break
    return out


def sign_flip_p(d: np.ndarray, alternative: str = "two-sided") -> float:
    """p of the mean of per-needle differences `d` under "no difference" (signs exchangeable)."""
    d = np.asarray(d, dtype=float)
    if d.size == 0 or np.all(d == 0):
        return 1.0
    if d.size == 1:  # two sign patterns: the observed one is the most extreme of them
        if alternative == "two-sided":
            return 1.0
        return 0.5 if (d[0] > 0) == (alternative == "greater") else 1.0
    res = stats.permutation_test((d,), _mean, permutation_type="samples", vectorized=True,
                                 n_resamples=2 ** 14, alternative=alternative, random_state=SEED)
    return float(min(1.0, res.pvalue))


def min_needles(alpha: float, two_sided: bool = True) -> int:
    """Fewest needles with which a sign-flip test can reach `alpha` at all."""
    return max(1, math.ceil(math.log2((2 if two_sided else 1) / alpha) + 1e-12))


@dataclass
class Paired:
    """Strategy A against strategy B on the needles both were asked (d = A - B per needle)."""

    needles: int
    diff: float  # mean of A - B (accuracy, 0-1)
    diff_lo: float | None
    diff_hi: float | None
    p: float  # two-sided: A and B differ
    p_equivalent: float  # TOST: |A - B| < tolerance
    status: str  # "better" (A), "worse" (A), "equivalent", "undecided"
    more_needles: int | None  # about how many more needles would settle it (undecided only)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def paired(a: Sequence[float], b: Sequence[float], *, alpha: float = 0.05, tolerance: float = 0.02,
           level: float = LEVEL) -> Paired:
    """Compare per-needle accuracies `a` and `b` (same needles, same order).

    status: "equivalent" when the data shows |A - B| < tolerance (TOST at `alpha`); else "better" or
    "worse" when the two-sided test rejects "no difference" at `alpha`; else "undecided", with an
    estimate of how many more needles would settle it.
    """
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    n = int(d.size)
    diff = float(d.mean()) if n else 0.0
    lo, hi = bootstrap_ci(d, level) if n else (None, None)
    p = sign_flip_p(d)
    p_eq = equivalence_p(d, tolerance)
    if p_eq < alpha:
        status, more = "equivalent", None
    elif p < alpha:
        status, more = ("better" if diff > 0 else "worse"), None
    else:
        status, more = "undecided", more_needles(d, alpha, tolerance)
    return Paired(n, diff, lo, hi, p, p_eq, status, more)


def equivalence_p(d: np.ndarray, tolerance: float) -> float:
    """TOST: the larger of the one-sided p's of mean(d) > -tol and mean(d) < +tol."""
    d = np.asarray(d, dtype=float)
    if d.size == 0 or tolerance <= 0:
        return 1.0
    lower = sign_flip_p(d + tolerance, "greater")
    upper = sign_flip_p(d - tolerance, "less")
    return max(lower, upper)


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
