"""kill -9 the harness at random points, many times; check nothing is lost, duplicated or torn.

    .venv/bin/python bench/stress_kill.py [--trials 50] [--endpoint URL --model NAME] [--seed 0]

Against the stand-in server (default; canned answers, so every run must give identical records) or a
real one (--endpoint; then a response cache seeded by the reference run answers, with a random few
answers removed per trial so the model is asked for those: answers are compared with the trial's own
replay, as in tests/test_faults.py). Each trial: start `harness compare`, SIGKILL it at a random
moment (a random time, or right after the k-th record hit the file), rerun the same command to the
end, check the run folder. Prints a line per trial and a summary table.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

FIELDS = ("raw", "answer", "valid", "invalid_reason", "marks", "score", "prompt_tokens_counted", "gold")


def lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def check(out: Path, want: dict) -> tuple[int, str | None]:
    """(torn lines seen, problem or None)."""
    from harness.store import RunStore

    raw = [l for l in (out / "records.jsonl").read_bytes().split(b"\n") if l.strip()]
    parsed, torn = [], 0
    for l in raw:
        try:
            parsed.append(json.loads(l))
        except ValueError:
            torn += 1
    answered = collections.Counter((r["strategy"], r["sample_id"]) for r in parsed if not r.get("error"))
    dupes = [k for k, n in answered.items() if n > 1]
    if dupes:
        return torn, f"duplicated: {dupes[:3]}"
    latest = {r.key: r.to_json() for r in RunStore(out).latest_records()}
    if set(latest) != set(want):
        return torn, f"keys differ: missing {len(set(want) - set(latest))}, extra {len(set(latest) - set(want))}"
    for k, r in want.items():
        for f in FIELDS:
            if latest[k].get(f) != r.get(f):
                return torn, f"{k} {f}: {latest[k].get(f)!r} != {r.get(f)!r}"
    return torn, None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--endpoint", help="a real server's base URL (…/v1); default: the stand-in")
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--workdir", default=None, help="where run folders go (default: a temporary folder)")
    a = ap.parse_args()

    import tempfile

    from harness.store import RunStore

    work = Path(a.workdir or tempfile.mkdtemp(prefix="stress-kill-"))
    work.mkdir(parents=True, exist_ok=True)
    proc = None
    if a.endpoint:
        url = a.endpoint
        grid = [
            "--lengths",
            "500,800",
            "--depths",
            "0,50,100",
            "--needles",
            "2",
            "-s",
            "full-context",
            "--shots",
            "0",
            "--concurrency",
            "4",
        ]
    else:
        from fake_openai import start_subprocess

        proc, url = start_subprocess("--latency", "0.01")
        grid = [
            "--lengths",
            "300",
            "--depths",
            ",".join(str(d) for d in range(0, 101, 5)),
            "--needles",
            "10",
            "-s",
            "full-context",
            "--shots",
            "1",
            "--concurrency",
            "8",
        ]

    def cmd(out: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "harness.cli",
            "compare",
            "--endpoint",
            url,
            "--model",
            a.model,
            "--api",
            "completions",
            "--out",
            str(out),
            *grid,
        ]

    def env(cache: Path) -> dict:
        e = dict(os.environ, HARNESS_RESPONSE_CACHE=str(cache), TOKENIZERS_PARALLELISM="false")
        e.pop("OPENAI_API_KEY", None)
        return e

    try:
        ref_cache = work / "ref.sqlite"
        t0 = time.monotonic()
        p = subprocess.run(cmd(work / "ref"), env=env(ref_cache), capture_output=True, text=True, cwd=ROOT)
        t_ref = time.monotonic() - t0
        if p.returncode != 0:
            sys.exit(f"reference run failed: {p.stderr[-500:]}")
        want = {(r["strategy"], r["sample_id"]): r for r in RunStore(work / "ref").rows()}
        with sqlite3.connect(ref_cache) as db:
            keys = [k for (k,) in db.execute("SELECT key FROM responses")]
        print(f"reference: {len(want)} queries in {t_ref:.1f} s; {a.trials} trials", flush=True)
        rng = random.Random(a.seed)
        stats = collections.Counter()
        for trial in range(a.trials):
            out, cache = work / f"t{trial}", work / f"t{trial}.sqlite"
            if a.endpoint:  # answers for most queries from the reference; the model is asked for a few
                shutil.copy(ref_cache, cache)
                with sqlite3.connect(cache) as db:
                    db.executemany(
                        "DELETE FROM responses WHERE key = ?",
                        [(k,) for k in rng.sample(keys, min(len(keys), rng.randint(2, 4)))],
                    )
                trial_env = env(cache)
            else:  # canned answers: no cache at all, every query goes to the stand-in
                trial_env = env(cache)
                trial_env["HARNESS_RESPONSE_CACHE"] = str(work / f"none{trial}.sqlite")
            proc_h = subprocess.Popen(
                cmd(out), env=trial_env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if rng.random() < 0.5:
                delay = rng.uniform(0.2, t_ref)
                how = f"t={delay:.2f}s"
                end = time.monotonic() + delay
                while time.monotonic() < end and proc_h.poll() is None:
                    time.sleep(0.005)
            else:
                k = rng.randint(1, len(want) - 1)
                how = f"record {k}"
                end = time.monotonic() + 3 * t_ref + 30
                while lines(out / "records.jsonl") < k and proc_h.poll() is None and time.monotonic() < end:
                    time.sleep(0.002)
            finished = proc_h.poll() is not None
            proc_h.kill()
            proc_h.wait()
            kept = len(RunStore(out).rows()) if (out / "records.jsonl").exists() else 0
            p = subprocess.run(cmd(out), env=trial_env, capture_output=True, text=True, cwd=ROOT)
            if p.returncode != 0:
                problem, torn = f"rerun failed: {p.stderr.strip().splitlines()[-1:]}", 0
            elif a.endpoint:
                # compare with the trial's own answers, replayed: the model may answer differently per batch
                replay = work / f"replay{trial}"
                subprocess.run(cmd(replay), env=trial_env, capture_output=True, text=True, cwd=ROOT)
                trial_want = {(r["strategy"], r["sample_id"]): r for r in RunStore(replay).rows()}
                torn, problem = check(out, trial_want)
            else:
                torn, problem = check(out, want)
            stats["trials"] += 1
            stats["failed"] += problem is not None
            stats["torn lines"] += torn
            stats["finished before the kill"] += finished
            stats["killed with 1..n-1 records"] += 0 < kept < len(want)
            print(
                f"trial {trial:3d}: kill at {how:12s} kept {kept:4d}/{len(want)} torn {torn} "
                f"{'(had finished) ' if finished else ''}{'OK' if problem is None else 'FAIL ' + problem}",
                flush=True,
            )
        print()
        for k, v in stats.items():
            print(f"{k:28s} {v}")
        sys.exit(1 if stats["failed"] else 0)
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
