"""Strategies that call the model several times: the agentic arm (both drivers) and self-route.

Scripted endpoints (an httpx transport that answers each request from a script) check what the
strategies do with each kind of answer: traces, limits, routes, and calls and tokens adding up.
The real server runs them end to end in test_multicall_e2e (marked `server`).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest

from harness.api import build_scenario, build_strategies
from harness.config import RunConfig
from harness.endpoints.client import Endpoint
from harness.query import Asker, Query
from harness.runner import make_record


def _count(texts):
    return [max(1, len(t) // 4) for t in texts]


@pytest.fixture(scope="module")
def sample_and_scenario():
    config = RunConfig(lengths=[600], depths=[50.0], needles=1, shots=0)
    scen = build_scenario(config)
    (sample,) = scen.samples(config.lengths, config.depths, config.needles, _count)
    return sample, scen


def _gold_text(scen, sample) -> str:
    return json.dumps(scen.encode_answer(sample.gold), separators=(",", ":"))


def _usage(prompt_tokens=100, completion_tokens=20):
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": 120}


def _run(strategy_spec: str, scen, sample, replies, tmp_path: Path, api: str = "completions"):
    """Solve one sample with `strategy_spec` against a scripted endpoint; (record, request bodies)."""
    bodies: list[dict] = []
    script = list(replies)

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/tokenize"):
            return httpx.Response(404)
        body = json.loads(request.content)
        bodies.append(body)
        reply = script.pop(0) if script else {"text": "{}"}
        if api == "chat":
            msg = {"role": "assistant", "content": reply.get("text")}
            calls = [(n, json.dumps(a)) for n, a in reply.get("tool_calls", [])] + reply.get("raw_tool_calls", [])
            if calls:
                msg["tool_calls"] = [
                    {"id": f"c{i}", "type": "function", "function": {"name": n, "arguments": a}}
                    for i, (n, a) in enumerate(calls)
                ]
            choice = {"index": 0, "message": msg, "finish_reason": "stop"}
        else:
            choice = {"index": 0, "text": reply["text"], "finish_reason": "stop"}
        return httpx.Response(200, json={"choices": [choice], "usage": _usage(*reply.get("usage", (100, 20)))})

    config = RunConfig(strategies=[strategy_spec])
    (strategy,) = build_strategies(config, tmp_path / "cache", None)
    strategy.prepare([sample])
    ep = Endpoint("http://scripted.test/v1", "m", api, None, timeout_s=10, max_retries=0)
    ep._tokenize_ok = False

    async def go():
        async with ep.session(2, transport=httpx.MockTransport(handler)) as s:
            query = Query(Asker(ep, s, max_tokens=160, window=None, concurrency=1), sample, scen, [], strategy.label)
            strategy.preflight(sample, query)
            return make_record("r", strategy, sample, query, await strategy.solve(sample, query))

    return asyncio.run(go()), bodies


def _action(**kw) -> dict:
    return {"text": json.dumps(kw)}


# -- agentic, JSON action protocol ---------------------------------------------------------------------------
def test_json_agent_searches_reads_and_answers_with_every_step_recorded(sample_and_scenario, tmp_path):
    sample, scen = sample_and_scenario
    needle = sample.gold_ids[0]
    replies = [
        _action(action="search", input=sample.subject) | {"usage": (300, 15)},
        _action(action="read", input=needle) | {"usage": (500, 10)},
        _action(action="answer", input="") | {"usage": (900, 5)},
        {"text": _gold_text(scen, sample), "usage": (400, 40)},  # the answer, written over what was read
    ]
    r, bodies = _run("agentic:driver=json", scen, sample, replies, tmp_path)
    assert [s.kind for s in r.steps] == ["search", "read", "answer"]
    assert r.steps[0].arguments["query"] == sample.subject and r.steps[1].result_ids == [needle]
    assert [s.call for s in r.steps] == [0, 1, 2]
    assert r.score == 1 and r.limit is None and r.valid
    assert [c.purpose for c in r.calls] == ["agent", "agent", "agent", "answer"]
    assert (r.prompt_tokens, r.completion_tokens) == (2100, 70)  # sums over calls
    assert r.shown.retrieval["needle_retrieved"] and r.shown.retrieval["searched_subject"]
    assert r.shown.retrieval["needle_coverage"] == 1.0 and r.shown.needle_shown
    # each step's request holds the transcript so far, and is constrained to an action (an object at the root)
    schema = bodies[0]["response_format"]["json_schema"]["schema"]
    assert schema["type"] == "object" and "anyOf" not in schema and set(schema["required"]) == {"action", "input"}
    assert (
        "Step 1:" in bodies[1]["prompt"] and sample.subject in bodies[1]["prompt"] and "Step 2:" in bodies[1]["prompt"]
    )
    # the answer is asked in the scenario's own extraction prompt, over what the agent read
    assert bodies[3]["prompt"].rstrip().endswith("Answer:") and needle_text(sample) in bodies[3]["prompt"]
    assert "Search for the person the question names" in bodies[0]["prompt"]


def needle_text(sample) -> str:
    return next(d.text for d in sample.documents if d.id == sample.gold_ids[0])


def test_json_agent_answer_inside_the_action(sample_and_scenario, tmp_path):
    sample, scen = sample_and_scenario
    answer = {"action": "answer", "input": "", "answer": scen.encode_answer(sample.gold)}
    r, bodies = _run("agentic:driver=json,answer_from=action", scen, sample, [{"text": json.dumps(answer)}], tmp_path)
    assert r.score == 1 and r.n_calls == 1 and [s.kind for s in r.steps] == ["answer"]
    schema = bodies[0]["response_format"]["json_schema"]["schema"]
    assert set(schema["required"]) == {"action", "input", "answer"} and "anyOf" in schema["properties"]["answer"]


def test_json_agent_invalid_actions_are_classed_and_fed_back(sample_and_scenario, tmp_path):
    from harness.report.multicall import agent_rows

    sample, scen = sample_and_scenario
    replies = [
        _action(action="jump", input="x"),  # unknown tool
        _action(action="read", input="false,"),  # no such document: bad arguments
        _action(action="search", input=" "),  # empty query: bad arguments
        _action(action="search", input=sample.subject),
        _action(action="search", input=sample.subject.upper()),  # the same query again
        {"text": "not json"},  # invalid JSON: the agent is stopped
        {"text": _gold_text(scen, sample)},
    ]
    r, bodies = _run("agentic:driver=json,max_steps=8", scen, sample, replies, tmp_path)
    errors = [s.arguments.get("error") for s in r.steps if s.kind == "invalid"]
    assert errors == ["unknown_tool", "bad_arguments", "bad_arguments", "invalid_json"]
    assert r.limit == "invalid_action" and r.steps[-1].kind == "final"
    assert "error: no action 'jump'" in bodies[1]["prompt"] and "no document 'false,'" in bodies[2]["prompt"]
    retrieval = r.shown.retrieval
    assert retrieval["repeated_queries"] == 1 and len(retrieval["search_hits"]) == 2
    (row,) = agent_rows([r])
    assert row["invalid_json"] == 1 and row["unknown_tool"] == 1 and row["bad_arguments"] == 2
    assert row["actions"] == 6 and row["valid_actions"] == pytest.approx(2 / 6)
    assert row["repeated_queries"] == 1.0


def test_search_terms_speak_each_scenarios_subject():
    """searched_subject means something in every built-in scenario: the scenario names its subject's words."""
    from harness.registry import get

    for name, words in {
        "bio-needle": "person",
        "kv-retrieval": "key",
        "bio-mdqa": "person",
        "bio-aggregate": "criterion",
        "bio-multihop": "person",
    }.items():
        scen = get("scenario", name)()
        samples = scen.samples([1200], [50.0], 3, _count)
        assert words in scen.words.search_hint(), name
        for sample in samples:
            terms = scen.search_terms(sample)
            assert terms and all(t.strip() for t in terms), name
            assert any(t.lower() in sample.question.lower() for t in terms), (name, terms)  # the agent can copy them
            if name != "bio-aggregate":  # a criterion is matched by meaning, a name or key by its letters
                gold = " ".join(d.text for d in sample.documents if d.id in sample.gold_ids).lower()
                assert any(t.lower() in gold for t in terms), (name, terms)


