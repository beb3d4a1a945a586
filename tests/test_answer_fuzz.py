"""Model output fuzzing: whatever bytes come back, the client, parser, scorer and store never raise.

Bodies go through the real client (`Session.send` over httpx.MockTransport): truncated JSON, wrong
types, extra keys, megabytes of text, invalid UTF-8, lone surrogates, deep nesting. Each case ends
as one record, invalid with a reason when it is not a schema-valid answer, and that record survives
the store's round trip exactly.
"""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.endpoints.client import Endpoint, parse_completion
from harness.prompting import build_prompt
from harness.query import Asker, Query
from harness.runner import make_record
from harness.store import RunStore

GOOD = {
    "nationality": "french",
    "date_of_birth": {"day": 1, "month": 2, "year": 1950},
    "date_of_death": {"day": 0, "month": 0, "year": 0},
    "sportsperson": True,
    "politician": False,
}


@pytest.fixture(scope="module")
def job_and_scenario(tmp_path_factory):
    from harness.api import build_scenario, build_strategies
    from harness.config import RunConfig

    def count(texts):
        return [max(1, len(t) // 4) for t in texts]

    # The nested answer form: its schema has the most to get wrong (typed date parts, nested objects).
    config = RunConfig(
        strategies=["full-context"],
        lengths=[300],
        depths=[50.0],
        needles=1,
        shots=0,
        scenario_params={"answer_form": "nested"},
    )
    scen = build_scenario(config)
    (strategy,) = build_strategies(config, tmp_path_factory.mktemp("cache"), count)
    (sample,) = scen.samples(config.lengths, config.depths, config.needles, count)
    return (strategy, sample), scen


def _send(body: bytes, api: str = "completions"):
    ep = Endpoint("http://model.test/v1", "m", api, None, timeout_s=10, max_retries=0)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))

    async def go():
        async with ep.session(1, transport=transport) as s:
            path, req = ep.request(build_prompt("i", [], "c", "q"), None, 10)
            return await s.send(path, req)

    return asyncio.run(go())


def _envelope(text, api="completions") -> bytes:
    if api == "chat":
        return json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
    return json.dumps(
        {"choices": [{"text": text, "finish_reason": "length"}], "usage": {"prompt_tokens": 5, "completion_tokens": 7}}
    ).encode()


def _answer(job, scen, body: bytes):
    """The whole path of one query: the strategy asks through Query.generate (the server is an
    httpx.MockTransport answering `body`), the runner turns the outcome into a record."""
    strategy, sample = job
    ep = Endpoint("http://model.test/v1", "m", "completions", None, timeout_s=10, max_retries=0)
    ep._tokenize_ok = False  # the mock has no /tokenize

    async def go():
        async with ep.session(1, transport=httpx.MockTransport(lambda request: httpx.Response(200, content=body))) as s:
            query = Query(Asker(ep, s, max_tokens=10, window=None, concurrency=1), sample, scen, [], strategy.label)
            return make_record("r", strategy, sample, query, await strategy.solve(sample, query))

    return asyncio.run(go())


def _record_round_trip(tmp_path, job, scen, body: bytes):
    record = _answer(job, scen, body)
    assert record.valid == (record.answer is not None)
    assert len(record.calls) == 1
    if not record.valid:
        assert isinstance(record.invalid_reason, str) and record.invalid_reason
        assert len(record.invalid_reason) < 1000
        assert record.score == 0.0
    store = RunStore(tmp_path).create()
    store.append(record)
    (back,) = store.records()
    assert back.raw == record.raw and back.answer == record.answer
    assert back.calls == record.calls
    store.records_path.unlink()
    return record


