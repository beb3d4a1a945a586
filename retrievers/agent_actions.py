"""What an agent can do to one sample's corpus — search, read — and what it did: steps, hits, invalid actions.

Shared by the `agentic` arm's two drivers (the JSON action protocol in retrievers/agentic.py, OpenAI
tool calls in retrievers/agent_tools.py), so neither imports the other's module for it.

Per query it keeps what the report's agent metrics are computed from (harness.report.multicall):
  search_hits        for each search, whether its results held a gold document;
  repeated_queries   searches whose query (case and spaces folded) the agent had already sent;
  needle_step        the step that first showed a gold document;
  searched_subject   whether a search held one of the scenario's `search_terms` for the sample;
and each invalid action as a step of kind "invalid" whose `arguments["error"]` is one of
INVALID: the reply was not a JSON action, it named no known tool, or its arguments were wrong
(missing, empty, not matching the tool's schema, a document that does not exist).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from harness.plugin import (
    Sample,
    Shown,
    ShownPiece,
    Step,
)
from retrievers.chunking import SEPARATOR, Chunk, doc_spans
from retrievers.rag import gold_recall, needle_coverage

MAX_QUERY_CHARS = 200
RESULT_CHARS = 600  # of one passage, as shown to the agent
INVALID = ("invalid_json", "unknown_tool", "bad_arguments")


def passages_text(results: list[dict[str, Any]]) -> str:
    if not results:
        return "(nothing found)"
    return "\n".join(f"[{r['id']} from {', '.join(r['documents'])}] {r['text']}" for r in results)


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` as OpenAI-style strict structured output accepts it: every object closed
    (additionalProperties false) with every property required. A copy; the constraints are unchanged
    for a schema that already lists all its properties as required."""
    if not isinstance(schema, dict):
        return schema
    out = {k: v for k, v in schema.items()}
    if out.get("type") == "object" or "properties" in out:
        props = {k: strict_schema(v) for k, v in (out.get("properties") or {}).items()}
        out.update(properties=props, required=list(props), additionalProperties=False)
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        if isinstance(out.get(key), list):
            out[key] = [strict_schema(s) for s in out[key]]
    if isinstance(out.get("items"), dict):
        out["items"] = strict_schema(out["items"])
    return out


def _folded(query: str) -> str:
    return " ".join(query.lower().split())


class Tools:
    """search and read over one sample's corpus, remembering what the model was shown and did."""

    def __init__(self, rag, sample: Sample, k: int, terms: Sequence[str] = ()):
        self.rag, self.sample, self.k = rag, sample, k
        self.terms = [t.lower() for t in terms if t]
        self.steps: list[Step] = []
        self.pieces: dict[str, ShownPiece] = {}
        self.hits: list[tuple[Chunk, float]] = []  # everything shown, as spans (for needle coverage)
        self.first_needle_step: int | None = None
        self.search_hits: list[bool] = []
        self.queries: set[str] = set()
        self.repeated = 0
        self.docs = {d.id: d for d in sample.documents}

    def _note_needle(self, ids: Sequence[str]) -> bool:
        hit = bool(set(ids) & set(self.sample.gold_ids))
        if hit and self.first_needle_step is None:
            self.first_needle_step = len(self.steps)
        return hit

    def invalid(self, error: str, call: int | None, note: str = "", **arguments: Any) -> None:
        """An action that could not be carried out; `error` is one of INVALID."""
        self.steps.append(Step(kind="invalid", arguments={"error": error, **arguments}, call=call, note=note[:200]))

    async def search(self, query: str, k: int | None = None, call: int | None = None) -> list[dict[str, Any]]:
        query = (query or "").strip()[:MAX_QUERY_CHARS]
        if not query:
            self.invalid("bad_arguments", call, "search needs a query", tool="search")
            return []
        k = max(1, min(int(k or self.k), self.k))
        hits = (await asyncio.to_thread(self.rag.retrieve, self.sample, query))[:k]
        out = []
        for rank, (c, score) in enumerate(hits):
            self.pieces.setdefault(
                c.id, ShownPiece(id=c.id, doc_ids=list(c.doc_ids), text=c.text, rank=rank, score=float(score))
            )
            self.hits.append((c, score))
            out.append({"id": c.id, "documents": list(c.doc_ids), "text": c.text[:RESULT_CHARS]})
        self.search_hits.append(self._note_needle([d for c, _ in hits for d in c.doc_ids]))
        folded = _folded(query)
        self.repeated += folded in self.queries
        self.queries.add(folded)
        self.steps.append(
            Step(
                kind="search",
                arguments={"query": query, "k": k},
                call=call,
                result_ids=[c.id for c, _ in hits],
                result_chars=sum(len(c.text) for c, _ in hits),
            )
        )
        return out

    async def search_text(self, query: str, k: int | None = None, call: int | None = None) -> str:
        """A search's results as the agent reads them."""
        return passages_text(await self.search(query, k, call=call))

    async def read(self, doc_id: str, call: int | None = None) -> str:
        doc = self.docs.get(str(doc_id).strip())
        if doc is None:
            self.invalid("bad_arguments", call, "no such document", tool="read", doc_id=str(doc_id)[:80])
            return f"no document {doc_id!r}"
        self.pieces[doc.id] = ShownPiece(id=doc.id, doc_ids=[doc.id], text=doc.text)
        start = next(a for a, _, d in doc_spans(self.sample) if d == doc.id)
        self.hits.append((Chunk(doc.id, doc.text, start, (doc.id,)), 0.0))
        self._note_needle([doc.id])
        self.steps.append(
            Step(kind="read", arguments={"doc_id": doc.id}, call=call, result_ids=[doc.id], result_chars=len(doc.text))
        )
        return doc.text

    def searched_subject(self) -> bool:
        queries = [str(s.arguments.get("query", "")).lower() for s in self.steps if s.kind == "search"]
        return any(t in q for t in self.terms for q in queries)

    def shown(self) -> Shown:
        pieces = list(self.pieces.values())
        return Shown(
            context=SEPARATOR.join(p.text for p in pieces),
            pieces=pieces,
            retrieval={
                "needle_retrieved": any(set(p.doc_ids) & set(self.sample.gold_ids) for p in pieces)
                if self.sample.gold_ids
                else None,  # None: no gold marked (a qa file without gold documents)
                "gold_recall": gold_recall(self.sample, [p.doc_ids for p in pieces]),
                "needle_step": self.first_needle_step,  # the step that first showed the needle
                "needle_coverage": needle_coverage(self.sample, self.hits) if self.hits else 0.0,
                "searches": len(self.search_hits),
                "reads": sum(s.kind == "read" for s in self.steps),
                "searched_subject": self.searched_subject(),
                "search_hits": list(self.search_hits),
                "repeated_queries": self.repeated,
            },
        )
