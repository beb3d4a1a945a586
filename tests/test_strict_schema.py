"""The agentic arm's requests under OpenAI-style strict structured output.

OpenAI's strict mode accepts a schema only with an object at the root (no root anyOf), every
property required and additionalProperties false, all the way down. The stand-in server
(bench/fake_openai.py --strict) enforces those documented rules and refuses a request that breaks
them with HTTP 400, as OpenAI does; the JSON action protocol and the tools driver (`--api chat`,
tools sent strict) must pass it.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

from harness import api
from harness.config import EndpointConfig, RunConfig
from harness.registry import get
from harness.scoring.answers import wire_schema
from harness.store import RunStore
from retrievers.agent_actions import strict_schema
from retrievers.agentic import action_schema

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import fake_openai  # noqa: E402

SCENARIOS = ["bio-needle", "kv-retrieval", "bio-mdqa", "bio-aggregate", "bio-multihop"]


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HARNESS_RESPONSE_CACHE", str(tmp_path / "responses.sqlite"))


def test_the_rules_refuse_what_strict_mode_refuses():
    ok = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"], "additionalProperties": False}
    assert fake_openai.strict_problems(ok) == []
    assert fake_openai.strict_problems({"anyOf": [ok, ok]})  # root anyOf, and not an object
    assert fake_openai.strict_problems(ok | {"required": []})  # a property not required
    assert fake_openai.strict_problems({k: v for k, v in ok.items() if k != "additionalProperties"})
    nested = ok | {"properties": {"a": {"anyOf": [{"type": "object", "properties": {"b": {"type": "integer"}}}]}}}
    assert any("$.a.anyOf[0]" in p for p in fake_openai.strict_problems(nested))  # nested objects too
    assert fake_openai.strict_problems(strict_schema(nested)) == []


@pytest.mark.parametrize("name", SCENARIOS)
def test_action_schema_is_strict_for_every_scenario(name):
    scenario = get("scenario", name)()
    assert fake_openai.strict_problems(action_schema()) == []
    assert fake_openai.strict_problems(action_schema(wire_schema(scenario))) == []


def _config(url: str, out: Path, strategy: str) -> RunConfig:
    return RunConfig(
        strategies=[strategy],
        lengths=[600],
        depths=[50.0],
        needles=1,
        shots=0,
        endpoint=EndpointConfig(url=url, model="gemma-3-270m", api="chat"),
        out=out,
    )


@pytest.mark.parametrize(
    "strategy",
    [
        "agentic:driver=json",
        "agentic:driver=json,answer_from=action",
        "agentic:driver=tools",
        "agentic:driver=tools,answer_from=action",
    ],
)
def test_agent_requests_pass_a_strict_endpoint(strategy, tmp_path):
    with fake_openai.running("--strict", "--tool-call", "answer") as url:
        out = api.compare(_config(url, tmp_path / "run", strategy), use_cache=False)
        stats = httpx.get(url.removesuffix("/v1") + "/__stats").json()
    (r,) = RunStore(out).latest_records()
    assert r.error is None and stats["refused"] == 0 and stats["generations"] == r.n_calls >= 1
    if "tools" in strategy:  # the stand-in called the answer tool: the tools reached it and were accepted
        assert "answer" in [s.kind for s in r.steps]


def test_the_stand_in_refuses_a_root_anyof_action_schema():
    old = {"anyOf": [action_schema(), action_schema()]}
    body = {
        "model": "gemma-3-270m",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "schema": old, "strict": True}},
    }
    with fake_openai.running("--strict") as url:
        got = httpx.post(url + "/chat/completions", json=body)
    assert got.status_code == 400 and "root schema must not be anyOf" in json.dumps(got.json())
