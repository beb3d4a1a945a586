"""Judge examples: ragas Faithfulness's own two prompts, answered as the judge-free grounding rules answer them.

`--faithfulness ragas` asks a judge twice per query (harness.scoring.faithfulness): first to break the
response into statements (ragas's StatementGeneratorPrompt over the question and the response), then
for a verdict on each statement against the shown context (its NLIStatementPrompt). Untuned, the
embedded 270M model writes neither (#29: 0 of 36 queries scored). These examples teach both in the
exact text ragas renders (`PydanticPrompt.to_string`, which langchain's completions wrapper sends as
the prompt), with targets from the scenario: one statement for each field the response claims
("<subject>'s <field> is <value>."), and the verdict 1 exactly when the scenario's grounding rules
find the value in the subject's own documents — the judge-free check the judge is compared with.
Responses are the gold answer, or (half of them) the gold with fields swapped for another person's
values from the same context, so both verdicts are learned.
"""

from __future__ import annotations

import json
import os
import random
from functools import lru_cache
from typing import Any

from harness.prompting import Prompt
from harness.samples import Sample
from harness.scoring.answers import wire_answer
from harness.scoring.faithfulness import field_statements, value_text

REASONS = {1: "The context states this about them.", 0: "The context does not state this about them."}


def _compact(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


@lru_cache(maxsize=1)
def _prompts():
    """ragas's two prompts and their input models (imported late: ragas is an optional, heavy import; built
    once, not per example)."""
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    from ragas.metrics._faithfulness import Faithfulness, NLIStatementInput, StatementGeneratorInput

    metric = Faithfulness()
    return metric.statement_generator_prompt, StatementGeneratorInput, metric.nli_statements_prompt, NLIStatementInput


def verdict(grounding, sample: Sample, field: str, value: Any) -> int:
    """1 when the subject's own documents state the value (the scenario's grounding rules), else 0."""
    own = [d.text for d in sample.documents if d.id in sample.gold_ids]
    if grounding is None:
        return int(any(value_text(value).lower() in t.lower() for t in own))
    return int(any(grounding.supports(field, value, t) for t in own))


def response_for(rng: random.Random, scenario, sample: Sample, others: list[Sample]) -> dict[str, Any]:
    """The gold answer, or (even odds) the gold with one or two claimed fields taken from another person
    of the same context (a distractor the context states, about someone else)."""
    answer = dict(sample.gold)
    claimed = [f for f, _, _ in field_statements(scenario, sample.subject, answer)]
    donors = [o for o in others if o.gold != sample.gold]
    if rng.random() < 0.5 or not claimed or not donors:
        return answer
    for field in rng.sample(claimed, min(len(claimed), rng.choice((1, 2)))):
        donor = rng.choice(donors)
        if donor.gold.get(field) not in (None, answer[field]):
            answer[field] = donor.gold[field]
    return answer


def statement_prompt(question: str, response: str) -> str:
    """ragas's first prompt, as it sends it: break the response into statements."""
    prompt, Input, _, _ = _prompts()
    return prompt.to_string(Input(question=question, answer=response))


def verdict_prompt(contexts: list[str], said: list[str]) -> str:
    """ragas's second prompt, as it sends it: a verdict on each statement against the joined contexts."""
    _, _, prompt, Input = _prompts()
    return prompt.to_string(Input(context="\n".join(contexts), statements=said))


def judge_steps(scenario, sample: Sample, contexts: list[str], answer: dict[str, Any]) -> list[tuple[Prompt, str]]:
    """ragas's statement prompt and its verdict prompt for one judged response, each with the target to write."""
    claims = field_statements(scenario, sample.subject, answer)
    said = [s for _, _, s in claims]
    first = statement_prompt(sample.question, _compact(wire_answer(scenario, answer)))
    out = [(Prompt(text=first, messages=[{"role": "user", "content": first}]), _compact({"statements": said}))]
    if claims:
        grounding = scenario.grounding()
        verdicts = []
        for field, value, text in claims:
            v = verdict(grounding, sample, field, value)
            verdicts.append({"statement": text, "reason": REASONS[v], "verdict": v})
        second = verdict_prompt(contexts, said)
        out.append(
            (Prompt(text=second, messages=[{"role": "user", "content": second}]), _compact({"statements": verdicts}))
        )
    return out
