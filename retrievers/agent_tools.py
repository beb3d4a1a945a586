"""The `agentic` arm's tools driver: LangChain's agent (a LangGraph graph) driving harness's own chat model.

`create_agent` runs the loop — the model picks tools, the graph runs them and feeds back the results,
until the `answer` tool (return_direct) ends it. The model it drives is `HarnessChatModel`, a
LangChain chat model whose every call is `Query.generate` with OpenAI tools: so the response cache,
retries, window check, token counting and the record of each call are the harness's, not the
framework's. `tool_choice="required"` keeps models that would otherwise chat (or servers without a
tool-call parser, which vLLM then enforces with structured output) calling tools.

LangChain is imported only when this driver runs.
"""

from __future__ import annotations

import json
from typing import Any

from harness.plugin import Prompt, Sample, Step

ANSWER_DESCRIPTION = "Give the final answer to the question (ends the task)."
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
        tool_choice: Any = "required"

        @property
        def _llm_type(self) -> str:
            return "harness"

        def bind_tools(self, tools, *, tool_choice=None, **kwargs):
            return self.bind(
                tools=[convert_to_openai_tool(t) for t in tools], tool_choice=tool_choice or self.tool_choice, **kwargs
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
            for i, tc in enumerate(gen.tool_calls):
                try:
                    args = json.loads(tc["arguments"] or "{}")
                except ValueError:
                    args = {"_unparsed": tc["arguments"]}
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


async def run_tool_agent(arm, sample: Sample, query, tools) -> tuple[str | None, str | None]:
    """Run the agent; (the answer's wire text, None) or (None, the limit that stopped it)."""
    from langchain.agents import create_agent
    from langchain_core.messages import HumanMessage
    from langchain_core.tools import StructuredTool
    from langgraph.errors import GraphRecursionError

    answered: dict[str, str] = {}

    def last_call() -> int:
        return len(query.calls) - 1

    async def search(query: str, k: int = arm.params.k) -> str:
        from retrievers.agentic import passages_text

        return passages_text(await tools.search(query, k, call=last_call()))

    async def read(doc_id: str) -> str:
        return await tools.read(doc_id, call=last_call())

    async def answer(**fields: Any) -> str:
        answered["text"] = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        tools.steps.append(Step(kind="answer", call=last_call()))
        return "recorded"

    toolset = [
        StructuredTool.from_function(coroutine=search, name="search", description=SEARCH_DESCRIPTION),
        StructuredTool.from_function(coroutine=read, name="read", description=READ_DESCRIPTION),
        StructuredTool.from_function(
            coroutine=answer,
            name="answer",
            description=ANSWER_DESCRIPTION,
            args_schema=query.schema,
            return_direct=True,
        ),
    ]
    model = _chat_model_class()(query=query, before_call=lambda: arm.check_budget(query))
    agent = create_agent(model, toolset, system_prompt=arm.instructions(query, sample))
    try:
        await agent.ainvoke(
            {"messages": [HumanMessage(sample.question)]}, config={"recursion_limit": 2 * arm.params.max_steps + 1}
        )
    except GraphRecursionError:
        return None, "max_steps"
    if "text" in answered:
        return answered["text"], None
    return None, "no_answer"
