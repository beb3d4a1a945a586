"""Fine-tuning examples: the scenario's training split, prompted exactly as `compare` prompts.

Each context is one sample of the split's own grid (`Scenario.split("train", seed=...)`: a fresh
haystack each time), shown by a registered one-shot strategy; each example puts a question about it
into the zero-shot prompt `Query.prompt` builds (`build_prompt` with the scenario's instructions),
with the gold answer in the wire form as the target: the compact JSON that structured output makes
the model write. When the strategy shows the same context whatever the question (full context),
several questions are asked of it (`Scenario.questions`: the needle and the other documents); the
trainer computes their shared prompt once.

A share of the contexts is asked in the answerable form (self-route's "answer, or say the text
cannot"): the instructions end with ANSWERABLE_NOTE and the target is {"answerable": true,
"answer": ...}; half of those questions are about people of another draw, absent from the context,
and the target says {"answerable": false, "answer": null}.

Boolean answer fields are balanced (by rejection: every combination of them as often as the
rarest), so a reader cannot score by the population's majority label. A retrieval strategy's
context is redrawn when it does not hold the whole of the gold documents (needle coverage below
1): the target would otherwise teach answers the context does not give — except, with
`retrieved_answerable` (default off), in the answerable form, where such a partial view is kept
as a not-answerable example: the decision self-route asks of retrieved chunks, learned on them
(the chunk with the death date not retrieved: not answerable); `partial_share` of those contexts are
drawn until the retriever cut someone's gold documents, so such views are learned at all.

With `agent_share` (default 0: none), a share of the contexts become agent trajectories: the agent
strategy (`agent`, a registered strategy with a `trajectory` method, e.g. agentic's JSON protocol)
demonstrates itself on the sample — [a search that misses, then] a search for the subject, a read of
the gold document it surfaced, the answer action — one example per step, each prompt the exact bytes
the strategy sends at that step, each target the action it should write; then the answer written over
what was read. Off, the examples are byte for byte what they were before (no extra random draws).

With `judge_share` (default 0: none), a share of the contexts become ragas Faithfulness judge examples:
its statement prompt and its verdict prompt over a full context, targets from the scenario's
grounding rules (harness.finetune.judge); off, no extra random draws either.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from harness.errors import UsageError
from harness.finetune.config import DataConfig
from harness.prompting import build_prompt
from harness.samples import Sample
from harness.scoring.answers import answerable_answer, answerable_instructions, wire_answer

MAX_DRAWS = 200  # per example: a scenario that refuses every draw (too short a length) stops with an error


class Example(BaseModel):
    """One training (or held-out) example: the prompt, the answer to learn, and where it came from."""

    split: Literal["train", "test"]
    group: int  # examples of one group share their context (one forward pass in training)
    form: Literal["answer", "answerable", "agent", "judge"]  # agent: a trajectory's step; judge: a ragas prompt
    needle_shown: bool  # False: the gold documents were taken out (target: not answerable)
    strategy: str
    sample_id: str
    seed: int  # the split's seed this sample was drawn with
    subject: str
    length: int
    depth: float | None  # where the asked-about document sits among the shown documents (percent); None: absent
    context_tokens: int
    prompt: str  # the completion prompt (ends with "Answer:"), as /v1/completions receives it
    messages: list[dict[str, Any]]  # system (instructions) and user (documents and question)
    target: str  # the answer as the model should write it (compact JSON)
    gold: dict[str, Any] | None  # the scored form; None when not answerable

    @classmethod
    def of(
        cls, sample: Sample, prompt, target: str, *, shown: bool = True, depth: float | None, **where: Any
    ) -> Example:
        """An example asking `sample`'s question with `prompt` (a harness.prompting.Prompt); `where`: split, group,
        form, strategy (its label) and seed."""
        return cls(
            **where,
            needle_shown=shown,
            sample_id=sample.id,
            subject=sample.subject,
            length=sample.length,
            depth=depth,
            context_tokens=sample.context_tokens,
            prompt=prompt.text,
            messages=prompt.messages,
            target=target,
            gold=sample.gold if shown else None,
        )

    def chat(self) -> list[dict[str, Any]]:
        """The chat-format messages: system, user, and the assistant's gold answer."""
        return [*self.messages, {"role": "assistant", "content": self.target}]


