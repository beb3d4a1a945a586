"""Adaptive sampling vs a full sweep: the tokens `--until-decided` saves, and whether it decides the same.

    .venv/bin/python bench/adaptive.py                 # the simulated reader (bench/sim_reader.py), started here
    .venv/bin/python bench/adaptive.py --lengths 1k,4k,8k --depths 0,50,100 --needles-full 32
    .venv/bin/python bench/adaptive.py --endpoint http://127.0.0.1:PORT/v1 --model NAME --api completions
    .venv/bin/python bench/adaptive.py --report-only --out DIR   # re-read DIR/full and DIR/adaptive

Two runs over the same grid and seed (so the adaptive run's needles are the first needles of the
full sweep), both with --no-cache:
  full      harness compare ... --needles N --out DIR/full
  adaptive  harness compare ... --until-decided --max-needles N [--needles FIRST] --out DIR/adaptive
Then, per context length: queries and model tokens (prompt + completion, summed over records.jsonl;
a failed request counts the prompt tokens it reports) of each run, the needles the adaptive run
used there, each run's verdict (the strategy to use, `choice`, and whether the verdict is settled)
and whether the two reach the same verdict (the same choice, and both settled or both not). The
total line gives the token ratio adaptive / full and whether the target is met: the same verdict
at every length for at most one third of the tokens. A markdown table goes to stdout and every
figure to DIR/bench.json.

With the simulated reader, costs are priced per token (a --prices file written into DIR), since the
stand-in's latency says nothing; the reader's accuracy model is set with --base/--decay/--middle.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TARGET_RATIO = 1 / 3
SIM_PRICES = """\
# Written by bench/adaptive.py: the simulated reader answers at once, so a latency-based price would
# be noise; a per-token price makes cost follow the tokens each strategy sends.
models:
  {model}:
    input: 0.10
    output: 0.40
    note: "bench/adaptive.py: simulated reader, priced per token"
"""


class BenchError(Exception):
    """A one-line error for the user (bad input, a failed run)."""


# ---------------------------------------------------------------------------- reading a run folder
def read_run(path: Path) -> dict[str, Any]:
    """Per length: queries, tokens spent, needles used; and the verdict rows of summary.json."""
    from harness.store import RunStore

    if not (path / "records.jsonl").is_file():
        raise BenchError(f"{path}: no records.jsonl (not a run folder, or the run never started)")
    if not (path / "summary.json").is_file():
        raise BenchError(f"{path}: no summary.json (the run did not finish)")
    store = RunStore(path)
    per: dict[int, dict[str, Any]] = {}
    for r in store.rows():  # every attempt: a failed request that was retried still cost its prompt
        row = per.setdefault(int(r["length"]), {"queries": 0, "failed": 0, "tokens": 0, "needles": 0})
        prompt = r.get("prompt_tokens") or 0
        completion = 0 if r.get("error") else (r.get("completion_tokens") or 0)
        row["tokens"] += int(prompt) + int(completion)
    for r in store.latest_records():  # queries: one per (strategy, sample)
        row = per[int(r.length)]
        row["queries"] += 1
        row["failed"] += bool(r.error)
        row["needles"] = max(row["needles"], int(r.needle_index) + 1)
    summary = json.loads((path / "summary.json").read_text())
    verdict = {int(v["length"]): v for v in summary.get("verdict") or []}
    return {
        "path": str(path),
        "lengths": dict(sorted(per.items())),
        "verdict": verdict,
        "alpha": summary.get("alpha"),
        "tolerance": summary.get("tolerance"),
    }


def _verdict_brief(v: dict[str, Any] | None) -> dict[str, Any] | None:
    if v is None:
        return None
    return {
        "choice": v.get("choice"),
        "best": v.get("best"),
        "settled": bool(v.get("settled")),
        "cheapest_within_tolerance": v.get("cheapest_within_tolerance"),
        "comparisons": [
            {"strategy": c.get("strategy"), "status": c.get("status"), "p": c.get("p")}
            for c in v.get("comparisons") or []
        ],
    }


def compare_runs(full: dict[str, Any], adaptive: dict[str, Any]) -> dict[str, Any]:
    """The bench's figures: one row per length of the full sweep, and the totals."""
    rows = []
    for length, f in full["lengths"].items():
        a = adaptive["lengths"].get(length, {"queries": 0, "failed": 0, "tokens": 0, "needles": 0})
        vf = _verdict_brief(full["verdict"].get(length))
        va = _verdict_brief(adaptive["verdict"].get(length))
        # The same verdict: the same strategy to use, and equally sure of it.
        agree = vf is not None and va is not None and vf["choice"] == va["choice"] and vf["settled"] == va["settled"]
        rows.append(
            {
                "length": length,
                "queries_full": f["queries"],
                "queries_adaptive": a["queries"],
                "tokens_full": f["tokens"],
                "tokens_adaptive": a["tokens"],
                "token_ratio": a["tokens"] / f["tokens"] if f["tokens"] else None,
                "needles_full": f["needles"],
                "needles_adaptive": a["needles"],
                "failed_full": f["failed"],
                "failed_adaptive": a["failed"],
                "verdict_full": vf,
                "verdict_adaptive": va,
                "agree": agree,
            }
        )
    tf = sum(r["tokens_full"] for r in rows)
    ta = sum(r["tokens_adaptive"] for r in rows)
    ratio = ta / tf if tf else None
    agreeing = sum(r["agree"] for r in rows)
    total = {
        "queries_full": sum(r["queries_full"] for r in rows),
        "queries_adaptive": sum(r["queries_adaptive"] for r in rows),
        "tokens_full": tf,
        "tokens_adaptive": ta,
        "token_ratio": ratio,
        "lengths": len(rows),
        "lengths_agreeing": agreeing,
        "both_settled": sum(
            bool(
                r["verdict_full"]
                and r["verdict_full"]["settled"]
                and r["verdict_adaptive"]
                and r["verdict_adaptive"]["settled"]
            )
            for r in rows
        ),
        "target_ratio": TARGET_RATIO,
    }
    total["target_met"] = bool(rows) and agreeing == len(rows) and ratio is not None and ratio <= TARGET_RATIO
    return {"rows": rows, "total": total}


