"""The verdict's error rate, measured by simulation (bench/verdict_sim.py's fast check; no server).

Every claim the tool prints must hold at the error rate it states, for the shapes per-needle
differences really take (identical answers with an occasional miss; one 0/1 field; symmetric
noise), at a fixed number of needles and when --until-decided looks after every needle.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import verdict_sim  # noqa: E402


def test_no_rule_the_tool_uses_claims_falsely_more_than_alpha():
    rows = verdict_sim.fast_check(reps=400, seed=0)
    assert len(rows) == 4 * len(verdict_sim.CASES)
    over = [(case, n, p) for case, n, p, se in rows if p > verdict_sim.ALPHA + 2 * se]
    assert not over, f"false-claim rate above alpha: {over}"


def test_the_check_would_catch_a_rule_that_over_claims():
    """The previous rule (sign-flip TOST) on the audit's lopsided case, 8 needles: flagged."""
    rng = np.random.default_rng(0)
    case = next(c for c in verdict_sim.CASES if c.name == "lopsided, 3 pts")
    d = case.draw(rng, (400, 8))
    p = sum(case.false(verdict_sim.old_claim(row, verdict_sim.ALPHA)) for row in d) / 400
    se = np.sqrt(p * (1 - p) / 400)
    assert p > verdict_sim.ALPHA + 2 * se  # about 25 % against the 5 % promised


def test_the_vectorised_rule_is_the_verdicts_rule():
    """The simulation measures the code the verdict runs: the same claim, run by run."""
    from harness.report import stats

    rng = np.random.default_rng(1)
    for case in verdict_sim.CASES:
        d = case.draw(rng, (5, 40))
        claims = verdict_sim.new_claims(d, verdict_sim.ALPHA)
        for i in range(5):
            for n in (8, 40):
                got = stats.paired(0.5 + d[i, :n] / 2, 0.5 - d[i, :n] / 2, plan=False).status
                assert got == claims[i, n - 1], (case.name, i, n)
