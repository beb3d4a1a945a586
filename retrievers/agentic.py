"""`agentic`: the model drives retrieval with tools — search, read, answer — and may search again.

Tools over the same chunk index the RAG arms use (the rag-dense or rag-bm25 chunks and embeddings,
shared caches):
  search(query, k)  the k best chunks for the model's own query: chunk ids, the documents they come
                    from, and their text;
  read(doc_id)      a whole document;
  answer(...)       the final answer, in the scenario's answer schema.
Two drivers, one arm:
  tools  OpenAI tool calls through LangChain's agent (`langchain.agents.create_agent`, a LangGraph
         graph), for chat endpoints whose models call tools. The chat model the agent drives is
         harness's own (`HarnessChatModel`), so every call still goes through `Query.generate`:
         cached, retried, window-checked, counted and recorded like any other;
  json   a JSON action protocol under structured output ({"action": "search", "query": ...} and so
         on, one per step, the schema enforced by the server), for endpoints and models without tool
         calling — the embedded base model among them.
  auto (default) picks tools on a chat endpoint, json otherwise.
Bounds: `max_steps` model calls for actions and a `token_budget` (prompt + completion tokens over
all calls). An agent that hits either (or runs out of window) is not dropped: it answers once more
from everything it was shown (a plain extraction prompt, the reader's home ground), and the record
says which limit stopped it. Every step is recorded (tool, arguments, what came back, which call).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from harness.plugin import (
    Outcome,
    Prompt,
    Query,
    Sample,
    Shown,
    ShownPiece,
    Step,
    Strategy,
    StrategyParams,
    UsageError,
    WindowExceeded,
)
from retrievers.chunking import SEPARATOR, Chunk, doc_spans
from retrievers.rag import gold_recall, needle_coverage

MAX_QUERY_CHARS = 200
RESULT_CHARS = 600  # of one passage, as shown to the agent


class AgenticParams(StrategyParams):
    driver: Literal["auto", "tools", "json"] = Field(
        "auto",
        description="tools (OpenAI tool calls), json (action protocol under structured output), auto: tools on chat",
    )
    max_steps: int = Field(4, ge=1, le=32, description="model calls for actions, before a forced final answer")
    token_budget: int = Field(12000, ge=256, description="prompt + completion tokens per query, all calls")
    k: int = Field(3, ge=1, le=20, description="passages a search returns (the model may ask for fewer)")
    retriever: Literal["dense", "bm25"] = Field("dense", description="the index searched: rag-dense's or rag-bm25's")
    chunk_size: int = Field(128, ge=16, le=4096)
    chunk_overlap: int = Field(16, ge=0)


class Budget(Exception):
    """The query's token budget is spent."""