def test_json_agent_stopped_by_max_steps_answers_from_what_it_was_shown(sample_and_scenario, tmp_path):
    sample, scen = sample_and_scenario
    replies = [
        _action(action="search", input="somebody else"),
        _action(action="search", input="still not"),
        {"text": _gold_text(scen, sample)},
    ]  # the forced final extraction call
    r, bodies = _run("agentic:driver=json,max_steps=2", scen, sample, replies, tmp_path)
    assert r.limit == "max_steps" and [s.kind for s in r.steps] == ["search", "search", "final"]
    assert [c.purpose for c in r.calls] == ["agent", "agent", "final"]
    assert bodies[-1]["prompt"].rstrip().endswith("Answer:") and "Documents:" in bodies[-1]["prompt"]
    assert r.valid  # a scored answer, whatever the agent did


def test_json_agent_token_budget(sample_and_scenario, tmp_path):
    sample, scen = sample_and_scenario
    replies = [
        _action(action="search", input=sample.subject) | {"usage": (5000, 20)},
        {"text": _gold_text(scen, sample)},
    ]
    r, _ = _run("agentic:driver=json,token_budget=1000", scen, sample, replies, tmp_path)
    assert r.limit == "token_budget" and [c.purpose for c in r.calls] == ["agent", "final"]


