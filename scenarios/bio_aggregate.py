"""bio-aggregate: questions that need many biographies at once.

"How many of the people below held or ran for political office and were born before 1950?",
"List the people below who are Kenyan by nationality." Each question (needle i) has its own
criterion (a nationality, or politicians / sportspeople born before a year, in turn) and between
1 and `targets` (default 4) matching biographies, drawn by the seed; the rest of the context is
haystack biographies that do NOT match it, so the gold answer is exactly the planted ones. One
top-k retrieval of chunks has to find every match to answer right: this is where retrieval
should fall short and long context should win, and the retrieval arms' needle coverage (the
share of the matching biographies' text they showed) says how far they got.

Placement: the matches are spread evenly over `spread` percent of the context (default 50),
centred on the depth and kept inside it (depth 0: over the first half, 100: over the last half;
one match sits at the depth). The background is the question's own and the same at every depth;
question i has the same criterion and matches at every depth and length (the pairing the
verdict's tests rely on). Lengths are in the served model's tokens; the background fills the
length beside the matches.

Questions (`-P question=...`):
  count  "How many ...?": an integer, scored exactly (field `count`). Chance level: the most
         common count among 1,000 questions drawn like the asked ones (counts are uniform in
         1..targets, so about 1/targets).
  list   "List the people ...": the names, scored by set precision and recall (fields
         `precision`, `recall`; names compared case- and whitespace-insensitively). Chance level:
         the empty list, which is neither precise nor complete (0).

Answer forms (`-P answer_form=...`), the same scoring either way:
  direct  the count or the names, as above.
  tally   one entry per biography shown, in order: {"people": [{"name": ..., "match": true|false}]},
          the model's decision about each person; the count is how many it marked, the list their
          names. A small model decides one biography at a time more surely than it counts a whole
          context; the written answer grows with the context (about 14 tokens a biography:
          compare raises the answer limit to fit, `answer_tokens`, unless --max-tokens is given).
  table   one entry per biography shown, in order, with the facts the criteria turn on:
          {"people": [{"name", "nationality", "born", "occupation", "politician", "sportsperson"}]}
          (the occupation, unscored, in the biography's words before the roles it decides, as in
          bio-needle's answer); the harness applies the question's criterion to the entries
          (program-aided: the model extracts, code compares and counts). The entries are the same whatever the question, so a reader that
          extracts one biography's facts well has only to do it for each; about 35 tokens a
          biography.

Reuses bio-needle's generator (scenarios.bio_needle.generator): matches come from its "needles"
split, the background from its "haystack" split; the training split (`-P split=train`, fine-tuning
data) from its "train-needles" and "train-haystack" splits, whose surnames no test split can hold,
with the nationalities training text is written with.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field

from harness.plugin import (
    SEP_TOKENS,
    Document,
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
    set_precision_recall,
)
from scenarios.bio_needle import vocabulary as V
from scenarios.bio_needle.generator import TRAIN_FORMS, BioGenerator
from scenarios.bio_needle.loader import BioLabels, BioRecord

REFERENCE_SIZE = 1000
KINDS = ("politician", "nationality", "sportsperson")
YEARS = (1940, 1950, 1960, 1970)

TALLY = """\
Read the biographies below, then answer the question about them, using only what the biographies \
say. Go through the biographies in order and reply with a JSON object {"people": [{"name": NAME, \
"match": true or false}, ...]}: one entry for each biography, NAME being the person's full name as \
the biography writes it, "match" true when the person is one the question asks for."""

TABLE = """\
Read the biographies below, then answer the question about them, using only what the biographies \
say. Go through the biographies in order and reply with a JSON object {"people": [{"name": NAME, \
"nationality": NATIONALITY, "born": YEAR, "occupation": OCCUPATION, "politician": true or false, \
"sportsperson": true or false}, ...]}: one entry for each biography, NAME being the person's full name \
as the biography writes it, NATIONALITY their nationality in lowercase ("unknown" when the biography \
does not say), YEAR their year of birth (0 when it does not say), OCCUPATION what the biography says \
the person is or was, in its own words ("unknown" when it does not say), "politician" true when they \
held or ran for political office, "sportsperson" true when they competed as athletes. The question \
is answered from these entries."""

