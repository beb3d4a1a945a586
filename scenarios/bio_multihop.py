"""bio-multihop: a two-hop question where one-shot retrieval should fail and an agent should not.

"What is the nationality of the person who coached X?" X's biography names the coach ("He was
coached by Ana Bo."); the coach's own biography, elsewhere in the haystack, states the nationality;
the question never names the coach. One top-k retrieval for the question finds X's biography but
has no words that point at the coach's; full context must make the hop within the context; an agent
can search X, read the coach's name, then search the coach.

Both biographies are gold (`gold_ids`: X's, then the coach's), so the retrieval arms' `gold_recall`
and the attribution classes (retrieval miss / partial miss / reading error by needle coverage) say
which hop was missed. X's biography is placed at the depth; the coach's `coach_offset` percent of
the context further on (wrapping around: depth 0 puts it at 50%, depth 50 first, depth 100 at 50%).

Pairs: X and the coach are both drawn from bio-needle's generator (its "needles" split, or
"train-needles" for the training split), skipping biographies that already mention a coach (an
athlete's "trained under a French coach"); the coach's nationality is stated and differs from X's,
so X's own nationality is a distractor, never the answer. The background (the "haystack" split) is
the same at every depth and for every needle of a length; needle i is the same pair at every depth
and length (the pairing the verdict's tests rely on). Test people and training people never meet:
the generator's training surnames hold a letter no test surname can (scenarios.bio_needle.generator).

Answer: the nationality, one lowercase word (the core wraps it as {"answer": "french"}); scored
exactly, case and spaces folded. Chance level: the most common nationality stated among 1,000
haystack biographies. Grounding: bio-needle's nationality rule (a demonym, its country or one of
its cities in the text), so a nationality read from X's biography is a distractor.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator, Sequence
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
    depth_index,
    fill,
    grid,
    joined_tokens,
    plant,
)
from scenarios.bio_needle.generator import BioGenerator, Person, surname_terms, wikify

REFERENCE_SIZE = 1000
UNKNOWN = "unknown"

INSTRUCTIONS = """\
Read the biographies below, then answer the question, using only what the biographies say. The \
question names a person whose biography says who coached them; the coach's own biography is \
elsewhere among the others. Reply with a JSON object {"answer": NATIONALITY}, NATIONALITY being the \
coach's nationality as one lowercase word, such as "french", or "unknown" if no biography states it."""


class MultihopParams(ScenarioParams):
    split: Literal["test", "train"] = Field(
        "test", description="test: the people compare asks about; train: fine-tuning people, never in any test split"
    )
    coach_offset: float = Field(
        50.0, ge=0, le=100, description="how far (percent of the context, wrapping) the coach's biography is placed"
    )


def question_for(name: str) -> str:
    return f"What is the nationality of the person who coached {name}?"


def coached_by(person: Person, coach: Person) -> str:
    """The sentence that names the coach, in the person's own style."""
    sentence = f"{'He' if person.gender == 'm' else 'She'} was coached by {coach.name}."
    return wikify(sentence) if person.style == "wiki" else sentence


def _norm(value: Any) -> str | None:
    return " ".join(value.split()).lower() if isinstance(value, str) else None