def test_agent_failure_classes(sample_and_scenario, tmp_path):
    from harness.report.multicall import agent_outcome, agent_rows

    sample, scen = sample_and_scenario
    wrong = dict(scen.encode_answer(sample.gold), nationality="martian")
    never, _ = _run(
        "agentic:driver=json,answer_from=action",
        scen,
        sample,  # answers without looking
        [{"text": json.dumps({"action": "answer", "answer": wrong})}],
        tmp_path,
    )
    misread, _ = _run(
        "agentic:driver=json,answer_from=action",
        scen,
        sample,
        [
            _action(action="read", input=sample.gold_ids[0]),
            {"text": json.dumps({"action": "answer", "input": "", "answer": wrong})},
        ],
        tmp_path,
    )
    assert agent_outcome(never) == "never_searched" and agent_outcome(misread) == "misread"
    (row,) = agent_rows([never, misread])
    assert row["n"] == 2 and row["never_searched"] == 1 and row["misread"] == 1 and row["needle_found"] == 0.5


# -- agentic, OpenAI tool calls through LangChain's agent -------------------------------------------------------
def test_tool_agent_runs_langchains_agent_over_the_harness_model(sample_and_scenario, tmp_path):
    sample, scen = sample_and_scenario
    replies = [
        {"text": "", "tool_calls": [("search", {"query": sample.subject})]},
        {"text": "", "tool_calls": [("answer", {})]},
        {"text": _gold_text(scen, sample)},  # the answer, written over what was read
    ]
    r, bodies = _run("agentic:driver=tools", scen, sample, replies, tmp_path, api="chat")
    assert [s.kind for s in r.steps] == ["search", "answer"] and r.score == 1 and r.n_calls == 3
    assert [c.purpose for c in r.calls] == ["agent", "agent", "answer"]
    assert {t["function"]["name"] for t in bodies[0]["tools"]} == {"search", "read", "answer"}
    assert bodies[0]["tool_choice"] == "required"
    # the tool result went back to the model as a tool message
    assert any(
        m.get("role") == "tool" and sample.subject.split()[-1].lower() in m["content"].lower()
        for m in bodies[1]["messages"]
    )
    assert r.shown.retrieval["searched_subject"] and r.shown.retrieval["search_hits"] == [True]


def test_tool_agent_answer_inside_the_tool(sample_and_scenario, tmp_path):
    sample, scen = sample_and_scenario
    replies = [{"text": "", "tool_calls": [("answer", scen.encode_answer(sample.gold))]}]
    r, bodies = _run("agentic:driver=tools,answer_from=action", scen, sample, replies, tmp_path, api="chat")
    assert [s.kind for s in r.steps] == ["answer"] and r.score == 1 and r.n_calls == 1


def test_tool_agent_records_invalid_tool_calls_by_class(sample_and_scenario, tmp_path):
    sample, scen = sample_and_scenario

    def raw(name: str, arguments: str) -> dict:
        return {"text": "", "raw_tool_calls": [(name, arguments)]}

    replies = [
        {"text": "", "tool_calls": [("jump", {"query": "x"})]},  # unknown tool
        {"text": "", "tool_calls": [("read", {"doc": 3})]},  # off the tool's schema
        raw("search", '{"query": '),  # arguments that do not parse
        {"text": "", "tool_calls": [("answer", {})]},
        {"text": _gold_text(scen, sample)},
    ]
    r, bodies = _run("agentic:driver=tools,max_steps=8", scen, sample, replies, tmp_path, api="chat")
    errors = [(s.arguments.get("error"), s.arguments.get("tool")) for s in r.steps if s.kind == "invalid"]
    assert errors == [("unknown_tool", "jump"), ("bad_arguments", "read"), ("invalid_json", "search")]
    assert [s.call for s in r.steps if s.kind == "invalid"] == [0, 1, 2]
    assert r.score == 1 and r.steps[-1].kind == "answer"