INSTRUCTIONS = {
    "count": """\
Read the biographies below, then answer the question about them, using only what the biographies \
say. Reply with a JSON object {"answer": N}, N being the number of people the question asks for.""",
    "list": """\
Read the biographies below, then answer the question about them, using only what the biographies \
say. Reply with a JSON object {"answer": [NAMES]}, NAMES being the full name of each person the \
question asks for, as the biography writes it.""",
}


class AggregateParams(ScenarioParams):
    split: Literal["test", "train"] = Field(
        "test", description="test: the questions compare asks; train: fine-tuning people, never in any test split"
    )
    question: Literal["count", "list"] = Field(
        "count", description="count: how many (exact); list: the names (set P/R)"
    )
    targets: int = Field(4, ge=1, le=50, description="each question has 1..targets matching biographies")
    spread: float = Field(50.0, ge=0, le=100, description="percent of the context the matches are spread over")
    answer_form: Literal["direct", "tally", "table"] = Field(
        "direct",
        description="direct: the count or names; tally: a match decision for every biography shown; "
        "table: every biography's facts, the criterion applied by the harness",
    )


@dataclass(frozen=True)
class Criterion:
    kind: str  # politician | sportsperson | nationality
    value: Any  # a birth year bound, or a demonym

    def matches(self, labels: BioLabels) -> bool:
        return self.admits(_facts(labels))

    def phrase(self) -> str:
        if self.kind == "nationality":
            return f"are {self.value.capitalize()} by nationality"
        if self.kind == "politician":
            return f"held or ran for political office and were born before {self.value}"
        return f"competed as athletes and were born before {self.value}"

    def admits(self, entry: dict[str, Any]) -> bool:
        """Whether one person's facts (a table entry a model wrote, or `_facts` of their labels) meet it."""
        if self.kind == "nationality":
            return str(entry.get("nationality", "")).strip().lower() == self.value
        born = entry.get("born")
        return entry.get(self.kind) is True and isinstance(born, int) and 0 < born < self.value

    def search_terms(self) -> list[str]:
        """Words a search for this criterion holds (stems: "politic" finds "political" and "politician")."""
        if self.kind == "nationality":
            return [self.value]
        return ["politic", "office", "election"] if self.kind == "politician" else ["athlet", "sport"]

    def question(self, form: str) -> str:
        if form == "count":
            return f"How many of the people below {self.phrase()}?"
        return f"List the people below who {self.phrase()}."


def draw_criterion(rng: random.Random, index: int, demonyms: Sequence[str] = V.DEMONYMS) -> Criterion:
    kind = KINDS[index % len(KINDS)]
    return Criterion(kind, rng.choice(demonyms) if kind == "nationality" else rng.choice(YEARS))


@dataclass(frozen=True)
class Question:
    criterion: Criterion
    matches: tuple[BioRecord, ...]


