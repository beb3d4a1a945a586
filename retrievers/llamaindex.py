"""`rag-llamaindex`: LlamaIndex's own pipeline: SentenceSplitter, HuggingFaceEmbedding, VectorStoreIndex on FAISS.

* Splitting: `SentenceSplitter(chunk_size, chunk_overlap, tokenizer=<MiniLM tokenizer>)`, so sizes are
  in the embedding model's tokens like rag-dense; paragraphs are the corpus's "\\n\\n" joins. The
  splitter packs sentences, so a chunk may run a few tokens over chunk_size (it measures pieces,
  not their joins); MiniLM reads 256 tokens, so nothing is cut at the default 128.
* Embedding: a `HuggingFaceEmbedding` on the packaged all-MiniLM-L6-v2 folder (no hub), answering
  from the shared content-hash cache (`retrievers.embeddings.llamaindex_embedding`).
* Index: per sample, `VectorStoreIndex` over a `FaissVectorStore(IndexFlatIP)` (cosine on unit
  vectors) built from cached vectors; `index.as_retriever(similarity_top_k=top_k)`.
* Provenance: each node's `start_char_idx` in `sample.joined()` (checked, and searched for if the
  splitter's offset does not match) gives the documents it overlaps.
* No LLM: nothing here calls one; `forbid_llm()` still makes LlamaIndex's global LLM one that
  raises, so its OpenAI fallback can never be reached.

LlamaIndex is imported only when this arm runs.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from harness.plugin import Sample
from retrievers.chunking import SEPARATOR, Chunk, doc_spans, docs_overlapping, hf_tokenizer, locate
from retrievers.embeddings import llamaindex_embedding, shared_cache
from retrievers.rag import RagStrategy


@lru_cache(maxsize=1)
def forbidden_llm_class():
    from llama_index.core.llms import MockLLM

    class ForbiddenLLM(MockLLM):
        """The only LLM the retrieval arms ever hand LlamaIndex: any call is a bug and raises."""

        @classmethod
        def class_name(cls) -> str:
            return "ForbiddenLLM"

        def _refuse(self, *args: Any, **kwargs: Any):
            raise RuntimeError("retrieval arms must not call an LLM (query generation, synthesis, ...)")

        complete = stream_complete = chat = stream_chat = _refuse

        async def acomplete(self, *args: Any, **kwargs: Any):
            self._refuse()

        async def achat(self, *args: Any, **kwargs: Any):
            self._refuse()

        async def astream_complete(self, *args: Any, **kwargs: Any):
            self._refuse()

        async def astream_chat(self, *args: Any, **kwargs: Any):
            self._refuse()

    return ForbiddenLLM


def forbid_llm():
    """Set LlamaIndex's global LLM to one that refuses every call (no OpenAI fallback); return it."""
    from llama_index.core import Settings

    cls = forbidden_llm_class()
    if not isinstance(Settings._llm, cls):
        Settings.llm = cls()
    return Settings._llm


class LlamaIndexRAG(RagStrategy):
    def __init__(self, params, resources):
        super().__init__(params, resources)
        self.cache = shared_cache(resources.cache_dir / "embeddings")
        self._nodes: dict[str, list] = {}
        self._chunk_of: dict[str, dict[str, Chunk]] = {}  # sample id -> node id -> Chunk

    @property
    def embedding_model_path(self) -> str:
        return str(self.cache.model_path)

    @property
    def embed_model(self):
        return llamaindex_embedding(self.cache)

    def splitter(self):
        from llama_index.core.node_parser import SentenceSplitter

        forbid_llm()
        return SentenceSplitter(
            chunk_size=self.params.chunk_size,
            chunk_overlap=self.params.chunk_overlap,
            tokenizer=hf_tokenizer(self.embedding_model_path).tokenize,
            paragraph_separator=SEPARATOR,
            id_func=lambda i, doc: f"{doc.doc_id}:c{i}",
        )

    def nodes(self, sample: Sample) -> list:
        if sample.id not in self._nodes:
            self._split([sample])
        return self._nodes[sample.id]

    def chunks(self, sample: Sample) -> list[Chunk]:
        self.nodes(sample)
        return list(self._chunk_of[sample.id].values())

    def _split(self, samples: Sequence[Sample]) -> None:
        from llama_index.core import Document

        splitter = self.splitter()
        for s in samples:
            text = s.joined(SEPARATOR)
            spans = doc_spans(s)
            nodes = splitter.get_nodes_from_documents([Document(text=text, id_=s.id)])
            chunk_of, after = {}, 0
            for i, node in enumerate(nodes):
                piece = node.get_content()
                start = locate(text, piece, node.start_char_idx, after)
                if start < 0:
                    raise RuntimeError(f"{self.name}: chunk {i} of sample {s.id} is not a span of the corpus")
                after = start
                chunk_of[node.node_id] = Chunk(
                    f"c{i}", piece, start, docs_overlapping(spans, start, start + len(piece))
                )
            self._nodes[s.id] = nodes
            self._chunk_of[s.id] = chunk_of

    def prepare(self, samples: Sequence[Sample]) -> None:
        # Split every sample, then one batched embedding pass over the grid's unique chunk texts
        # (the shared cache computes only the ones no arm, depth or earlier run has embedded).
        t0 = time.perf_counter()
        todo = [s for s in samples if s.id not in self._nodes]
        self._split(todo)
        texts = [n.get_content() for s in samples for n in self._nodes[s.id]]
        unique = list(dict.fromkeys(texts))
        t1 = time.perf_counter()
        before = self.cache.computed
        self.embed_model.embed_unique(unique)
        t2 = time.perf_counter()
        self.stats = {
            "chunks": len(texts),
            "unique": len(unique),
            "embedded": self.cache.computed - before,
            "split_s": t1 - t0,
            "embed_s": t2 - t1,
        }

    def index(self, sample: Sample):
        """A VectorStoreIndex over a FaissVectorStore for this sample's nodes (vectors from the cache)."""
        import faiss
        from llama_index.core import StorageContext, VectorStoreIndex
        from llama_index.vector_stores.faiss import FaissVectorStore

        store = FaissVectorStore(faiss_index=faiss.IndexFlatIP(self.cache.dim))
        return VectorStoreIndex(
            self.nodes(sample),
            storage_context=StorageContext.from_defaults(vector_store=store),
            embed_model=self.embed_model,
            show_progress=False,
        )

    def to_hits(self, sample: Sample, results) -> list[tuple[Chunk, float]]:
        chunk_of = self._chunk_of[sample.id]
        return [(chunk_of[r.node.node_id], float(r.score or 0.0)) for r in results]

    def retrieve(self, sample: Sample, query: str) -> list[tuple[Chunk, float]]:
        k = min(self.params.top_k, len(self.nodes(sample)))
        retriever = self.index(sample).as_retriever(similarity_top_k=k)
        return self.to_hits(sample, retriever.retrieve(query))
