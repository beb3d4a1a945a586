"""How often the verdict's claims are false, and how many needles it takes to decide: old rule vs new.

    python bench/verdict_sim.py              # the tables in docs/statistics.md (a few minutes on 2 cores)
    python bench/verdict_sim.py --reps 300   # quicker, noisier

Rules compared on simulated per-needle differences d = A - B in [-1, 1] (tolerance ±2 pts, alpha 0.05):
  old  the previous verdict: an exact sign-flip test for "better", its TOST for "equivalent", each
       Holm-adjusted on its own over the length's comparisons; --until-decided looked at
       alpha / planned looks.
  new  the verdict today (harness/sequential.py): anytime-valid confidence sequences by
       betting, alpha split over every pair of strategies, "better" when the sequence excludes 0,
       "equivalent" when it lies inside ±tolerance; --until-decided looks at alpha every round.

A claim is false when the truth contradicts it: "better" where the true mean difference is <= 0,
"equivalent" where |mean| >= tolerance. Each table prints the share of runs with a false claim (a
rule holds its promise when that is <= alpha, up to Monte Carlo error: ±2 standard errors shown)
and, where a true claim exists, how many needles it took. Every figure in the README's and
docs/statistics.md's verdict sections comes from this script.
"""

from __future__ import annotations

import argparse
import math
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import sequential  # noqa: E402
from harness.report import stats  # noqa: E402

ALPHA = 0.05
TOL = 0.02
SIZES = (5, 8, 10, 16, 20, 32, 50, 100, 200)
SCHEDULE = (8, 16, 32, 64, 128, 200)  # --until-decided rounds (doubling from 8, capped)


@dataclass(frozen=True)
class Case:
    """A distribution of per-needle differences: values and their probabilities."""

    name: str
    values: tuple[float, ...]
    probs: tuple[float, ...]
    what: str

    @property
    def mean(self) -> float:
        return float(np.dot(self.values, self.probs))

    def draw(self, rng: np.random.Generator, shape) -> np.ndarray:
        return rng.choice(np.asarray(self.values), size=shape, p=np.asarray(self.probs))

    def false(self, claim: str) -> bool:
        mu = self.mean
        if claim == "better":
            return mu <= 1e-12
        if claim == "worse":
            return mu >= -1e-12
        if claim == "equivalent":
            return abs(mu) >= TOL - 1e-12
        return False


CASES = (
    Case("lopsided, 3 pts", (0.0, -0.2), (0.85, 0.15), "identical but for a 0.2 loss on 15 % of needles"),
    Case("ties-heavy, at the margin", (0.0, -0.5), (0.96, 0.04), "identical but for a 0.5 loss on 4 %: 2 pts"),
    Case("lopsided, mean 0", (0.05, -0.2), (0.8, 0.2), "a small gain on most, a loss on some: equal means"),
    Case("symmetric, mean 0", (-0.2, 0.0, 0.2), (0.3, 0.4, 0.3), "symmetric noise, equal means"),
    Case("binary, mean 0", (-1.0, 0.0, 1.0), (0.15, 0.7, 0.15), "one 0/1 field: equal means"),
    Case("binary, 2 pts", (-1.0, 0.0, 1.0), (0.12, 0.78, 0.10), "one 0/1 field, 2 pts apart"),
    Case("gap, 20 pts", (0.0, 0.2, 0.4), (1 / 3, 1 / 3, 1 / 3), "A better by 20 pts"),
    Case("gap, 10 pts", (-0.2, 0.0, 0.2, 0.4), (0.2, 0.3, 0.3, 0.2), "A better by 10 pts"),
    Case("identical", (0.0,), (1.0,), "the same answers on every needle"),
)


# -- the rules on one comparison -------------------------------------------------------------------------
def old_claim(d: np.ndarray, alpha: float, tol: float = TOL) -> str:
    """The previous rule on one comparison: TOST first, then the two-sided sign-flip test."""
    if stats.equivalence(d, tol).p < alpha:
        return "equivalent"
    if stats.sign_flip(d).p < alpha:
        return "better" if d.mean() > 0 else "worse"
    return "undecided"


NAMES = {sequential.BETTER: "better", sequential.WORSE: "worse", sequential.EQUIVALENT: "equivalent"}


def new_claims(d: np.ndarray, alpha: float, tol: float = TOL) -> np.ndarray:
    """The new rule on many runs at once: d (runs, n) -> the claim after each needle (runs, n)."""
    cap = sequential.log_capital(d, sequential.decision_points(tol), alpha)
    mean = np.cumsum(d, axis=-1) / np.arange(1, d.shape[-1] + 1)
    codes = sequential.decisions(cap, math.log(1 / alpha), tol, mean)
    out = np.full(d.shape, "undecided", dtype=object)
    for code, name in NAMES.items():
        out[codes == code] = name
    return out


