"""bio-multihop through `harness compare` on the real server: full context, one-shot retrieval and the agent
over the same two-hop haystacks, with gold recall over both biographies, attribution, grounding and the
null baseline in the summary. Tiny (one needle, two depths): what is checked is the bookkeeping, not
which arm wins (the bench settles that)."""

from __future__ import annotations

import json

import pytest

from harness.api import compare
from harness.config import EndpointConfig, RunConfig
from harness.store import RunStore

pytestmark = pytest.mark.server


def test_multihop_compare_on_the_real_server(vllm_server, tmp_path):
    out = tmp_path / "multihop"
    config = RunConfig(
        scenario="bio-multihop",
        strategies=["full-context", "rag-dense:top_k=2", "agentic:driver=json,max_steps=3"],
        lengths=[1000],
        depths=[0.0, 100.0],
        needles=1,
        shots=0,
        endpoint=EndpointConfig(url=vllm_server.base_url, model=vllm_server.model, api="completions"),
        out=out,
    )
    compare(config, use_cache=False)
    records = RunStore(out).latest_records()
    assert len(records) == 3 * 2 and all(r.error is None for r in records)
    for r in records:
        assert r.gold["nationality"] and r.subject
        recall = r.shown.retrieval.get("gold_recall")
        if r.strategy.startswith("rag-dense"):
            assert recall in (0.0, 0.5, 1.0)  # two gold biographies: each hop counts half
    summary = json.loads((out / "summary.json").read_text())
    by = {s["strategy"]: s for s in summary["by_strategy"]}
    assert by["rag-dense:top_k=2"]["needle_recall"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert all(r.shown.needle_shown for r in records if r.strategy == "full-context")
    assert any(a["strategy"] == "rag-dense:top_k=2" for a in summary["attribution"])
    assert summary["null_baseline"]["accuracy"] is not None
    (agent,) = summary["agents"]
    assert agent["n"] == 2 and agent["actions"] >= 2
    assert (out / "report.html").is_file()
