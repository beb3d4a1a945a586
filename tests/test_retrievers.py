"""Retrieval pieces on the real MiniLM model and FAISS: provenance, recall, ordering, the cache."""

from pathlib import Path

import pytest

from harness.samples import Document, Sample
from harness.strategy import Resources
from retrievers.chunking import chunk_sample
from retrievers.dense import DenseRAG
from retrievers.embeddings import EmbeddingCache, local_model_path
from retrievers.full_context import FullContext
from retrievers.rag import place

TOPICS = ["a french chef", "an italian painter", "a kenyan runner", "a dutch architect", "a chilean poet"]


def _sample(n=30, needle_at=15, sid="s"):
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
        question="What is known about Zorblat Quenx?",
        gold={},
    )


@pytest.fixture(scope="module")
def resources(tmp_path_factory):
    return Resources(cache_dir=tmp_path_factory.mktemp("cache"))


def test_chunks_map_back_to_their_documents():
    s = _sample()
    text = s.joined()
    chunks = chunk_sample(s, chunk_size=48, chunk_overlap=8, tokenizer_path=str(local_model_path()))
    assert len(chunks) > 5
    docs = {d.id: d.text for d in s.documents}
    for c in chunks:
        assert text[c.start : c.start + len(c.text)] == c.text
        assert c.doc_ids, c
        # every listed document really shares text with the chunk
        for d in c.doc_ids:
            assert any(w in c.text for w in docs[d].split()[:3] + docs[d].split()[-3:])
    assert any("n0" in c.doc_ids for c in chunks)


def test_dense_retrieves_the_needle_first(resources):
    s = _sample()
    arm = DenseRAG(DenseRAG.Params(chunk_size=48, chunk_overlap=8, top_k=3), resources)
    arm.prepare([s])
    shown = arm.show(s)
    assert shown.retrieval["needle_retrieved"] is True
    assert shown.retrieval["needle_rank"] == 0
    assert len(shown.pieces) == 3 and "Zorblat Quenx" in shown.context
    assert shown.holds("n0", "Zorblat Quenx")


def test_needle_outside_top_k_is_reported_missed(resources):
    s = _sample()
    arm = DenseRAG(DenseRAG.Params(chunk_size=48, chunk_overlap=8, top_k=1), resources)
    s.question = "Which italian painter lived in town 1?"  # a query that points elsewhere
    shown = arm.show(s)
    r = shown.retrieval
    assert (r["needle_retrieved"], r["needle_rank"], r["chunks"]) == (False, None, 1)
    assert not shown.holds("n0")


def test_ends_order_puts_best_at_both_edges():
    hits = [(f"c{i}", 1 - i / 10) for i in range(5)]
    placed = [r for r, _, _ in place(hits, "ends")]
    assert placed == [0, 2, 4, 3, 1]
    assert [r for r, _, _ in place(hits, "score")] == [0, 1, 2, 3, 4]


def test_embedding_cache_embeds_each_unique_text_once(tmp_path):
    cache = EmbeddingCache(tmp_path)
    a = cache.embed(["one", "two", "one"])
    assert a.shape == (3, 384) and cache.computed == 2
    assert abs(float((a[0] ** 2).sum()) - 1) < 1e-4  # unit-normalised
    cache.embed(["two", "three"])
    assert cache.computed == 3
    again = EmbeddingCache(tmp_path)  # a new process reads the disk cache
    b = again.embed(["one", "three"])
    assert again.computed == 0 and (b[0] == a[0]).all()


def test_two_depths_share_embeddings(resources):
    arm = DenseRAG(DenseRAG.Params(chunk_size=48, chunk_overlap=0), resources)
    s1, s2 = _sample(needle_at=3, sid="a"), _sample(needle_at=25, sid="b")
    before = arm.embeddings.computed
    arm.prepare([s1, s2])
    texts = {c.text for s in (s1, s2) for c in arm.chunks(s)}
    requested = sum(len(arm.chunks(s)) for s in (s1, s2))
    assert arm.embeddings.computed - before <= len(texts) < requested  # shared chunks embedded once


