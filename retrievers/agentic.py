"""`agentic`: the model drives retrieval with tools — search, read, answer — and may search again.

Tools over the same chunk index the RAG arms use (the rag-dense or rag-bm25 chunks and embeddings,
shared caches; retrievers/agent_actions.py):
  search(query)     the k best chunks for the model's own query: chunk ids, the documents they come
                    from, and their text;
  read(doc_id)      a whole document;
  answer            the agent is done. By default (`answer_from=read`) the answer is then written in
                    the scenario's own answer form over everything the agent read — one plain
                    extraction call, the reader's home ground; `answer_from=action` takes the answer
                    the model put inside the answer action (or the answer tool's arguments) instead.
The prompt speaks the scenario's words: what to search for is `Scenario.words.search_hint()`, and
whether the agent searched it is judged by `Scenario.search_terms(sample)`.
Two drivers, one arm:
  tools  OpenAI tool calls through LangChain's agent (`langchain.agents.create_agent`, a LangGraph
         graph), for chat endpoints whose models call tools. The chat model the agent drives is
         harness's own (`HarnessChatModel`), so every call still goes through `Query.generate`:
         cached, retried, window-checked, counted and recorded like any other;
  json   a JSON action protocol under structured output ({"action": "search", "input": ...}, one
         per step; `action_schema`, which OpenAI-style strict structured output accepts), for
         endpoints and models without tool calling — the embedded base model among them.
  auto (default) picks tools on a chat endpoint, json otherwise.
Bounds: `max_steps` model calls for actions and a `token_budget` (prompt + completion tokens over
all calls). An agent that hits either (or runs out of window) is not dropped: it answers once more
from everything it was shown (the same extraction prompt), and the record says which limit stopped
it. Every step is recorded (tool, arguments, what came back, which call), invalid actions too.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from harness.plugin import (
    Outcome,
    Prompt,
    Query,
    Sample,
    Scenario,
    Step,
    Strategy,
    StrategyParams,
    UsageError,
    WindowExceeded,
    build_prompt,
    wire_answer,
)
from retrievers.agent_actions import MAX_QUERY_CHARS, RESULT_CHARS, Tools, passages_text, strict_schema


class AgenticParams(StrategyParams):
    driver: Literal["auto", "tools", "json"] = Field(
        "auto",
        description="tools (OpenAI tool calls), json (action protocol under structured output), auto: tools on chat",
    )
    max_steps: int = Field(
        6, ge=1, le=32, description="model calls for actions, before a forced final answer (two hops, a missed search)"
    )
    token_budget: int = Field(12000, ge=256, description="prompt + completion tokens per query, all calls")
    k: int = Field(3, ge=1, le=20, description="passages a search returns (the model may ask for fewer)")
    retriever: Literal["dense", "bm25"] = Field("dense", description="the index searched: rag-dense's or rag-bm25's")
    chunk_size: int = Field(128, ge=16, le=4096)
    chunk_overlap: int = Field(16, ge=0)
    answer_from: Literal["read", "action"] = Field(
        "read",
        description="read: the agent says when it is done and the answer is written in the scenario's form over "
        "what it read (one extraction call); action: the answer inside the answer action",
    )


class Budget(Exception):
    """The query's token budget is spent."""


AGENT_NOTE = """\
You answer by searching a collection of {n} documents before you reply. Tools:
search(query): the passages that best match your query (each says which documents it comes from);
read(doc_id): a whole document;
answer: {answer}
Search for {searched}; read a document when a passage is cut short."""
ANSWER_READ = "when what you have read answers the question (your answer is then written from it)."
ANSWER_ACTION = "your final answer, in the JSON form described above."

JSON_NOTE = {
    "read": """\
Reply with one JSON action per step:
{"action": "search", "input": QUERY} or {"action": "read", "input": DOC_ID} or {"action": "answer", "input": ""}.""",
    "action": """\
Reply with one JSON action per step (answer null unless the action is answer):
{"action": "search", "input": QUERY, "answer": null} or {"action": "read", "input": DOC_ID, "answer": null} or \
{"action": "answer", "input": "", "answer": ANSWER}.""",
}
ACTIONS = ("search", "read", "answer")


def action_schema(answer_schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """One step of the JSON protocol, as OpenAI-style strict structured output accepts it: an object at
    the root (no root anyOf), every property required, no other properties. The answer, when the
    action carries it (answer_from=action), is the scenario's answer schema or null."""
    props: dict[str, Any] = {
        "action": {"type": "string", "enum": list(ACTIONS)},
        "input": {"type": "string", "maxLength": MAX_QUERY_CHARS},
    }
    if answer_schema is not None:
        props["answer"] = {"anyOf": [strict_schema(answer_schema), {"type": "null"}]}
    return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}


