"""Scale-out figures on this machine: executors, replicas, and retrieval indexes.

    .venv/bin/python bench/scale.py                       # all parts, stand-in model server
    .venv/bin/python bench/scale.py --endpoint http://127.0.0.1:PORT/v1 --model gemma-3-270m
    .venv/bin/python bench/scale.py --parts faiss --sizes 10000,100000,1000000

(1) executors: `harness compare` end to end (plan, prompts, /tokenize, calls, scoring, fsynced
    records) with the local executor and with `--executor ray` on a local Ray cluster (this
    machine's CPUs), same grid, same concurrency, no response cache. Against the stand-in server
    (bench/fake_openai.py: canned answers after --latency seconds, no capacity limit) the figure is
    the executor's own cost per query; against a real server (--endpoint), end-to-end throughput.
    Ray's time includes starting its actors (each imports the harness and builds the strategies).
(2) replicas: the same grid on 1 and 2 stand-in replicas at a fixed cap of requests in flight per
    replica: throughput follows the number of replicas while the replicas are the bound.
"queries/s asking" is records over the time from the first record to the last (the asking phase);
"end to end" divides by the whole compare (building samples, planning, Ray's actors, the report).
(3) faiss: build and query time of IndexFlatIP (exact), IVF (IndexIVFFlat, nlist ~ 4 sqrt(n),
    nprobe 16) and HNSW (IndexHNSWFlat, M 32, efConstruction 80, efSearch 64) on random unit vectors of
    dimension 384 (all-MiniLM-L6-v2's), inner product; 200 queries, top 10; recall@10 against the
    exact index. Random vectors have no cluster structure: the worst case for approximate indexes'
    recall; `topics` (1,000 centres, chunks scattered around them) is closer to real embeddings.

The scaling plan on paper is docs/scale-out.md.
"""

from __future__ import annotations

import argparse
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


def table(title: str, rows: list[tuple], head: tuple) -> None:
    rows = [tuple(str(x) for x in r) for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    print(f"\n{title}")
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(x.ljust(w) for x, w in zip(r, widths)))
    sys.stdout.flush()


def compare_once(
    urls: list[str],
    model: str,
    out: Path,
    *,
    executor: str = "local",
    workers: int = 0,
    concurrency: int = 8,
    replica_concurrency: int = 0,
    needles: int = 10,
    strategies=("full-context", "rag-bm25:top_k=2"),
) -> tuple[float, int, float]:
    """Seconds for one `harness compare` (samples, plan, asking, report), the records it wrote, and the
    asking phase's rate: records over the time from the first record to the last (their `time`)."""
    from harness import api
    from harness.config import EndpointConfig, ExecutorConfig, RunConfig
    from harness.store import RunStore
    from harness.ui import console, err

    config = RunConfig(
        strategies=list(strategies),
        lengths=[300],
        depths=[0.0, 25.0, 50.0, 75.0, 100.0],
        needles=needles,
        shots=0,
        seed=1,
        endpoint=EndpointConfig(
            url=urls[0],
            replicas=urls[1:],
            model=model,
            api="completions",
            concurrency=concurrency,
            replica_concurrency=replica_concurrency,
            api_key_env=None,
        ),
        executor=ExecutorConfig(kind=executor, workers=workers),
        out=out,
    )
    console.quiet = err.quiet = True
    try:
        t0 = time.perf_counter()
        api.compare(config, use_cache=False)
        dt = time.perf_counter() - t0
    finally:
        console.quiet = err.quiet = False
    times = sorted(r["time"] for r in RunStore(out).rows())
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else float("nan")
    return dt, len(times), rate


def part_executors(args, tmp: Path) -> None:
    from fake_openai import MODEL, start_subprocess

    procs = []
    if args.endpoint:
        url, model, what = args.endpoint, args.model, f"real server {args.endpoint}"
    else:
        proc, url = start_subprocess("--latency", str(args.latency))
        procs.append(proc)
        model, what = MODEL, f"stand-in server, {args.latency:g} s a request"
    rows = []
    try:
        import ray

        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING", log_to_driver=False)
        compare_once([url], model, tmp / "warm", concurrency=args.concurrency, needles=2)  # imports, caches
        results: dict[tuple[str, int], list] = {}
        for rep in range(args.repeats):  # alternated, the median kept: this machine's load drifts
            for executor, workers in [("local", 0), ("ray", 1), ("ray", 2)]:
                results.setdefault((executor, workers), []).append(
                    compare_once(
                        [url],
                        model,
                        tmp / f"{executor}{workers}-{rep}",
                        executor=executor,
                        workers=workers,
                        concurrency=args.concurrency,
                        needles=args.needles,
                    )
                )
        ray.shutdown()
        for (executor, workers), runs in results.items():
            dt = statistics.median(r[0] for r in runs)
            rate = statistics.median(r[2] for r in runs)
            n = runs[0][1]
            rows.append(
                (
                    executor if executor == "local" else f"ray, {workers} actor(s)",
                    n,
                    f"{dt:.1f}",
                    f"{n / dt:.1f}",
                    f"{rate:.1f}",
                )
            )
    finally:
        for p in procs:
            p.kill()
            p.wait()
    table(
        f"(1) executors: harness compare end to end, {what}, concurrency {args.concurrency}, "
        f"{os.cpu_count()} CPUs, median of {args.repeats}",
        rows,
        ("executor", "queries", "wall s", "queries/s end to end", "queries/s asking"),
    )


