"""`rag-langchain`: LangChain's own pipeline: RecursiveCharacterTextSplitter, HuggingFaceEmbeddings, FAISS.

* Splitting: `RecursiveCharacterTextSplitter.from_huggingface_tokenizer(<MiniLM tokenizer>,
  chunk_size, chunk_overlap, add_start_index=True)`, sizes in the embedding model's tokens. This
  is the splitter rag-dense uses, so with the same parameters the two arms embed the same chunk
  texts and share every vector.
* Embedding: a `HuggingFaceEmbeddings` on the packaged all-MiniLM-L6-v2 folder (no hub),
  normalised, answering from the shared content-hash cache
  (`retrievers.embeddings.langchain_embeddings`).
* Store: per sample, `FAISS.from_documents(..., distance_strategy=MAX_INNER_PRODUCT)` (cosine on
  unit vectors, higher is better), searched with `similarity_search_with_score(question, k=top_k)`.
* Provenance: each Document's `start_index` metadata in `sample.joined()`.

LangChain is imported only when this arm runs. (The module is not called `langchain.py` so that
it can never shadow the `langchain` package.)
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from harness.plugin import Sample
from retrievers.chunking import SEPARATOR, Chunk, doc_spans, docs_overlapping, langchain_splitter, locate
from retrievers.embeddings import langchain_embeddings, shared_cache
from retrievers.rag import RagStrategy


class LangChainRAG(RagStrategy):
    def __init__(self, params, resources):
        super().__init__(params, resources)
        self.cache = shared_cache(resources.cache_dir / "embeddings")
        self._docs: dict[str, list] = {}  # sample id -> LangChain Documents (chunks)
        self._chunks: dict[str, list[Chunk]] = {}

    @property
    def embedding_model_path(self) -> str:
        return str(self.cache.model_path)

    @property
    def embeddings(self):
        return langchain_embeddings(self.cache)

    def splitter(self):
        return langchain_splitter(self.embedding_model_path, self.params.chunk_size, self.params.chunk_overlap)

    def documents(self, sample: Sample) -> list:
        if sample.id not in self._docs:
            self._split([sample])
        return self._docs[sample.id]

    def chunks(self, sample: Sample) -> list[Chunk]:
        self.documents(sample)
        return self._chunks[sample.id]

    def _split(self, samples: Sequence[Sample]) -> None:
        from langchain_core.documents import Document

        splitter = self.splitter()
        for s in samples:
            text = s.joined(SEPARATOR)
            spans = doc_spans(s)
            docs = splitter.split_documents([Document(page_content=text, metadata={"sample": s.id})])
            chunks, after = [], 0
            for i, d in enumerate(docs):
                start = locate(text, d.page_content, d.metadata.get("start_index"), after)
                if start < 0:
                    raise RuntimeError(f"{self.name}: chunk {i} of sample {s.id} is not a span of the corpus")
                after = start
                d.metadata["chunk"] = i
                chunks.append(
                    Chunk(f"c{i}", d.page_content, start, docs_overlapping(spans, start, start + len(d.page_content)))
                )
            self._docs[s.id] = docs
            self._chunks[s.id] = chunks

    def prepare(self, samples: Sequence[Sample]) -> None:
        t0 = time.perf_counter()
        self._split([s for s in samples if s.id not in self._docs])
        texts = [d.page_content for s in samples for d in self._docs[s.id]]
        unique = list(dict.fromkeys(texts))
        t1 = time.perf_counter()
        before = self.cache.computed
        self.embeddings.embed_unique(unique)
        t2 = time.perf_counter()
        self.stats = {
            "chunks": len(texts),
            "unique": len(unique),
            "embedded": self.cache.computed - before,
            "split_s": t1 - t0,
            "embed_s": t2 - t1,
        }

    def store(self, sample: Sample):
        """A LangChain FAISS vector store of this sample's chunks (vectors from the cache)."""
        from langchain_community.vectorstores import FAISS
        from langchain_community.vectorstores.utils import DistanceStrategy

        return FAISS.from_documents(
            self.documents(sample), self.embeddings, distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT
        )

    def retrieve(self, sample: Sample, query: str) -> list[tuple[Chunk, float]]:
        chunks = self.chunks(sample)
        k = min(self.params.top_k, len(chunks))
        found = self.store(sample).similarity_search_with_score(query, k=k)
        return [(chunks[d.metadata["chunk"]], float(score)) for d, score in found]