# ---------------------------------------------------------------------------- printing
def _verdict_text(v: dict[str, Any] | None) -> str:
    if v is None:
        return "-"
    return f"{v['choice']} ({'settled' if v['settled'] else 'unsettled'})"


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def table(result: dict[str, Any]) -> str:
    """A markdown table (pastes into an issue or a PR as is) and the total line."""
    head = [
        "length",
        "queries full",
        "queries adaptive",
        "tokens full",
        "tokens adaptive",
        "ratio",
        "needles adaptive / full",
        "full verdict",
        "adaptive verdict",
        "agree",
    ]
    body = []
    for r in result["rows"]:
        body.append(
            [
                f"{r['length']:,}",
                f"{r['queries_full']:,}",
                f"{r['queries_adaptive']:,}",
                f"{r['tokens_full']:,}",
                f"{r['tokens_adaptive']:,}",
                _ratio(r["token_ratio"]),
                f"{r['needles_adaptive']} / {r['needles_full']}",
                _verdict_text(r["verdict_full"]),
                _verdict_text(r["verdict_adaptive"]),
                "yes" if r["agree"] else "NO",
            ]
        )
    t = result["total"]
    body.append(
        [
            "**all**",
            f"{t['queries_full']:,}",
            f"{t['queries_adaptive']:,}",
            f"{t['tokens_full']:,}",
            f"{t['tokens_adaptive']:,}",
            f"**{_ratio(t['token_ratio'])}**",
            "",
            "",
            "",
            f"{t['lengths_agreeing']}/{t['lengths']}",
        ]
    )
    widths = [max(len(head[i]), *(len(row[i]) for row in body)) for i in range(len(head))]
    right = {1, 2, 3, 4, 5}

    def line(cells):
        return (
            "| "
            + " | ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
            + " |"
        )

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    out = [line(head), sep, *(line(row) for row in body), ""]
    ratio = t["token_ratio"]
    out.append(
        f"tokens: adaptive {t['tokens_adaptive']:,} / full {t['tokens_full']:,} = {_ratio(ratio)}"
        f"{f' ({1 / ratio:.1f}x fewer)' if ratio and ratio < 1 else ''}; "
        f"same verdict at {t['lengths_agreeing']}/{t['lengths']} "
        f"lengths (both settled at {t['both_settled']}); target (same verdict at every length, ratio <= 1/3): "
        f"{'MET' if t['target_met'] else 'NOT MET'}"
    )
    return "\n".join(out)


# ---------------------------------------------------------------------------- running
def check_strategies(specs_text: str) -> list[str]:
    from harness import registry
    from harness.cli import split_strategies
    from harness.errors import HarnessError
    from harness.strategy import build_params, parse_spec

    try:
        specs = split_strategies([specs_text])
        if not specs:
            raise BenchError("--strategies: give at least one strategy")
        for spec in specs:
            name, raw = parse_spec(spec)
            cls = registry.get("strategy", name)
            build_params(cls.Params, raw, f"strategy {spec}")
    except HarnessError as e:
        raise BenchError(str(e)) from None
    return specs


def check_grid(lengths: str, depths: str) -> None:
    from harness.cli import parse_depths, parse_lengths
    from harness.errors import HarnessError

    try:
        parse_lengths(lengths)
        parse_depths(depths)
    except HarnessError as e:
        raise BenchError(str(e)) from None


