"""bio-mdqa: multi-document QA in the style of "Lost in the Middle" (Liu et al. 2023).

k biographies (default 20) are put before the question; one of them answers it ("In which year
was X born?"), the others are of other people, each with a birth year of its own: every document
is a plausible distractor. The gold biography's position is swept by depth (depth 0: first, 100:
last; position round(depth% x (k - 1)) among the k), which is what reproduces (or refutes, for
a given model) the U-shaped accuracy over position.

Lengths are in the served model's tokens and cap the context: the k - 1 other biographies are the
first of the haystack pool that fit in the length beside the needle (fewer than k - 1 when the
length is too small for k; `meta.documents` says how many; `-P documents=0` always fills the
length). The background is the same at every depth and for every needle of a length; needle i
is the same person at every depth and length (the pairing the verdict's tests rely on).

Answer: the year, an integer (the core wraps it as {"answer": 1951}); scored exactly. Chance
level: the most common birth year among 1,000 haystack biographies. Grounding: a year is
supported by a text that contains it, so a year read from a neighbour's biography is a
distractor.

Reuses bio-needle's generator (scenarios.bio_needle.generator): the same synthetic people. The
training split (`-P split=train`, fine-tuning data) draws its people and background from the
generator's training splits, whose surnames no test split can hold.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from harness.plugin import (
    SEP_TOKENS,
    Document,
    Grounding,
    Sample,
    Scenario,
    ScenarioParams,
    Shot,
    TokenCache,
    TokenCounter,
    UsageError,
    Words,
    fill,
    grid,
    joined_tokens,
)
from scenarios.bio_needle.generator import BioGenerator, surname_terms

REFERENCE_SIZE = 1000

INSTRUCTIONS = """\
Read the biographies below, then answer the question about the person it names, using only that \
person's biography. Reply with a JSON object {"answer": YEAR}, YEAR being the year as a number."""


class MDQAParams(ScenarioParams):
    split: Literal["test", "train"] = Field(
        "test", description="test: the people compare asks about; train: fine-tuning people, never in any test split"
    )
    documents: int = Field(
        20, ge=0, le=1000, description="biographies per context, the gold one included (0: as many as fill the length)"
    )


def question_for(name: str) -> str:
    return f"In which year was {name} born?"