class BioAggregate(Scenario):
    """Questions over many biographies at once: how many / which people match (count exact; list by set P/R)."""

    name = "bio-aggregate"
    Params = AggregateParams
    fields = ["count"]
    words = Words(
        document="biography",
        documents="biographies",
        subject="question",
        searched="the criterion the question names (a nationality, a role)",
    )
    splits = ("test", "train")

    def __init__(self, params: ScenarioParams | None = None, seed: int = 0):
        super().__init__(params, seed)
        self.form = self.params.question
        # Instance attributes: the scored form depends on the question form.
        self.fields = ["count"] if self.form == "count" else ["precision", "recall"]
        self.answer_field = "count" if self.form == "count" else "names"
        self.generator = BioGenerator(seed)
        self._cache: TokenCache | None = None
        self._questions: list[Question] = []
        self._used: set[int] = set()  # needles-split people already a match of an earlier question
        self._people: dict[str, BioRecord] = {}  # biography text -> its record (questions() asks about them)
        self._scan = 0

    @property
    def tally(self) -> bool:
        return self.params.answer_form == "tally"

    @property
    def table(self) -> bool:
        return self.params.answer_form == "table"

    @property
    def instructions(self) -> str:
        return TABLE if self.table else TALLY if self.tally else INSTRUCTIONS[self.form]

    def answer_tokens(self, length: int) -> int:
        """An entry per biography: the table's gold takes about 0.26 tokens per context token (0.22-0.31
        over 216 test-split contexts of 1k-4k, Gemma's tokenizer), the tally about half that."""
        return int(0.35 * length) + 64 if self.table else int(0.2 * length) + 64 if self.tally else 0

    def search_terms(self, sample: Sample) -> list[str]:
        c = sample.meta.get("criterion") or {}
        return Criterion(c["kind"], c["value"]).search_terms() if c else super().search_terms(sample)

    def answer_schema(self) -> dict[str, Any]:
        if self.tally or self.table:
            properties: dict[str, Any] = {"name": {"type": "string", "maxLength": 60}}
            if self.table:
                properties |= {
                    "nationality": {"type": "string", "maxLength": 40},
                    "born": {"type": "integer", "minimum": 0, "maximum": 2100},
                    "occupation": {"type": "string", "maxLength": 60},
                    "politician": {"type": "boolean"},
                    "sportsperson": {"type": "boolean"},
                }
            else:
                properties["match"] = {"type": "boolean"}
            entry = {
                "type": "object",
                "properties": properties,
                "required": list(properties),
                "additionalProperties": False,
            }
            return {
                "type": "object",
                "properties": {"people": {"type": "array", "items": entry, "maxItems": 500}},
                "required": ["people"],
                "additionalProperties": False,
            }
        if self.form == "count":
            return {"type": "integer", "minimum": 0, "maximum": 1000}
        # Bounded so a small model cannot run past the token limit listing names (the same bound
        # for every question: it says nothing about the count).
        return {"type": "array", "items": {"type": "string", "maxLength": 60}, "maxItems": 2 * self.params.targets + 2}

    # -- questions ------------------------------------------------------------------------------------
    def drawn(self, n: int) -> list[Question]:
        """The first n questions; prefix-stable (question i never depends on how many are asked)."""
        while len(self._questions) < n:
            i = len(self._questions)
            train = self.training
            rng = random.Random(f"bio-aggregate/{self.seed}/" + ("train-" if train else "") + f"question/{i}")
            crit = draw_criterion(rng, i, TRAIN_FORMS.demonyms if train else V.DEMONYMS)
            want = rng.randint(1, self.params.targets)
            found: list[BioRecord] = []
            start = 0
            while len(found) < want:
                people = self.generator.records("train-needles" if train else "needles", start + 64)
                for j in range(start, len(people)):
                    if j not in self._used and crit.matches(people[j].labels):
                        found.append(people[j])
                        self._used.add(j)
                        if len(found) == want:
                            break
                start = j + 1
                if start > 200_000:
                    raise UsageError(f"bio-aggregate: too few people match {crit}")
            self._questions.append(Question(crit, tuple(found)))
        return self._questions[:n]

    def gold(self, q: Question, shown: Iterable[BioRecord] = ()) -> dict[str, Any]:
        """The scored form; in the tally and table forms also `people`, an entry about each of `shown`
        (the context's people, in order, read only in those forms): a working value the model writes,
        never scored. The table form's gold also names the criterion its score applies."""
        out: dict[str, Any] = (
            {"count": len(q.matches)} if self.form == "count" else {"names": [r.name for r in q.matches]}
        )
        if self.tally:
            out["people"] = [{"name": r.name, "match": q.criterion.matches(r.labels)} for r in shown]
        elif self.table:
            out["people"] = [_entry(r) for r in shown]
            out["criterion"] = {"kind": q.criterion.kind, "value": q.criterion.value}
        return out

    def encode_answer(self, answer: dict[str, Any]) -> Any:
        return {"people": answer["people"]} if self.tally or self.table else super().encode_answer(answer)

    def decode_answer(self, written: Any) -> dict[str, Any]:
        if self.table:
            return {"people": written["people"]}  # the criterion is the question's: applied in `score`
        if not self.tally:
            return super().decode_answer(written)
        people = written["people"]
        marked = [p["name"] for p in people if p["match"]]
        scored: dict[str, Any] = {"count": len(marked)} if self.form == "count" else {"names": marked}
        return {**scored, "people": people}

    def apply(self, answer: dict[str, Any], gold: dict[str, Any]) -> dict[str, Any]:
        """A table answer's count or names: its entries that meet the gold's criterion (other forms: as is)."""
        if not self.table or "people" not in answer:
            return answer
        crit = Criterion(**gold["criterion"])
        names = [p.get("name") for p in answer["people"] if crit.admits(p)]
        return {**answer, "count": len(names)} if self.form == "count" else {**answer, "names": names}

    def reference_labels(self) -> list[dict[str, Any]]:
        if self.form != "count":
            return []  # the null answer is the empty list whatever the golds (null_answer)
        return [
            {"count": random.Random(f"bio-aggregate/{self.seed}/reference/{j}").randint(1, self.params.targets)}
            for j in range(REFERENCE_SIZE)
        ]

    @property
    def null_source(self) -> str:
        if self.form == "count":
            return f"counts of {REFERENCE_SIZE:,} questions drawn like the asked ones"
        return "the empty list"

    def null_answer(self, golds: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if self.form == "list":
            return {"names": []}
        counts = Counter(g["count"] for g in golds)
        return {"count": min(counts, key=lambda c: (-counts[c], c))} if counts else {"count": 0}

    def _background(self, crit: Criterion) -> Iterator[tuple[str, BioRecord]]:
        """Haystack biographies that do not match the criterion, in order, with their pool ids."""
        split = "train-haystack" if self.training else "haystack"
        return ((f"h{j}", r) for j, r in self.generator.stream(split) if not crit.matches(r.labels))

    # -- the grid ---------------------------------------------------------------------------------------
    def samples(
        self, lengths: Sequence[int], depths: Sequence[float], needles: int, count_tokens: TokenCounter
    ) -> list[Sample]:
        lengths, depths = grid(self.name, lengths, depths, needles)
        cache = self._cache = TokenCache.reuse(self._cache, count_tokens)
        qs = self.drawn(needles)
        cache.ensure(r.bio for q in qs for r in q.matches)
        out: list[Sample] = []
        for L in lengths:
            for i, q in enumerate(qs):
                match_tokens = joined_tokens([cache[r.bio] for r in q.matches])
                if L < match_tokens:
                    raise UsageError(
                        f"bio-aggregate: length {L} is too small for question {i}'s "
                        f"{len(q.matches)} matching biographies ({match_tokens} tokens); "
                        "give a longer length or fewer -P targets"
                    )
                bg = fill(self._background(q.criterion), L - match_tokens - SEP_TOKENS, cache, text=lambda x: x[1].bio)
                docs = [Document(id=doc_id, text=r.bio) for doc_id, r in bg]
                self._people.update((r.bio, r) for _, r in bg)
                self._people.update((r.bio, r) for r in q.matches)
                counts = [cache[d.text] for d in docs]
                ids = [f"n{i}.{m}" for m in range(len(q.matches))]
                for d in depths:
                    slots = [depth_index(counts, p) for p in self.spread(d, len(q.matches))]
                    matches = [Document(id=ids[m], text=r.bio) for m, r in enumerate(q.matches)]
                    documents, doc_counts = plant(
                        docs, counts, [(s, doc, cache[doc.text]) for s, doc in zip(slots, matches)]
                    )
                    out.append(
                        Sample(
                            id=f"bio-aggregate/L{L}/d{d:g}/n{i}",
                            scenario=self.name,
                            length=L,
                            depth=d,
                            needle_index=i,
                            documents=documents,
                            gold_ids=ids,
                            subject=q.criterion.phrase(),
                            question=q.criterion.question(self.form),
                            gold=self.gold(q, (self._people[doc.text] for doc in documents)),
                            context_tokens=joined_tokens(doc_counts),
                            meta={
                                "match_positions": slots,
                                "matches": len(q.matches),
                                "haystack_documents": len(docs),
                                "criterion": {"kind": q.criterion.kind, "value": q.criterion.value},
                            },
                        )
                    )
        out.sort(key=lambda s: (s.length, s.depth, s.needle_index))
        return out

    def questions(self, sample: Sample) -> list[Sample]:
        """The same context asked other questions (fine-tuning asks several in one pass): the sample's own
        first, then one criterion for each count from 1 to 2 x targets that the context's biographies
        match that often (a nationality, or a role born before a year, taken from a biography in it), so
        a reader learns to count and list whatever the count, not the planted question's odds."""
        people = [(d.id, self._people[d.text]) for d in sample.documents if d.text in self._people]
        seen: set[Criterion] = {Criterion(**sample.meta["criterion"])} if sample.meta.get("criterion") else set()
        by_count: dict[int, list[tuple[Criterion, list[tuple[str, BioRecord]]]]] = {}
        for _, rec in people:
            lab = rec.labels
            options = [Criterion(kind, y) for kind in ("politician", "sportsperson") for y in YEARS]
            if lab.nationality != "unknown":
                options.append(Criterion("nationality", lab.nationality))
            for crit in options:
                if crit in seen or not crit.matches(lab):
                    continue
                seen.add(crit)
                hits = [(i, r) for i, r in people if crit.matches(r.labels)]
                if len(hits) <= 2 * self.params.targets:
                    by_count.setdefault(len(hits), []).append((crit, hits))
        rng = random.Random(sample.id)
        out = [sample]
        for count in sorted(by_count):
            crit, hits = rng.choice(by_count[count])
            gold = self.gold(Question(crit, tuple(r for _, r in hits)), [r for _, r in people])
            out.append(
                sample.model_copy(
                    update={
                        "id": f"{sample.id}/{crit.kind}-{crit.value}",
                        "gold_ids": [i for i, _ in hits],
                        "subject": crit.phrase(),
                        "question": crit.question(self.form),
                        "gold": gold,
                        "meta": {**sample.meta, "criterion": {"kind": crit.kind, "value": crit.value}},
                    }
                )
            )
        return out

    def spread(self, depth: float, n: int) -> list[float]:
        """The depths (percent) of n matches: evenly over `spread` points centred on `depth`, inside 0-100."""
        if n == 1:
            return [depth]
        width = self.params.spread
        lo = min(max(depth - width / 2, 0.0), 100.0 - width)
        return [lo + j * width / (n - 1) for j in range(n)]

    # -- few-shot -------------------------------------------------------------------------------------
    def shots(self, n: int) -> list[Shot]:
        """Each shot: 3 short biographies from the "shots" split and a question one or two of them match."""
        if n < 0:
            raise UsageError(f"bio-aggregate: number of shots must be >= 0 (got {n})")
        out: list[Shot] = []
        pos = 0
        for j in range(n):
            rng = random.Random(f"bio-aggregate/{self.seed}/shot/{j}")
            while True:
                recs = self.generator.records("shots", pos + 3)[pos:]
                first = pos
                pos += 3
                crit = _shot_criterion(rng, recs)
                if crit is not None:
                    break
            gold = self.gold(Question(crit, tuple(r for r in recs if crit.matches(r.labels))), recs)
            out.append(
                Shot(
                    documents=[Document(id=f"s{first + m}", text=r.bio) for m, r in enumerate(recs)],
                    question=crit.question(self.form),
                    answer=gold,
                )
            )
        return out

    # -- marking --------------------------------------------------------------------------------------
    def score(self, answer: dict[str, Any], gold: dict[str, Any]) -> dict[str, bool | float]:
        answer = self.apply(answer, gold)
        if self.form == "count":
            got = answer.get("count")
            return {"count": isinstance(got, int) and not isinstance(got, bool) and got == gold["count"]}
        precision, recall = set_precision_recall(answer.get("names"), gold["names"])
        return {"precision": precision, "recall": recall}

    def grounding(self):
        return None  # a count or a list of names is not a field value a text states


def _facts(lab: BioLabels) -> dict[str, Any]:
    """The facts every criterion turns on, as a person's labels give them."""
    return {
        "nationality": lab.nationality,
        "born": lab.date_of_birth.year,
        "politician": bool(lab.politician),
        "sportsperson": bool(lab.sportsperson),
    }


def _entry(record: BioRecord) -> dict[str, Any]:
    """A biography's table entry, in the order it is written: the occupation right before the roles."""
    facts = _facts(record.labels)
    return {
        "name": record.name,
        "nationality": facts["nationality"],
        "born": facts["born"],
        "occupation": record.occupation or "unknown",
        "politician": facts["politician"],
        "sportsperson": facts["sportsperson"],
    }


def _shot_criterion(rng: random.Random, recs: Sequence[BioRecord]) -> Criterion | None:
    """A criterion one of `recs` matches (its nationality, or its role born before its year + 1)."""
    for anchor in rng.sample(list(recs), len(recs)):
        lab = anchor.labels
        options = [
            Criterion(kind, lab.date_of_birth.year + 1) for kind in ("politician", "sportsperson") if getattr(lab, kind)
        ]
        if lab.nationality != "unknown":
            options.append(Criterion("nationality", lab.nationality))
        if options:
            return rng.choice(options)
    return None
