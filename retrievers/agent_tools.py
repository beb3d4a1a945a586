"""The `agentic` arm's tools driver: LangChain's agent (a LangGraph graph) driving harness's own chat model.

`create_agent` runs the loop — the model picks tools, the graph runs them and feeds back the results,
until the `answer` tool (return_direct) ends it. The model it drives is `HarnessChatModel`, a
LangChain chat model whose every call is `Query.generate` with OpenAI tools: so the response cache,
retries, window check, token counting and the record of each call are the harness's, not the
framework's. `tool_choice="required"` keeps models that would otherwise chat (or servers without a
tool-call parser, which vLLM then enforces with structured output) calling tools. The tools are
sent strict (`"strict": true`, closed schemas with every property required), as OpenAI-style strict
function calling accepts them.

Every tool call the model writes is checked before the graph runs it, and an invalid one is recorded
as a step (`invalid`: arguments that are not JSON, a tool that does not exist, arguments that do not
match the tool's schema), not folded away; the graph then answers it with an error as before.

LangChain is imported only when this driver runs.
"""

from __future__ import annotations

import json
from typing import Any

from harness.plugin import (
    Prompt,
    Sample,
    Step,
)
from retrievers.agent_actions import Tools, strict_schema

ANSWER_DESCRIPTION = "Give the final answer to the question (ends the task)."
DONE_DESCRIPTION = "Call when what you have read answers the question (ends the task; the answer is written from it)."
SEARCH_DESCRIPTION = "Find the passages that best match the query; each says which documents it comes from."
READ_DESCRIPTION = "Read a whole document by its id (as given with the passages)."


def _chat_model_class():
    from langchain_core.language_models.chat_models import BaseChatModel
    from langchain_core.messages import AIMessage, convert_to_openai_messages
    from langchain_core.outputs import ChatGeneration, ChatResult
    from langchain_core.utils.function_calling import convert_to_openai_tool

    class HarnessChatModel(BaseChatModel):
        """A LangChain chat model whose calls are the harness's own (Query.generate)."""

        query: Any = None
        before_call: Any = None  # raises to stop the agent (the token budget)
        on_invalid: Any = None  # Tools.invalid(error, call, note, tool=...): an invalid tool call
        tool_choice: Any = "required"

        @property
        def _llm_type(self) -> str:
            return "harness"

        def bind_tools(self, tools, *, tool_choice=None, **kwargs):
            return self.bind(
                tools=[strict_tool(convert_to_openai_tool(t)) for t in tools],
                tool_choice=tool_choice or self.tool_choice,
                **kwargs,
            )

        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            raise NotImplementedError("the harness's chat model is async only")

        async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
            if self.before_call is not None:
                self.before_call()
            prompt = Prompt(text="", messages=convert_to_openai_messages(messages))
            gen = await self.query.generate(
                prompt, schema=None, tools=kwargs.get("tools"), tool_choice=kwargs.get("tool_choice"), purpose="agent"
            )
            calls = []
            schemas = {t["function"]["name"]: t["function"].get("parameters") for t in kwargs.get("tools") or []}
            for i, tc in enumerate(gen.tool_calls):
                try:
                    args = json.loads(tc["arguments"] or "{}")
                except ValueError:
                    args = {"_unparsed": tc["arguments"]}
                error = tool_call_error(tc["name"], args, schemas)
                if error is not None and self.on_invalid is not None:
                    self.on_invalid(error[0], len(self.query.calls) - 1, error[1], tool=str(tc["name"])[:40])
                calls.append(
                    {
                        "name": tc["name"],
                        "args": args if isinstance(args, dict) else {"value": args},
                        "id": tc["id"] or f"call_{len(self.query.calls)}_{i}",
                        "type": "tool_call",
                    }
                )
            message = AIMessage(content=gen.text or "", tool_calls=calls)
            return ChatResult(generations=[ChatGeneration(message=message)])

    return HarnessChatModel


def strict_tool(tool: dict[str, Any]) -> dict[str, Any]:
    """An OpenAI function tool as strict function calling accepts it."""
    fn = dict(tool["function"])
    fn["parameters"] = strict_schema(fn.get("parameters") or {"type": "object", "properties": {}})
    fn["strict"] = True
    return {**tool, "function": fn}


def tool_call_error(name: str, args: Any, schemas: dict[str, Any]) -> tuple[str, str] | None:
    """(INVALID class, why) of a tool call the model wrote, or None when the graph can run it as written."""
    import jsonschema

    if isinstance(args, dict) and "_unparsed" in args:
        return "invalid_json", str(args["_unparsed"])[:200]
    if name not in schemas:
        return "unknown_tool", f"no tool {name!r}"
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schemas[name] or {}).iter_errors(args))
    return None if error is None else ("bad_arguments", error.message[:200])


async def run_tool_agent(arm, sample: Sample, query, tools: Tools) -> tuple[str | None, str | None]:
    """Run the agent; (the answer's wire text, None) when it answered inside the answer tool, (None, None) when
    it said it was done (the arm writes the answer from what it read), or (None, the limit that stopped it)."""
    from langchain.agents import create_agent
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import StructuredTool
    from langgraph.errors import GraphRecursionError

    answered: dict[str, str | None] = {}
    inline = arm.params.answer_from == "action"

    def last_call() -> int:
        return len(query.calls) - 1

    async def search(query: str) -> str:
        return await tools.search_text(query, call=last_call())

    async def read(doc_id: str) -> str:
        return await tools.read(doc_id, call=last_call())

    async def answer(**fields: Any) -> str:
        answered["text"] = json.dumps(fields, ensure_ascii=False, separators=(",", ":")) if inline else None
        tools.steps.append(Step(kind="answer", call=last_call()))
        return "recorded"

    toolset = [
        StructuredTool.from_function(coroutine=search, name="search", description=SEARCH_DESCRIPTION),
        StructuredTool.from_function(coroutine=read, name="read", description=READ_DESCRIPTION),
        StructuredTool.from_function(
            coroutine=answer,
            name="answer",
            description=ANSWER_DESCRIPTION if inline else DONE_DESCRIPTION,
            args_schema=query.schema if inline else {"type": "object", "properties": {}},
            return_direct=True,
        ),
    ]

    model = _chat_model_class()(query=query, before_call=lambda: arm.check_budget(query), on_invalid=tools.invalid)
    agent = create_agent(model, toolset, system_prompt=arm.instructions(query.scenario, sample))
    try:
        await agent.ainvoke(
            {"messages": [HumanMessage(sample.question)]}, config={"recursion_limit": 2 * arm.params.max_steps + 1}
        )
    except GraphRecursionError:
        return None, "max_steps"
    if "text" in answered:
        return answered["text"], None
    return None, "no_answer"