class Tools:
    """search and read over one sample's corpus, remembering what the model was shown."""

    def __init__(self, rag, sample: Sample, k: int):
        self.rag, self.sample, self.k = rag, sample, k
        self.steps: list[Step] = []
        self.pieces: dict[str, ShownPiece] = {}
        self.hits: list[tuple[Chunk, float]] = []  # everything shown, as spans (for needle coverage)
        self.first_needle_step: int | None = None
        self.docs = {d.id: d for d in sample.documents}

    def _note_needle(self, ids: Sequence[str]) -> None:
        if self.first_needle_step is None and set(ids) & set(self.sample.gold_ids):
            self.first_needle_step = len(self.steps)

    async def search(self, query: str, k: int | None = None, call: int | None = None) -> list[dict[str, Any]]:
        query = (query or "").strip()[:MAX_QUERY_CHARS]
        k = max(1, min(int(k or self.k), self.k))
        hits = (await asyncio.to_thread(self.rag.retrieve, self.sample, query))[:k] if query else []
        out = []
        for rank, (c, score) in enumerate(hits):
            self.pieces.setdefault(
                c.id, ShownPiece(id=c.id, doc_ids=list(c.doc_ids), text=c.text, rank=rank, score=float(score))
            )
            self.hits.append((c, score))
            out.append({"id": c.id, "documents": list(c.doc_ids), "text": c.text[:RESULT_CHARS]})
        ids = [d for c, _ in hits for d in c.doc_ids]
        self._note_needle(ids)
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

    async def read(self, doc_id: str, call: int | None = None) -> str:
        doc = self.docs.get(str(doc_id).strip())
        if doc is None:
            self.steps.append(Step(kind="read", arguments={"doc_id": doc_id}, call=call, note="no such document"))
            return f"no document {doc_id!r}"
        self.pieces[doc.id] = ShownPiece(id=doc.id, doc_ids=[doc.id], text=doc.text)
        start = next(a for a, _, d in doc_spans(self.sample) if d == doc.id)
        self.hits.append((Chunk(doc.id, doc.text, start, (doc.id,)), 0.0))
        self._note_needle([doc.id])
        self.steps.append(
            Step(kind="read", arguments={"doc_id": doc.id}, call=call, result_ids=[doc.id], result_chars=len(doc.text))
        )
        return doc.text

    def shown(self) -> Shown:
        pieces = list(self.pieces.values())
        searches = [s for s in self.steps if s.kind == "search"]
        surname = (self.sample.subject or "").split()[-1:]  # the name the question asks about, its last part
        return Shown(
            context=SEPARATOR.join(p.text for p in pieces),
            pieces=pieces,
            retrieval={
                "needle_retrieved": any(set(p.doc_ids) & set(self.sample.gold_ids) for p in pieces)
                if self.sample.gold_ids
                else None,
                "gold_recall": gold_recall(self.sample, [p.doc_ids for p in pieces]),
                "needle_step": self.first_needle_step,  # the step that first showed the needle
                "needle_coverage": needle_coverage(self.sample, self.hits) if self.hits else 0.0,
                "searches": len(searches),
                "reads": sum(s.kind == "read" for s in self.steps),
                "searched_subject": bool(surname)
                and any(surname[0].lower() in str(s.arguments.get("query", "")).lower() for s in searches),
            },
        )


def passages_text(results: list[dict[str, Any]]) -> str:
    if not results:
        return "(nothing found)"
    return "\n".join(f"[{r['id']} from {', '.join(r['documents'])}] {r['text']}" for r in results)


AGENT_NOTE = """\
You answer by searching a collection of {n} documents before you reply. Tools:
search(query, k): the passages that best match your query (each says which documents it comes from);
read(doc_id): a whole document;
answer(...): your final answer, in the JSON form described above.
Search for the person the question names; read a document when a passage is cut short."""

JSON_NOTE = """\
Reply with one JSON action per step:
{"action": "search", "query": "..."} or {"action": "read", "doc_id": "..."} or {"action": "answer", "answer": ANSWER}."""


def action_schema(answer_schema: dict[str, Any]) -> dict[str, Any]:
    """One step of the JSON protocol: a search, a read, or the answer (anyOf: the server enforces it)."""

    def obj(props: dict[str, Any]) -> dict[str, Any]:
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}

    return {
        "anyOf": [
            obj(
                {
                    "action": {"type": "string", "enum": ["search"]},
                    "query": {"type": "string", "maxLength": MAX_QUERY_CHARS},
                }
            ),
            obj({"action": {"type": "string", "enum": ["read"]}, "doc_id": {"type": "string", "maxLength": 40}}),
            obj({"action": {"type": "string", "enum": ["answer"]}, "answer": answer_schema}),
        ]
    }