# -- hand-picked cases from the issue -------------------------------------------------------------
def _answers():
    truncated = json.dumps(GOOD)
    return {
        "valid": (json.dumps(GOOD), None),
        "truncated JSON": (truncated[: len(truncated) // 2], "not JSON"),
        "wrong type (string for bool)": (json.dumps({**GOOD, "sportsperson": "yes"}), "sportsperson"),
        "wrong type (string for int)": (
            json.dumps({**GOOD, "date_of_birth": {"day": "1", "month": 2, "year": 1}}),
            "date_of_birth",
        ),
        "wrong type (list)": (json.dumps([GOOD]), "not an object"),
        "extra key": (json.dumps({**GOOD, "confidence": 0.9}), "schema"),
        "nested extra key": (
            json.dumps({**GOOD, "date_of_death": {"day": 0, "month": 0, "year": 0, "era": "AD"}}),
            "schema",
        ),
        "missing key": (json.dumps({k: v for k, v in GOOD.items() if k != "politician"}), "politician"),
        "megabytes of text": ("x" * 3_000_000, "not JSON"),
        "megabytes inside JSON": (json.dumps({**GOOD, "nationality": "a" * 2_000_000}), "nationality"),
        "deep nesting": ("[" * 100_000 + "]" * 100_000, "not"),
        "empty": ("", "empty"),
        "NaN and Infinity": (
            json.dumps({**GOOD, "date_of_birth": {"day": float("nan"), "month": 1, "year": float("inf")}}),
            "date_of_birth",
        ),
        "lone surrogate": (json.dumps({**GOOD, "nationality": "\ud800"}), None),
        "null bytes": (json.dumps({**GOOD, "nationality": "fr\x00ench"}), None),
    }


@pytest.mark.parametrize("case", list(_answers()))
def test_hand_picked_outputs_are_recorded_never_raised(case, job_and_scenario, tmp_path):
    job, scen = job_and_scenario
    text, why = _answers()[case]
    record = _record_round_trip(tmp_path, job, scen, _envelope(text))
    if why is None:
        assert record.valid, record.invalid_reason
    else:
        assert not record.valid and why in record.invalid_reason, record.invalid_reason


@pytest.mark.parametrize(
    "body,why",
    [
        (b'{"choices": [{"text": "{\\"nationality\\": \\"fr\xff\xfench\\"}"}]}', "not valid UTF-8"),
        (b"\xff\xfe\x00garbage", "not valid UTF-8"),
        (b'{"choices": [{"text": "ok"', "not JSON"),
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b'{"choices": []}', "no text"),
        (b'{"choices": [{"text": 42}]}', "no text"),
        (b'{"choices": "nope", "usage": "many"}', "no text"),
        (b"[1, 2, 3]", "no text"),
        (b"null", "no text"),
        (b'{"choices": [{"text": "{}", "finish_reason": 7}], "usage": {"prompt_tokens": "x"}}', "schema"),
    ],
)
def test_broken_response_bodies_are_invalid_with_a_reason(body, why, job_and_scenario, tmp_path):
    job, scen = job_and_scenario
    record = _record_round_trip(tmp_path, job, scen, body)
    assert not record.valid and why in record.invalid_reason, record.invalid_reason


def test_chat_null_content_is_an_empty_answer():
    c = _send(_envelope(None, "chat"), "chat")
    assert c.text == "" and c.problem is None


# -- generated -------------------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=6),
    max_leaves=20,
)
answers_like = st.fixed_dictionaries(
    {k: st.one_of(st.just(v), json_values) for k, v in GOOD.items()},
    optional={"extra": json_values},
).map(lambda d: json.dumps(d))
model_text = st.one_of(
    st.text(),
    answers_like,
    answers_like.flatmap(lambda s: st.integers(0, len(s)).map(lambda n: s[:n])),  # truncated
    json_values.map(json.dumps),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(model_text)
def test_generated_model_outputs(job_and_scenario, tmp_path, text):
    job, scen = job_and_scenario
    _record_round_trip(tmp_path, job, scen, _envelope(text))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.one_of(
        st.binary(max_size=400),
        model_text.map(lambda t: _envelope(t)).flatmap(  # a valid envelope with random bytes spliced in
            lambda b: st.tuples(st.integers(0, len(b)), st.binary(min_size=1, max_size=8)).map(
                lambda t: b[: t[0]] + t[1] + b[t[0] :]
            )
        ),
    )
)
def test_generated_response_bodies(job_and_scenario, tmp_path, body):
    job, scen = job_and_scenario
    _record_round_trip(tmp_path, job, scen, body)


@given(st.binary(max_size=200), st.booleans())
def test_parse_completion_never_raises(body, chat):
    c = parse_completion(body, chat=chat)
    assert isinstance(c.text, str)
