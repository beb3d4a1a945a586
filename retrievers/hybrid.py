"""`rag-hybrid`: BM25 and dense retrieval fused by reciprocal rank (LlamaIndex QueryFusionRetriever).

The same nodes and vectors as rag-llamaindex (SentenceSplitter in MiniLM tokens, the shared
embedding cache), searched two ways per sample: `index.as_retriever(similarity_top_k=top_k)` over
a FaissVectorStore, and `BM25Retriever.from_defaults(nodes=..., similarity_top_k=top_k)`
(bm25s, English stemming and stopwords). `QueryFusionRetriever(mode="reciprocal_rerank",
num_queries=1, use_async=False)` fuses them (k=60) and keeps the best top_k. The score recorded
is the fused RRF score.

No hidden model calls: num_queries=1 means the question is used as is (the default 4 would ask
an LLM for three rewrites), the retriever is given an LLM that raises on any call, and
LlamaIndex's global LLM is set to that same refusing LLM, so neither query generation nor the
OpenAI fallback can run.
"""

from __future__ import annotations

from harness.plugin import Sample
from retrievers.chunking import Chunk
from retrievers.llamaindex import LlamaIndexRAG, forbid_llm


class HybridRAG(LlamaIndexRAG):
    def fusion(self, sample: Sample):
        from llama_index.core.retrievers import QueryFusionRetriever
        from llama_index.core.retrievers.fusion_retriever import FUSION_MODES
        from llama_index.retrievers.bm25 import BM25Retriever

        nodes = self.nodes(sample)
        k = min(self.params.top_k, len(nodes))
        dense = self.index(sample).as_retriever(similarity_top_k=k)
        lexical = BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=k)
        return QueryFusionRetriever(
            [dense, lexical],
            llm=forbid_llm(),
            mode=FUSION_MODES.RECIPROCAL_RANK,
            similarity_top_k=k,
            num_queries=1,
            use_async=False,
        )

    def retrieve(self, sample: Sample, query: str) -> list[tuple[Chunk, float]]:
        return self.to_hits(sample, self.fusion(sample).retrieve(query))