class BioMultihop(Scenario):
    """Two hops: "What is the nationality of the person who coached X?" — X's biography names the coach, the coach's holds the answer."""

    name = "bio-multihop"
    Params = MultihopParams
    fields = ["nationality"]
    answer_field = "nationality"
    splits = ("test", "train")
    words = Words(document="biography", documents="biographies", subject="person")

    def __init__(self, params: ScenarioParams | None = None, seed: int = 0):
        super().__init__(params, seed)
        self.generator = BioGenerator(seed)
        self._cache: TokenCache | None = None

    @property
    def instructions(self) -> str:
        return INSTRUCTIONS

    def answer_schema(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": 40}

    def search_terms(self, sample: Sample) -> list[str]:
        return surname_terms(sample.subject)

    def reference_labels(self) -> list[dict[str, Any]]:
        recs = self.generator.records("haystack", REFERENCE_SIZE)
        return [{"nationality": r.labels.nationality} for r in recs if r.labels.nationality != UNKNOWN]

    @property
    def null_source(self) -> str:
        return f"nationalities stated in {REFERENCE_SIZE:,} haystack biographies"

    # -- pairs ----------------------------------------------------------------------------------------
    def pairs(self, split: str, n: int) -> list[tuple[Person, Person]]:
        """The first n (person, coach) pairs of a generator split: the same pairs whatever n is."""
        out: list[tuple[Person, Person]] = []
        taken = 0
        while len(out) < n:
            people = self.generator.people(split, taken + 64)[taken:]
            queue = [p for p in people if "coach" not in p.record.bio.lower()]
            taken += len(people)
            while len(out) < n and len(queue) >= 2:
                person = queue.pop(0)
                mine = person.labels.nationality
                j = next((k for k, c in enumerate(queue) if c.labels.nationality not in (UNKNOWN, mine)), None)
                if j is None:
                    break
                out.append((person, queue.pop(j)))
        return out

    def _pool(self) -> Iterator[tuple[str, Any]]:
        """(id, record) of the haystack split in order, endlessly."""
        split = "train-haystack" if self.training else "haystack"
        return ((f"h{j}", r) for j, r in self.generator.stream(split))

    # -- the grid ---------------------------------------------------------------------------------------
    def hops(self, sample: Sample) -> list[str]:
        """The person, then the coach their biography names (the second hop's words are read, not asked)."""
        return [sample.subject, sample.meta["coach"]]

    def samples(
        self, lengths: Sequence[int], depths: Sequence[float], needles: int, count_tokens: TokenCounter
    ) -> list[Sample]:
        lengths, depths = grid(self.name, lengths, depths, needles)
        cache = self._cache = TokenCache.reuse(self._cache, count_tokens)
        pairs = self.pairs("train-needles" if self.training else "needles", needles)
        texts = [(p.record.bio + " " + coached_by(p, c), c.record.bio) for p, c in pairs]
        pair_tokens = [joined_tokens(cache.count(list(t))) for t in texts]
        biggest = max(pair_tokens)
        out: list[Sample] = []
        for L in lengths:
            if L < biggest + SEP_TOKENS:
                raise UsageError(f"bio-multihop: length {L} is too small for a person and a coach ({biggest} tokens)")
            bg = fill(self._pool(), L - biggest - 2 * SEP_TOKENS, cache, text=lambda x: x[1].bio)
            docs = [Document(id=doc_id, text=r.bio) for doc_id, r in bg]
            counts = [cache[d.text] for d in docs]
            for d in depths:
                at = depth_index(counts, d)
                coach_at = depth_index(
                    counts, (d + self.params.coach_offset) % 100 if d < 100 else self.params.coach_offset
                )
                for i, ((person, coach), (person_text, coach_text)) in enumerate(zip(pairs, texts)):
                    person_doc = Document(id=f"n{i}", text=person_text)
                    coach_doc = Document(id=f"c{i}", text=coach_text)
                    documents, doc_counts = plant(
                        docs, counts, [(at, person_doc, cache[person_text]), (coach_at, coach_doc, cache[coach_text])]
                    )
                    out.append(
                        Sample(
                            id=f"bio-multihop/L{L}/d{d:g}/n{i}",
                            scenario=self.name,
                            length=L,
                            depth=d,
                            needle_index=i,
                            documents=documents,
                            gold_ids=[f"n{i}", f"c{i}"],
                            subject=person.name,
                            question=question_for(person.name),
                            gold={"nationality": coach.labels.nationality},
                            context_tokens=joined_tokens(doc_counts),
                            meta={
                                "coach": coach.name,
                                "person_position": at,
                                "coach_position": coach_at,
                                "documents": len(documents),
                            },
                        )
                    )
        return out

    # -- few-shot ---------------------------------------------------------------------------------------
    def shots(self, n: int) -> list[Shot]:
        if n < 0:
            raise UsageError(f"bio-multihop: number of shots must be >= 0 (got {n})")
        out = []
        for j, (person, coach) in enumerate(self.pairs("shots", n)):
            docs = [Document(id=f"s{j}a", text=person.record.bio + " " + coached_by(person, coach))]
            docs.append(Document(id=f"s{j}b", text=coach.record.bio))
            if random.Random(f"bio-multihop/{self.seed}/shot/{j}").random() < 0.5:
                docs.reverse()  # the coach's biography is not always second
            out.append(
                Shot(
                    documents=docs, question=question_for(person.name), answer={"nationality": coach.labels.nationality}
                )
            )
        return out

    # -- marking ----------------------------------------------------------------------------------------
    def score(self, answer: dict[str, Any], gold: dict[str, Any]) -> dict[str, bool]:
        return {"nationality": _norm(answer.get("nationality")) == _norm(gold["nationality"])}

    def null_answer(self, golds: Sequence[dict[str, Any]]) -> dict[str, Any]:
        counts = Counter(_norm(g["nationality"]) for g in golds)
        return {"nationality": min(counts, key=lambda v: (-counts[v], v))} if counts else {"nationality": None}

    def grounding(self) -> Grounding:
        from scenarios.bio_needle.grounding import BioGrounding

        return BioGrounding()
