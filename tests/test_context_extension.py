"""The long-context arm past the native window, on the real vLLM server (all `server` tests).

One extra server is started for this module: the embedded Gemma 3 270M with `--max-model-len
65536` and nothing else, i.e. the one-flag path (YaRN x2 over the native 32,768 implied). It
costs one server start (60-140 s on the 2-core box); the requests stay tiny. Its last test stops it
(what stop() must do to a real server's processes and port). A prompt really past
32k tokens takes minutes to prefill here: that is bench/long_context.py's job, not CI's.
"""

from __future__ import annotations

import json

import httpx
import pytest
import yaml

from harness.api import compare as run_compare
from harness.config import EndpointConfig, RunConfig
from harness.errors import UsageError

pytestmark = pytest.mark.server

WINDOW = 65536


@pytest.fixture(scope="module")
def yarn_server():
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed")
    from harness.endpoints.vllm_server import ServerOptions, start_server

    notes: list[str] = []
    srv = start_server(ServerOptions(max_model_len=WINDOW), on_note=notes.append)
    srv.notes = notes
    try:
        yield srv
    finally:
        srv.stop()


def test_yarn_server_reports_the_extended_window(yarn_server):
    data = httpx.get(yarn_server.base_url + "/models", timeout=30).json()["data"]
    assert data[0]["id"] == "gemma-3-270m" and data[0]["max_model_len"] == WINDOW
    plan = yarn_server.plan.describe()
    assert plan["rope_scaling"] == "yarn" and plan["rope_factor"] == 2.0 and plan["rope_implied"]
    ov = plan["hf_overrides"]
    assert ov["max_position_embeddings"] == WINDOW
    assert ov["rope_parameters"]["full_attention"]["rope_type"] == "yarn"
    assert ov["rope_parameters"]["sliding_attention"]["rope_type"] == "default"
    assert any("YaRN" in n for n in yarn_server.notes)
    tok = httpx.post(yarn_server.root_url + "/tokenize", json={"model": "gemma-3-270m", "prompt": "hi"}).json()
    assert tok["max_model_len"] == WINDOW


def test_yarn_server_answers(yarn_server):
    r = httpx.post(
        yarn_server.base_url + "/completions",
        timeout=300,
        json={"model": "gemma-3-270m", "prompt": "The capital of France is", "max_tokens": 8, "temperature": 0},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["choices"][0]["text"].strip() and body["usage"]["completion_tokens"] >= 1


def test_a_run_records_the_effective_settings_and_server_metrics(yarn_server, tmp_path, monkeypatch):
    """`harness compare --max-model-len 65536` (self-started server; the module's server stands in
    for the one compare would start) writes what the server says into config.yaml and the summary."""
    import harness.endpoints.vllm_server as vs

    asked = {}

    class Borrowed:  # the module's server, not stopped by the run
        def __init__(self, srv):
            self._srv = srv

        def __getattr__(self, name):
            return getattr(self._srv, name)

        def stop(self, *a, **k):
            pass

    def fake_start(opts, log_path=None, **kw):
        asked["opts"] = opts
        return Borrowed(yarn_server)

    monkeypatch.setattr(vs, "start_server", fake_start)
    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "cache.sqlite"))
    out = tmp_path / "run"
    config = RunConfig(
        strategies=["full-context", "rag-bm25:top_k=1"],
        lengths=[400],
        depths=[50.0],
        needles=1,
        shots=1,
        out=out,
        endpoint=EndpointConfig(max_model_len=WINDOW),
    )
    run_compare(config, use_cache=False)
    assert asked["opts"].max_model_len == WINDOW and asked["opts"].embedded

    saved = yaml.safe_load((out / "config.yaml").read_text())
    ep = saved["endpoint"]
    assert ep["max_model_len"] == WINDOW  # read back from /v1/models
    assert ep["server_version"] == "0.32.0"
    assert ep["model_root"].endswith("gemma-3-270m-hf")
    assert ep["launch"]["hf_overrides"]["max_position_embeddings"] == WINDOW
    assert ep["launch"]["rope_scaling"] == "yarn" and ep["launch"]["native_max_len"] == 32768
    assert saved["config"]["endpoint"]["max_model_len"] == WINDOW

    rows = [json.loads(line) for line in (out / "server_metrics.jsonl").read_text().splitlines()]
    run = next(r for r in rows if r["strategy"] is None)
    assert run["exclusive"] is True and run["requests"] == 2
    assert run["prompt_tokens"] > 0 and run["generation_tokens"] > 0 and run["prefill_s"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["server"]["max_model_len"] == WINDOW
    for s in summary["by_strategy"]:
        assert s["prefill_s"] > 0 and s["prefix_cache_hit_rate"] is not None and s["ttft_s"] > 0


def test_stop_closes_the_port_and_ends_the_process_group(yarn_server):
    """The module's last use of its server (a server of its own only to stop it cost a start): stop()
    ends every process of the server's group (api server, engine core) and frees the port; a second
    stop() is harmless (the fixture calls it again)."""
    from process_group import wait_gone

    from harness.endpoints.vllm_server import group_members, port_is_open

    pgid, port = yarn_server.pid, yarn_server.port
    assert len(group_members(pgid)) >= 2  # api server + engine core (+ worker)
    yarn_server.stop()
    assert not port_is_open(port)
    assert wait_gone(pgid, 1)
    assert not yarn_server.is_running()
    yarn_server.stop()


def test_a_length_beyond_the_window_is_refused_before_any_request(vllm_server, tmp_path, monkeypatch):
    window = httpx.get(vllm_server.base_url + "/models", timeout=30).json()["data"][0]["max_model_len"]
    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "cache.sqlite"))
    out = tmp_path / "run"
    config = RunConfig(
        strategies=["full-context"],
        lengths=[window + 1000],
        depths=[50.0],
        needles=1,
        shots=0,
        out=out,
        endpoint=EndpointConfig(url=vllm_server.base_url, model=vllm_server.model, api="completions"),
    )
    with pytest.raises(UsageError) as e:
        run_compare(config, use_cache=False)
    msg = str(e.value)
    assert f"{window:,} tokens" in msg and "--max-model-len" in msg and "--rope-scaling yarn" in msg
    records = out / "records.jsonl"
    assert not records.exists() or not records.read_text().strip()
