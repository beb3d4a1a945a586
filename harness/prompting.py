"""Turn (instructions, few-shot examples, shown context, question) into what an endpoint sends.

Both forms are built from the same pieces: a plain-text prompt for base models on
`/v1/completions` (Gemma 3 270M is one) and chat messages for instruct models.
Order matters for cost: instructions and shots first (shared by every request), then
the context, then the question last, so a server's prefix cache reuses the haystack
across the questions asked of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel

from harness.samples import Document


class Prompt(BaseModel):
    text: str
    messages: list[dict[str, Any]]


def _docs_block(context: str) -> str:
    return f"Documents:\n{context.strip()}\n"


def _answer_json(answer: Any) -> str:
    # Compact, as a structured-output server writes it (vLLM is started with disable_any_whitespace).
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":"))


def join_documents(docs: Sequence[Document]) -> str:
    return "\n\n".join(d.text for d in docs)


def build_prompt(
    instructions: str,
    shots: Sequence[Any],
    context: str,
    question: str,
    encode: Callable[[Any], Any] = lambda a: a,
) -> Prompt:
    """`shots` are harness.scenario.Shot objects (documents, question, answer in the scored form);
    `encode` writes an answer in the form the model answers in (Scenario.encode_answer)."""
    parts = [instructions.strip(), ""]
    messages: list[dict[str, Any]] = [{"role": "system", "content": instructions.strip()}]
    for i, shot in enumerate(shots, 1):
        user = f"{_docs_block(join_documents(shot.documents))}\nQuestion: {shot.question}"
        answer = _answer_json(encode(shot.answer))
        parts += [f"### Example {i}", user, f"Answer: {answer}", ""]
        messages += [
            {"role": "user", "content": user},
            {"role": "assistant", "content": answer},
        ]
    user = f"{_docs_block(context)}\nQuestion: {question}"
    parts += ["### Task", user, "Answer:"]
    messages.append({"role": "user", "content": user})
    return Prompt(text="\n".join(parts), messages=messages)
