"""The agentic arm (both drivers) and self-route against the real vLLM server and the real index.

A tiny grid: whatever the embedded model decides, every query must end in a record whose calls,
steps, route and token sums add up, and the summary and report must show them.
"""

from __future__ import annotations

import json

import pytest

from harness.api import compare
from harness.config import EndpointConfig, RunConfig
from harness.store import RunStore

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def run(vllm_server, tmp_path_factory):
    out = tmp_path_factory.mktemp("multicall")
    config = RunConfig(
        strategies=["full-context", "rag-dense:top_k=2", "agentic:driver=json,max_steps=3", "self-route:top_k=2"],
        lengths=[600],
        depths=[0.0, 100.0],
        needles=1,
        shots=0,
        endpoint=EndpointConfig(url=vllm_server.base_url, model=vllm_server.model, api="completions"),
        out=out,
    )
    compare(config, use_cache=False)
    return out


def test_every_query_ends_in_a_record_whose_calls_add_up(run):
    rows = RunStore(run).rows()
    assert len(rows) == 4 * 2
    for row in rows:
        assert row["error"] is None
        calls = row["calls"]
        assert calls and row["prompt_tokens"] == sum(c["prompt_tokens"] for c in calls)
        assert row["completion_tokens"] == sum(c["completion_tokens"] for c in calls)
        assert row["latency_s"] == pytest.approx(sum(c["latency_s"] for c in calls), abs=1e-3)
        assert all(c["prompt_tokens"] == c["prompt_tokens_counted"] for c in calls)  # /tokenize agrees with usage


def test_agent_traces_and_routes(run):
    records = RunStore(run).latest_records()
    agents = [r for r in records if r.strategy_name == "agentic"]
    for r in agents:
        kinds = [s.kind for s in r.steps]
        assert kinds and set(kinds) <= {"search", "read", "answer", "final", "invalid"}
        assert len([c for c in r.calls if c.purpose == "agent"]) <= 3
        assert (r.limit is None) == (kinds[-1] == "answer")  # answered by the agent, or stopped and forced
        assert all(s.call is None or 0 <= s.call < r.n_calls for s in r.steps)
    for r in (r for r in records if r.strategy_name == "self-route"):
        assert r.route in ("rag", "full-context")
        assert [c.purpose for c in r.calls] == (["route"] if r.route == "rag" else ["route", "answer"])


def test_summary_and_report_show_steps_routes_and_money(run):
    summary = json.loads((run / "summary.json").read_text())
    (agent,) = summary["agents"]
    assert agent["strategy"].startswith("agentic") and agent["n"] == 2 and agent["calls"] >= 1
    assert agent["correct"] + agent["ran_out"] + agent["never_searched"] + agent["not_found"] + agent["misread"] == 2
    (route,) = summary["routes"]
    assert route.get("share_rag", 0) + route.get("share_full-context", 0) == pytest.approx(1)
    by = {s["strategy"]: s for s in summary["by_strategy"]}
    assert by["agentic:driver=json,max_steps=3"]["calls"] >= 1 and by["full-context"]["calls"] == 1
    assert all(s["cost_per_1k"] is not None for s in summary["by_strategy"])
    html = (run / "report.html").read_text()
    assert 'id="agents"' in html and 'id="routes"' in html and "calls " in html


def test_tool_calling_driver_on_the_real_server(vllm_server, tmp_path):
    """OpenAI tool calls through LangChain's agent, on vLLM's chat endpoint (the embedded model's
    chat template renders the tools; tool_choice "required" makes vLLM enforce valid calls)."""
    config = RunConfig(
        strategies=["agentic:driver=tools,max_steps=2"],
        lengths=[600],
        depths=[50.0],
        needles=1,
        shots=0,
        endpoint=EndpointConfig(url=vllm_server.base_url, model=vllm_server.model, api="chat", max_tokens=120),
        out=tmp_path / "tools",
    )
    compare(config, use_cache=False)
    (r,) = RunStore(tmp_path / "tools").latest_records()
    assert r.error is None and r.n_calls >= 1
    assert [s.kind for s in r.steps][-1] in ("answer", "final")
    tool_steps = [s for s in r.steps if s.kind in ("search", "read")]
    assert all(s.call is not None for s in tool_steps)