def check_endpoint(url: str, api_key_env: str) -> None:
    import httpx

    headers = {}
    if os.environ.get(api_key_env):
        headers["Authorization"] = f"Bearer {os.environ[api_key_env]}"
    try:
        httpx.get(url.rstrip("/") + "/models", headers=headers, timeout=10)
    except httpx.HTTPError as e:  # any HTTP answer (even 401/404) means something is there
        raise BenchError(f"endpoint {url} is unreachable ({type(e).__name__}: {e or 'no answer'})") from None
    except (httpx.InvalidURL, ValueError) as e:
        raise BenchError(f"endpoint {url!r} is not a URL ({e})") from None


def has_until_decided() -> bool:
    p = subprocess.run(
        [sys.executable, "-m", "harness.cli", "compare", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, COLUMNS="200"),
    )
    return "--until-decided" in p.stdout


def harness_compare(args: list[str], log: Path, what: str) -> float:
    """Run `harness compare ARGS`, output to `log`; its wall seconds. A failure is one line."""
    cmd = [sys.executable, "-m", "harness.cli", "compare", *args]
    t0 = time.monotonic()
    print(f"{what}: harness compare {' '.join(args)}", file=sys.stderr, flush=True)
    with open(log, "w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
        try:
            rc = p.wait()
        except KeyboardInterrupt:
            os.killpg(p.pid, signal.SIGINT)
            p.wait()
            raise
    wall = time.monotonic() - t0
    if rc != 0:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        errs = [ln for ln in lines if ln.lower().startswith("error")]
        last = (errs or lines or ["(no output)"])[-1]
        raise BenchError(f"{what} run failed (exit {rc}): {last}  [log: {log}]")
    print(f"{what}: done in {wall:.0f} s", file=sys.stderr, flush=True)
    return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--endpoint", default=None, help="an OpenAI-compatible server (default: start bench/sim_reader.py)")
    ap.add_argument("--model", default=None, help="served model name (default with the simulated reader: gemma-3-270m)")
    ap.add_argument("--api", default="completions", choices=["completions", "chat"])
    ap.add_argument("--api-key-env", default="OPENAI_API_KEY")
    ap.add_argument("--strategies", default="full-context,rag-dense")
    ap.add_argument("--lengths", default="1k,2k,4k,8k")
    ap.add_argument("--depths", default="0,25,50,75,100")
    ap.add_argument("--needles-full", type=int, default=32, help="needles per cell of the full sweep (= --max-needles)")
    ap.add_argument(
        "--first-round",
        type=int,
        default=None,
        help="needles of the adaptive run's first round (default: the harness's own choice)",
    )
    ap.add_argument("--alpha", type=float, default=0.05)
    ap.add_argument("--tolerance", type=float, default=2.0, help="accuracy points (as harness compare --tolerance)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--concurrency", type=int, default=None, help="harness compare --concurrency")
    ap.add_argument(
        "--prices",
        type=Path,
        default=None,
        help="price table for both runs (default with the simulated reader: per-token prices written into DIR)",
    )
    ap.add_argument("--base", type=float, default=0.97, help="simulated reader: accuracy at zero length")
    ap.add_argument("--decay", type=float, default=0.04, help="simulated reader: accuracy lost per 1k tokens")
    ap.add_argument("--middle", type=float, default=0.15, help="simulated reader: lost-in-the-middle penalty")
    ap.add_argument("--out", type=Path, default=None, help="bench folder (DIR/full, DIR/adaptive, DIR/bench.json)")
    ap.add_argument("--report-only", action="store_true", help="read DIR/full and DIR/adaptive; run nothing")
    a = ap.parse_args(argv)
    try:
        return run(a)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def run(a: argparse.Namespace) -> int:
    if a.report_only:
        if a.out is None:
            raise BenchError("--report-only needs --out DIR (a folder an earlier bench wrote)")
        return report(a.out, None)
    if a.needles_full < 1:
        raise BenchError("--needles-full must be at least 1")
    if a.first_round is not None and not 1 <= a.first_round <= a.needles_full:
        raise BenchError("--first-round must be between 1 and --needles-full")
    if not 0 < a.alpha < 1:
        raise BenchError("--alpha must be between 0 and 1")
    if not 0 <= a.tolerance <= 100:
        raise BenchError("--tolerance is in accuracy points, 0-100")
    if a.prices is not None and not a.prices.is_file():
        raise BenchError(f"--prices {a.prices}: no such file")
    strategies = check_strategies(a.strategies)
    check_grid(a.lengths, a.depths)
    if a.endpoint and not a.model:
        raise BenchError("--endpoint needs --model NAME (the served model name)")
    if not has_until_decided():
        raise BenchError("this harness has no `compare --until-decided` (issue 7) yet")
    if a.endpoint:
        check_endpoint(a.endpoint, a.api_key_env)

    out = a.out or Path(tempfile.mkdtemp(prefix="bench-adaptive-"))
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("full", "adaptive"):
        if (out / sub / "records.jsonl").exists():
            raise BenchError(f"{out / sub} already holds a run; give a fresh --out (or --report-only to re-read it)")
    model = a.model or "gemma-3-270m"
    proc = None
    try:
        if a.endpoint:
            url = a.endpoint
        else:
            import sim_reader

            proc, url = sim_reader.start_subprocess(
                "--seed",
                str(a.seed),
                "--max-needles",
                str(a.needles_full),
                "--model",
                model,
                "--base",
                str(a.base),
                "--decay",
                str(a.decay),
                "--middle",
                str(a.middle),
            )
            print(
                f"simulated reader at {url} (base {a.base}, decay {a.decay}/1k tokens, middle {a.middle})",
                file=sys.stderr,
                flush=True,
            )
        prices = a.prices
        if prices is None and not a.endpoint:
            prices = out / "prices.yaml"
            prices.write_text(SIM_PRICES.format(model=json.dumps(model)))
        common = [
            "--endpoint",
            url,
            "--model",
            model,
            "--api",
            a.api,
            "--api-key-env",
            a.api_key_env,
            "--strategies",
            ",".join(strategies),
            "--lengths",
            a.lengths,
            "--depths",
            a.depths,
            "--seed",
            str(a.seed),
            "--alpha",
            str(a.alpha),
            "--tolerance",
            str(a.tolerance),
            "--no-cache",
        ]
        if a.concurrency:
            common += ["--concurrency", str(a.concurrency)]
        if prices is not None:
            common += ["--prices", str(prices)]
        walls = {}
        walls["full"] = harness_compare(
            common + ["--needles", str(a.needles_full), "--out", str(out / "full")], out / "full.log", "full sweep"
        )
        adaptive = common + ["--until-decided", "--max-needles", str(a.needles_full)]
        if a.first_round is not None:
            adaptive += ["--needles", str(a.first_round)]
        walls["adaptive"] = harness_compare(
            adaptive + ["--out", str(out / "adaptive")], out / "adaptive.log", "adaptive run"
        )
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()
    settings = {
        "endpoint": a.endpoint or "simulated reader",
        "model": model,
        "api": a.api,
        "strategies": strategies,
        "lengths": a.lengths,
        "depths": a.depths,
        "needles_full": a.needles_full,
        "first_round": a.first_round,
        "alpha": a.alpha,
        "tolerance": a.tolerance,
        "seed": a.seed,
        "prices": str(prices) if prices else None,
        "wall_s": {k: round(v, 1) for k, v in walls.items()},
    }
    if not a.endpoint:
        settings["simulated_reader"] = {"base": a.base, "decay": a.decay, "middle": a.middle}
    return report(out, settings)


def settings_line(st: dict[str, Any]) -> str:
    sim = st.get("simulated_reader")
    who = (
        f"simulated reader (base {sim['base']}, decay {sim['decay']}/1k tokens, middle {sim['middle']})"
        if sim
        else f"{st.get('endpoint')} ({st.get('api')})"
    )
    wall = st.get("wall_s") or {}
    first = st.get("first_round")
    return (
        f"model {st.get('model')} on {who}; strategies {', '.join(st.get('strategies') or [])}; "
        f"lengths {st.get('lengths')}; depths {st.get('depths')}; seed {st.get('seed')}; "
        f"full sweep {st.get('needles_full')} needles; adaptive up to {st.get('needles_full')}"
        f"{f', first round {first}' if first else ''}; alpha {st.get('alpha')}; "
        f"tolerance {st.get('tolerance')} pts; "
        f"wall: full {wall.get('full', 0):.0f} s, adaptive {wall.get('adaptive', 0):.0f} s"
    )


def report(out: Path, settings: dict[str, Any] | None) -> int:
    full = read_run(out / "full")
    adaptive = read_run(out / "adaptive")
    result = compare_runs(full, adaptive)
    if settings is None and (out / "bench.json").is_file():
        try:
            settings = json.loads((out / "bench.json").read_text()).get("settings")
        except ValueError:
            settings = None
    doc = {"settings": settings, "full": str(out / "full"), "adaptive": str(out / "adaptive"), **result}
    (out / "bench.json").write_text(json.dumps(doc, indent=2) + "\n")
    if settings:
        print(settings_line(settings))
        print()
    print(table(result))
    print(f"\nfigures: {out / 'bench.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
