"""The multi-call core changes nothing for one-shot arms: a run made by the milestone-1 core, saved.

tests/data/milestone1-run/ is a real run of the old core (bio-needle, seed 7, lengths 400 and 800,
depths 0/50/100, two needles, full-context, rag-dense:top_k=2 and rag-bm25:top_k=2, no shots, the
embedded Gemma 3 270M on vLLM at concurrency 1), with every request and response body it exchanged
(exchanges.jsonl). Two checks:
  * its records load into typed records and summarise as the old core summarised them;
  * the new core, asked the same samples, sends byte-identical requests (answer_form=nested is the old
    prompt and schema) and, given the same responses back, writes the same answers, marks and usage.
The responses come from the saved exchanges (an httpx transport replaying them), so the check is exact
and the same on every machine; the real server is exercised by the other end-to-end tests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import httpx
import pytest

from harness.config import RunConfig
from harness.store import RunStore

RUN = Path(__file__).parent / "data" / "milestone1-run"


@pytest.fixture()
def old_run(tmp_path):
    dst = tmp_path / "old"
    shutil.copytree(RUN, dst)
    return dst


def _scenario(params=None):
    from harness.api import build_scenario

    return build_scenario(RunConfig(seed=7, scenario_params=params or {}))


def test_old_records_load_typed_and_summarise_as_the_old_core_did(old_run):
    from harness.report.summary import summarize_run

    store = RunStore(old_run)
    records = store.latest_records()
    assert len(records) == 36 and all(len(r.calls) == 1 for r in records)
    old = json.loads((old_run / "summary.json").read_text())
    new, _, _ = summarize_run(store, _scenario({"answer_form": "nested"}))
    keys = [
        "n",
        "accuracy",
        "accuracy_lo",
        "accuracy_hi",
        *old["fields"],
        "valid_rate",
        "failed",
        "prompt_tokens",
        "completion_tokens",
        "latency_s",
        "needle_shown",
        "needle_recall",
        "needle_rank",
        "tokens_retrieved",
        "wrong_fields",
        "cost_per_query",
        "grounded_rate",
        "misread",
        "distractor",
        "hallucination",
        "omitted",
    ]
    for part in ("by_strategy_length", "by_strategy"):
        for a, b in zip(old[part], new[part], strict=True):
            for k in keys:
                assert a.get(k) == pytest.approx(b.get(k), nan_ok=True), (part, a["strategy"], k)
    assert old["per_needle"] == new["per_needle"]
    assert [v["best"] for v in old["verdict"]] == [v["best"] for v in new["verdict"]]
    # wrong fields are now split three ways; the old two-way split is the new one with partial misses
    # counted where the needle was overlapped at all
    for a, b in zip(old["by_strategy"], new["by_strategy"], strict=True):
        assert (
            a["retrieval_misses"] + a["reading_errors"]
            == b["retrieval_misses"] + b["partial_misses"] + b["reading_errors"]
        )
        assert a["retrieval_misses"] == b["retrieval_misses"]


def test_one_shot_arms_send_the_same_requests_and_record_the_same_answers(old_run, tmp_path, monkeypatch):
    from harness import runner
    from harness.api import build_strategies
    from harness.endpoints import client as client_mod
    from harness.endpoints.client import Endpoint

    exchanges = [json.loads(line) for line in (RUN / "exchanges.jsonl").read_text().splitlines()]
    # Identical requests did not always get identical answers (vLLM's prefix cache changes the prefill's
    # arithmetic): replay each body's responses in the order the old core got them.
    replies: dict[str, list[str]] = {}
    for x in exchanges:
        replies.setdefault(json.dumps(x["body"], sort_keys=True), []).append(x["response"])
    sent: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/tokenize"):
            return httpx.Response(404)
        body = json.loads(request.content)
        sent.append(body)
        queue = replies.get(json.dumps(body, sort_keys=True))
        return httpx.Response(200, content=queue.pop(0).encode()) if queue else httpx.Response(400, json={"error": "?"})

    real_session = client_mod.Endpoint.session
    monkeypatch.setattr(
        client_mod.Endpoint,
        "session",
        lambda self, n=8, transport=None: real_session(self, n, httpx.MockTransport(handler)),
    )
    config = RunConfig(
        strategies=["full-context", "rag-dense:top_k=2", "rag-bm25:top_k=2"],
        seed=7,
        shots=0,
        scenario_params={"answer_form": "nested"},
    )
    scen = _scenario(config.scenario_params)
    old_store = RunStore(old_run)
    samples = old_store.read_samples()
    ep = Endpoint("http://replay.test/v1", "gemma-3-270m", "completions", None, timeout_s=30, max_retries=0)
    ep._tokenize_ok = False
    store = RunStore(tmp_path / "new").create()
    stats = runner.run(
        run_id="new",
        scenario=scen,
        strategies=build_strategies(config, tmp_path / "cache", None),
        samples=samples,
        endpoint=ep,
        store=store,
        shots=[],
        concurrency=1,
        max_tokens=160,
        window=None,
    )
    assert stats.planned == 36
    old_bodies = sorted(json.dumps(x["body"], sort_keys=True) for x in exchanges)
    assert sorted(json.dumps(b, sort_keys=True) for b in sent) == old_bodies  # the same 36 requests
    old = {r.key: r for r in old_store.latest_records()}
    new = {r.key: r for r in store.latest_records()}
    assert set(old) == set(new)
    for key, a in old.items():
        b = new[key]
        assert (b.raw, b.answer, b.valid, b.marks, b.score) == (a.raw, a.answer, a.valid, a.marks, a.score), key
        assert (b.prompt_tokens, b.completion_tokens, b.cached_tokens, b.finish_reason) == (
            a.prompt_tokens,
            a.completion_tokens,
            a.cached_tokens,
            a.finish_reason,
        ), key
        assert [p["id"] for p in b.shown.pieces] == [p["id"] for p in a.shown.pieces], key
        assert b.shown.needle_shown == a.shown.needle_shown and b.gold == a.gold, key
        assert len(b.calls) == 1 and b.calls[0].purpose == "answer"