def test_tool_driver_on_a_completions_endpoint_is_refused_before_any_call(sample_and_scenario, tmp_path):
    from harness.errors import UsageError

    sample, scen = sample_and_scenario
    with pytest.raises(UsageError, match="needs a chat endpoint"):
        _run("agentic:driver=tools", scen, sample, [], tmp_path)


# -- self-route ----------------------------------------------------------------------------------------------
def test_self_route_answers_from_retrieval_when_the_model_says_it_can(sample_and_scenario, tmp_path):
    sample, scen = sample_and_scenario
    answer = {"answerable": True, "answer": scen.encode_answer(sample.gold)}
    r, bodies = _run("self-route", scen, sample, [{"text": json.dumps(answer)}], tmp_path)
    assert r.route == "rag" and r.n_calls == 1 and r.calls[0].purpose == "route" and r.score == 1
    assert "answerable" in json.dumps(bodies[0]["response_format"])


def test_self_route_falls_back_to_full_context(sample_and_scenario, tmp_path):
    sample, scen = sample_and_scenario
    replies = [
        {"text": '{"answerable":false,"answer":null}', "usage": (200, 8)},
        {"text": _gold_text(scen, sample), "usage": (700, 40)},
    ]
    r, bodies = _run("self-route:top_k=1", scen, sample, replies, tmp_path)
    assert r.route == "full-context" and [c.purpose for c in r.calls] == ["route", "answer"]
    assert (r.prompt_tokens, r.completion_tokens) == (900, 48)
    assert all(d.text in bodies[1]["prompt"] for d in sample.documents)  # everything, the second time
    assert r.shown.needle_shown and r.steps[0].arguments == {"answerable": False}


def test_route_summary(sample_and_scenario, tmp_path):
    from harness.report.multicall import route_rows

    sample, scen = sample_and_scenario
    rag, _ = _run(
        "self-route",
        scen,
        sample,
        [{"text": json.dumps({"answerable": True, "answer": scen.encode_answer(sample.gold)})}],
        tmp_path,
    )
    full, _ = _run(
        "self-route", scen, sample, [{"text": '{"answerable":false,"answer":null}'}, {"text": "{}"}], tmp_path
    )
    (row,) = route_rows([rag, full])
    assert row["share_rag"] == row["share_full-context"] == 0.5
    assert row["accuracy_rag"] == 1.0 and row["accuracy_full-context"] == 0.0  # "{}" is invalid: all fields wrong


def test_self_route_refuses_an_arm_that_does_not_retrieve(tmp_path):
    from harness.errors import UsageError

    with pytest.raises(UsageError, match="not a retrieval arm"):
        build_strategies(RunConfig(strategies=["self-route:rag=full-context"]), tmp_path, None)


def test_self_route_one_call_form_answers_or_says_unanswerable(sample_and_scenario, tmp_path):
    sample, scen = sample_and_scenario
    r, bodies = _run("self-route:form=unanswerable", scen, sample, [{"text": _gold_text(scen, sample)}], tmp_path)
    assert r.route == "rag" and r.n_calls == 1 and r.score == 1
    assert 'reply "unanswerable"' in bodies[0]["prompt"] and "answerable" not in json.dumps(
        bodies[0]["response_format"]["json_schema"]["schema"]["anyOf"][0]
    )
    replies = [{"text": '"unanswerable"'}, {"text": _gold_text(scen, sample)}]
    r, _ = _run("self-route:form=unanswerable,top_k=1", scen, sample, replies, tmp_path)
    assert r.route == "full-context" and [c.purpose for c in r.calls] == ["route", "answer"] and r.score == 1


def test_route_accuracy_against_the_oracle_route(sample_and_scenario, tmp_path):
    """Answerable exactly when retrieval showed the whole needle: each (said, oracle) pair is counted."""
    from harness.report.multicall import route_rows

    sample, scen = sample_and_scenario
    yes = [{"text": json.dumps({"answerable": True, "answer": scen.encode_answer(sample.gold)})}]
    no = [{"text": '{"answerable":false,"answer":null}'}, {"text": _gold_text(scen, sample)}]
    shown_all, _ = _run("self-route:top_k=8", scen, sample, yes, tmp_path)  # the needle is in the top 8
    refused_all, _ = _run("self-route:top_k=8", scen, sample, no, tmp_path)
    assert shown_all.shown.retrieval["needle_coverage"] == 1.0
    assert refused_all.shown.retrieval["first_route"]["needle_coverage"] == 1.0
    (row,) = route_rows([shown_all, refused_all])
    assert row["route_confusion"] == {
        "answerable/answerable": 1,
        "answerable/not": 0,
        "not/answerable": 1,
        "not/not": 0,
    }
    assert row["route_accuracy"] == 0.5 and row["token_share_of"] == "haystack" and row["token_share"] > 0


