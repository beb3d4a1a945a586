"""bench/overhead.py still drives the current core: its part 1 runs end to end on a small grid.

The bench is not CI (its figures need a quiet machine); this only keeps it from rotting when the
runner's planning API changes, as it once did (runner.plan_jobs became plan_queries).
"""

from __future__ import annotations

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
    row = next(line for line in out.stdout.splitlines() if line.startswith("harness (plan"))
    assert "x" in row and ("PASS" in row or "FAIL" in row)  # a ratio and a verdict, whatever this box gives
    assert "101 queries" in out.stdout
