"""A strategy whose prompts surely fit the window is prepared when its turn comes, not before the first query.

The runner used to prepare every strategy (a retrieval arm: embed every chunk of the grid) before any
request, so that every preflight prompt was checked against the window first. A strategy now gives a
cheap upper bound of its prompts (`Strategy.window_bound`, no preparing); where the bounds surely fit
the window (by their bytes), preparing waits for the strategy's own turn, so full context asks at once.
These tests drive `runner.run` against a mock server and log the order of prepares and requests.
"""

from __future__ import annotations

import json

import httpx
import pytest

from harness import runner
from harness.endpoints import client as client_mod
from harness.endpoints.client import Endpoint, RetryPolicy
from harness.errors import UsageError
from harness.plugin import OneShot, Shown, ShownPiece
from harness.store import RunStore

ANSWER = json.dumps(
    {
        "nationality": "french",
        "born": "1950-03-03",
        "died": "0000-00-00",
        "occupation": "chef",
        "sportsperson": False,
        "politician": False,
    }
)


class Short(OneShot):
    """A stand-in retrieval arm: shows the sample's first document; `prepare` is logged."""

    name = "short"

    def __init__(self, params, resources, log, bound_pad="", show_pad=""):
        super().__init__(params, resources)
        self.log, self.bound_pad, self.show_pad = log, bound_pad, show_pad
        self.prepared: list[str] = []

    def prepare(self, samples):
        self.log.append(("prepare", self.name, len(samples)))
        self.prepared += [s.id for s in samples]

    def show(self, sample):
        d = sample.documents[0]
        return Shown(context=d.text + self.show_pad, pieces=[ShownPiece(id=d.id, doc_ids=[d.id], text=d.text)])

    def window_bound(self, sample, query):
        return [query.prompt(sample.documents[0].text + self.show_pad + self.bound_pad)]


class NoBound(Short):
    name = "nobound"

    def window_bound(self, sample, query):
        return None


