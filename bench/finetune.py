"""The tuned reader against the base, through the real path: merged model on vLLM, `harness.api.compare`.

    .venv/bin/python bench/finetune.py                  # the shipped adapter (scenarios/bio_needle/reader) vs the base
    .venv/bin/python bench/finetune.py --train          # `harness finetune` with its defaults first, timed
    .venv/bin/python bench/finetune.py --adapter DIR --needles 4 --curve 2k,4k,8k,16k --readers tuned

Prints, paste-ready (markdown): training time and adapter size; mean and per-field accuracy of each
reader with full-context and rag-dense at 1k tokens on the test split, on needles written only with
seen forms and only with held-out forms (scenario parameter `forms`); the curve over longer
haystacks (trained up to 2k; Gemma 3's native window, 32,768, holds 16k, so no RoPE extension is
needed up to there: `--max-model-len` extends it with YaRN past that); and route accuracy in the
answerable form (self-route): answerable when the needle is shown, not when it is taken out.

Each reader is served once (`--max-model-len`, default the native window) and every compare runs
against it (`compare --endpoint`), each into its own run folder under --out. Shots: the base gets
compare's default for a base reader (2), the tuned reader 0 (it was trained zero-shot). Minutes to
hours on a shared 2-core CPU: not CI. Note the load average printed beside every time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIELDS = ["nationality", "date_of_birth", "date_of_death", "sportsperson", "politician"]
SHORT = {
    "nationality": "nat",
    "date_of_birth": "born",
    "date_of_death": "died",
    "sportsperson": "sport",
    "politician": "pol",
}


def load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def run_compare(ec, out: Path, lengths, depths, needles, shots, forms, strategies, use_cache):
    from harness.api import compare
    from harness.config import RunConfig
    from harness.runfiles import load_run

    config = RunConfig(
        strategies=strategies,
        lengths=lengths,
        depths=depths,
        needles=needles,
        shots=shots,
        scenario_params={"forms": forms} if forms != "all" else {},
        endpoint=ec,
        out=out,
    )
    t0 = time.monotonic()
    compare(config, use_cache=use_cache)
    return load_run(out).summary.by_strategy_length, time.monotonic() - t0


def route_accuracy(ec, n_needles: int, length: int) -> dict:
    """Answerable-form prompts at `length` (full context), needle shown and taken out: how often the reader
    routes right (answerable iff shown), and the fields when it answers a shown needle."""
    import httpx

    from harness.api import build_scenario
    from harness.config import RunConfig
    from harness.endpoints.client import Endpoint
    from harness.prompting import build_prompt
    from harness.scoring.answers import answerable_instructions, answerable_schema, mark, read_answer, read_answerable

    scen = build_scenario(RunConfig())
    endpoint = Endpoint(ec.url, ec.model, "completions", None, 600, 2)
    samples = scen.samples([length], [0, 50, 100], n_needles, endpoint.count_tokens)
    right = {True: [], False: []}
    scores = []
    for s in samples:
        for shown in (True, False):
            docs = s.documents if shown else [d for d in s.documents if d.id not in set(s.gold_ids)]
            prompt = build_prompt(answerable_instructions(scen), [], "\n\n".join(d.text for d in docs), s.question)
            path, body = endpoint.request(prompt, answerable_schema(scen), 160)
            text = httpx.post(ec.url.rstrip("/") + path, json=body, timeout=600).json()["choices"][0]["text"]
            answerable, wire, _ = read_answerable(text, scen)
            right[shown].append(answerable is shown)
            if shown:
                answer = read_answer(wire, scen)[0] if wire else None
                scores.append(mark(scen, answer, s.gold)[1])
    return {
        "shown": sum(right[True]) / len(right[True]),
        "absent": sum(right[False]) / len(right[False]),
        "n": len(samples),
        "fields_when_shown": sum(scores) / len(scores),
    }


def table(rows: list[dict], keys: list[str]) -> str:
    head = keys + ["mean", *(SHORT[f] for f in FIELDS), "n"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = (
            [str(r[k]) for k in keys]
            + [f"{100 * r['accuracy']:.1f}"]
            + [f"{100 * r[f]:.0f}" for f in FIELDS]
            + [str(r["n"])]
        )
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    from harness.api import launch_server
    from harness.cli import parse_depths, parse_lengths, split_strategies
    from harness.config import EndpointConfig
    from harness.endpoints.vllm_server import ServerOptions
    from harness.finetune.merge import read_provenance

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", action="store_true", help="run `harness finetune` with its defaults first (timed)")
    ap.add_argument("--adapter", type=Path, default=None, help="adapter folder (default: the shipped one)")
    ap.add_argument("--readers", default="base,tuned")
    ap.add_argument("--strategies", default="full-context,rag-dense")
    ap.add_argument("--needles", type=int, default=6, help="needles per depth at 1k (5 depths)")
    ap.add_argument("--curve", default="2k,4k,8k,16k", help="longer lengths (3 depths x --curve-needles)")
    ap.add_argument("--curve-needles", type=int, default=2)
    ap.add_argument("--route-needles", type=int, default=4, help="needles per depth (3 depths) for route accuracy")
    ap.add_argument("--max-model-len", type=int, default=None, help="served window (default: native 32,768)")
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="default results/bench-finetune/<time>")
    a = ap.parse_args()
    a.out = a.out or Path("results/bench-finetune") / time.strftime("%Y%m%d-%H%M%S")
    strategies = split_strategies([a.strategies])
    use_cache = not a.no_cache

    report: dict = {"bench": "finetune", "load_start": load()}
    if a.train:
        from harness.api import finetune
        from harness.finetune.config import FinetuneConfig

        t0 = time.monotonic()
        adapter = finetune(FinetuneConfig(out=a.out / "adapter"), command="harness finetune (bench/finetune.py)")
        report["train_wall_s"] = round(time.monotonic() - t0, 1)
        report["load_after_training"] = load()
    else:
        from scenarios.bio_needle import BioNeedle  # the bench is about this scenario's shipped reader

        adapter = a.adapter or BioNeedle().reader()
    info = read_provenance(adapter)
    size = (Path(adapter) / "adapter_model.safetensors").stat().st_size
    report["adapter"] = {
        "path": str(adapter),
        "mb": round(size / 1e6, 2),
        "steps": info["steps"],
        "examples": info["examples"],
        "train_s": info["train_seconds"],
        "load": info.get("host", {}).get("load_average"),
        "final_loss": info["final_loss"],
        "eval_loss": info["eval_loss"],
        "command": info["command"],
    }

    headline, curve, route = [], [], {}
    for reader in a.readers.split(","):
        opts = ServerOptions(max_model_len=a.max_model_len, adapter=str(adapter) if reader == "tuned" else None)
        shots = 0 if reader == "tuned" else 2
        t0 = time.monotonic()
        server = launch_server(opts, None)
        report[f"{reader}_server_start_s"] = round(time.monotonic() - t0, 1)
        try:
            ec = EndpointConfig(
                url=server.base_url, model=server.model, api="completions", concurrency=2, timeout_s=3600
            )
            for forms in ("all", "seen", "held-out"):
                rows, wall = run_compare(
                    ec,
                    a.out / f"{reader}-1k-{forms}",
                    [1000],
                    parse_depths("0,25,50,75,100"),
                    a.needles,
                    shots,
                    forms,
                    strategies,
                    use_cache,
                )
                headline += [{"reader": reader, "forms": forms, **r} for r in rows]
                report[f"{reader}_1k_{forms}_wall_s"] = round(wall, 1)
            if a.curve:
                rows, wall = run_compare(
                    ec,
                    a.out / f"{reader}-curve",
                    parse_lengths(a.curve),
                    parse_depths("0,50,100"),
                    a.curve_needles,
                    shots,
                    "all",
                    strategies,
                    use_cache,
                )
                curve += [{"reader": reader, **r} for r in rows]
                report[f"{reader}_curve_wall_s"] = round(wall, 1)
            if a.route_needles:
                route[reader] = route_accuracy(ec, a.route_needles, 1000)
        finally:
            server.stop()
    report["load_end"] = load()

    ad = report["adapter"]
    print(f"\n### Training (load average 1/5/15 min at the end of training: {ad['load']})\n")
    print(
        f"- adapter: {ad['path']}, {ad['mb']} MB; {ad['steps']} steps, {ad['examples']} examples, "
        f"{ad['train_s'] / 60:.1f} min of training; loss {ad['final_loss']} (train), {ad['eval_loss']} (held-out)"
    )
    if "train_wall_s" in report:
        print(
            f"- `harness finetune` wall (data, training, saving): {report['train_wall_s'] / 60:.1f} min; "
            f"load before {report['load_start']}, after {report['load_after_training']}"
        )
    print(f"- command: `{ad['command']}`")
    print(
        f"\n### Accuracy at 1k tokens, test split (5 depths x {a.needles} needles; forms: all = the test split, "
        "seen / held-out = needles written only with forms the training split has / lacks)\n"
    )
    print(
        table(sorted(headline, key=lambda r: (r["strategy"], r["forms"], r["reader"])), ["strategy", "forms", "reader"])
    )
    if curve:
        print(f"\n### By length (test split, 3 depths x {a.curve_needles} needles; trained on 256..2k)\n")
        rows = [{"reader": r["reader"], "forms": "all", **r} for r in headline if r["forms"] == "all"] + curve
        print(
            table(
                sorted(rows, key=lambda r: (r["strategy"], r["reader"], r["length"])), ["strategy", "reader", "length"]
            )
        )
    if route:
        print("\n### Route accuracy, answerable form (self-route), 1k full context, zero-shot\n")
        print("| reader | answerable when shown | not answerable when taken out | fields when shown | n |")
        print("|---|---|---|---|---|")
        for reader, r in route.items():
            print(
                f"| {reader} | {100 * r['shown']:.0f} | {100 * r['absent']:.0f} | {100 * r['fields_when_shown']:.1f} | {r['n']} |"
            )
    walls = {k: v for k, v in report.items() if k.endswith("_s") and k != "train_wall_s"}
    print(f"\nwall seconds: {walls}; load average at start {report['load_start']}, at end {report['load_end']}")
    report.update(headline=headline, curve=curve, route=route)
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "bench.json").write_text(json.dumps(report, indent=2, default=str))
    print(f"bench.json: {a.out / 'bench.json'}")


if __name__ == "__main__":
    main()