class BioMDQA(Scenario):
    """Multi-document QA (Lost in the Middle): k biographies, one answers "In which year was X born?"; gold position swept."""

    name = "bio-mdqa"
    Params = MDQAParams
    fields = ["year"]
    words = Words(document="biography", documents="biographies", subject="person")
    splits = ("test", "train")

    def __init__(self, params: ScenarioParams | None = None, seed: int = 0):
        super().__init__(params, seed)
        if self.params.documents == 1:
            raise UsageError("bio-mdqa: documents must be 0 (fill the length) or at least 2")
        self.generator = BioGenerator(seed)
        self._cache: TokenCache | None = None
        self._people: dict[str, Any] = {}  # biography text -> its record, for every biography placed

    @property
    def instructions(self) -> str:
        return INSTRUCTIONS

    def answer_schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": 0, "maximum": 2100}

    def search_terms(self, sample: Sample) -> list[str]:
        return surname_terms(sample.subject)

    def reference_labels(self) -> list[dict[str, Any]]:
        return [{"year": r.labels.date_of_birth.year} for r in self.generator.records("haystack", REFERENCE_SIZE)]

    @property
    def null_source(self) -> str:
        return f"birth years of {REFERENCE_SIZE:,} haystack biographies"

    # -- the grid -----------------------------------------------------------------------------------
    def samples(
        self, lengths: Sequence[int], depths: Sequence[float], needles: int, count_tokens: TokenCounter
    ) -> list[Sample]:
        lengths, depths = grid(self.name, lengths, depths, needles)
        cache = self._cache = TokenCache.reuse(self._cache, count_tokens)
        people = self.generator.records("train-needles" if self.training else "needles", needles)
        self._people.update((r.bio, r) for r in people)
        needle_tokens = cache.count([r.bio for r in people])
        biggest = max(needle_tokens)
        k = self.params.documents
        out: list[Sample] = []
        for L in lengths:
            if L < biggest:
                raise UsageError(f"bio-mdqa: length {L} is too small for a needle biography ({biggest} tokens)")
            pool = self._pool(k - 1 if k else None)
            bg = fill(pool, L - biggest - SEP_TOKENS, cache, text=lambda x: x[1].bio)
            docs = [Document(id=doc_id, text=r.bio) for doc_id, r in bg]
            counts = [cache[d.text] for d in docs]
            n = len(docs)
            for d in depths:
                pos = round(d / 100 * n)
                for i, rec in enumerate(people):
                    out.append(
                        Sample(
                            id=f"bio-mdqa/L{L}/d{d:g}/n{i}",
                            scenario=self.name,
                            length=L,
                            depth=d,
                            needle_index=i,
                            documents=docs[:pos] + [Document(id=f"n{i}", text=rec.bio)] + docs[pos:],
                            gold_ids=[f"n{i}"],
                            subject=rec.name,
                            question=question_for(rec.name),
                            gold={"year": rec.labels.date_of_birth.year},
                            context_tokens=joined_tokens(counts[:pos] + [needle_tokens[i]] + counts[pos:]),
                            meta={"needle_position": pos, "gold_position": pos + 1, "documents": n + 1},
                        )
                    )
        return out

    def questions(self, sample: Sample) -> list[Sample]:
        """The sample's own question, then the birth year of every other person in its context (fine-tuning
        asks several of one context at once)."""
        out = [sample]
        for doc in sample.documents:
            rec = self._people.get(doc.text)
            if doc.id in sample.gold_ids or rec is None:
                continue
            out.append(
                sample.model_copy(
                    update={
                        "id": f"{sample.id}/q/{doc.id}",
                        "subject": rec.name,
                        "question": question_for(rec.name),
                        "gold": {"year": rec.labels.date_of_birth.year},
                        "gold_ids": [doc.id],
                    }
                )
            )
        return out

    def _pool(self, limit: int | None):
        """(id, record) of the haystack split in order; at most `limit` (None: endless)."""
        j = 0
        while limit is None or j < limit:
            batch = self.generator.records("train-haystack" if self.training else "haystack", j + 64)[j:]
            for r in batch:
                if limit is not None and j >= limit:
                    return
                self._people[r.bio] = r
                yield f"h{j}", r
                j += 1

    # -- few-shot -----------------------------------------------------------------------------------
    def shots(self, n: int) -> list[Shot]:
        if n < 0:
            raise UsageError(f"bio-mdqa: number of shots must be >= 0 (got {n})")
        out, pos = [], 0
        for j in range(n):
            rng = random.Random(f"bio-mdqa/{self.seed}/shot/{j}")
            m = rng.choice((2, 3))
            recs = self.generator.records("shots", pos + m)[pos:]
            target = recs[rng.randrange(m)]
            out.append(
                Shot(
                    documents=[Document(id=f"s{pos + q}", text=r.bio) for q, r in enumerate(recs)],
                    question=question_for(target.name),
                    answer={"year": target.labels.date_of_birth.year},
                )
            )
            pos += m
        return out

    # -- marking ------------------------------------------------------------------------------------
    def score(self, answer: dict[str, Any], gold: dict[str, Any]) -> dict[str, bool]:
        got = answer.get("year")
        return {"year": isinstance(got, int) and not isinstance(got, bool) and got == gold["year"]}

    def null_answer(self, golds: Sequence[dict[str, Any]]) -> dict[str, Any]:
        counts = Counter(g["year"] for g in golds)
        return {"year": min(counts, key=lambda y: (-counts[y], y))} if counts else {"year": None}

    def grounding(self) -> Grounding:
        return YearGrounding()


class YearGrounding(Grounding):
    """A year is supported by a text that has it as a number (any date form; a year of 0 is no claim)."""

    def is_claim(self, field: str, value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value > 0

    def supports(self, field: str, value: Any, text: str) -> bool:
        return bool(re.search(rf"(?<![\d:.]){value}(?!\d)", text))
