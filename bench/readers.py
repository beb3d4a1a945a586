"""A tuned reader against the base model on every built-in scenario, through the real path: vLLM, `harness.api.compare`.

    flock /tmp/harness-heavy.lock .venv/bin/python bench/readers.py --adapter DIR --readers base,tuned --needles 4
    .venv/bin/python bench/readers.py --readers base --quick --scenarios kv-retrieval,bio-aggregate    # smoke
    .venv/bin/python bench/readers.py --adapter scenarios/bio_needle/reader --readers tuned --quick --scenarios bio-needle

Prints, paste-ready (markdown), one table per scenario and grid: reader | strategy | length | n |
accuracy % [95% interval over needles, as summary.json and compare's terminal table hold it] | null %
(the run's chance level), with the reader each run recorded (config.yaml `reader`: tuned or not, shots).
The grids (strategies full-context and rag-dense, depths 0/50/100, --needles per depth, unless said):

  kv-retrieval   variant=uuid and variant=multi_subkey at 1k and 4k
  bio-mdqa       documents=20 at 1k, depths 0/25/50/75/100: accuracy by gold position (Lost in the
                 Middle's U, or its absence)
  bio-aggregate  question=count at 1k and 2k (exact match beside chance level); question=list at 1k and 2k
                 (set-F1 per query from its precision and recall, rag-dense's gold recall and coverage)
  bio-needle     1k and 4k, with self-route and the agentic arm (the multi-call strategies' reading)
  bio-multihop   1k and 2k, with the agentic arm too (--no-agentic drops it)

Each reader is served once (--max-model-len, default 8,192: 4k contexts, shots and the answer fit)
and every grid is a `compare --endpoint` against it, into its own run folder under --out/<reader>/.
Shots are compare's default for the reader it resolves (harness/reader.py resolve_reader): the base
2, a tuned reader 0 where it was trained. Behind --endpoint compare knows a tuned reader only by its
served name (a shipped reader's): an adapter that name does not lead back to is instead given to
compare as `EndpointConfig(adapter=DIR)`, which starts a server for every grid (slower, said so).

How long (2 cores, avx512_bf16, load average 3-5 from a training beside it): a server start is
1.3-1.7 min; --quick (1 needle, the first length of each grid) took 0.4-1.2 min a scenario for one
reader (base on kv-retrieval + bio-aggregate: 3.3 min with the start; base on bio-mdqa + bio-multihop:
2.3 min; tuned on bio-needle: 2.3 min). The full grid with --needles 4 is about 330 queries a reader
(48 of them at 4k, multihop's agent several calls each): estimated from the smokes, not measured, at
about an hour a reader, one to two hours for base,tuned; more where compare has to start the tuned
reader for every grid. Not CI. Note the load average printed beside every time. Start it under
`flock /tmp/harness-heavy.lock` on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SCENARIOS = ["kv-retrieval", "bio-mdqa", "bio-aggregate", "bio-needle", "bio-multihop"]
FC_RAG = ["full-context", "rag-dense"]
D3 = [0.0, 50.0, 100.0]
D5 = [0.0, 25.0, 50.0, 75.0, 100.0]


@dataclass
class Grid:
    """One compare: a scenario with its parameters over lengths x depths x strategies."""

    scenario: str
    label: str  # the parameters in words, "variant=uuid"; "" for the defaults
    params: dict[str, Any]
    lengths: list[int]
    depths: list[float]
    strategies: list[str]
    kind: str = "plain"  # plain | depth (accuracy by depth) | list (set-F1)

    @property
    def slug(self) -> str:
        return self.scenario + ("-" + self.label.replace("=", "-") if self.label else "")

    @property
    def title(self) -> str:
        return f"{self.scenario} ({self.label})" if self.label else self.scenario


def plan(agentic: bool) -> list[Grid]:
    multihop = FC_RAG + (["agentic"] if agentic else [])
    return [
        Grid("kv-retrieval", "variant=uuid", {"variant": "uuid"}, [1000, 4000], D3, FC_RAG),
        Grid("kv-retrieval", "variant=multi_subkey", {"variant": "multi_subkey"}, [1000, 4000], D3, FC_RAG),
        Grid("bio-mdqa", "documents=20", {"documents": 20}, [1000], D5, FC_RAG, kind="depth"),
        Grid("bio-aggregate", "question=count", {"question": "count"}, [1000, 2000], D3, FC_RAG),
        Grid("bio-aggregate", "question=list", {"question": "list"}, [1000, 2000], D3, FC_RAG, kind="list"),
        Grid("bio-needle", "", {}, [1000, 4000], D3, FC_RAG + ["self-route"] + (["agentic"] if agentic else [])),
        Grid("bio-multihop", "", {}, [1000, 2000], D3, multihop),
    ]


@dataclass
class Result:
    """One grid's compare for one reader, read back from its run folder."""

    reader: str
    grid: Grid
    out: Path
    wall_s: float = 0.0
    load_after: str = ""
    rows: list[dict[str, Any]] = field(default_factory=list)  # summary.by_strategy_length
    cells: list[dict[str, Any]] = field(default_factory=list)  # summary.by_cell
    null: dict[str, Any] = field(default_factory=dict)
    null_source: str | None = None
    recorded: dict[str, Any] | None = None  # config.yaml `reader`
    served: str | None = None  # the served model name the run recorded
    f1: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)  # list questions
    documents: float | None = None  # bio-mdqa: mean biographies per context
    agents: list[dict[str, Any]] = field(default_factory=list)  # summary.agents (agentic arms)
    routes: list[dict[str, Any]] = field(default_factory=list)  # summary.routes (self-route)
    error: str | None = None


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def cpu_flags() -> str:
    """`grep -o -m1 -E 'avx512_bf16|amx_bf16' /proc/cpuinfo`, as the shell prints it."""
    try:
        out = subprocess.run(
            ["grep", "-o", "-m1", "-E", "avx512_bf16|amx_bf16", "/proc/cpuinfo"], capture_output=True, text=True
        ).stdout.split()
    except OSError:
        return "(grep failed)"
    return " ".join(out) if out else "(neither: no native bf16 on this CPU)"