def test_full_context_shows_every_document_in_order():
    s = _sample()
    shown = FullContext(FullContext.Params(), None).show(s)
    assert [p.id for p in shown.pieces] == [d.id for d in s.documents]
    assert shown.context == s.joined()


def _size(prompt) -> tuple[int, int]:
    """What `Asker.surely_fits` measures: the text's bytes (completions), the messages' bytes (chat)."""
    return len(prompt.text.encode()), sum(len((m.get("content") or "").encode()) + 16 for m in prompt.messages)


@pytest.mark.parametrize(
    "name,params",
    [
        ("rag-dense", dict(chunk_size=48, chunk_overlap=8, top_k=3)),
        ("rag-dense", dict(chunk_size=32, chunk_overlap=16, top_k=200, order="ends")),
        ("rag-bm25", dict(chunk_size=48, chunk_overlap=8, top_k=1, order="document")),
        ("self-route", dict(chunk_size=48, chunk_overlap=8, top_k=2)),
    ],
)
def test_the_window_bound_covers_every_preflight_prompt_without_embedding(tmp_path, name, params):
    """A retrieval arm's window bound (its top_k largest chunks) is no smaller than what it shows, and is
    computed before `prepare`, without embedding anything: the runner defers preparing on it."""
    from types import SimpleNamespace

    from harness import registry
    from harness.query import Query

    cls = registry.get("strategy", name)
    arm = cls(cls.Params(**params), Resources(cache_dir=tmp_path / "cache"))
    embeddings = getattr(getattr(arm, "rag", arm), "embeddings", None)
    scenario = SimpleNamespace(instructions="Answer from the documents.")
    samples = [_sample(needle_at=3, sid="a"), _sample(n=12, needle_at=11, sid="b")]
    queries = {s.id: Query(None, s, scenario, []) for s in samples}
    bounds = {s.id: arm.window_bound(s, queries[s.id]) for s in samples}
    if embeddings is not None:
        assert embeddings.computed == 0  # no embedding for the bound
    arm.prepare(samples)
    for s in samples:
        for prompt in arm.preflight(s, queries[s.id]):
            text, chat = _size(prompt)
            assert any(text <= bt and chat <= bc for bt, bc in map(_size, bounds[s.id])), (s.id, text, chat)


def test_the_chunking_tokenizer_is_the_one_autotokenizer_loads_without_importing_torch(tmp_path):
    """chunking.hf_tokenizer loads the class tokenizer_config.json names (fast form first, as AutoTokenizer
    picks) so that splitting for the window bound does not import PyTorch; the tokens are the same."""
    import subprocess
    import sys

    from transformers import AutoTokenizer

    from retrievers.chunking import _named_tokenizer

    path = str(local_model_path())
    mine, auto = _named_tokenizer(path), AutoTokenizer.from_pretrained(path)
    assert type(mine) is type(auto)
    texts = [_sample().joined(), "Zoë Ñúñez (1950–2001) was a Kraków-born café owner.\n\n«Quoted» 東京 naïve", ""]
    assert [mine.tokenize(t) for t in texts] == [auto.tokenize(t) for t in texts]
    code = (
        "import sys\n"
        "from types import SimpleNamespace\n"
        "from pathlib import Path\n"
        "from harness.query import Query\n"
        "from harness.strategy import Resources\n"
        "from retrievers.dense import DenseRAG\n"
        "from tests.test_retrievers import _sample\n"
        f"arm = DenseRAG(DenseRAG.Params(), Resources(cache_dir=Path({str(tmp_path)!r})))\n"
        "s = _sample()\n"
        "assert arm.window_bound(s, Query(None, s, SimpleNamespace(instructions='x'), []))\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