def part_replicas(args, tmp: Path) -> None:
    from fake_openai import MODEL, start_subprocess

    procs = [start_subprocess("--latency", str(args.replica_latency)) for _ in range(2)]
    urls = [u for _, u in procs]
    rows = []
    try:
        for n in (1, 2):
            dt, q, rate = compare_once(
                urls[:n],
                MODEL,
                tmp / f"replicas{n}",
                concurrency=args.cap * n,
                replica_concurrency=args.cap,
                needles=args.needles,
                strategies=("full-context",),
            )
            rows.append(
                (
                    n,
                    args.cap,
                    q,
                    f"{dt:.1f}",
                    f"{q / dt:.1f}",
                    f"{rate:.1f}",
                    f"{n * args.cap / args.replica_latency:.0f}",
                )
            )
    finally:
        for p, _ in procs:
            p.kill()
            p.wait()
    table(
        f"(2) replicas: stand-in replicas, {args.replica_latency:g} s a request, {args.cap} in flight each",
        rows,
        (
            "replicas",
            "cap each",
            "queries",
            "wall s",
            "queries/s end to end",
            "queries/s asking",
            "bound: replicas x cap / latency",
        ),
    )


def part_faiss(args) -> None:
    import faiss
    import numpy as np

    faiss.omp_set_num_threads(os.cpu_count() or 1)
    d, k, nq = 384, 10, 200
    rng = np.random.default_rng(0)
    rows = []
    for data, n in [(data, n) for data in args.data for n in args.sizes]:
        try:
            if data == "random":
                xb = rng.standard_normal((n, d), dtype=np.float32)
                xq = rng.standard_normal((nq, d), dtype=np.float32)
            else:  # topics: a unit centre each, chunks scattered around them (closer to real embeddings)
                centres = rng.standard_normal((1000, d), dtype=np.float32)
                xb = centres[rng.integers(0, 1000, n)] + 0.6 * rng.standard_normal((n, d), dtype=np.float32)
                xq = centres[rng.integers(0, 1000, nq)] + 0.6 * rng.standard_normal((nq, d), dtype=np.float32)
        except MemoryError:
            rows.append((data, f"{n:,}", "-", "-", "-", "-", "not enough memory"))
            continue
        faiss.normalize_L2(xb)
        faiss.normalize_L2(xq)
        exact = None
        for name in ("flat", "ivf", "hnsw"):
            if name == "hnsw" and n > args.hnsw_max:
                rows.append(
                    (data, f"{n:,}", name, "-", "-", "-", f"skipped: > --hnsw-max {args.hnsw_max:,} (build time)")
                )
                continue
            t0 = time.perf_counter()
            if name == "flat":
                index = faiss.IndexFlatIP(d)
                index.add(xb)
            elif name == "ivf":
                nlist = max(16, int(4 * n**0.5))
                index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
                index.train(xb[: min(n, 40 * nlist)])
                index.add(xb)
                index.nprobe = 16
            else:
                index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = 80
                index.add(xb)
                index.hnsw.efSearch = 64
            build = time.perf_counter() - t0
            t0 = time.perf_counter()
            _, ids = index.search(xq, k)
            query_ms = 1000 * (time.perf_counter() - t0) / nq
            if name == "flat":
                exact = ids
            recall = np.mean([len(set(a) & set(b)) / k for a, b in zip(ids, exact)])
            rows.append(
                (
                    data,
                    f"{n:,}",
                    name,
                    f"{build:.2f}",
                    f"{query_ms:.3f}",
                    f"{recall:.3f}",
                    f"nlist {nlist}, nprobe 16" if name == "ivf" else "",
                )
            )
            del index
        del xb
    table(
        f"(3) faiss: dim {d}, unit vectors (random; or 1,000 topics with scatter), inner product, {nq} queries, "
        f"top {k}, {os.cpu_count()} CPU threads",
        rows,
        ("data", "chunks", "index", "build s", "query ms", "recall@10", "notes"),
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="executors,replicas,faiss")
    ap.add_argument("--endpoint", default=None, help="a real server for part 1 (default: the stand-in)")
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--latency", type=float, default=0.05, help="stand-in seconds a request (part 1)")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--needles", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--replica-latency", type=float, default=0.2)
    ap.add_argument("--cap", type=int, default=4)
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--hnsw-max", type=int, default=100_000)
    ap.add_argument("--data", default="random,topics", help="random and/or topics (clustered vectors)")
    args = ap.parse_args()
    args.sizes = [int(x) for x in args.sizes.split(",")]
    args.data = args.data.split(",")
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory() as d:
        os.environ.setdefault("HARNESS_RESPONSE_CACHE", str(Path(d) / "cache.sqlite"))
        if "executors" in parts:
            part_executors(args, Path(d))
        if "replicas" in parts:
            part_replicas(args, Path(d))
    if "faiss" in parts:
        part_faiss(args)


if __name__ == "__main__":
    main()
