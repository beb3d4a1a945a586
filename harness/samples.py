"""What flows between the stages: a scenario makes Samples, a strategy turns one into a Shown context.

These are plain pydantic models so that every record can carry them verbatim and every
summary can be recomputed from records alone.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class Document(BaseModel):
    """One piece of the corpus (a passage, a key-value pair, a record: whatever the scenario's are)."""

    id: str
    text: str


class Sample(BaseModel):
    """One query of one grid cell: the corpus the model may see, the question and the gold answer."""

    id: str  # unique within a run, stable across runs with the same seed
    scenario: str
    length: int  # target context length, in the served model's tokens
    depth: float  # needle depth in percent (0 = start of the context, 100 = end)
    needle_index: int  # which needle of the cell (0..needles-1)
    documents: list[Document]
    gold_ids: list[str]  # ids of the documents that hold the answer
    subject: str  # what the question is about (e.g. the name in it; the report calls it Scenario.words.subject)
    question: str
    gold: dict[str, Any]
    context_tokens: int = 0  # tokens of the joined documents, as counted by the endpoint's tokenizer
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> tuple[int, float, int]:
        return (self.length, self.depth, self.needle_index)

    def joined(self, sep: str = "\n\n") -> str:
        return sep.join(d.text for d in self.documents)


class ShownPiece(BaseModel):
    """A span of the corpus put in front of the model, with where it came from."""

    id: str  # document id for full context, chunk id for retrieval
    doc_ids: list[str]  # documents this piece overlaps
    text: str
    rank: int | None = None  # retrieval rank (0 = best); None for full context
    score: float | None = None


class Shown(BaseModel):
    """What a strategy showed the model: the context text plus provenance."""

    context: str
    pieces: list[ShownPiece]
    retrieval: dict[str, Any] = Field(default_factory=dict)  # strategy-specific diagnostics

    def doc_ids(self) -> list[str]:
        seen: dict[str, None] = {}
        for p in self.pieces:
            for d in p.doc_ids:
                seen.setdefault(d, None)
        return list(seen)

    def holds(self, doc_id: str, text: str | None = None) -> bool:
        """Whether any shown piece overlaps the document (and, if given, contains `text`)."""
        return any(doc_id in p.doc_ids and (text is None or text in p.text) for p in self.pieces)
