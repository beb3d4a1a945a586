"""The framework arms (LlamaIndex, LangChain, BM25, hybrid) on the real MiniLM model and FAISS, and
end to end on the real vLLM server: provenance, needle recall, shared embeddings, no LLM calls,
error attribution."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything imports huggingface_hub

import json
import socket
import subprocess
import sys

import numpy as np
import pytest
from toy_scenario import TwoFieldScenario

from harness import registry
from harness.cli import split_strategies
from harness.errors import UsageError
from harness.report.summary import summarize
from harness.report.terminal import print_summary
from harness.samples import Document, Sample
from harness.strategy import Resources, build_params, parse_spec
from retrievers.chunking import SEPARATOR
from retrievers.embeddings import EmbeddingCache, langchain_embeddings, llamaindex_embedding, shared_cache

ARMS = ["rag-llamaindex", "rag-langchain", "rag-bm25", "rag-hybrid"]
TOPICS = ["a french chef", "an italian painter", "a kenyan runner", "a dutch architect", "a chilean poet"]


def _sample(n=30, needle_at=15, sid="s", question="What is known about Zorblat Quenx?"):
    docs = [
        Document(id=f"h{i}", text=f"Person{i} Hallo{i} is {TOPICS[i % 5]} who lived in town {i}. " * 2)
        for i in range(n)
    ]
    docs.insert(needle_at, Document(id="n0", text="Zorblat Quenx is a brazilian senator born 3 march 1950."))
    return Sample(
        id=sid,
        scenario="t",
        length=1000,
        depth=50.0,
        needle_index=0,
        documents=docs,
        gold_ids=["n0"],
        subject="Zorblat Quenx",
        question=question,
        gold={},
    )


def _arm(name, tmp_cache, **params):
    cls = registry.get("strategy", name)
    return cls(build_params(cls.Params, params, name), Resources(cache_dir=tmp_cache))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("name", ARMS)
def test_arm_retrieves_the_needle_first(name, cache_dir):
    s = _sample()
    arm = _arm(name, cache_dir, chunk_size=48, chunk_overlap=8, top_k=3)
    arm.prepare([s])
    shown = arm.show(s)
    r = shown.retrieval
    assert r["needle_retrieved"] is True and r["needle_rank"] == 0 and r["chunks"] == 3
    assert r["needle_coverage"] == 1.0
    assert r["tokens_retrieved"] > 0 and r["tokens_counted_in"] == "embedding model"
    assert len(shown.pieces) == 3 and "Zorblat Quenx" in shown.context
    assert shown.holds("n0", "Zorblat Quenx")
    assert [p.rank for p in shown.pieces] == [0, 1, 2]  # order=score
    # provenance: every chunk is a span of the joined corpus and names the documents it overlaps
    text, docs = s.joined(SEPARATOR), {d.id: d.text for d in s.documents}
    for c in arm.chunks(s):
        assert text[c.start : c.start + len(c.text)] == c.text
        assert c.doc_ids, c
        for d in c.doc_ids:  # every listed document really shares text with the chunk
            assert any(w in c.text for w in docs[d].split()[:3] + docs[d].split()[-3:])
    assert any("n0" in c.doc_ids for c in arm.chunks(s))


@pytest.mark.parametrize("name", ARMS)
def test_tiny_top_k_that_leaves_the_needle_out_is_a_miss(name, cache_dir):
    s = _sample(question="Which italian painter lived in town 1?")  # points away from the needle
    arm = _arm(name, cache_dir, chunk_size=48, chunk_overlap=8, top_k=1)
    arm.prepare([s])
    shown = arm.show(s)
    assert shown.retrieval["needle_retrieved"] is False
    assert shown.retrieval["needle_rank"] is None
    assert shown.retrieval["needle_coverage"] == 0.0
    assert shown.retrieval["chunks"] == 1 and len(shown.pieces) == 1
    assert not shown.holds("n0")


@pytest.mark.parametrize("name", ARMS)
def test_ends_order_and_tokens_counted_by_the_endpoint(name, cache_dir):
    s = _sample()
    counted = []

    def count(texts):
        counted.extend(texts)
        return [7] * len(texts)

    cls = registry.get("strategy", name)
    arm = cls(
        cls.Params(chunk_size=48, chunk_overlap=8, top_k=4, order="ends"),
        Resources(cache_dir=cache_dir, count_tokens=count),
    )
    arm.prepare([s])
    shown = arm.show(s)
    assert [p.rank for p in shown.pieces] == [0, 2, 3, 1]
    assert shown.retrieval["tokens_retrieved"] == 28 and shown.retrieval["tokens_counted_in"] == "served model"
    assert sorted(counted) == sorted(p.text for p in shown.pieces)


def test_parameters_parse_from_a_spec(cache_dir):
    specs = split_strategies(["rag-langchain:chunk_size=256,top_k=4,rag-langchain:top_k=8,order=ends,rag-hybrid"])
    assert specs == ["rag-langchain:chunk_size=256,top_k=4", "rag-langchain:top_k=8,order=ends", "rag-hybrid"]
    labels = []
    for spec in specs:
        name, raw = parse_spec(spec)
        cls = registry.get("strategy", name)
        arm = cls(build_params(cls.Params, raw, spec), Resources(cache_dir=cache_dir))
        labels.append(arm.label)
    # labels name what differs from the defaults (top_k=4 is the default), so two settings stay apart
    assert labels == ["rag-langchain:chunk_size=256", "rag-langchain:top_k=8,order=ends", "rag-hybrid"]
    name, raw = parse_spec("rag-llamaindex:chunk_size=64,chunk_overlap=8,top_k=2,order=ends")
    p = build_params(registry.get("strategy", name).Params, raw, name)
    assert (p.chunk_size, p.chunk_overlap, p.top_k, p.order) == (64, 8, 2, "ends")
    for bad in (
        "rag-bm25:top_k=0",
        "rag-bm25:order=random",
        "rag-hybrid:chunk_size=64,chunk_overlap=64",
        "rag-llamaindex:k=3",
    ):
        name, raw = parse_spec(bad)
        with pytest.raises(UsageError):
            build_params(registry.get("strategy", name).Params, raw, bad)


def test_embeddings_are_computed_once_across_depths_and_arms(tmp_path, monkeypatch):
    """Each unique chunk text is run through the model once, whichever arm or depth asks for it."""
    from sentence_transformers import SentenceTransformer

    encoded: list[str] = []
    real = SentenceTransformer.encode

    def counting(self, sentences, *a, **k):
        encoded.extend([sentences] if isinstance(sentences, str) else sentences)
        return real(self, sentences, *a, **k)

    monkeypatch.setattr(SentenceTransformer, "encode", counting)
    samples = [_sample(needle_at=d, sid=f"d{d}") for d in (0, 10, 20, 30)]
    arms = {n: _arm(n, tmp_path, chunk_size=64, chunk_overlap=8) for n in ["rag-dense", *ARMS]}
    for arm in arms.values():
        arm.prepare(samples)
    texts = {n: {c.text for s in samples for c in a.chunks(s)} for n, a in arms.items()}
    assert texts["rag-dense"] == texts["rag-langchain"] == texts["rag-bm25"]  # one splitter
    assert texts["rag-llamaindex"] == texts["rag-hybrid"]  # the other
    unique = texts["rag-dense"] | texts["rag-llamaindex"]
    requested = sum(len(a.chunks(s)) for a in arms.values() for s in samples)
    assert requested > 2 * len(unique)
    assert len(encoded) == len(set(encoded)) == len(unique)  # each unique chunk embedded exactly once
    assert set(encoded) == unique
    assert arms["rag-langchain"].stats["embedded"] == 0  # rag-dense had embedded them (disk tier)
    assert arms["rag-hybrid"].stats["embedded"] == 0  # rag-llamaindex had (memory tier)
    # queries too: asking every arm every question embeds each distinct question once
    encoded.clear()
    for arm in arms.values():
        for s in samples:
            arm.show(s)
    assert encoded == ["What is known about Zorblat Quenx?"]


def test_framework_embedders_give_the_cache_s_vectors(tmp_path):
    """The cache's key is (model, text): valid only if both frameworks' embedders agree with it."""
    texts = ["Zorblat Quenx is a brazilian\nsenator.\n\nBorn 1950.", "Person1 Hallo1 is an italian painter."]
    bare = EmbeddingCache(None).embed(texts)
    li = np.asarray(llamaindex_embedding(EmbeddingCache(None)).get_text_embedding_batch(texts))
    lc = np.asarray(langchain_embeddings(EmbeddingCache(None)).embed_documents(texts))
    q = np.asarray(llamaindex_embedding(EmbeddingCache(None)).get_query_embedding(texts[0]))
    assert np.abs(li - bare).max() < 1e-5 and np.abs(lc - bare).max() < 1e-5 and np.abs(q - bare[0]).max() < 1e-5
    assert shared_cache(tmp_path) is shared_cache(tmp_path)


def test_no_llm_can_ever_be_called(cache_dir, monkeypatch):
    """Hybrid fusion uses the question as is; LlamaIndex's LLM (and its OpenAI fallback) refuses."""
    from llama_index.core import Settings

    from retrievers.llamaindex import forbidden_llm_class

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    def no_network(self, address, *a, **k):
        raise AssertionError(f"network connection attempted to {address}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    s = _sample()
    arm = _arm("rag-hybrid", cache_dir, chunk_size=48, chunk_overlap=8, top_k=2)
    arm.prepare([s])
    fusion = arm.fusion(s)
    assert fusion.num_queries == 1
    assert isinstance(fusion._llm, forbidden_llm_class())
    assert isinstance(Settings._llm, forbidden_llm_class())  # so no Settings.llm -> OpenAI fallback
    assert arm.show(s).retrieval["needle_rank"] == 0  # works with no key and no network
    with pytest.raises(RuntimeError, match="must not call an LLM"):
        Settings.llm.complete("write three queries")
    fusion.num_queries = 4  # what QueryFusionRetriever does by default: ask an LLM for rewrites
    with pytest.raises(RuntimeError, match="must not call an LLM"):
        fusion.retrieve(s.question)


def test_frameworks_are_imported_only_when_their_arm_runs():
    code = (
        "import sys; from harness import registry\n"
        "for n in registry.names('strategy'): registry.get('strategy', n)\n"
        "from harness.cli import app\n"
        "print([m for m in sys.modules if m.split('.')[0] in "
        "('llama_index', 'langchain', 'langchain_core', 'langchain_community', 'langchain_huggingface', 'bm25s')])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _record(strategy, sid, marks, retrieved=None, error=None, coverage=None):
    retrieval = (
        {}
        if retrieved is None
        else {"needle_retrieved": retrieved, "needle_rank": 0 if retrieved else None, "tokens_retrieved": 100}
    )
    if coverage is not None:
        retrieval["needle_coverage"] = coverage
    return {
        "strategy": strategy,
        "length": 1000,
        "depth": 0.0,
        "sample_id": sid,
        "score": sum(marks.values()) / 2,
        "valid": error is None,
        "error": error,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        "latency_s": 0.1,
        "gold": {"a": 1, "b": 1},
        "marks": marks,
        "shown": {"needle_shown": retrieved is not False, "retrieval": retrieval},
    }


def test_summary_splits_wrong_fields_into_misses_and_reading_errors():
    records = [
        _record("full-context", "s1", {"a": False, "b": True}),
        _record("full-context", "s2", {"a": False, "b": False}),
        _record("rag-x", "s1", {"a": False, "b": False}, retrieved=False),
        _record("rag-x", "s2", {"a": True, "b": False}, retrieved=True),
        _record("rag-x", "s3", {"a": False, "b": False}, retrieved=False, error="timeout"),
    ]
    summary = summarize(records, TwoFieldScenario())
    by = {r["strategy"]: r for r in summary["by_strategy"]}
    assert (
        by["full-context"]["wrong_fields"],
        by["full-context"]["retrieval_misses"],
        by["full-context"]["reading_errors"],
    ) == (3, 0, 3)
    assert by["full-context"]["needle_recall"] is None and by["full-context"]["tokens_retrieved"] is None
    assert (by["rag-x"]["wrong_fields"], by["rag-x"]["retrieval_misses"], by["rag-x"]["reading_errors"]) == (3, 2, 1)
    assert by["rag-x"]["needle_recall"] == pytest.approx(1 / 3) and by["rag-x"]["failed"] == 1
    assert by["rag-x"]["tokens_retrieved"] == 100
    per_field = {(a["strategy"], a["field"]): a for a in summary["attribution"]}
    assert per_field[("rag-x", "a")] == {
        "strategy": "rag-x",
        "field": "a",
        "wrong": 1,
        "retrieval_misses": 1,
        "partial_misses": 0,
        "reading_errors": 0,
    }
    assert per_field[("rag-x", "b")]["retrieval_misses"] == 1 and per_field[("rag-x", "b")]["reading_errors"] == 1
    json.dumps(summary)  # serialisable as is


def test_terminal_prints_the_attribution_table():
    from rich.console import Console

    records = [
        _record("rag-x", "s1", {"a": False, "b": False}, retrieved=False),
        _record("full-context", "s1", {"a": True, "b": False}),
    ]
    console = Console(record=True, width=200)
    print_summary(summarize(records, TwoFieldScenario()), console)
    text = console.export_text()
    assert "retrieval miss" in text and "reading error" in text and "needle recall" in text
    rows = [[c.strip() for c in line.strip("│┃ ").split("│")] for line in text.splitlines()]
    # strategy, recall %, partly shown %, first rank, tok retrieved/q, wrong, retrieval miss, partial miss,
    # reading error, miss share %
    assert ["rag-x", "0.0", "0.0", "-", "100", "2", "2", "0", "0", "100.0"] in rows
    assert ["full-context", "-", "0.0", "-", "-", "1", "0", "0", "1", "0.0"] in rows


def test_a_needle_only_partly_retrieved_is_a_partial_miss_not_a_reading_error():
    """A chunk holding the needle's last words overlaps it (needle_retrieved), but the fields it
    states may not be in it: with coverage below 1 a wrong field is a partial miss."""
    records = [
        _record("rag-x", "s1", {"a": False, "b": True}, retrieved=True, coverage=0.12),
        _record("rag-x", "s2", {"a": False, "b": False}, retrieved=True, coverage=1.0),
        _record("rag-x", "s3", {"a": False, "b": True}, retrieved=False, coverage=0.0),
    ]
    by = summarize(records, TwoFieldScenario())["by_strategy"][0]
    assert (by["wrong_fields"], by["retrieval_misses"], by["partial_misses"], by["reading_errors"]) == (4, 1, 1, 2)
    assert by["needle_recall"] == pytest.approx(2 / 3)  # overlap, as before
    assert by["needle_partial"] == pytest.approx(1 / 3) and by["needle_coverage"] == pytest.approx((0.12 + 1) / 3)


# -- end to end on the real vLLM server ------------------------------------------------------------
def _off_target_arm():
    class OffTarget(registry.get("strategy", "rag-langchain")):
        """rag-langchain asked about the haystack biography farthest from the needle: with top_k=1
        the needle cannot be retrieved, so every wrong field must be attributed to retrieval."""

        name = "rag-offtarget"

        def query(self, sample):
            gold = next(i for i, d in enumerate(sample.documents) if d.id in sample.gold_ids)
            far = max(range(len(sample.documents)), key=lambda i: abs(i - gold))
            return sample.documents[far].text

    return OffTarget


@pytest.mark.server
def test_compare_records_recall_and_attribution(vllm_server, tmp_path, monkeypatch):
    from harness.api import compare as run_compare
    from harness.config import EndpointConfig, RunConfig
    from harness.store import RunStore

    monkeypatch.setitem(registry._registered["strategy"], "rag-offtarget", _off_target_arm())

    strategies = ARMS + ["rag-offtarget:top_k=1,chunk_size=64,chunk_overlap=0"]
    config = RunConfig(
        strategies=strategies,
        lengths=[800],
        depths=[0.0, 100.0],
        needles=1,
        shots=1,
        endpoint=EndpointConfig(url=vllm_server.base_url, model=vllm_server.model, api="completions"),
        out=tmp_path,
    )
    run_compare(config)
    records = [r.to_json() for r in RunStore(tmp_path).latest_records()]
    assert len(records) == len(strategies) * 2
    for r in records:
        ret = r["shown"]["retrieval"]
        assert r["error"] is None
        assert isinstance(ret["needle_retrieved"], bool)
        assert ret["needle_retrieved"] == r["shown"]["needle_shown"]
        assert (ret["needle_rank"] is None) == (not ret["needle_retrieved"])
        assert ret["tokens_counted_in"] == "served model" and ret["tokens_retrieved"] > 0
        if r["strategy"].startswith("rag-offtarget"):
            assert ret["needle_retrieved"] is False and len(r["shown"]["pieces"]) == 1
        else:
            assert ret["needle_retrieved"] is True  # the question names the person; 4 of ~8 chunks
            assert len(r["shown"]["pieces"]) == 4
    summary = json.loads((tmp_path / "summary.json").read_text())
    fields = summary["fields"]
    for s in summary["by_strategy"]:
        mine = [r for r in records if r["strategy"] == s["strategy"]]
        wrong = sum(not r["marks"][f] for r in mine for f in fields)
        assert s["wrong_fields"] == wrong == s["retrieval_misses"] + s["reading_errors"]
        if s["strategy"].startswith("rag-offtarget"):
            assert s["needle_recall"] == 0 and s["reading_errors"] == 0 and s["retrieval_misses"] == wrong
        else:
            assert s["needle_recall"] == 1 and s["retrieval_misses"] == 0
    assert sum(a["wrong"] for a in summary["attribution"]) == sum(s["wrong_fields"] for s in summary["by_strategy"])