def answer_text(value: Any) -> str:
    """Compact JSON, as a structured-output server writes it (and build_prompt writes shots)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def build_scenario(data: DataConfig):
    """The scenario named in `data`, through the registry (the core never imports a plug-in)."""
    from harness import registry
    from harness.strategy import build_params

    for path in data.includes:
        registry.include(path)
    cls = registry.get("scenario", data.scenario)
    params = build_params(cls.Params, data.scenario_params, f"scenario {data.scenario}")
    return cls(params, seed=data.seed)


def build_strategies(names: Sequence[str], cache_dir: Path, count_tokens) -> list:
    """The registered strategies that show the contexts; only one-shot ones (one context, one call) fit."""
    from harness import registry
    from harness.strategy import OneShot, Resources, build_params, parse_spec

    resources = Resources(cache_dir=cache_dir, count_tokens=count_tokens)
    out = []
    for spec in names:
        name, raw = parse_spec(spec)
        cls = registry.get("strategy", name)
        if not issubclass(cls, OneShot):
            raise UsageError(
                f"--strategies: {name} makes several model calls; training contexts are shown by "
                "one-shot strategies (full-context, rag-*)"
            )
        out.append(cls(build_params(cls.Params, raw, f"strategy {spec}"), resources))
    if not out:
        raise UsageError("--strategies: give at least one strategy")
    return out


def _bool_key(gold: dict[str, Any]) -> tuple:
    return tuple(sorted((k, v) for k, v in gold.items() if isinstance(v, bool)))


class ExampleBuilder:
    """Draws examples from a scenario's training (or test) split, deterministically from the seed."""

    def __init__(self, scenario, data: DataConfig, count_tokens, strategies: Sequence[Any]):
        self.scenario = scenario
        self.data = data
        self.count_tokens = count_tokens
        self.strategies = list(strategies)
        self.train = scenario.split("train")  # a clear one-line error for scenarios without one
        self.answer_instructions = scenario.instructions
        self.answerable_instructions = answerable_instructions(scenario)
        self._accept = self._balance_weights(self.train.reference_labels()) if data.balance > 0 else {}
        self._agent = None

    def _balance_weights(self, population: list[dict[str, Any]]) -> dict[tuple, float]:
        """Acceptance probability per combination of boolean fields: (rarest / own frequency) ** balance."""
        counts = Counter(_bool_key(g) for g in population)
        if len(counts) < 2:
            return {}
        rarest = min(counts.values())
        return {k: (rarest / c) ** self.data.balance for k, c in counts.items()}

    def _length(self, rng: random.Random) -> int:
        lo, hi = self.data.lengths[0], self.data.lengths[-1]
        if not self.data.length_range:
            return rng.choice(self.data.lengths)
        return int(round(math.exp(rng.uniform(math.log(lo), math.log(hi)))))

    def _draw(self, rng: random.Random, split: str, length: int, depth: float):
        """(a sample of the split at this length and depth, the split scenario that drew it, its seed)."""
        last = None
        for _ in range(MAX_DRAWS):
            seed = rng.getrandbits(31)
            scen = self.scenario.split(split, seed=seed)
            try:
                return scen.samples([length], [depth], 1, self.count_tokens)[0], scen, seed
            except UsageError as e:  # e.g. this draw's needle does not fit the length
                last = e
        raise UsageError(f"could not draw a {split} example of {length} tokens from {self.scenario.name}: {last}")

    def _pick(self, rng: random.Random, candidates: list[Sample], k: int, balanced: bool) -> list[Sample]:
        """Up to k questions, in random order, each kept with its boolean labels' acceptance probability."""
        order = list(candidates)
        rng.shuffle(order)
        out = [q for q in order if not balanced or rng.random() < self._accept.get(_bool_key(q.gold), 1.0)]
        return out[:k] or order[:1]

    def build(self, n: int, split: Literal["train", "test"] = "train") -> list[Example]:
        """Examples from `n` contexts of `split` (training data, or held-out test-split examples), always the
        same for a seed. A strategy that shows one context whatever the question (full context) is asked up to
        `questions` of them at once (the needle and other documents, absent people in the answerable form);
        a retriever, one."""
        rng = random.Random(f"harness-finetune/{self.data.seed}/{split}")
        out: list[Example] = []
        for group in range(n):
            if self.data.agent_share > 0 and rng.random() < self.data.agent_share:
                out += self._trajectory(rng, split, group)
                continue
            if self.data.judge_share > 0 and rng.random() < self.data.judge_share:
                out += self._judging(rng, split, group)
                continue
            answerable = rng.random() < self.data.answerable_share
            partial = answerable and self.data.partial_share > 0 and rng.random() < self.data.partial_share
            length, depth = self._length(rng), round(rng.uniform(0, 100), 1)
            strategy = self.strategies[group % len(self.strategies)]
            for _ in range(MAX_DRAWS):
                asked = self._ask(rng, split, length, depth, strategy, answerable, partial)
                if asked:
                    break
            else:
                raise UsageError(
                    f"{strategy.label} never {'cut' if partial else 'showed'} a whole needle at {length} tokens; "
                    "training contexts could not be drawn"
                )
            out += [
                self.example(q, seed, split, strategy, context, answerable, shown, group)
                for q, seed, context, shown in asked
            ]
        return out

    def agent(self):
        """The strategy whose protocol trajectories demonstrate (built once, through the registry)."""
        if self._agent is None:
            from harness import registry
            from harness.strategy import build_params, parse_spec

            name, raw = parse_spec(self.data.agent)
            cls = registry.get("strategy", name)
            if not hasattr(cls, "trajectory"):
                raise UsageError(f"agent: {name} cannot demonstrate itself (it has no trajectory method)")
            resources = self.strategies[0].resources
            self._agent = cls(build_params(cls.Params, raw, f"strategy {self.data.agent}"), resources)
        return self._agent

    def _trajectory(self, rng: random.Random, split: str, group: int) -> list[Example]:
        """One trajectory's steps as examples (a group: they share their beginning)."""
        agent = self.agent()
        for _ in range(MAX_DRAWS):
            length, depth = self._length(rng), round(rng.uniform(0, 100), 1)
            sample, scen, seed = self._draw(rng, split, length, depth)
            others = [d for d in sample.documents if d.id not in sample.gold_ids]
            miss = None
            if others and rng.random() < self.data.agent_recovery:  # the first words of another document
                miss = " ".join(rng.choice(others).text.split()[:2])
            steps = asyncio.run(agent.trajectory(sample, scen, miss))
            if steps:
                break
        else:
            raise UsageError(f"{agent.label}: its search never surfaced the subject's document; no trajectory")
        return _steps(sample, steps, split=split, group=group, form="agent", strategy=agent.label, seed=seed)

    def _judging(self, rng: random.Random, split: str, group: int) -> list[Example]:
        """ragas's two judge prompts over one full context (harness.finetune.judge), as one group."""
        from harness.finetune.judge import judge_steps, response_for

        length, depth = self._length(rng), round(rng.uniform(0, 100), 1)
        sample, scen, seed = self._draw(rng, split, length, depth)
        answer = response_for(rng, scen, sample, scen.questions(sample)[1:])
        contexts = [d.text for d in sample.documents]  # what judge_items gives ragas for full context
        steps = judge_steps(scen, sample, contexts, answer)
        return _steps(sample, steps, split=split, group=group, form="judge", strategy="ragas-faithfulness", seed=seed)

    def _ask(
        self, rng: random.Random, split: str, length: int, depth: float, strategy, answerable: bool, partial=False
    ):
        """[(question sample, seed, shown context, gold shown?)] for one context; [] to draw again. `partial`:
        only the present people whose gold documents the strategy cut (partial_share), [] when it cut none."""
        sample, scen, seed = self._draw(rng, split, length, depth)
        balanced = split == "train"
        present = scen.questions(sample)
        if partial:  # each person's own retrieved view; one of those that cut their documents
            views = {q.id: strategy.show(q) for q in present}
            cut = [q for q in present if (views[q.id].retrieval.get("needle_coverage") or 1.0) < 1.0]
            return [(q, seed, views[q.id].context, False) for q in self._pick(rng, cut, 1, balanced)] if cut else []
        first = strategy.show(present[0]).context
        packable = len(present) > 1 and strategy.show(present[1]).context == first
        k = self.data.questions if packable else 1
        absent = []
        if answerable:  # people from another draw of the split, asked about this context
            other, other_scen, _ = self._draw(rng, split, length, depth)
            here = {d.text for d in sample.documents}
            absent = [
                sample.model_copy(
                    update={
                        "id": f"{sample.id}/absent/{q.subject}",
                        "question": q.question,
                        "subject": q.subject,
                        "gold": q.gold,
                        "gold_ids": [],
                    }
                )
                for q in other_scen.questions(other)
                if not here & {d.text for d in q.documents if d.id in q.gold_ids}
            ]
        if answerable and not packable:  # one question: present or absent (even odds by default)
            present, absent = ([], absent) if rng.random() < self.data.absent_share else (present, [])
            k = 1
        asked = (
            [(q, True) for q in self._pick(rng, present, k - k // 2 if answerable else k, balanced)] if present else []
        )
        n_absent = min(len(absent), len(asked) if packable else 1)  # as many absent as present ones
        asked += [(q, False) for q in rng.sample(absent, n_absent)]
        out = []
        for q, shown in asked:
            view = strategy.show(q)
            # A retriever that cut the gold documents would teach answers the context does not hold;
            # in the answerable form, with retrieved_answerable, it teaches that they are not there.
            if shown and (view.retrieval.get("needle_coverage") or 1.0) < 1.0:
                if answerable and self.data.retrieved_answerable:
                    out.append((q, seed, view.context, False))
                continue
            out.append((q, seed, view.context, shown))
        return out

    def example(
        self,
        sample: Sample,
        seed: int,
        split: str,
        strategy,
        context: str,
        answerable: bool,
        shown: bool,
        group: int = 0,
    ) -> Example:
        scen = self.scenario
        if answerable:
            instructions = self.answerable_instructions
            target = answer_text(answerable_answer(scen, sample.gold if shown else None))
        else:
            instructions = self.answer_instructions
            target = answer_text(wire_answer(scen, sample.gold))
        prompt = build_prompt(instructions, [], context, sample.question)
        ids = [d.id for d in sample.documents]
        depth = (
            round(100 * ids.index(sample.gold_ids[0]) / max(1, len(ids) - 1), 1)
            if shown and sample.gold_ids and sample.gold_ids[0] in ids
            else None
        )
        form = "answerable" if answerable else "answer"
        return Example.of(
            sample,
            prompt,
            target,
            shown=shown,
            depth=depth,
            split=split,
            group=group,
            form=form,
            strategy=strategy.label,
            seed=seed,
        )


def _steps(sample: Sample, steps, **where: Any) -> list[Example]:
    """One group's examples from (prompt, target) steps over one sample (a trajectory, the judge's prompts)."""
    return [Example.of(sample, prompt, target, depth=sample.depth, **where) for prompt, target in steps]


def prompt_form(scenario) -> str:
    """A hash of what a reader is tuned to read and write: the scenario's instructions and answer schema.
    A tuned reader is the default only for runs whose scenario hashes the same."""
    from harness.scoring.answers import wire_schema

    text = json.dumps([scenario.instructions, wire_schema(scenario)], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def data_hash(examples: Sequence[Example]) -> str:
    """sha256 of what is learned: every prompt and target, in order."""
    h = hashlib.sha256()
    for e in examples:
        h.update(json.dumps([e.prompt, e.target], ensure_ascii=False).encode())
    return h.hexdigest()


def write_jsonl(path: Path, examples: Sequence[Example]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        for e in examples:
            fh.write(e.model_dump_json() + "\n")
    tmp.replace(path)


def read_jsonl(path: Path) -> list[Example]:
    return [Example.model_validate_json(line) for line in path.read_text().splitlines() if line.strip()]
