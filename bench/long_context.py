"""The long-context arm past the native window: one compare at a length beyond Gemma 3's 32k.

    .venv/bin/python bench/long_context.py                       # 40k tokens, server at 65,536 (YaRN x2)
    .venv/bin/python bench/long_context.py --length 48k --max-model-len 65536 --strategies full-context
    .venv/bin/python bench/long_context.py --endpoint http://127.0.0.1:PORT/v1   # a `harness serve
                                                                 #   --max-model-len 65536` already up

Not CI: on the 2-core CPU box a ~40k-token prompt prefills in minutes, and the server start (with
the YaRN overrides: a fresh torch compile the first time) takes another 1-4 minutes. The harness
starts the embedded model with `--max-model-len N` only -- the one-flag path, which implies YaRN
with factor ceil(N / 32768) -- runs the grid (one length, one depth, one needle by default), and
prints per strategy: field accuracy, prompt tokens, prefill seconds, prefill tokens/s (prompt
tokens the server computed, prefix-cache hits excluded, per prefill second), decode tokens/s,
TTFT and the prefix-cache hit rate, all read from the server's /metrics around each strategy.
The run folder (records, config.yaml with the server's effective settings, server_metrics.jsonl,
summary, report.html) is kept; `--out` chooses it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    from harness.api import compare as run_compare
    from harness.cli import parse_depths, parse_lengths, split_strategies
    from harness.config import EndpointConfig, RunConfig
    from harness.report.terminal import window_text
    from harness.runfiles import load_run

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--length", default="40k", help="context length in the model's tokens (default 40k)")
    ap.add_argument("--max-model-len", type=int, default=65536, help="served window (default 65536: YaRN x2)")
    ap.add_argument("--rope-scaling", default=None, help="yarn|linear|dynamic (default: implied YaRN)")
    ap.add_argument("--rope-factor", type=float, default=None)
    ap.add_argument("--strategies", default="full-context,rag-bm25:top_k=4")
    ap.add_argument("--depths", default="50")
    ap.add_argument("--needles", type=int, default=1)
    ap.add_argument("--shots", type=int, default=1)
    ap.add_argument("--concurrency", type=int, default=1, help="1: each prefill measured alone")
    ap.add_argument("--endpoint", default=None, help="an already-running server (its window must hold --length)")
    ap.add_argument("--model", default="gemma-3-270m")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()

    out = a.out or Path(tempfile.mkdtemp(prefix="bench-long-context-"))
    if a.endpoint:
        ec = EndpointConfig(url=a.endpoint, model=a.model, api="completions", concurrency=a.concurrency, timeout_s=3600)
    else:
        ec = EndpointConfig(
            max_model_len=a.max_model_len,
            rope_scaling=a.rope_scaling,
            rope_factor=a.rope_factor,
            concurrency=a.concurrency,
            timeout_s=3600,
        )
    config = RunConfig(
        strategies=split_strategies([a.strategies]),
        lengths=parse_lengths(a.length),
        depths=parse_depths(a.depths),
        needles=a.needles,
        shots=a.shots,
        endpoint=ec,
        out=out,
    )
    t0 = time.monotonic()
    run_compare(config, use_cache=False)
    wall = time.monotonic() - t0

    summary = load_run(out).summary
    srv = summary.server or {}
    print()
    print(
        f"window: {window_text(srv.get('max_model_len'), srv.get('launch'))}; vLLM {srv.get('server_version')}; "
        f"length {config.lengths[0]:,} tokens; wall {wall:.0f} s (server start included)"
    )
    head = (
        f"{'strategy':<22} {'acc %':>6} {'prompt tok/q':>12} {'prefill s':>9} {'prefill tok/s':>13} "
        f"{'decode tok/s':>12} {'TTFT s':>7} {'cache hit %':>11}"
    )
    print(head)
    print("-" * len(head))

    def f(x, fmt):
        return "-" if x is None else format(x, fmt)

    rows = []
    for s in summary.by_strategy:
        print(
            f"{s['strategy']:<22} {f(100 * s['accuracy'], '6.1f')} {f(s.get('prompt_tokens'), '12.0f')} "
            f"{f(s.get('prefill_s'), '9.1f')} {f(s.get('prefill_tok_per_s'), '13.0f')} "
            f"{f(s.get('decode_tok_per_s'), '12.1f')} {f(s.get('ttft_s'), '7.1f')} "
            f"{f(None if s.get('prefix_cache_hit_rate') is None else 100 * s['prefix_cache_hit_rate'], '11.1f')}"
        )
        rows.append(
            {
                k: s.get(k)
                for k in (
                    "strategy",
                    "accuracy",
                    "prompt_tokens",
                    "prefill_s",
                    "prefill_tok_per_s",
                    "decode_tok_per_s",
                    "ttft_s",
                    "prefix_cache_hit_rate",
                )
            }
        )
    print(
        json.dumps(
            {
                "bench": "long_context",
                "length": config.lengths[0],
                "window": srv.get("max_model_len"),
                "launch": srv.get("launch"),
                "wall_s": round(wall, 1),
                "rows": rows,
            }
        )
    )
    print(f"run folder: {out}")


if __name__ == "__main__":
    main()
