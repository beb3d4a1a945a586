"""Scale-out against the real vLLM server: two endpoints with one lost mid-run; the Ray executor.

The second endpoint is a proxy (bench/fault_proxy.py) in front of the session's server, so the test
needs one vLLM process, and the proxy can die at a chosen moment with a request in flight.

vLLM on this CPU is not batch-invariant, and a prompt whose prefix is cached is prefilled in other
pieces (docs/reproducibility.md): the same request can get another greedy answer in another batch or
prefix-cache state. Where answers must be equal, both runs start from a cold prefix cache and send
the same requests in the same order, one at a time (the failover test); the Ray executor's answers
are compared through the response cache (its requests are then exactly the local run's), and its
real requests are checked for what does not depend on batching.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from harness.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import fake_openai  # noqa: E402

# What a record says about the answer and what was asked; not when, how fast or after how many attempts.
SAME = (
    "strategy",
    "sample_id",
    "length",
    "depth",
    "needle_index",
    "raw",
    "answer",
    "valid",
    "invalid_reason",
    "error",
    "gold",
    "marks",
    "score",
    "shown",
    "route",
    "limit",
    "steps",
    "context_tokens",
    "prompt_tokens",
    "prompt_tokens_counted",
    "completion_tokens",
    "model",
)
SAME_CALL = ("purpose", "prompt_tokens", "prompt_tokens_counted", "completion_tokens", "finish_reason", "raw", "error")


def content(run: Path) -> dict:
    out = {}
    for r in RunStore(run).rows():
        row = {k: r.get(k) for k in SAME}
        row["calls"] = [{k: c.get(k) for k in SAME_CALL} for c in r.get("calls") or []]
        out[(r["strategy"], r["sample_id"])] = row
    return out


def cold_prefix_cache(server) -> None:
    r = httpx.post(server.root_url + "/reset_prefix_cache", timeout=60)
    if r.status_code == 404:
        pytest.skip("the server was started without VLLM_SERVER_DEV_MODE=1 (no /reset_prefix_cache)")
    assert r.status_code == 200, r.text


def grid(urls: list[str], model: str, out: Path, **kw):
    from harness.config import EndpointConfig, RunConfig

    return RunConfig(
        strategies=["full-context", "rag-bm25:top_k=2"],
        lengths=[300],
        depths=[0.0, 50.0, 100.0],
        needles=1,
        shots=0,
        seed=5,
        endpoint=EndpointConfig(
            url=urls[0],
            replicas=urls[1:],
            model=model,
            api="completions",
            concurrency=kw.pop("concurrency", 1),
            timeout_s=60,
            max_retries=3,
        ),
        out=out,
        **kw,
    )


@pytest.mark.server
def test_two_endpoints_one_lost_mid_run_completes_with_the_same_records(vllm_server, tmp_path, monkeypatch):
    """One request in flight at a time, alternating between the proxy and the server itself; the proxy
    dies when its third generation request arrives. The run finishes on the other endpoint, nothing
    is lost, and its records are those of a run on the server alone."""
    from harness.api import compare

    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "cache.sqlite"))
    cold_prefix_cache(vllm_server)
    compare(grid([vllm_server.base_url], vllm_server.model, tmp_path / "alone"), use_cache=False)

    proxy, purl = fake_openai.start_subprocess(
        "--target", vllm_server.root_url, "--rate", "0", "--die-at", "2", script=str(ROOT / "bench" / "fault_proxy.py")
    )
    try:
        cold_prefix_cache(vllm_server)
        compare(grid([purl, vllm_server.base_url], vllm_server.model, tmp_path / "pool"), use_cache=False)
        assert proxy.wait(timeout=10) == 0  # it died mid-run, as planned
    finally:
        proxy.kill()
        proxy.wait()

    alone, pool = content(tmp_path / "alone"), content(tmp_path / "pool")
    assert len(alone) == 6 and set(pool) == set(alone)
    assert not any(r["error"] for r in pool.values())
    for k in alone:
        assert pool[k] == alone[k], k

    rows = [json.loads(line) for line in (tmp_path / "pool" / "replicas.jsonl").read_text().splitlines()]
    lost, kept = rows
    assert lost["url"] == purl and lost["requests"] == 2 and lost["moved"] >= 1 and lost["taken_out"] == 1
    assert kept["requests"] == 6 - 2 and kept["taken_out"] == 0
    attempts = sum(c["attempts"] for r in RunStore(tmp_path / "pool").rows() for c in r["calls"])
    assert attempts == 6 + lost["moved"]  # the moved request says it was sent twice
    summary = json.loads((tmp_path / "pool" / "summary.json").read_text())
    assert [r["requests"] for r in summary["replicas"]] == [2, 4]
    saved = RunStore(tmp_path / "pool").read_config()
    assert [r["url"] for r in saved["endpoint"]["replicas"]] == [purl, vllm_server.base_url]
    # the pool answers as the one model it is: same identity, so cache and resume do not care
    assert saved["endpoint"]["identity"] == RunStore(tmp_path / "alone").read_config()["endpoint"]["identity"]


@pytest.fixture(scope="module")
def ray_local():
    """A real local Ray cluster on this machine's two CPUs, for the module."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.mark.server
