"""Is the harness ever the bottleneck? And what does the response cache save?

    .venv/bin/python bench/overhead.py                         # part 1 only (stand-in server)
    .venv/bin/python bench/overhead.py --vllm http://127.0.0.1:PORT/v1   # parts 1-3

The bare client is `openai` (pip install 'harness[dev]'): the harness itself does not depend on it.

(1) Harness overhead. A zero-latency OpenAI-compatible stand-in (bench/fake_openai.py, a real
    HTTP server in its own process on 127.0.0.1, canned JSON) answers both sides. The harness's
    end-to-end rate -- plan and build prompts, count them (the served tokenizer when the embedded
    model is converted, else /tokenize; a sent prompt is counted from its answer's usage), call,
    parse, score, write the records in fsynced batches -- against a bare `openai.AsyncOpenAI`
    client sending the same requests at the same concurrency and doing nothing with the answers.
    Targets: >= 0.8x and >= 300 q/s. The harness's own endpoint client alone (send only) is shown
    too: it is what `openai` would replace.
(2) Against the real vLLM server: the harness's throughput against a bare client sending the
    identical prompts (same bodies, same order, same concurrency). Target >= 0.95x. The server's
    prefix cache is warmed by one pass first; then bare and harness passes alternate.
(3) Response cache: `run_compare` twice with the same configuration into two new run folders
    (same response cache): the second makes zero model calls; both wall times are printed.

Both sides run in this process, one after the other, on the same machine as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _grid(endpoint, lengths, depths, needles, shots, strategies=("full-context",)):
    from harness.api import build_scenario, build_strategies
    from harness.api import cache_dir as default_cache_dir
    from harness.config import RunConfig

    config = RunConfig(strategies=list(strategies), lengths=lengths, depths=depths, needles=needles, shots=shots)
    scen = build_scenario(config)
    strats = build_strategies(config, default_cache_dir(), endpoint.count_tokens)
    samples = scen.samples(config.lengths, config.depths, config.needles, endpoint.count_tokens)
    return scen, strats, samples, scen.shots(shots)


def run_harness(endpoint, scen, strats, samples, shots, concurrency, max_tokens, cache=None) -> tuple[float, int]:
    """Seconds for runner.run over every sample into a fresh run folder, and the records written."""
    from harness import runner
    from harness.store import RunStore

    with tempfile.TemporaryDirectory(dir=ROOT / "results" if (ROOT / "results").is_dir() else None) as d:
        store = RunStore(Path(d) / "run").create()
        t0 = time.perf_counter()
        runner.run(
            run_id="bench",
            scenario=scen,
            strategies=strats,
            samples=samples,
            endpoint=endpoint,
            store=store,
            shots=shots,
            concurrency=concurrency,
            max_tokens=max_tokens,
            window=None,
            cache=cache,
        )
        dt = time.perf_counter() - t0
        n = len(store.rows())
    return dt, n


def bodies(endpoint, scen, strats, samples, shots, max_tokens) -> list[tuple[str, dict]]:
    """The exact requests the harness sends, in its order."""
    from harness import runner
    from harness.query import Asker
    from harness.scoring.answers import wire_schema

    asker = Asker(endpoint, None, max_tokens=max_tokens, window=None, concurrency=1)
    plan = runner.plan_queries(scen, strats, samples, shots, set(), asker)
    schema = wire_schema(scen)
    return [asker.request(prompt, schema, max_tokens) for p in plan for prompt in p.prompts]


def run_bare(base_url: str, requests: list[tuple[str, dict]], concurrency: int) -> float:
    """A bare AsyncOpenAI client: same bodies, same concurrency, answers thrown away."""
    import openai

    async def go() -> float:
        client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY", max_retries=0, timeout=600)
        it = iter(requests)

        async def worker():
            for path, body in it:
                extra = {"response_format": body["response_format"]} if "response_format" in body else None
                if path == "/completions":
                    r = await client.completions.create(
                        model=body["model"],
                        prompt=body["prompt"],
                        temperature=0,
                        max_tokens=body["max_tokens"],
                        extra_body=extra,
                    )
                    _ = r.choices[0].text
                else:
                    r = await client.chat.completions.create(
                        model=body["model"],
                        messages=body["messages"],
                        temperature=0,
                        max_tokens=body["max_tokens"],
                        extra_body=extra,
                    )
                    _ = r.choices[0].message.content

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        dt = time.perf_counter() - t0
        await client.close()
        return dt

    return asyncio.run(go())


def run_client(endpoint, requests: list[tuple[str, dict]], concurrency: int) -> float:
    """The harness's own endpoint client (Session.send: retries, deadline, decoding), same bodies, same
    concurrency, answers thrown away: the figure `openai` is weighed against."""

    async def go() -> float:
        async with endpoint.session(concurrency) as session:
            it = iter(requests)

            async def worker():
                for path, body in it:
                    _ = (await session.send(path, body)).text

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - t0

    return asyncio.run(go())


def table(title: str, rows: list[tuple[str, ...]], head: tuple[str, ...]) -> None:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(str(x).ljust(w) for x, w in zip(r, widths)))
    sys.stdout.flush()


def part1(args) -> None:
    from fake_openai import start_subprocess

    from harness.endpoints.client import Endpoint
    from harness.endpoints.embedded import embedded_model_dir, is_prepared

    proc, url = start_subprocess()
    try:
        # The stand-in plays a `harness serve` of the embedded model: the harness counts with that model's
        # own tokenizer when it is converted (as it does for a server it started), else with /tokenize.
        tokenizer = str(embedded_model_dir()) if is_prepared() else None
        endpoint = Endpoint(url, "gemma-3-270m", "completions", None, timeout_s=60, max_retries=3, tokenizer=tokenizer)
        endpoint.describe()
        depths = [float(d) for d in range(0, 101)]
        needles = max(1, -(-args.queries // len(depths)))
        scen, strats, samples, shots = _grid(endpoint, [300], depths, needles, 2)
        reqs = bodies(endpoint, scen, strats, samples, shots, 160)
        n = len(reqs)
        # warm-up (imports, connection set-up), then alternate
        run_bare(url, reqs[:200], args.concurrency)
        run_client(endpoint, reqs[:200], args.concurrency)
        run_harness(endpoint, scen, strats, samples[:200], shots, args.concurrency, 160)
        bare_t, client_t, harness_t = [], [], []
        for _ in range(args.repeats):
            bare_t.append(run_bare(url, reqs, args.concurrency))
            client_t.append(run_client(endpoint, reqs, args.concurrency))
            dt, written = run_harness(endpoint, scen, strats, samples, shots, args.concurrency, 160)
            assert written == n, (written, n)
            harness_t.append(dt)
    finally:
        proc.kill()
        proc.wait()
    b, c, h = statistics.median(bare_t), statistics.median(client_t), statistics.median(harness_t)
    table(
        f"(1) harness overhead: zero-latency stand-in server on 127.0.0.1, {n} queries, concurrency "
        f"{args.concurrency}, median of {args.repeats} (this machine: {os.cpu_count()} cores; tokens: "
        f"{endpoint.token_counter})",
        [
            ("bare AsyncOpenAI client (send only)", f"{b:.2f}", f"{n / b:.0f}", "1.00x", ""),
            ("harness endpoint client (Session.send only)", f"{c:.2f}", f"{n / c:.0f}", f"{b / c:.2f}x", ""),
            (
                "harness (plan, count, send, parse, score, fsync'd record)",
                f"{h:.2f}",
                f"{n / h:.0f}",
                f"{b / h:.2f}x",
                f"{'PASS' if b / h >= 0.8 and n / h >= 300 else 'FAIL'} (>= 0.8x and >= 300 q/s)",
            ),
        ],
        ("client", "seconds", "queries/s", "vs bare", "target"),
    )


def part2(args) -> None:
    from harness.endpoints.client import Endpoint

    endpoint = Endpoint(args.vllm, args.model, "completions", None, timeout_s=600, max_retries=3)
    endpoint.describe()
    lengths = [int(x) for x in args.vllm_lengths.split(",")]
    scen, strats, samples, shots = _grid(endpoint, lengths, [0.0, 50.0, 100.0], args.vllm_needles, 2)
    reqs = bodies(endpoint, scen, strats, samples, shots, 160)
    n, c = len(reqs), args.vllm_concurrency
    print(f"\n(2) warming vLLM's prefix cache with {n} queries…", flush=True)
    run_bare(endpoint.base_url, reqs, c)
    bare_t, harness_t = [], []
    for _ in range(args.vllm_repeats):
        bare_t.append(run_bare(endpoint.base_url, reqs, c))
        dt, written = run_harness(endpoint, scen, strats, samples, shots, c, 160)
        assert written == n
        harness_t.append(dt)
    b, h = sum(bare_t), sum(harness_t)
    table(
        f"(2) real vLLM ({args.model} at {endpoint.base_url}), {n} queries x {args.vllm_repeats} passes each, "
        f"concurrency {c}, alternating",
        [
            (
                "bare AsyncOpenAI client",
                " ".join(f"{t:.1f}" for t in bare_t),
                f"{n * len(bare_t) / b:.2f}",
                "1.00x",
                "",
            ),
            (
                "harness",
                " ".join(f"{t:.1f}" for t in harness_t),
                f"{n * len(harness_t) / h:.2f}",
                f"{b / h:.2f}x",
                f"{'PASS' if b / h >= 0.95 else 'FAIL'} (>= 0.95x)",
            ),
        ],
        ("client", "seconds per pass", "queries/s", "vs bare", "target"),
    )


def part3(args) -> None:
    from harness.api import compare as run_compare
    from harness.config import EndpointConfig, RunConfig
    from harness.endpoints import client as client_mod
    from harness.store import RunStore

    sent = {"n": 0}
    orig = client_mod.Session.send

    async def counting_send(self, path, body):
        sent["n"] += 1
        return await orig(self, path, body)

    client_mod.Session.send = counting_send
    lengths = [int(x) for x in args.vllm_lengths.split(",")]
    with tempfile.TemporaryDirectory() as d:
        os.environ["HARNESS_RESPONSE_CACHE"] = str(Path(d) / "responses.sqlite")
        times, calls, cached = [], [], []
        for i in range(2):
            config = RunConfig(
                strategies=["full-context", "rag-dense"],
                lengths=lengths,
                depths=[0.0, 50.0, 100.0],
                needles=args.vllm_needles,
                shots=2,
                out=Path(d) / f"run{i}",
                endpoint=EndpointConfig(
                    url=args.vllm, model=args.model, api="completions", concurrency=args.vllm_concurrency
                ),
            )
            before = sent["n"]
            t0 = time.perf_counter()
            with open(os.devnull, "w") as null:
                stdout, sys.stdout = sys.stdout, null
                try:
                    run_compare(config)
                finally:
                    sys.stdout = stdout
            times.append(time.perf_counter() - t0)
            calls.append(sent["n"] - before)
            recs = RunStore(config.out).rows()
            cached.append(f"{sum(r['from_cache'] for r in recs)}/{len(recs)}")
        del os.environ["HARNESS_RESPONSE_CACHE"]
    client_mod.Session.send = orig
    table(
        "(3) response cache: the same `harness compare` twice, new run folder each time (run_compare, in process)",
        [
            ("first run (empty cache)", f"{times[0]:.2f}", calls[0], cached[0], ""),
            (
                "identical rerun",
                f"{times[1]:.2f}",
                calls[1],
                cached[1],
                f"{times[0] / times[1]:.0f}x faster {'PASS' if calls[1] == 0 and times[0] / times[1] >= 20 else 'FAIL'}"
                " (0 calls, >= 20x)",
            ),
        ],
        ("run", "seconds", "model calls", "records from cache", "target"),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=3000, help="part 1: queries per pass")
    ap.add_argument("--concurrency", type=int, default=32, help="part 1: requests in flight")
    ap.add_argument("--repeats", type=int, default=3, help="part 1: passes per side")
    ap.add_argument("--vllm", help="base URL of a running vLLM server (…/v1) for parts 2 and 3")
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--vllm-lengths", default="300,600")
    ap.add_argument("--vllm-needles", type=int, default=4)
    ap.add_argument("--vllm-concurrency", type=int, default=8)
    ap.add_argument("--vllm-repeats", type=int, default=3)
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: 1,2,3")
    args = ap.parse_args()
    skip = set(args.skip.split(","))
    if "1" not in skip:
        part1(args)
    if args.vllm and "2" not in skip:
        part2(args)
    if args.vllm and "3" not in skip:
        part3(args)


if __name__ == "__main__":
    main()
