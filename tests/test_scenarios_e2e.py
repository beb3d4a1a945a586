"""`harness compare` over the new scenarios on the real server: a tiny grid each (one length, depths 0
and 100, one needle; full-context and rag-dense), plus the guide's example through --include."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from harness.api import compare as run_compare
from harness.config import EndpointConfig, RunConfig
from harness.store import RunStore

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parents[1]
RUNS = {  # scenario, its parameters, length
    "kv-retrieval": ("kv-retrieval", {}, 512),
    "kv-multi-subkey": ("kv-retrieval", {"variant": "multi_subkey"}, 512),
    "bio-mdqa": ("bio-mdqa", {}, 512),
    "bio-aggregate-count": ("bio-aggregate", {"targets": 2}, 768),
    "bio-aggregate-list": ("bio-aggregate", {"question": "list", "targets": 2}, 768),
}
FIELDS = {"kv-retrieval": ["value"], "bio-mdqa": ["year"], "bio-aggregate": ["count"]}


@pytest.fixture(scope="module")
def runs(vllm_server, tmp_path_factory):
    out = {}
    for label, (scenario, params, length) in RUNS.items():
        folder = tmp_path_factory.mktemp(label)
        config = RunConfig(
            scenario=scenario,
            scenario_params=params,
            strategies=["full-context", "rag-dense"],
            lengths=[length],
            depths=[0.0, 100.0],
            needles=1,
            shots=1,
            endpoint=EndpointConfig(url=vllm_server.base_url, model=vllm_server.model, api="completions"),
            out=folder,
        )
        run_compare(config)
        out[label] = (config, folder)
    return out


@pytest.mark.parametrize("label", list(RUNS))
def test_every_query_answered_and_scored(runs, label):
    config, folder = runs[label]
    records = RunStore(folder).rows()
    assert len(records) == 2 * 2  # strategies x depths
    fields = ["precision", "recall"] if config.scenario_params.get("question") == "list" else FIELDS[config.scenario]
    for r in records:
        assert r["error"] is None
        if label != "bio-aggregate-list":  # a list may run past the token limit; then the reason is kept
            assert r["valid"], r["invalid_reason"]  # structured output: the wrapped schema holds
        if not r["valid"]:
            assert r["invalid_reason"] and r["score"] == 0.0
            continue
        assert set(r["marks"]) == set(fields) and set(r["answer"]) == set(r["gold"])
        assert 0.0 <= r["score"] <= 1.0
        if r["strategy"] == "full-context":
            assert r["shown"]["needle_shown"] is True
        else:
            rec = r["shown"]["retrieval"]
            assert 0.0 <= rec["gold_recall"] <= 1.0


@pytest.mark.parametrize("label", list(RUNS))
def test_lengths_in_model_tokens_and_summary(runs, label, vllm_server):
    config, folder = runs[label]
    store = RunStore(folder)
    root = vllm_server.base_url.rsplit("/v1", 1)[0]
    for s in store.read_samples():
        n = httpx.post(
            f"{root}/tokenize", json={"model": vllm_server.model, "prompt": s.joined(), "add_special_tokens": False}
        ).json()["count"]
        assert n <= s.length + len(s.documents)  # separators are estimated
        assert abs(n - s.context_tokens) <= len(s.documents)
    summary = json.loads((folder / "summary.json").read_text())
    assert [s["strategy"] for s in summary["by_strategy"]] == ["full-context", "rag-dense"]
    assert 0 <= summary["null_baseline"]["accuracy"] <= 1 and summary["null_source"]
    rag = summary["by_strategy"][1]
    assert 0 <= rag["needle_recall"] <= 1
    assert (folder / "report.html").exists()


def test_the_guides_example_on_the_real_server(vllm_server, tmp_path):
    out = tmp_path / "flights"
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "compare",
            "--endpoint",
            vllm_server.base_url,
            "--model",
            vllm_server.model,
            "--api",
            "completions",
            "--include",
            "docs/examples/flight_gates.py",
            "--scenario",
            "flight-gates",
            "--lengths",
            "512",
            "--depths",
            "0,100",
            "--needles",
            "1",
            "-s",
            "full-context,rag-dense",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    rows = RunStore(out).rows()
    assert len(rows) == 4 and all(r["error"] is None and r["valid"] for r in rows)
    assert "null baseline" in p.stdout
