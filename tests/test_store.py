"""The run folder: append-only records survive torn writes; resume skips answered queries."""

import json

from harness.samples import Document, Sample
from harness.store import RunStore


def _rec(strategy, sample_id, error=None, score=1.0):
    return {"strategy": strategy, "sample_id": sample_id, "error": error, "score": score}


def test_append_and_read_back(tmp_path):
    store = RunStore(tmp_path / "run").create()
    store.append(_rec("a", "s1"))
    store.append(_rec("b", "s1"))
    assert [r.strategy for r in store.records()] == ["a", "b"]
    assert store.done_keys() == {("a", "s1"), ("b", "s1")}


def test_torn_last_line_is_skipped_and_next_append_starts_clean(tmp_path):
    store = RunStore(tmp_path).create()
    store.append(_rec("a", "s1"))
    with open(store.records_path, "a") as f:
        f.write('{"strategy": "a", "sample_id": "s2", "sco')  # killed mid-write
    assert [r.sample_id for r in store.records()] == ["s1"]
    store.append(_rec("a", "s2"))
    lines = store.records_path.read_text().splitlines()
    assert json.loads(lines[-1])["sample_id"] == "s2"
    assert [r.sample_id for r in store.records()] == ["s1", "s2"]


def test_failed_queries_are_redone_and_superseded(tmp_path):
    store = RunStore(tmp_path).create()
    store.append(_rec("a", "s1", error="HTTP 500"))
    assert store.done_keys() == set()
    store.append(_rec("a", "s1", score=0.6))
    assert store.done_keys() == {("a", "s1")}
    (latest,) = store.latest_records()
    assert latest.score == 0.6 and latest.error is None


def test_samples_round_trip_with_shared_corpus(tmp_path):
    docs = [Document(id="h0", text="alpha"), Document(id="n0", text="needle"), Document(id="h1", text="beta")]
    samples = [
        Sample(
            id=f"s{i}",
            scenario="t",
            length=10,
            depth=50.0,
            needle_index=i,
            documents=docs,
            gold_ids=["n0"],
            subject="x",
            question="q?",
            gold={"a": 1},
        )
        for i in range(3)
    ]
    store = RunStore(tmp_path).create()
    store.write_samples(samples)
    assert len((tmp_path / "corpus.jsonl").read_text().splitlines()) == 3  # each document once
    assert store.read_samples() == samples


def test_config_round_trip(tmp_path):
    store = RunStore(tmp_path).create()
    store.write_config({"run_id": "r", "config": {"lengths": [1000]}})
    assert store.read_config() == {"run_id": "r", "config": {"lengths": [1000]}}


def test_records_are_typed_and_milestone_one_lines_load_as_one_call(tmp_path):
    store = RunStore(tmp_path).create()
    store.append(
        {
            "strategy": "a",
            "sample_id": "s1",
            "raw": "{}",
            "prompt_tokens": 10,
            "completion_tokens": 3,
            "latency_s": 0.5,
            "attempts": 2,
            "score": 0.4,
        }
    )
    (r,) = store.records()
    assert len(r.calls) == 1 and r.calls[0].prompt_tokens == 10 and r.calls[0].attempts == 2
    assert (r.prompt_tokens, r.completion_tokens, r.latency_s, r.raw) == (10, 3, 0.5, "{}")
    # written back, the sums stay flat beside the calls
    store.append(r)
    line = json.loads(store.records_path.read_text().splitlines()[-1])
    assert line["prompt_tokens"] == 10 and line["calls"][0]["completion_tokens"] == 3


def test_tokens_and_latency_are_sums_over_calls():
    from harness.record import Call, Record

    r = Record(
        strategy="agentic",
        sample_id="s",
        calls=[
            Call(prompt_tokens=100, completion_tokens=10, cached_tokens=64, latency_s=1.25),
            Call(prompt_tokens=300, completion_tokens=20, cached_tokens=None, latency_s=0.5, from_cache=True),
        ],
    )
    assert (r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.latency_s) == (400, 30, 64, 1.75)
    assert r.from_cache is False and r.n_calls == 2