def test_ray_executor_gives_the_local_executors_records(vllm_server, ray_local, tmp_path, monkeypatch):
    """The same grid, seed and server, locally and on two Ray actors (a cell each: one length, two
    strategies). Asked for real with one call in flight from a cold prefix cache, the server sees the
    local run's requests in the local run's order: the records are equal in content. With two calls in
    flight, through the local run's response cache, every request must be found there (the requests
    are exactly the local run's), and the records are equal again."""
    from harness.api import compare
    from harness.config import ExecutorConfig

    on_ray = ExecutorConfig(kind="ray", workers=2)
    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "local.sqlite"))
    cold_prefix_cache(vllm_server)
    compare(grid([vllm_server.base_url], vllm_server.model, tmp_path / "local"))
    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "ray.sqlite"))
    cold_prefix_cache(vllm_server)
    compare(grid([vllm_server.base_url], vllm_server.model, tmp_path / "asked", executor=on_ray))
    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "local.sqlite"))
    compare(grid([vllm_server.base_url], vllm_server.model, tmp_path / "replayed", concurrency=2, executor=on_ray))

    local, asked, replayed = (content(tmp_path / d) for d in ("local", "asked", "replayed"))
    assert len(local) == 6 and not any(r["error"] for r in asked.values())

    def shared(run):  # calls answered by an identical request of the same run (in-run sharing)
        """Per group of samples whose prompts are identical, how many calls came from the run's
        sharing. Which of two identical requests goes first is up to the executor, so the flag may
        sit on either sample of a group; the count per group is what must not change."""
        groups: dict[tuple, list[bool]] = {}
        for r in RunStore(tmp_path / run).rows():
            prompt = (r["strategy"], r["subject"], json.dumps(r["shown"]["pieces"], sort_keys=True))
            groups.setdefault(prompt, []).extend(c["from_cache"] for c in r["calls"])
        return {k: sorted(v) for k, v in groups.items()}

    assert shared("asked") == shared("local") and not all(sum(shared("asked").values(), []))
    assert any(len(v) > 1 for v in shared("local").values())  # the grid does hold identical prompts
    assert asked == local
    assert all(c["from_cache"] for r in RunStore(tmp_path / "replayed").rows() for c in r["calls"])
    assert replayed == local
    saved = RunStore(tmp_path / "asked").read_config()
    assert saved["config"]["executor"] == {"kind": "ray", "ray_address": None, "workers": 2}
    # a run folder started on Ray is resumed by the local executor (nothing left to ask)
    compare(grid([vllm_server.base_url], vllm_server.model, tmp_path / "asked"))
    assert len(RunStore(tmp_path / "asked").rows()) == 6


def test_the_local_executor_never_imports_ray():
    import subprocess

    code = (
        "import sys, harness.api, harness.cli, harness.runner; from harness.config import RunConfig; "
        "RunConfig(); print('ray' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
