"""bench/overhead.py still drives the current core: its part 1 runs end to end on a small grid, and its
figures are consistent (the speed target itself is the bench's business, not a timed test's).

The bench is not CI (its figures need a quiet machine); this only keeps it from rotting when the
runner's planning API changes, as it once did (runner.plan_jobs became plan_queries).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_overhead_bench_part1_runs_and_prints_its_table():
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "overhead.py"),
            "--queries",
            "101",
            "--repeats",
            "1",
            "--concurrency",
            "4",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "(1) harness overhead" in out.stdout
    assert "101 queries" in out.stdout
    # The figures hold together, whatever this box's speed: seconds > 0, queries/s = 101 / seconds,
    # "vs bare" = the bare client's seconds / the row's, and the verdict is the one those figures give.
    rows = {}
    for line in out.stdout.splitlines():
        cells = re.split(r"\s{2,}", line.strip())
        if line.startswith(("bare AsyncOpenAI", "harness endpoint client", "harness (plan")):
            rows[line.split(" (")[0]] = cells
    assert set(rows) == {"bare AsyncOpenAI client", "harness endpoint client", "harness"}, out.stdout
    bare_s = float(rows["bare AsyncOpenAI client"][1])
    for name, (_, seconds, rate, ratio, *_) in rows.items():
        seconds, rate, ratio = float(seconds), int(rate), float(ratio.removesuffix("x"))
        assert 0 < seconds < 600, (name, seconds)
        e = 0.005  # the seconds are printed to two decimals
        assert 101 / (seconds + e) - 1 <= rate <= 101 / (seconds - e) + 1, (name, rate, seconds)
        assert (bare_s - e) / (seconds + e) - e <= ratio <= (bare_s + e) / (seconds - e) + e, (name, ratio, seconds)
    _, seconds, rate, ratio, verdict = rows["harness"]
    passed = float(ratio.removesuffix("x")) >= 0.8 and int(rate) >= 300
    assert verdict == f"{'PASS' if passed else 'FAIL'} (>= 0.8x and >= 300 q/s)"