class Agentic(Strategy):
    Params = AgenticParams
    reader_skill = "agent"

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

    def window_bound(self, sample: Sample, query: Query) -> list[Prompt] | None:
        # no prompt is known before the agent runs (each call is checked as it is made): embedding the
        # grid's chunks can wait for this arm's turn; the driver is checked up front all the same
        return self.preflight(sample, query)

    def instructions(self, scenario: Scenario, sample: Sample) -> str:
        note = AGENT_NOTE.format(
            n=len(sample.documents),
            answer=ANSWER_READ if self.params.answer_from == "read" else ANSWER_ACTION,
            searched=scenario.words.search_hint(),
        )
        return scenario.instructions + "\n\n" + note

    def check_budget(self, query: Query) -> None:
        if query.tokens_used >= self.params.token_budget:
            raise Budget()

    def tools(self, sample: Sample, query: Query) -> Tools:
        return Tools(self.rag, sample, self.params.k, query.scenario.search_terms(sample))

    async def solve(self, sample: Sample, query: Query) -> Outcome:
        tools = self.tools(sample, query)
        limit, text, done = None, None, False
        try:
            if self.driver(query) == "tools":
                from retrievers.agent_tools import run_tool_agent

                text, limit = await run_tool_agent(self, sample, query, tools)
            else:
                text, limit = await self.run_json(sample, query, tools)
            done = limit is None
        except Budget:
            limit = "token_budget"
        except WindowExceeded:
            limit = "context_window"
        if text is None:  # done, or stopped by a limit: the answer over what was shown, in one extraction call
            shown = tools.shown()
            try:
                final = await query.generate(query.prompt(shown.context), purpose="answer" if done else "final")
                text = None if final.problem else final.text
            except WindowExceeded:
                limit = "context_window"
            if not done or limit:
                tools.steps.append(Step(kind="final", note=limit, call=len(query.calls) - 1))
        return Outcome(
            text=text,
            shown=tools.shown(),
            steps=tools.steps,
            limit=limit,
            reason=None if text is not None else f"no answer ({limit})",
        )

    # -- the JSON action protocol -------------------------------------------------------------------------
    def json_prompt(self, sample: Sample, scenario: Scenario, transcript: list[tuple[str, str]]) -> Prompt:
        head = self.instructions(scenario, sample) + "\n" + JSON_NOTE[self.params.answer_from]
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
        """(the answer's wire text or None, None) when the agent answered; (None, the limit) otherwise."""
        inline = self.params.answer_from == "action"
        schema = action_schema(query.schema if inline else None)
        transcript: list[tuple[str, str]] = []
        for _ in range(self.params.max_steps):
            self.check_budget(query)
            prompt = self.json_prompt(sample, query.scenario, transcript)
            gen = await query.generate(prompt, schema=schema, purpose="agent")
            call = len(query.calls) - 1
            try:
                action = json.loads(gen.text)
                kind = action["action"]
            except (ValueError, KeyError, TypeError):
                tools.invalid("invalid_json", call, gen.problem or gen.text or "")
                return None, "invalid_action"
            argument = action.get("input")
            if kind not in ACTIONS:
                tools.invalid("unknown_tool", call, f"unknown action {kind!r}", tool=str(kind)[:40])
                result = f"error: no action {kind!r}; use search, read or answer"
            elif kind == "answer":
                if not inline:
                    tools.steps.append(Step(kind="answer", call=call))
                    return None, None
                if action.get("answer") is not None:
                    tools.steps.append(Step(kind="answer", call=call))
                    return json.dumps(action["answer"], ensure_ascii=False, separators=(",", ":")), None
                tools.invalid("bad_arguments", call, "answer without an answer", tool="answer")
                result = "error: the answer action needs an answer"
            elif not isinstance(argument, str) or not argument.strip():
                tools.invalid("bad_arguments", call, f"{kind} needs an input", tool=kind)
                result = f"error: {kind} needs an input"
            elif kind == "search":
                result = await tools.search_text(argument, call=call)
            else:
                result = (await tools.read(argument, call=call))[: RESULT_CHARS * 2]
            transcript.append((json.dumps(action, ensure_ascii=False), result))
        return None, "max_steps"

    # -- demonstrations (fine-tuning data) -----------------------------------------------------------------
    async def trajectory(self, sample: Sample, scenario: Scenario, miss: str | None = None) -> list[tuple[Prompt, str]]:
        """The JSON protocol done right on one sample, as (the prompt of a step, what to write) pairs, in the exact
        bytes `solve` sends: [a search for `miss` that surfaces no gold document, then] for each hop of the
        scenario (`Scenario.hops`: the subject; then, multi-hop, the name read in it) a search and a read of
        the gold document it surfaced, the answer action, and the answer written over what was read
        (the extraction prompt). [] when a hop's search does not surface its gold document (nothing to demonstrate);
        a `miss` that does surface one is left out. Only the default protocol (answer_from=read)."""
        self.rag.prepare([sample])
        tools = Tools(self.rag, sample, self.params.k, scenario.search_terms(sample))
        out: list[tuple[Prompt, str]] = []
        transcript: list[tuple[str, str]] = []

        def act(action: dict[str, str], result: str) -> None:
            out.append((self.json_prompt(sample, scenario, transcript), _compact(action)))
            transcript.append((json.dumps(action, ensure_ascii=False), result))

        if miss:
            results = await tools.search(miss)
            if tools.search_hits[-1]:
                tools = Tools(self.rag, sample, self.params.k, scenario.search_terms(sample))
            else:
                act({"action": "search", "input": miss}, passages_text(results))
        hops = scenario.hops(sample)
        for term, want in zip(hops, sample.gold_ids[: len(hops)]):
            results = await tools.search(term)
            if not any(want in r["documents"] for r in results):
                return []
            act({"action": "search", "input": term}, passages_text(results))
            act({"action": "read", "input": want}, (await tools.read(want))[: RESULT_CHARS * 2])
        out.append((self.json_prompt(sample, scenario, transcript), _compact({"action": "answer", "input": ""})))
        final = build_prompt(scenario.instructions, [], tools.shown().context, sample.question)
        out.append((final, _compact(wire_answer(scenario, sample.gold))))
        return out


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
