"""`harness compare --scenario qa` on the real server, one tiny run per layout (the hand-written files
of tests/data/qa: one length, depths 0 and 100, two rows; full context and rag-dense), and agentic
and self-route on one of them."""

from __future__ import annotations

import json

import httpx
import pytest
from test_qa_scenario import DATA, LAYOUTS

from harness.api import compare as run_compare
from harness.config import EndpointConfig, RunConfig
from harness.store import RunStore

pytestmark = pytest.mark.server

LENGTH = 300
MULTICALL = "hotpotqa.json"


@pytest.fixture(scope="module")
def runs(vllm_server, tmp_path_factory):
    out = {}
    for name in LAYOUTS:
        folder = tmp_path_factory.mktemp(name.replace(".", "-"))
        strategies = ["full-context", "rag-dense:chunk_size=64,top_k=2"]
        if name == MULTICALL:
            strategies += ["agentic:max_steps=2", "self-route"]
        config = RunConfig(
            scenario="qa",
            scenario_params={"file": str(DATA / name)},
            strategies=strategies,
            lengths=[LENGTH],
            depths=[0.0, 100.0],
            needles=2,
            endpoint=EndpointConfig(url=vllm_server.base_url, model=vllm_server.model, api="completions"),
            out=folder,
        )
        run_compare(config)
        out[name] = (config, folder)
    return out


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_every_layout_runs_end_to_end(runs, name, vllm_server):
    config, folder = runs[name]
    store = RunStore(folder)
    records = store.rows()
    assert len(records) == len(config.strategies) * 2 * 2  # strategies x depths x rows
    _, answers, marked = LAYOUTS[name]
    for r in records:
        assert r["error"] is None and r["valid"], r.get("invalid_reason")
        assert set(r["marks"]) == {"answer"} and 0.0 <= r["score"] <= 1.0
        if r["strategy"] == "full-context":
            assert r["shown"]["needle_shown"] is (True if marked else None)
        elif r["strategy"].startswith("rag-dense"):
            recall = r["shown"]["retrieval"]["gold_recall"]
            assert (0.0 <= recall <= 1.0) if marked else recall is None
    first = [r for r in records if r["sample_id"].endswith("/n0")][0]
    assert first["gold"] == {"answer": answers}
    root = vllm_server.base_url.rsplit("/v1", 1)[0]
    for s in store.read_samples():  # lengths are the served model's tokens
        n = httpx.post(
            f"{root}/tokenize", json={"model": vllm_server.model, "prompt": s.joined(), "add_special_tokens": False}
        ).json()["count"]
        assert n <= LENGTH + 5 and abs(n - s.context_tokens) <= 5 + len(s.documents)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["gold_marked"] == (1.0 if marked else 0.0)
    assert ("No gold documents marked in the data" in (folder / "report.html").read_text()) is (not marked)
    saved = store.read_config()
    assert saved["null_source"] and saved["input_notes"][0].startswith(str(DATA / name))


def test_agentic_and_self_route_answer_from_a_file(runs):
    _, folder = runs[MULTICALL]
    records = RunStore(folder).rows()
    agent = [r for r in records if r["strategy"].startswith("agentic")]
    route = [r for r in records if r["strategy"] == "self-route"]
    assert len(agent) == len(route) == 4
    assert all(r["route"] in ("rag", "full-context") for r in route)
    assert all(len(r["calls"]) >= 1 for r in agent + route)
