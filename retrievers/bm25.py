"""`rag-bm25`: lexical retrieval with bm25s (Okapi BM25, English stopwords and Snowball stemming).

Chunks come from the same splitter as rag-dense and rag-langchain (LangChain's recursive splitter
in MiniLM tokens), so the three arms differ only in how they rank the same chunks. A sample's
BM25 index is built in `prepare` (tokenising is the only real work; there is nothing to embed) and
`retrieve` scores the question against it.

bm25s is imported only when this arm runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import lru_cache

from harness.plugin import Sample
from retrievers.chunking import Chunk, chunk_sample
from retrievers.rag import RagStrategy


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")


class BM25RAG(RagStrategy):
    def __init__(self, params, resources):
        super().__init__(params, resources)
        self._chunks: dict[str, list[Chunk]] = {}
        self._index: dict[str, object] = {}

    def chunks(self, sample: Sample) -> list[Chunk]:
        if sample.id not in self._chunks:
            p = self.params
            self._chunks[sample.id] = chunk_sample(sample, p.chunk_size, p.chunk_overlap, self.embedding_model_path)
        return self._chunks[sample.id]

    def _tokenize(self, texts: list[str]):
        import bm25s

        return bm25s.tokenize(texts, stopwords="en", stemmer=_stemmer(), show_progress=False)

    def index(self, sample: Sample):
        if sample.id not in self._index:
            import bm25s

            bm = bm25s.BM25()
            bm.index(self._tokenize([c.text for c in self.chunks(sample)]), show_progress=False)
            self._index[sample.id] = bm
        return self._index[sample.id]

    def prepare(self, samples: Sequence[Sample]) -> None:
        t0 = time.perf_counter()
        for s in samples:
            self.index(s)
        n = sum(len(self.chunks(s)) for s in samples)
        self.stats = {
            "chunks": n,
            "unique": len({c.text for s in samples for c in self.chunks(s)}),
            "embedded": 0,
            "split_s": time.perf_counter() - t0,
            "embed_s": 0.0,
        }

    def retrieve(self, sample: Sample, query: str) -> list[tuple[Chunk, float]]:
        chunks = self.chunks(sample)
        k = min(self.params.top_k, len(chunks))
        ids, scores = self.index(sample).retrieve(self._tokenize([query]), k=k, show_progress=False)
        return [(chunks[int(i)], float(sc)) for i, sc in zip(ids[0], scores[0])]
