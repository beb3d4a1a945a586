"""What every retrieval arm shares: its parameters, chunk ordering, and the recall diagnostics.

An arm only has to say which chunks it retrieved, best first (`retrieve`); this base turns
them into the Shown context, placed in the requested order, with needle recall recorded the
same way for every arm so that arms compare fairly.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from harness.samples import Sample, Shown, ShownPiece
from retrievers.base import Strategy, StrategyParams
from retrievers.chunking import SEPARATOR, Chunk


class RagParams(StrategyParams):
    chunk_size: int = Field(128, ge=16, le=4096, description="chunk size, in embedding-model tokens")
    chunk_overlap: int = Field(16, ge=0, description="overlap between neighbouring chunks, in tokens")
    top_k: int = Field(4, ge=1, le=200, description="chunks retrieved per question")
    order: Literal["score", "ends", "document"] = Field(
        "score",
        description="score: best first; ends: best chunks at both ends of the prompt (Jin et al. 2024); "
        "document: in corpus order",
    )


def place(hits: Sequence[tuple[Chunk, float]], order: str) -> list[tuple[int, Chunk, float]]:
    """(rank, chunk, score) in the order they go into the prompt; `hits` come best first."""
    ranked = [(r, c, s) for r, (c, s) in enumerate(hits)]
    if order == "document":
        return sorted(ranked, key=lambda x: x[1].start)
    if order == "ends":
        # ranks 0,2,4,... from the front, 1,3,5,... from the back: the best sit at both edges.
        front = ranked[0::2]
        back = ranked[1::2]
        return front + back[::-1]
    return ranked


class RagStrategy(Strategy):
    Params = RagParams

    @abstractmethod
    def retrieve(self, sample: Sample, query: str) -> list[tuple[Chunk, float]]:
        """The top-k chunks for the query, best first, with the retriever's score."""

    def query(self, sample: Sample) -> str:
        return sample.question

    def show(self, sample: Sample) -> Shown:
        hits = self.retrieve(sample, self.query(sample))
        placed = place(hits, self.params.order)
        pieces = [
            ShownPiece(id=c.id, doc_ids=list(c.doc_ids), text=c.text, rank=r, score=float(s))
            for r, c, s in placed
        ]
        gold = set(sample.gold_ids)
        ranks = [r for r, (c, _) in enumerate(hits) if gold & set(c.doc_ids)]
        return Shown(
            context=SEPARATOR.join(p.text for p in pieces),
            pieces=pieces,
            retrieval={
                "needle_retrieved": bool(ranks),
                "needle_rank": min(ranks) if ranks else None,
                "chunks": len(hits),
            },
        )