def rate(bad: int, reps: int) -> str:
    p = bad / reps
    se = math.sqrt(max(p * (1 - p), 1 / reps) / reps)
    flag = " !" if p - 2 * se > ALPHA else ""
    return f"{100 * p:.1f} ± {200 * se:.1f}{flag}"


def fixed_n_table(reps: int, rng: np.random.Generator) -> list[str]:
    """False-claim rate of each rule at a fixed number of needles (one look)."""
    lines = [
        "| case | mean | rule | " + " | ".join(f"n={n}" for n in SIZES) + " |",
        "|---|---|---|" + "---|" * len(SIZES),
    ]
    for case in CASES:
        if not any(case.false(c) for c in ("better", "worse", "equivalent")) or case.name == "identical":
            continue
        d = case.draw(rng, (reps, max(SIZES)))
        new = new_claims(d, ALPHA)
        row_old, row_new = [], []
        for n in SIZES:
            old = [old_claim(d[i, :n], ALPHA) for i in range(reps)]
            row_old.append(rate(sum(case.false(c) for c in old), reps))
            row_new.append(rate(sum(case.false(c) for c in new[:, n - 1]), reps))
        lines.append(f"| {case.name} | {100 * case.mean:+.0f} pts | old | " + " | ".join(row_old) + " |")
        lines.append("| | | new | " + " | ".join(row_new) + " |")
    return lines


def sequential_table(reps: int, rng: np.random.Generator) -> list[str]:
    """--until-decided: look after every round, stop at the first decision. False claims and needles used."""
    lines = [
        "| case | mean | rule | false claims | decided | needles to decide (median, 10-90 %) |",
        "|---|---|---|---|---|---|",
    ]
    for case in CASES:
        d = case.draw(rng, (reps, SCHEDULE[-1]))
        new = new_claims(d, ALPHA)
        for rule in ("old", "new"):
            bad, used = 0, []
            for i in range(reps):
                for n in SCHEDULE:
                    c = old_claim(d[i, :n], ALPHA / len(SCHEDULE)) if rule == "old" else new[i, n - 1]
                    if c != "undecided":
                        bad += case.false(c)
                        used.append(n)
                        break
            share = len(used) / reps
            spread = (
                f"{int(np.median(used))} ({int(np.percentile(used, 10))}-{int(np.percentile(used, 90))})"
                if used
                else "-"
            )
            lines.append(
                f"| {case.name if rule == 'old' else ''} | {f'{100 * case.mean:+.0f} pts' if rule == 'old' else ''} "
                f"| {rule} | {rate(bad, reps)} | {100 * share:.0f} % | {spread} |"
            )
    return lines


def anytime_table(reps: int, rng: np.random.Generator, horizon: int = 2000) -> list[str]:
    """The new rule looking after every single needle (the strictest peeking): false claims, needles."""
    lines = [
        "| case | mean | false claims | decided by 2,000 | needles to decide (median, 10-90 %) |",
        "|---|---|---|---|---|",
    ]
    for case in CASES:
        d = case.draw(rng, (reps, horizon))
        claims = new_claims(d, ALPHA)
        decided = claims != "undecided"
        first = np.where(decided.any(axis=1), decided.argmax(axis=1), -1)
        bad = sum(case.false(claims[i, f]) for i, f in enumerate(first) if f >= 0)
        used = first[first >= 0] + 1
        spread = (
            f"{int(np.median(used))} ({int(np.percentile(used, 10))}-{int(np.percentile(used, 90))})"
            if used.size
            else "-"
        )
        lines.append(
            f"| {case.name} | {100 * case.mean:+.0f} pts | {rate(bad, reps)} | {100 * used.size / reps:.0f} % | {spread} |"
        )
    return lines