class Agentic(Strategy):
    Params = AgenticParams

    def __init__(self, params, resources):
        super().__init__(params, resources)
        from retrievers.bm25 import BM25RAG
        from retrievers.dense import DenseRAG

        cls = DenseRAG if params.retriever == "dense" else BM25RAG
        self.rag = cls(
            cls.Params(chunk_size=params.chunk_size, chunk_overlap=params.chunk_overlap, top_k=params.k), resources
        )

    def prepare(self, samples: Sequence[Sample]) -> None:
        self.rag.prepare(samples)  # chunk and embed every sample once, before any agent runs

    def driver(self, query: Query) -> str:
        if self.params.driver != "auto":
            return self.params.driver
        return "tools" if query.asker.endpoint.api == "chat" else "json"

    def preflight(self, sample: Sample, query: Query) -> list[Prompt]:
        if self.driver(query) == "tools" and query.asker.endpoint.api != "chat":
            raise UsageError(
                "agentic: driver=tools needs a chat endpoint (--api chat); driver=json works on completions"
            )
        return []

    def instructions(self, query: Query, sample: Sample) -> str:
        return query.scenario.instructions + "\n\n" + AGENT_NOTE.format(n=len(sample.documents))

    def check_budget(self, query: Query) -> None:
        if query.tokens_used >= self.params.token_budget:
            raise Budget()

    async def solve(self, sample: Sample, query: Query) -> Outcome:
        tools = Tools(self.rag, sample, self.params.k)
        limit, text = None, None
        try:
            if self.driver(query) == "tools":
                from retrievers.agent_tools import run_tool_agent

                text, limit = await run_tool_agent(self, sample, query, tools)
            else:
                text, limit = await self.run_json(sample, query, tools)
        except Budget:
            limit = "token_budget"
        except WindowExceeded:
            limit = "context_window"
        if text is None:  # stopped by a limit: answer from what was shown, in one plain extraction call
            shown = tools.shown()
            try:
                final = await query.generate(query.prompt(shown.context), purpose="final")
                text = None if final.problem else final.text
            except WindowExceeded:
                limit = "context_window"
            tools.steps.append(Step(kind="final", note=limit, call=len(query.calls) - 1))
        return Outcome(
            text=text,
            shown=tools.shown(),
            steps=tools.steps,
            limit=limit,
            reason=None if text is not None else f"no answer ({limit})",
        )

    # -- the JSON action protocol -------------------------------------------------------------------------
    def json_prompt(self, sample: Sample, query: Query, transcript: list[tuple[str, str]]) -> Prompt:
        head = self.instructions(query, sample) + "\n" + JSON_NOTE
        lines = [head, "", f"Question: {sample.question}", ""]
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": head},
            {"role": "user", "content": f"Question: {sample.question}"},
        ]
        for i, (action, result) in enumerate(transcript, 1):
            lines += [f"Step {i}: {action}", f"Result: {result}", ""]
            messages += [{"role": "assistant", "content": action}, {"role": "user", "content": f"Result: {result}"}]
        lines.append(f"Step {len(transcript) + 1}:")
        return Prompt(text="\n".join(lines), messages=messages)

    async def run_json(self, sample: Sample, query: Query, tools: Tools) -> tuple[str | None, str | None]:
        schema = action_schema(query.schema)
        transcript: list[tuple[str, str]] = []
        for _ in range(self.params.max_steps):
            self.check_budget(query)
            gen = await query.generate(self.json_prompt(sample, query, transcript), schema=schema, purpose="agent")
            call = len(query.calls) - 1
            try:
                action = json.loads(gen.text)
                kind = action["action"]
            except (ValueError, KeyError, TypeError):
                tools.steps.append(Step(kind="invalid", call=call, note=(gen.problem or gen.text)[:200]))
                return None, "invalid_action"
            if kind == "answer":
                tools.steps.append(Step(kind="answer", call=call))
                return json.dumps(action.get("answer"), ensure_ascii=False, separators=(",", ":")), None
            if kind == "search":
                result = passages_text(await tools.search(action.get("query", ""), call=call))
            else:
                result = (await tools.read(action.get("doc_id", ""), call=call))[: RESULT_CHARS * 2]
            transcript.append((json.dumps(action, ensure_ascii=False), result))
        return None, "max_steps"
