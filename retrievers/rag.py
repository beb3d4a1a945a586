"""What every retrieval arm shares: its parameters, chunk ordering, and the recall diagnostics.

An arm only has to say which chunks it retrieved, best first (`retrieve`); this base turns
them into the Shown context, placed in the requested order, with needle recall recorded the
same way for every arm so that arms compare fairly.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, model_validator

from harness.plugin import OneShot, Prompt, Query, Sample, Shown, ShownPiece, StrategyParams
from retrievers.chunking import SEPARATOR, Chunk, count_model_tokens, doc_spans


class RagParams(StrategyParams):
    chunk_size: int = Field(128, ge=16, le=4096, description="chunk size, in embedding-model tokens")
    chunk_overlap: int = Field(16, ge=0, description="overlap between neighbouring chunks, in tokens")
    top_k: int = Field(4, ge=1, le=200, description="chunks retrieved per question")
    order: Literal["score", "ends", "document"] = Field(
        "score",
        description="score: best first; ends: best chunks at both ends of the prompt (Jin et al. 2024); "
        "document: in corpus order",
    )

    @model_validator(mode="after")
    def _overlap_below_size(self):
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})"
            )
        return self


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


def gold_recall(sample: Sample, shown_doc_ids) -> float | None:
    """Share of the gold documents some shown piece overlaps (None: no gold). With one needle it is
    needle_retrieved as 0/1; with several (an aggregate question) it is how many were found."""
    gold = set(sample.gold_ids)
    if not gold:
        return None
    hit = set().union(*map(set, shown_doc_ids)) & gold if shown_doc_ids else set()
    return round(len(hit) / len(gold), 4)


def needle_coverage(sample: Sample, hits: Sequence[tuple[Chunk, float]]) -> float | None:
    """Fraction of the gold documents' characters that some retrieved chunk covers (None: no gold)."""
    gold = {d: (a, b) for a, b, d in doc_spans(sample) if d in set(sample.gold_ids)}
    total = sum(b - a for a, b in gold.values())
    if not total:
        return None
    covered = 0
    for a, b in gold.values():
        spans = sorted((max(a, c.start), min(b, c.start + len(c.text))) for c, _ in hits)
        end = a
        for lo, hi in spans:
            lo = max(lo, end)
            if hi > lo:
                covered += hi - lo
                end = hi
    return round(covered / total, 4)


class RagStrategy(OneShot):
    """Subclasses implement `retrieve`, and usually `prepare` (split every sample, embed the unique
    chunks once). `stats` holds what the last `prepare` did, for the benchmark."""

    Params = RagParams

    def __init__(self, params, resources):
        super().__init__(params, resources)
        self.stats: dict[str, Any] = {}

    @property
    def embedding_model_path(self) -> str:
        from retrievers.embeddings import local_model_path

        return str(local_model_path())

    @abstractmethod
    def retrieve(self, sample: Sample, query: str) -> list[tuple[Chunk, float]]:
        """The top-k chunks for the query, best first, with the retriever's score."""

    def query(self, sample: Sample) -> str:
        return sample.question

    def bound_context(self, sample: Sample) -> str | None:
        """A context no shorter, in bytes, than any `show` can give `sample` without retrieving: its
        top_k largest chunks, joined (`show` joins at most top_k of them). Needs only the split, not the
        embeddings; None for an arm that does not say what its chunks are (`chunks(sample)`)."""
        chunks = getattr(self, "chunks", None)
        if chunks is None:
            return None
        texts = sorted((c.text for c in chunks(sample)), key=lambda t: len(t.encode()), reverse=True)
        return SEPARATOR.join(texts[: self.params.top_k])

    def window_bound(self, sample: Sample, query: Query) -> list[Prompt] | None:
        # the prompt around the largest context retrieval can show: preparing (embedding every chunk of
        # the grid) waits for this arm's turn when it surely fits the window
        context = self.bound_context(sample)
        return None if context is None else [query.prompt(context)]

    def count_tokens(self, texts: Sequence[str]) -> tuple[list[int], str]:
        """Tokens of each text, in the served model's tokens when the run has an endpoint
        (`Resources.count_tokens`), else in the embedding model's; and which of the two."""
        counter = getattr(self.resources, "count_tokens", None)
        if counter is not None:
            return [int(n) for n in counter(list(texts))], "served model"
        return count_model_tokens(texts, self.embedding_model_path), "embedding model"

    def show(self, sample: Sample) -> Shown:
        hits = self.retrieve(sample, self.query(sample))
        placed = place(hits, self.params.order)
        pieces = [
            ShownPiece(id=c.id, doc_ids=list(c.doc_ids), text=c.text, rank=r, score=float(s)) for r, c, s in placed
        ]
        gold = set(sample.gold_ids)
        ranks = [r for r, (c, _) in enumerate(hits) if gold & set(c.doc_ids)]
        counts, unit = self.count_tokens([c.text for c, _ in hits]) if hits else ([], "")
        return Shown(
            context=SEPARATOR.join(p.text for p in pieces),
            pieces=pieces,
            retrieval={
                "needle_retrieved": bool(ranks) if gold else None,  # None: no gold marked
                "gold_recall": gold_recall(sample, [c.doc_ids for c, _ in hits]),
                "needle_rank": min(ranks) if ranks else None,
                "chunks": len(hits),
                "needle_coverage": needle_coverage(sample, hits),
                "tokens_retrieved": sum(counts),
                "tokens_counted_in": unit,
            },
        )
