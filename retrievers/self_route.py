"""`self-route`: answer from retrieval; when the model says the chunks cannot answer, ask again with everything.

After Li et al. 2024 ("Retrieval Augmented Generation or Long-Context LLMs? A Comprehensive Study and
Hybrid Approach"): the retrieved chunks are shown with the instruction to reply "unanswerable" when
they do not hold the answer; only then is the question asked again over the full context. In JSON
the reply is the core's answerable form ({"answerable": false, "answer": null}, or answerable with
the scenario's answer; harness.scoring.answers), so it works under structured output everywhere.

`form=unanswerable` asks the paper's own one-call prompt instead: the scenario's answer, or the word
"unanswerable" (harness.scoring.answers.UNANSWERABLE_NOTE; for vLLM-style structured output, whose
root anyOf hosted strict modes refuse).

Parameters: the RAG arm that answers first (`rag`, any registered retrieval arm, default rag-dense),
its settings (chunk_size, chunk_overlap, top_k, order) and the route's `form`. Each record says which route answered
(`route`: "rag" or "full-context") and holds both calls when it fell back; the summary shows the
share routed to long context, accuracy per route, and cost against always using full context.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import Field

from harness.plugin import (
    ANSWERABLE_NOTE,
    UNANSWERABLE_NOTE,
    Outcome,
    Prompt,
    Query,
    Sample,
    Shown,
    ShownPiece,
    Step,
    Strategy,
    UsageError,
    answerable_schema,
    read_answerable,
    read_unanswerable,
    registry,
    unanswerable_schema,
)
from retrievers.chunking import SEPARATOR
from retrievers.rag import RagParams, RagStrategy


class SelfRouteParams(RagParams):
    rag: str = Field("rag-dense", description="the retrieval arm that answers first (any registered RAG arm)")
    form: Literal["answerable", "unanswerable"] = Field(
        "answerable",
        description='the route\'s reply: answerable ({"answerable", "answer"}), or unanswerable (the paper\'s '
        'one-call prompt: the answer, or "unanswerable")',
    )


def full_shown(sample: Sample) -> Shown:
    """Everything, as full-context shows it."""
    return Shown(
        context=sample.joined(SEPARATOR),
        pieces=[ShownPiece(id=d.id, doc_ids=[d.id], text=d.text) for d in sample.documents],
    )


class SelfRoute(Strategy):
    Params = SelfRouteParams
    reader_skill = "route"

    def __init__(self, params, resources):
        super().__init__(params, resources)
        cls = registry.get("strategy", params.rag)
        if not issubclass(cls, RagStrategy):
            raise UsageError(
                f"self-route: rag={params.rag} is not a retrieval arm; use one of "
                f"{', '.join(n for n in registry.names('strategy') if n.startswith('rag-'))}"
            )
        inner = {k: v for k, v in params.model_dump().items() if k in cls.Params.model_fields}
        self.rag = cls(cls.Params(**inner), resources)
        self._shown: dict[str, Shown] = {}

    def prepare(self, samples: Sequence[Sample]) -> None:
        self.rag.prepare(samples)

    def _route_prompt(self, query: Query, shown: Shown) -> Prompt:
        note = ANSWERABLE_NOTE if self.params.form == "answerable" else UNANSWERABLE_NOTE
        return query.prompt(shown.context, instructions=query.scenario.instructions + "\n" + note)

    def window_bound(self, sample: Sample, query: Query) -> list[Prompt] | None:
        context = self.rag.bound_context(sample)  # the largest retrieval can show, without embedding
        if context is None:
            return None
        return [self._route_prompt(query, Shown(context=context, pieces=[])), query.prompt(full_shown(sample).context)]

    def preflight(self, sample: Sample, query: Query) -> list[Prompt]:
        shown = self._shown[sample.id] = self.rag.show(sample)
        # the fallback's prompt too: a grid whose full context cannot fit the window is refused up front
        return [self._route_prompt(query, shown), query.prompt(full_shown(sample).context)]

    async def solve(self, sample: Sample, query: Query) -> Outcome:
        shown = self._shown.pop(sample.id, None) or self.rag.show(sample)
        one_call = self.params.form == "unanswerable"
        schema = (unanswerable_schema if one_call else answerable_schema)(query.scenario)
        gen = await query.generate(self._route_prompt(query, shown), schema=schema, purpose="route")
        answerable, text, reason = (read_unanswerable if one_call else read_answerable)(gen.text, query.scenario)
        step = Step(
            kind="route",
            arguments={"answerable": answerable},
            call=len(query.calls) - 1,
            note=reason,
            result_ids=[p.id for p in shown.pieces],
        )
        if answerable:
            return Outcome(text=text, shown=shown, steps=[step], route="rag")
        everything = full_shown(sample)
        final = await query.generate(query.prompt(everything.context), purpose="answer")
        everything.retrieval = {"first_route": shown.retrieval}  # what retrieval found, kept for the diagnosis
        return Outcome(
            text=None if final.problem else final.text,
            reason=final.problem,
            shown=everything,
            steps=[step],
            route="full-context",
        )