def test_terminal_and_report_show_action_and_route_metrics(sample_and_scenario, tmp_path):
    from rich.console import Console

    from harness.report.html import render_report
    from harness.report.summary import summarize
    from harness.report.terminal import agent_action_table, route_table

    sample, scen = sample_and_scenario
    agent, _ = _run(
        "agentic:driver=json",
        scen,
        sample,
        [_action(action="jump", input=""), _action(action="answer", input=""), {"text": _gold_text(scen, sample)}],
        tmp_path,
    )
    routed, _ = _run(
        "self-route:top_k=8", scen, sample, [{"text": '"x"'}, {"text": _gold_text(scen, sample)}], tmp_path
    )
    summary = summarize([agent, routed], scen)
    (a,) = summary["agents"]
    assert a["unknown_tool"] == 1 and a["valid_actions"] == 0.5 and a["token_share_of"] == "haystack"
    (r,) = summary["routes"]
    assert r["route_confusion"]["not/answerable"] == 1 and r["route_accuracy"] == 0.0
    console = Console(record=True, width=250)
    console.print(agent_action_table(summary))
    console.print(route_table(summary))
    text = console.export_text()
    assert "unknown tool" in text and "50.0" in text and "route accuracy" in text and "0 / 0" in text
    html = render_report(summary, [agent, routed], [sample], scen)
    assert 'id="agent-actions"' in html and "route accuracy" in html and "invalid (unknown tool)" in html


def test_agent_trajectory_is_byte_for_byte_what_solve_sends(sample_and_scenario, tmp_path):
    """Fine-tuning demonstrations (harness finetune's agent trajectories) are the prompts the arm really sends:
    replayed as the model's replies, every request of `solve` equals a demonstrated prompt, in order."""
    sample, scen = sample_and_scenario
    (arm,) = build_strategies(RunConfig(strategies=["agentic:driver=json"]), tmp_path / "cache", None)
    steps = asyncio.run(arm.trajectory(sample, scen, miss="Quorble Zanthex"))
    assert steps
    actions = [json.loads(t) for _, t in steps[:-1]]
    assert actions[-3:] == [
        {"action": "search", "input": sample.subject},
        {"action": "read", "input": sample.gold_ids[0]},
        {"action": "answer", "input": ""},
    ]
    r, bodies = _run("agentic:driver=json", scen, sample, [{"text": t} for _, t in steps], tmp_path)
    assert [b["prompt"] for b in bodies] == [p.text for p, _ in steps]
    assert r.score == 1 and r.limit is None and r.shown.retrieval["searched_subject"]


def test_a_multi_hop_trajectory_searches_the_name_it_read(tmp_path):
    """bio-multihop's demonstration: search the person, read them, search the coach their biography names,
    read the coach, answer; replayed, `solve` sends exactly those prompts and scores."""
    config = RunConfig(scenario="bio-multihop", lengths=[900], depths=[0.0], needles=1, shots=0)
    scen = build_scenario(config)
    (sample,) = scen.samples(config.lengths, config.depths, config.needles, _count)
    (arm,) = build_strategies(RunConfig(strategies=["agentic:driver=json"]), tmp_path / "cache", None)
    steps = asyncio.run(arm.trajectory(sample, scen))
    actions = [json.loads(t) for _, t in steps[:-1]]
    coach = sample.meta["coach"]
    assert actions == [
        {"action": "search", "input": sample.subject},
        {"action": "read", "input": sample.gold_ids[0]},
        {"action": "search", "input": coach},
        {"action": "read", "input": sample.gold_ids[1]},
        {"action": "answer", "input": ""},
    ]
    assert coach.lower() in steps[2][0].text.lower()  # the name was read before it was searched
    r, bodies = _run("agentic:driver=json", scen, sample, [{"text": t} for _, t in steps], tmp_path)
    assert [b["prompt"] for b in bodies] == [p.text for p, _ in steps]
    assert r.score == 1 and r.limit is None