def arms_table(reps: int, rng: np.random.Generator, needles: int = 30) -> list[str]:
    """k equally good strategies (5 fields of 0.7 each per needle): a false "better" anywhere at the length."""
    lines = ["| strategies | unadjusted | old (Holm) | new |", "|---|---|---|---|"]
    for k in (2, 3, 5, 8):
        bad = {"raw": 0, "old": 0, "new": 0}
        for _ in range(reps):
            acc = rng.binomial(5, 0.7, size=(k, needles)) / 5
            best = int(np.argmax(acc.mean(axis=1)))
            ds = [acc[best] - acc[j] for j in range(k) if j != best]
            ps = [stats.sign_flip(d).p for d in ds]
            bad["raw"] += any(p < ALPHA for p in ps)
            bad["old"] += any(p < ALPHA for p in stats.holm(ps))
            level = ALPHA / (k * (k - 1) // 2)
            bad["new"] += any(c in ("better", "worse") for c in new_claims(np.array(ds), level)[:, -1])
        lines.append(f"| {k} | {rate(bad['raw'], reps)} | {rate(bad['old'], reps)} | {rate(bad['new'], reps)} |")
    return lines


def forecast_table(reps: int, rng: np.random.Generator, seen: int = 10, horizon: int = 3000) -> list[str]:
    """'About N more needles': the forecast from the first `seen` needles against what it really took."""
    lines = [
        "| case | truth: more needles (median, 10-90 %) | forecast median (median over runs) | truth inside forecast's 10-90 % |",
        "|---|---|---|---|",
    ]
    for case in (c for c in CASES if c.name in ("gap, 20 pts", "gap, 10 pts", "identical")):
        d = case.draw(rng, (reps, horizon))
        claims = new_claims(d, ALPHA)
        decided = claims != "undecided"
        first = np.where(decided.any(axis=1), decided.argmax(axis=1) + 1, horizon + 1)
        inside, meds, truth = 0, [], []
        for i in range(reps):
            if first[i] <= seen:
                continue
            f = sequential.needles_to_decide(d[i, :seen], ALPHA, TOL, sims=100)
            if f is None:
                continue
            med, p10, p90, _ = f
            meds.append(med)
            truth.append(first[i] - seen)
            inside += p10 <= first[i] - seen <= p90
        if not truth:
            continue
        t = np.array(truth)
        lines.append(
            f"| {case.name} | {int(np.median(t))} ({int(np.percentile(t, 10))}-{int(np.percentile(t, 90))}) "
            f"| {int(np.median(meds))} | {100 * inside / len(truth):.0f} % |"
        )
    return lines


def fast_check(reps: int = 400, seed: int = 0) -> list[tuple[str, int, float, float]]:
    """For the test: the new rule's false-claim rate on every case, at fixed n and looking after every
    needle up to 200. Returns (case, n, rate, standard error) rows."""
    rng = np.random.default_rng(seed)
    out = []
    for case in CASES:
        d = case.draw(rng, (reps, 200))
        claims = new_claims(d, ALPHA)
        for n in (8, 32, 200):
            bad = sum(case.false(c) for c in claims[:, n - 1])
            p = bad / reps
            out.append((case.name, n, p, math.sqrt(max(p * (1 - p), 1 / reps) / reps)))
        decided = claims != "undecided"
        first = np.where(decided.any(axis=1), decided.argmax(axis=1), -1)
        bad = sum(case.false(claims[i, f]) for i, f in enumerate(first) if f >= 0)
        p = bad / reps
        out.append((case.name + " (every needle)", 0, p, math.sqrt(max(p * (1 - p), 1 / reps) / reps)))
    return out


def cpu_flags() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    model = re.search(r"model name\s*:\s*(.*)", text)
    flags = sorted(set(re.findall(r"\b(avx512_bf16|amx_bf16|avx2)\b", text)))
    return f"{model.group(1) if model else 'cpu'}; {', '.join(flags) or 'no avx2'}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=1000, help="simulated runs per cell (default 1000)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    t0 = time.time()
    print(f"# verdict_sim: alpha {ALPHA}, tolerance ±{100 * TOL:g} pts, {args.reps} runs per cell, seed {args.seed}")
    print(f"# {cpu_flags()}\n")
    print("Cases:\n")
    for c in CASES:
        print(f"- {c.name} (mean {100 * c.mean:+.1f} pts): {c.what}")
    print("\n## One look at n needles: % of runs with a false claim (± 2 s.e.; ! = above alpha beyond noise)\n")
    print("\n".join(fixed_n_table(args.reps, rng)))
    print(f"\n## --until-decided, rounds at {', '.join(map(str, SCHEDULE))} needles\n")
    print("\n".join(sequential_table(args.reps, rng)))
    print("\n## The new rule looking after every needle (up to 2,000)\n")
    print("\n".join(anytime_table(args.reps, rng)))
    print("\n## Equal strategies, 30 needles: a false 'better' anywhere at the length\n")
    print("\n".join(arms_table(args.reps, rng)))
    print("\n## 'About N more needles' from the first 10 needles, against what the rule really took\n")
    print("\n".join(forecast_table(max(20, args.reps // 10), rng)))
    print(f"\n({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