def pct(x: Any, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.{digits}f}"


def acc_cell(row: dict[str, Any] | None, key: str = "accuracy") -> str:
    """'26.7 [6.7–46.7]': the value and its 95% interval over needles, as compare's table prints them."""
    from harness.report.verdict import interval

    if row is None or row.get(key) is None:
        return "-"
    ci = interval(row.get(f"{key}_lo"), row.get(f"{key}_hi"))
    return f"{pct(row[key])} {ci}".strip()


def set_f1(run_dir: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """Per strategy and length: mean precision, recall and per-query set-F1 (2PR/(P+R), 0 when both are
    0), with F1's 95% interval resampling needles (a needle's value: its mean over depths), as the summary's."""
    from harness.report.stats import bootstrap_ci
    from harness.store import RunStore

    groups: dict[tuple[str, int], dict[int, list[float]]] = {}
    pr: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for r in RunStore(run_dir).latest_records():
        p, rc = float(r.marks.get("precision", 0.0)), float(r.marks.get("recall", 0.0))
        f1 = 2 * p * rc / (p + rc) if p + rc else 0.0
        groups.setdefault((r.strategy, r.length), {}).setdefault(r.needle_index, []).append(f1)
        pr.setdefault((r.strategy, r.length), []).append((p, rc))
    out = {}
    for key, needles in groups.items():
        per_needle = [sum(v) / len(v) for v in needles.values()]
        all_f1 = [x for v in needles.values() for x in v]
        lo, hi = bootstrap_ci(per_needle)
        ps, rs = zip(*pr[key])
        out[key] = {
            "n": len(all_f1),
            "precision": sum(ps) / len(ps),
            "recall": sum(rs) / len(rs),
            "f1": sum(all_f1) / len(all_f1),
            "f1_lo": lo,
            "f1_hi": hi,
        }
    return out


def mdqa_documents(run_dir: Path) -> float | None:
    from harness.store import RunStore

    docs = [s.meta.get("documents") for s in RunStore(run_dir).read_samples() if s.meta.get("documents")]
    return sum(docs) / len(docs) if docs else None


def run_grid(ec, res: Result, needles: int, use_cache: bool) -> None:
    from harness.api import compare
    from harness.config import RunConfig
    from harness.runfiles import load_run
    from harness.ui import console

    g = res.grid
    config = RunConfig(
        scenario=g.scenario,
        scenario_params=g.params,
        strategies=g.strategies,
        lengths=g.lengths,
        depths=g.depths,
        needles=needles,
        endpoint=ec,
        out=res.out,
    )  # shots: None, so compare decides them for the reader it resolves
    t0 = time.monotonic()
    stdout, console.file = console.file, sys.stderr  # compare's own tables to stderr: stdout is the bench's
    try:
        compare(config, use_cache=use_cache)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # one failed grid must not lose the hours the others took
        res.error = f"{type(e).__name__}: {e}"
        traceback.print_exc()
    finally:
        console.file = stdout
    res.wall_s = time.monotonic() - t0
    res.load_after = load()
    try:
        run = load_run(res.out)
    except Exception as e:
        res.error = res.error or f"{type(e).__name__}: {e}"
        return
    res.recorded = run.manifest.reader
    res.served = run.manifest.model
    if run.summary is not None:
        res.rows = run.summary.by_strategy_length
        res.cells = run.summary.by_cell
        res.null = run.summary.null_baseline or {}
        res.null_source = run.summary.null_source
        res.agents = run.summary.agents
        res.routes = run.summary.routes
    if g.kind == "list":
        res.f1 = set_f1(res.out)
    if g.scenario == "bio-mdqa":
        res.documents = mdqa_documents(res.out)


def reader_endpoint(reader: str, adapter: Path | None, a) -> tuple[Any, Any, str | None]:
    """(server or None, EndpointConfig, note): the reader served once, or (for an adapter compare could not
    recognise behind --endpoint) an EndpointConfig that makes compare start it for every grid."""
    from harness.api import launch_server, shipped_reader
    from harness.config import EndpointConfig
    from harness.endpoints.vllm_server import ServerOptions
    from harness.finetune.merge import read_provenance

    common = {"concurrency": a.concurrency, "timeout_s": 3600}
    if reader == "tuned":
        info = read_provenance(adapter)
        shipped = shipped_reader(info["served_name"])
        if shipped is None or read_provenance(shipped)["adapter_sha256"] != info["adapter_sha256"]:
            note = (
                f"{adapter}: its served name {info['served_name']} does not lead compare back to this adapter behind "
                "--endpoint, so compare starts it itself for every grid (EndpointConfig(adapter=...))"
            )
            return None, EndpointConfig(adapter=str(adapter), max_model_len=a.max_model_len, **common), note
    opts = ServerOptions(max_model_len=a.max_model_len, adapter=str(adapter) if reader == "tuned" else None)
    server = launch_server(opts, None)
    ec = EndpointConfig(url=server.base_url, model=server.model, api="completions", **common)
    return server, ec, None


# -- printing ------------------------------------------------------------------------------------------
def reader_line(results: list[Result]) -> str:
    """Who answered each run, as config.yaml recorded it."""
    seen = []
    for r in results:
        rec = r.recorded or {}
        if not rec:
            continue
        what = "tuned" if rec.get("tuned") else "base"
        trained = (rec.get("adapter") or {}).get("scenario")
        s = f"{r.reader}: {r.served}, recorded as {what}" + (f" (trained on {trained})" if trained else "")
        s += f", {rec.get('shots')} shots"
        if s not in seen:
            seen.append(s)
    return "; ".join(seen)


def plain_table(results: list[Result]) -> list[str]:
    lines = ["| reader | strategy | length | n | accuracy % [95% interval] | null % |", "|---|---|---|---|---|---|"]
    for r in results:
        if r.error and not r.rows:
            lines.append(f"| {r.reader} | (failed: {r.error[:80]}) | | | | |")
        for row in r.rows:
            lines.append(
                f"| {r.reader} | {row['strategy']} | {row['length']:,} | {row['n']} | {acc_cell(row)} | "
                f"{pct(r.null.get('accuracy'))} |"
            )
    return lines


def depth_table(results: list[Result]) -> list[str]:
    depths = sorted({c["depth"] for r in results for c in r.cells})
    head = ["reader", "strategy", "length", *(f"depth {d:g}" for d in depths), "ends − middle (pts)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        keys = list(dict.fromkeys((c["strategy"], c["length"]) for c in r.cells))
        for s, length in keys:
            by = {c["depth"]: c for c in r.cells if c["strategy"] == s and c["length"] == length}
            ends = [by[d]["accuracy"] for d in (min(depths), max(depths)) if d in by]
            mid = [by[d]["accuracy"] for d in depths if d not in (min(depths), max(depths)) and d in by]
            gap = f"{100 * (sum(ends) / len(ends) - sum(mid) / len(mid)):+.1f}" if ends and mid else "-"
            cells = [acc_cell(by.get(d)) for d in depths]
            lines.append(f"| {r.reader} | {s} | {length:,} | " + " | ".join(cells) + f" | {gap} |")
    return lines


def list_table(results: list[Result]) -> list[str]:
    lines = [
        "| reader | strategy | length | n | precision % | recall % | set-F1 % [95% interval] | "
        "gold recall % | needle coverage % |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    from harness.report.verdict import interval

    for r in results:
        for row in r.rows:
            f = r.f1.get((row["strategy"], row["length"]), {})
            f1 = f"{pct(f.get('f1'))} {interval(f.get('f1_lo'), f.get('f1_hi'))}".strip() if f else "-"
            retrieves = row["strategy"] != "full-context"
            lines.append(
                f"| {r.reader} | {row['strategy']} | {row['length']:,} | {row['n']} | {acc_cell(row, 'precision')} | "
                f"{acc_cell(row, 'recall')} | {f1} | {pct(row.get('needle_recall')) if retrieves else '-'} | "
                f"{pct(row.get('needle_coverage')) if retrieves else '-'} |"
            )
    return lines


def multicall_table(results: list[Result]) -> list[str]:
    """The multi-call arms' behaviour over the whole grid: agents' actions, the route against its oracle."""
    lines = [
        "| reader | strategy | n | searched subject % | valid actions % | search hit % | steps to first hit | "
        "route accuracy % (vs oracle) | said answerable: oracle yes / no | said not: oracle yes / no | "
        "token share of full context % |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for a in r.agents:
            lines.append(
                f"| {r.reader} | {a['strategy']} | {a['n']} | {pct(a.get('searched_subject'))} | "
                f"{pct(a.get('valid_actions'))} | {pct(a.get('search_hit'))} | "
                f"{'-' if a.get('steps_to_first_hit') is None else format(a['steps_to_first_hit'], '.1f')} | - | - | - | "
                f"{pct(a.get('token_share'))} |"
            )
        for o in r.routes:
            c = o.get("route_confusion") or {}
            lines.append(
                f"| {r.reader} | {o['strategy']} | {o['n']} | - | - | - | - | {pct(o.get('route_accuracy'))} | "
                f"{c.get('answerable/answerable', 0)} / {c.get('answerable/not', 0)} | "
                f"{c.get('not/answerable', 0)} / {c.get('not/not', 0)} | {pct(o.get('token_share'))} |"
            )
    return lines


def print_report(report: dict, results: list[Result], grids: list[Grid], a) -> None:
    scenarios = ", ".join(dict.fromkeys(g.scenario for g in grids))
    needles = f"{a.needles} needle{'s' if a.needles != 1 else ''} per depth" + (" (--quick)" if a.quick else "")
    print(f"\n## Readers: {', '.join(a.readers)} on {scenarios}, {needles}\n")
    if report.get("adapter"):
        ad = report["adapter"]
        print(
            f"- tuned reader: {ad['path']} (served as {ad['served_name']}; trained on {ad['trained_on']}, "
            f"{ad['steps']} steps, loss {ad['final_loss']} / {ad['eval_loss']} held-out)"
        )
    for note in report["notes"]:
        print(f"- note: {note}")
    print(f"- CPU: `grep -o -m1 -E 'avx512_bf16|amx_bf16' /proc/cpuinfo` → {report['cpu_flags']}; {report['cores']}")
    print(f"- load average 1/5/15 min: start {report['load_start']}, end {report['load_end']}")
    print(f"- served window {a.max_model_len:,} tokens; run folders under {a.out}")
    for scenario in dict.fromkeys(g.scenario for g in grids):
        mine = [g for g in grids if g.scenario == scenario]
        wall = sum(r.wall_s for r in results if r.grid.scenario == scenario)
        per = ", ".join(
            f"{reader} {sum(r.wall_s for r in results if r.grid.scenario == scenario and r.reader == reader):.0f} s"
            for reader in a.readers
        )
        print(f"\n### {scenario} (wall {wall / 60:.1f} min: {per})")
        for g in mine:
            rs = [r for r in results if r.grid is g]
            print(f"\n#### {g.title}\n" if len(mine) > 1 or g.label else "")
            print("\n".join(plain_table(rs)))
            if g.kind == "depth":
                docs = [f"{r.reader} {r.documents:.1f}" for r in rs if r.documents]
                print(
                    "\nAccuracy % [95% interval] by gold position (depth 0: first document, 100: last)"
                    + (f"; biographies per context: {', '.join(docs)}" if docs else "")
                    + "\n"
                )
                print("\n".join(depth_table(rs)))
            if g.kind == "list":
                print(
                    "\nSet-F1 per query (from its precision and recall), gold recall and coverage of the retrieval arm\n"
                )
                print("\n".join(list_table(rs)))
            if any(r.agents or r.routes for r in rs):
                print("\nThe multi-call arms, every length together (summary.json `agents`, `routes`)\n")
                print("\n".join(multicall_table(rs)))
            nulls = {r.null_source for r in rs if r.null_source}
            print(f"\nreaders as recorded: {reader_line(rs) or '-'}")
            if nulls:
                print(f"null: {'; '.join(sorted(nulls))}")
            print("walls: " + ", ".join(f"{r.reader} {r.wall_s:.0f} s (load after {r.load_after})" for r in rs))
            for r in rs:
                if r.error:
                    print(f"error ({r.reader}): {r.error}")
    starts = ", ".join(f"{k} {v:.0f} s" for k, v in report["server_start_s"].items())
    print(
        f"\nwhole run: {report['wall_s'] / 60:.1f} min (server starts: {starts or '-'}); "
        f"load average at start {report['load_start']}, at end {report['load_end']}"
    )


def main() -> None:
    from harness.finetune.merge import read_provenance

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", type=Path, default=None, help="the tuned reader's adapter folder (harness finetune)")
    ap.add_argument("--readers", default="base,tuned", help="base and/or tuned, in order")
    ap.add_argument("--needles", type=int, default=4, help="needles per depth (4: 12 items a row at 3 depths)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS), help="a subset of " + ",".join(SCENARIOS))
    ap.add_argument("--quick", action="store_true", help="a smoke: 1 needle, the first length of each grid")
    ap.add_argument("--no-agentic", action="store_true", help="bio-multihop without the agentic arm")
    ap.add_argument("--max-model-len", type=int, default=8192, help="served window (4k contexts + shots + answer)")
    ap.add_argument("--concurrency", type=int, default=2, help="requests in flight")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="default results/bench-readers/<time>")
    a = ap.parse_args()
    a.out = a.out or Path("results/bench-readers") / time.strftime("%Y%m%d-%H%M%S")
    a.readers = [r.strip() for r in a.readers.split(",") if r.strip()]
    if bad := [r for r in a.readers if r not in ("base", "tuned")]:
        ap.error(f"--readers: base or tuned, not {', '.join(bad)}")
    if "tuned" in a.readers and a.adapter is None:
        ap.error("--readers tuned needs --adapter DIR")
    scenarios = [s.strip() for s in a.scenarios.split(",") if s.strip()]
    if bad := [s for s in scenarios if s not in SCENARIOS]:
        ap.error(f"--scenarios: unknown {', '.join(bad)} (choose from {', '.join(SCENARIOS)})")
    if a.quick:
        a.needles = 1
    grids = [g for g in plan(not a.no_agentic) if g.scenario in scenarios]
    grids.sort(key=lambda g: scenarios.index(g.scenario))
    if a.quick:
        for g in grids:
            g.lengths = g.lengths[:1]

    t_all = time.monotonic()
    report: dict[str, Any] = {
        "bench": "readers",
        "argv": sys.argv[1:],
        "load_start": load(),
        "cpu_flags": cpu_flags(),
        "cores": f"{len(os.sched_getaffinity(0))} cores allowed",
        "notes": [],
        "server_start_s": {},
    }
    if a.adapter is not None and "tuned" in a.readers:
        info = read_provenance(a.adapter)
        trained = list(dict.fromkeys(t.get("scenario") for t in info.get("trained_on") or [])) or [info.get("scenario")]
        report["adapter"] = {
            "path": str(a.adapter),
            "served_name": info["served_name"],
            "trained_on": ", ".join(map(str, trained)),
            "steps": info.get("steps"),
            "final_loss": info.get("final_loss"),
            "eval_loss": info.get("eval_loss"),
            "sha256": info.get("adapter_sha256"),
        }

    results: list[Result] = []
    for reader in a.readers:
        t0 = time.monotonic()
        server, ec, note = reader_endpoint(reader, a.adapter, a)
        if note:
            report["notes"].append(note)
            print(f"note: {note}", file=sys.stderr)
        else:
            report["server_start_s"][reader] = time.monotonic() - t0
        try:
            for g in grids:
                res = Result(reader, g, a.out / reader / g.slug)
                print(
                    f"[{reader}] {g.title}: {', '.join(g.strategies)} at {g.lengths} (load {load()})", file=sys.stderr
                )
                run_grid(ec, res, a.needles, not a.no_cache)
                results.append(res)
        finally:
            if server is not None:
                server.stop()
    report["load_end"] = load()
    report["wall_s"] = time.monotonic() - t_all

    print_report(report, results, grids, a)
    a.out.mkdir(parents=True, exist_ok=True)
    report["results"] = [
        {
            "reader": r.reader,
            "scenario": r.grid.scenario,
            "params": r.grid.params,
            "run": str(r.out),
            "wall_s": round(r.wall_s, 1),
            "load_after": r.load_after,
            "reader_recorded": r.recorded,
            "rows": r.rows,
            "by_cell": r.cells if r.grid.kind == "depth" else None,
            "set_f1": {f"{s}@{n}": v for (s, n), v in r.f1.items()} or None,
            "null": r.null,
            "error": r.error,
        }
        for r in results
    ]
    (a.out / "bench.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"\nbench.json: {a.out / 'bench.json'}")


if __name__ == "__main__":
    main()
