"""`rag-dense`: sentence-transformers embeddings + a FAISS inner-product index, top-k chunks.

The plain, framework-free baseline that the LlamaIndex and LangChain arms are compared to.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from harness.plugin import Sample
from retrievers.chunking import Chunk, chunk_sample
from retrievers.embeddings import shared_cache
from retrievers.rag import RagStrategy


class DenseRAG(RagStrategy):
    def __init__(self, params, resources):
        super().__init__(params, resources)
        self.embeddings = shared_cache(resources.cache_dir / "embeddings")
        self._chunks: dict[str, list[Chunk]] = {}

    def chunks(self, sample: Sample) -> list[Chunk]:
        if sample.id not in self._chunks:
            p = self.params
            self._chunks[sample.id] = chunk_sample(
                sample, p.chunk_size, p.chunk_overlap, str(self.embeddings.model_path)
            )
        return self._chunks[sample.id]

    def prepare(self, samples: Sequence[Sample]) -> None:
        # One batched pass over every unique chunk of the grid (the cache dedupes).
        texts = [c.text for s in samples for c in self.chunks(s)]
        self.embeddings.embed(list(dict.fromkeys(texts)))

    def retrieve(self, sample: Sample, query: str) -> list[tuple[Chunk, float]]:
        import faiss

        chunks = self.chunks(sample)
        vecs = self.embeddings.embed([c.text for c in chunks])
        index = faiss.IndexFlatIP(vecs.shape[1])
        index.add(vecs)
        q = self.embeddings.embed([query])
        k = min(self.params.top_k, len(chunks))
        scores, ids = index.search(np.ascontiguousarray(q), k)
        return [(chunks[i], float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]
