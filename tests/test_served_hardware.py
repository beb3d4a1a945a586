"""A server the harness started says what it runs on (and which tokenizer it counts with), so a
`harness compare --endpoint` at its URL prices it as that machine: a CPU at the CPU's hourly price,
never "self-hosted on GPU". The stand-in server (bench/fake_openai.py) plays the served vLLM; the
record is the one harness/endpoints/served.py keeps for every healthy VLLMServer."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

from harness.endpoints import served
from harness.endpoints.client import Endpoint
from harness.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import fake_openai  # noqa: E402


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("HARNESS_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _record(pid: int, port: int, **kw) -> served.Served:
    fields = {
        "pid": pid,
        "created": served.process_created(pid),
        "port": port,
        "model": "gemma-3-270m",
        "model_path": "/models/gemma",
        "flavour": "cpu",
        "device": "CPU avx2, cores 0-1",
        **kw,
    }
    return served.Served(**fields)


@pytest.fixture
def stand_in():
    proc, url = fake_openai.start_subprocess()
    try:
        yield proc, url
    finally:
        proc.kill()
        proc.wait()


def test_a_record_is_believed_only_for_its_live_process_its_loopback_port_and_its_model(cache):
    import os

    served.write(_record(os.getpid(), 8123))
    found = served.lookup("http://127.0.0.1:8123/v1", "gemma-3-270m")
    assert found is not None and found.hardware()["flavour"] == "cpu"
    assert served.lookup("http://127.0.0.1:8123/v1", "another-model") is None
    assert served.lookup("http://10.1.2.3:8123/v1", "gemma-3-270m") is None  # not this machine
    assert served.lookup("http://127.0.0.1:8999/v1", "gemma-3-270m") is None
    served.remove(8123, os.getpid() + 1)  # another server's stop leaves this record alone
    assert served.lookup("http://127.0.0.1:8123/v1", "gemma-3-270m") is not None
    # a server killed -9 never withdrew its record: its pid is gone, the record is stale and removed
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    served.write(_record(os.getpid(), 8124).model_copy(update={"pid": gone.pid}))
    assert served.lookup("http://127.0.0.1:8124/v1", "gemma-3-270m") is None
    assert not (cache / "served" / "8124.json").exists()


def test_the_endpoint_learns_the_hardware_and_counts_with_the_served_tokenizer(stand_in, tmp_path, cache):
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder = tmp_path / "model"
    folder.mkdir()
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "red": 1, "fox": 2}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "tokenizer.json"))
    proc, url = stand_in
    served.write(_record(proc.pid, urlsplit(url).port, tokenizer=str(folder)))
    ep = Endpoint(url, "gemma-3-270m", "completions", None)
    info = ep.describe()
    assert info["served_by"]["flavour"] == "cpu" and "avx2" in info["served_by"]["device"]
    assert ep.token_counter == "served tokenizer (local)"
    assert ep.count_tokens(["red fox red", "fox", "red fox red"]) == [3, 1, 3]
    root = url.removesuffix("/v1")
    assert httpx.get(root + "/__stats").json()["tokenize"] == 0  # no /tokenize request was needed
    # without a record: the server's /tokenize, and nothing said about the hardware
    served.remove(urlsplit(url).port, proc.pid)
    plain = Endpoint(url, "gemma-3-270m", "completions", None)
    assert "served_by" not in plain.describe() and plain.token_counter == "server /tokenize"
    plain.count_tokens(["red fox"])
    assert httpx.get(root + "/__stats").json()["tokenize"] == 1


def _compare(url: str, out: Path) -> dict:
    from harness.api import compare as run_compare
    from harness.config import EndpointConfig, RunConfig

    config = RunConfig(
        strategies=["full-context"],
        lengths=[300],
        depths=[50.0],
        needles=2,
        shots=0,
        out=out,
        endpoint=EndpointConfig(url=url, model="gemma-3-270m", api="completions", concurrency=2),
    )
    run_compare(config, use_cache=False)
    return json.loads((out / "summary.json").read_text())


def test_a_compare_at_a_harness_served_cpu_endpoint_is_priced_as_a_cpu(stand_in, tmp_path, cache):
    proc, url = stand_in
    before = _compare(url, tmp_path / "unknown")  # any server behind --endpoint: the entry's own basis
    assert before["cost"]["price"]["basis"] == "gpu_hour"
    served.write(_record(proc.pid, urlsplit(url).port))
    summary = _compare(url, tmp_path / "served")
    saved = yaml.safe_load((tmp_path / "served" / "config.yaml").read_text())
    assert saved["endpoint"]["served_by"]["flavour"] == "cpu"
    price = summary["cost"]["price"]
    assert price["basis"] == "cpu_hour" and price["cpu_hour"] == pytest.approx(0.05)
    assert "self-hosted on CPU, $0.05/hour" in price["describe"] and "GPU" not in price["describe"]
    fc = next(s for s in summary["by_strategy"] if s["strategy"] == "full-context")
    latency = [c.latency_s for r in RunStore(tmp_path / "served").records() for c in r.calls]
    assert fc["cost_per_query"] == pytest.approx(0.05 * sum(latency) / len(latency) / 3600, rel=1e-2)


def test_a_started_server_advertises_itself_until_it_stops(tmp_path, cache):
    """The launcher's side: a healthy VLLMServer writes its record, stop() withdraws it."""
    from test_vllm_server import FAKE_SERVER, FakeServer

    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE_SERVER)
    srv = FakeServer(script, "ok", log_path=tmp_path / "ok.log", startup_timeout=30)
    with srv:
        record = served.lookup(srv.base_url, "fake")
        assert record is not None and record.pid == srv.pid and record.port == srv.port
        assert record.flavour == "gpu" and record.device == "GPU"  # the fake runs without the CPU build's settings
        assert record.tokenizer is None  # its folder holds no tokenizer.json
    assert served.lookup(srv.base_url, "fake") is None and not list((cache / "served").glob("*.json"))


@pytest.mark.server
def test_the_served_tokenizer_read_locally_counts_as_the_server_does(vllm_server):
    """The embedded model's converted folder counts every prompt and text exactly as vLLM's /tokenize."""
    from harness.endpoints.embedded import EMBEDDED_MODEL, embedded_model_dir
    from harness.prompting import Prompt

    if vllm_server.model != EMBEDDED_MODEL:
        pytest.skip("the session's server is not the embedded model")
    local = Endpoint(vllm_server.base_url, vllm_server.model, "completions", None, tokenizer=str(embedded_model_dir()))
    remote = Endpoint(vllm_server.base_url, vllm_server.model, "completions", None)
    assert local.token_counter == "served tokenizer (local)" and remote.token_counter == "server /tokenize"
    texts = [
        "Ada Lovelace (10 December 1815 – 27 November 1852) was an English mathematician.",
        "  spaces,\ttabs\nand\n\nnewlines  ",
        'Zürich · 東京 · emoji 🧪 · {"json": [1, 2]}',
    ]
    assert local.count_tokens(texts) == remote.count_tokens(texts)
    prompts = [Prompt(text=t, messages=[{"role": "user", "content": t}]) for t in texts]
    root = vllm_server.base_url.removesuffix("/v1")
    served_counts = [
        httpx.post(root + "/tokenize", json={"model": vllm_server.model, "prompt": p.text}, timeout=30).json()["count"]
        for p in prompts
    ]
    assert local.count_prompts_locally(prompts) == served_counts  # BOS included, as vLLM counts a prompt