def _bio(tmp_path):
    from harness.api import build_scenario, build_strategies
    from harness.config import RunConfig

    def count(texts):
        return [max(1, len(t) // 4) for t in texts]

    config = RunConfig(strategies=["full-context"], lengths=[2000], depths=[0.0, 100.0], needles=2, shots=0)
    scen = build_scenario(config)
    (full,) = build_strategies(config, tmp_path / "cache", count)
    samples = scen.samples(config.lengths, config.depths, config.needles, count)
    return scen, full, samples


@pytest.fixture
def server(monkeypatch):
    """A mock vLLM: /tokenize counts 4 bytes a token; every completion logs its prompt and answers."""
    log: list[tuple] = []

    def handler(request: httpx.Request):
        body = json.loads(request.content)
        if request.url.path.endswith("/tokenize"):
            return httpx.Response(200, json={"count": len(body["prompt"].encode()) // 4})
        log.append(("request", body["prompt"]))
        return httpx.Response(200, json={"choices": [{"text": ANSWER, "finish_reason": "stop"}]})

    real = client_mod.Endpoint.session
    monkeypatch.setattr(
        client_mod.Endpoint, "session", lambda self, n=8, transport=None: real(self, n, httpx.MockTransport(handler))
    )
    ep = Endpoint("http://model.test/v1", "m", "completions", None, timeout_s=5, max_retries=0)
    ep.policy = RetryPolicy(max_retries=0, base_s=0.001, cap_s=0.01)
    return ep, log


def _run(tmp_path, ep, scen, strategies, samples, window, boundaries=None, store=None):
    store = store or RunStore(tmp_path / "run").create()
    stats = runner.run(
        run_id="r",
        scenario=scen,
        strategies=strategies,
        samples=samples,
        endpoint=ep,
        store=store,
        shots=[],
        concurrency=2,
        max_tokens=50,
        window=window,
        on_strategy=(boundaries.append if boundaries is not None else lambda label: None),
    )
    return stats, store


def _first(log, kind):
    return next(i for i, e in enumerate(log) if e[0] == kind)


def test_a_strategy_that_surely_fits_is_prepared_at_its_turn_not_before_the_first_query(tmp_path, server):
    ep, log = server
    scen, full, samples = _bio(tmp_path)
    short = Short(Short.Params(), full.resources, log)
    full_bytes = max(len(full.show(s).context.encode()) for s in samples)
    window = full_bytes // 2  # full context must be counted (it might not fit by bytes); the short arm surely fits
    boundaries: list = []
    stats, store = _run(tmp_path, ep, scen, [full, short], samples, window, boundaries)
    assert stats.planned == 2 * len(samples)
    # full context asked first, before the short arm was prepared; that arm prepared once, before its own queries
    prep = _first(log, "prepare")
    assert [e[0] for e in log[:prep]] == ["request"] * len(samples)
    assert log[prep] == ("prepare", "short", len(samples)) and short.prepared == [s.id for s in samples]
    assert [e[0] for e in log[prep + 1 :]] == ["request"] * len(samples)
    assert boundaries == ["full-context", "short", None]
    recs = store.latest_records()
    assert len(recs) == 2 * len(samples) and not any(r.error for r in recs)
    assert {r.strategy for r in recs} == {"full-context", "short"}


def test_a_bound_that_might_not_fit_prepares_up_front_as_before(tmp_path, server):
    ep, log = server
    scen, full, samples = _bio(tmp_path)
    full_bytes = max(len(full.show(s).context.encode()) for s in samples)
    window = full_bytes // 2
    short = Short(Short.Params(), full.resources, log, bound_pad="x" * window)  # a bound over the window's bytes
    nobound = NoBound(NoBound.Params(), full.resources, log)  # no bound at all
    _run(tmp_path, ep, scen, [full, short, nobound], samples, window)
    assert log[:2] == [("prepare", "short", len(samples)), ("prepare", "nobound", len(samples))]
    assert all(e[0] == "request" for e in log[2:])


def test_a_grid_over_the_window_is_still_refused_before_any_request(tmp_path, server):
    ep, log = server
    scen, full, samples = _bio(tmp_path)
    window = 2 * max(len(full.show(s).context.encode()) for s in samples)
    # the short arm's real prompts are over the window and its bound says so: it is prepared, counted, refused
    long = Short(Short.Params(), full.resources, log, show_pad=" word" * window)
    with pytest.raises(UsageError, match="over the served context window"):
        _run(tmp_path, ep, scen, [full, long], samples, window)
    assert [e for e in log if e[0] == "request"] == []
    assert log == [("prepare", "short", len(samples))]
    assert RunStore(tmp_path / "run").rows() == []


def test_a_bound_that_lied_is_caught_before_that_strategys_first_request(tmp_path, server):
    ep, log = server
    scen, full, samples = _bio(tmp_path)
    window = 10 * max(len(full.show(s).context.encode()) for s in samples)

    class Liar(Short):
        def window_bound(self, sample, query):
            return [query.prompt("tiny")]

    liar = Liar(Liar.Params(), full.resources, log, show_pad=" word" * window)
    with pytest.raises(UsageError, match="over the served context window"):
        _run(tmp_path, ep, scen, [full, liar], samples, window)
    prep = _first(log, "prepare")
    assert all(e[0] == "request" for e in log[:prep]) and log[prep + 1 :] == []  # none of the liar's was sent
    recs = RunStore(tmp_path / "run").latest_records()
    assert len(recs) == len(samples) and {r.strategy for r in recs} == {"full-context"}  # paid-for records kept


def test_resume_prepares_only_what_is_left(tmp_path, server):
    ep, log = server
    scen, full, samples = _bio(tmp_path)
    short = Short(Short.Params(), full.resources, log)
    stats, store = _run(tmp_path, ep, scen, [full], samples, None)
    assert stats.planned == len(samples)
    stats, store = _run(tmp_path, ep, scen, [full, short], samples, None, store=store)
    assert stats.planned == len(samples) and log.count(("prepare", "short", len(samples))) == 1
    log.clear()
    stats, store = _run(tmp_path, ep, scen, [full, short], samples, None, store=store)
    assert stats.planned == 0 and log == []  # nothing left: nothing prepared, nothing asked
    assert len(store.latest_records()) == 2 * len(samples)
