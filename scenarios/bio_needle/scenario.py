"""The bio-needle scenario: one person's biography hidden among others, five fields to fill.

Grid construction, for each target length L (in the served model's tokens):
  * The background is the longest prefix of the haystack pool whose documents, plus the
    largest needle, fit in L. It is the same for every depth and needle of that length, so
    depths and needles are compared on identical haystacks.
  * Documents are joined with "\\n\\n"; each separator is counted as 1 token (the true count
    depends on the tokenizer's merges at the seam, and is within a token or two per join).
    context_tokens = sum of document tokens + one per separator.
  * The needle goes at the document boundary whose token offset is nearest depth% of the
    background, so depth 0 puts it first and depth 100 last.
Token counts are a round-trip to the endpoint per text, so each distinct text is counted
once, in as few batched calls as the pool's growth allows (usually two or three).
"""

from __future__ import annotations

import bisect
import copy
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from harness.plugin import (
    CHARS_PER_TOKEN_GUESS,
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
)
from scenarios.bio_needle.generator import BioGenerator, surname_terms
from scenarios.bio_needle.loader import BioLabels, BioRecord, ReadReport, read_bios

_TASK = """\
Read the biographies below, then answer the question about the person it names, using only \
what that person's biography says.
Reply with a single JSON object with exactly these keys:
"nationality": the person's nationality as one lowercase word, such as "french" or "kenyan"; \
"unknown" if the biography does not state it (a birthplace is not a nationality).
"""
_BOOLEANS = """\
"sportsperson": true if the person competed as an athlete, otherwise false.
"politician": true if the person held or ran for political office, otherwise false."""

# The answer form of milestone 1: dates as {"day", "month", "year"} objects (57 tokens for a typical
# answer in Gemma's tokenizer). Kept as answer_form=nested; its prompt is byte-identical to before.
INSTRUCTIONS_NESTED = (
    _TASK
    + """\
"date_of_birth": {"day": D, "month": M, "year": Y}, using 0 for any part that is not given.
"date_of_death": the same form; all three 0 if the person is alive or the date is not given.
"""
    + _BOOLEANS
)

# The default, compact form: ISO dates with only the parts the text gives, "0" for none, and short
# keys (35-43 tokens). Decoding dominates a short answer's latency on a CPU; the scored form is the same.
# "0", not "": Gemma's tokenizer writes `"died":""` with one merged token (`":"",`), so whether a
# person died was decided by that token alone, apart from the date; the tuned reader gave it the same
# ~0.6 for every test person, dead or alive (date_of_death 30 %). With "0" the decision is the date's
# first digit, which the reader copies from the text like any other digit.
# "occupation" (not scored) comes before the two roles for the same reason: asked for true/false
# straight away, the tuned reader gave every test person the same P(true) (sportsperson 0.28,
# politician 0.41, the training prior); written after a word it copied ("road cyclist"), the role is
# decided from that word.
_OCCUPATION = """\
"occupation": what the biography says the person is or was, in its own words, such as "road cyclist" or \
"sports journalist".
"""
INSTRUCTIONS_COMPACT = (
    _TASK
    + _OCCUPATION
    + """\
"born": the date of birth as "YYYY-MM-DD", or "YYYY-MM" or "YYYY" when only those parts are given; \
"0" if it is not given.
"died": the date of death in the same form; "0" if the person is alive or the date is not given.
"""
    + _BOOLEANS
)
INSTRUCTIONS = INSTRUCTIONS_COMPACT

# "0", "1951", "1951-01" or "1951-01-28"; zeros stand for unknown parts before a known one ("0000-03").
DATE_PATTERN = r"^(0|[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?)$"
COMPACT_KEYS = {"date_of_birth": "born", "date_of_death": "died"}
OCCUPATION_KEY = "occupation"  # in the compact form and in gold (when known); never scored
UNKNOWN_OCCUPATION = "unknown"
# The compact form's keys in the order they are written: the occupation right after nationality.
_LABELS = list(BioLabels.model_fields)
COMPACT_ORDER = [_LABELS[0], OCCUPATION_KEY, *(COMPACT_KEYS.get(k, k) for k in _LABELS[1:])]

REFERENCE_SIZE = 1000  # biographies the null baseline's most common labels are taken from


class BioNeedleParams(ScenarioParams):
    """Real data instead of the synthetic pool (give both files, or neither), the answer form, and
    which people and sentence forms the synthetic data is drawn from."""

    haystack_file: Path | None = None
    needles_file: Path | None = None
    answer_form: Literal["compact", "nested"] = Field(
        "compact", description='compact: dates as "YYYY-MM-DD" strings under born/died; nested: {day, month, year}'
    )
    split: Literal["test", "train"] = Field(
        "test", description="test: the people compare asks about; train: fine-tuning people, never in any test split"
    )
    forms: Literal["all", "seen", "held-out"] = Field(
        "all",
        description="what the needles are written with: every form; only forms the training split uses; "
        "only forms held out of it",
    )


def gold_of(rec: BioRecord) -> dict[str, Any]:
    """The scored labels, with the occupation beside them when the record knows it (unscored: the compact
    form writes it, the scorer reads only `fields`)."""
    assert rec.labels is not None
    return rec.labels.model_dump() | ({OCCUPATION_KEY: rec.occupation} if rec.occupation else {})


def question_for(name: str) -> str:
    return f"What is known about {name}?"


def inline_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Resolve local $refs, drop titles and docstrings, close every object (additionalProperties: false).

    Endpoints' structured-output backends differ in $ref support; an inlined schema works
    with all of them.
    """
    defs = schema.get("$defs", {})

    def walk(node: Any, in_properties: bool = False) -> Any:
        if isinstance(node, list):
            return [walk(x) for x in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return walk(copy.deepcopy(defs[node["$ref"].rsplit("/", 1)[-1]]))
        out = {
            k: walk(v, in_properties=(k == "properties" and not in_properties))
            for k, v in node.items()
            if k != "$defs" and (in_properties or k not in ("title", "description"))
        }
        if out.get("type") == "object" and not in_properties:
            out["additionalProperties"] = False
        return out

    return walk(schema)


class _Pool:
    """The background biographies in order, with stable document ids; possibly endless."""

    def __init__(self, get: Callable[[int], list[tuple[str, BioRecord]]], size: int | None):
        self._get = get
        self.size = size  # None: synthetic, grows on demand

    def take(self, n: int) -> list[tuple[str, BioRecord]]:
        return self._get(n if self.size is None else min(n, self.size))


class BioNeedle(Scenario):
    """One person's biography hidden among others: nationality, dates and two roles to fill in."""

    name = "bio-needle"
    Params = BioNeedleParams
    fields = ["nationality", "date_of_birth", "date_of_death", "sportsperson", "politician"]
    splits = ("test", "train")
    words = Words(document="biography", documents="biographies", subject="person")

    def __init__(self, params: ScenarioParams | None = None, seed: int = 0):
        super().__init__(params, seed)
        p = self.params
        if (getattr(p, "haystack_file", None) is None) != (getattr(p, "needles_file", None) is None):
            raise UsageError("bio-needle: give both haystack_file and needles_file, or neither")
        if self.training and self.uses_files:
            raise UsageError("bio-needle: split=train is synthetic; it cannot be used with haystack_file/needles_file")
        if self.training and getattr(p, "forms", "all") == "held-out":
            raise UsageError("bio-needle: the training split is never written with held-out forms (forms=held-out)")
        self.generator = BioGenerator(seed, needle_forms=getattr(p, "forms", "all"))
        self._files: _Files | None = None
        self._cache: TokenCache | None = None
        self._people: dict[str, BioRecord] = {}  # biography text -> its person, for everything samples() placed

    # ------------------------------------------------------------------ task statement
    @property
    def compact(self) -> bool:
        return getattr(self.params, "answer_form", "compact") == "compact"

    @property
    def instructions(self) -> str:
        return INSTRUCTIONS_COMPACT if self.compact else INSTRUCTIONS_NESTED

    def answer_schema(self) -> dict[str, Any]:
        nested = inline_schema(BioLabels.model_json_schema())
        if not self.compact:
            return nested
        props = {
            COMPACT_KEYS.get(k, k): ({"type": "string", "pattern": DATE_PATTERN} if k in COMPACT_KEYS else v)
            for k, v in nested["properties"].items()
        } | {OCCUPATION_KEY: {"type": "string"}}
        props = {k: props[k] for k in COMPACT_ORDER}
        return {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}

    def encode_answer(self, answer: dict[str, Any]) -> dict[str, Any]:
        if not self.compact:
            return {k: v for k, v in answer.items() if k != OCCUPATION_KEY}
        out = {COMPACT_KEYS.get(k, k): (encode_date(v) if k in COMPACT_KEYS else v) for k, v in answer.items()}
        out[OCCUPATION_KEY] = out.get(OCCUPATION_KEY) or UNKNOWN_OCCUPATION
        return {k: out[k] for k in COMPACT_ORDER}  # the schema's order: the order it is written in

    def decode_answer(self, written: dict[str, Any]) -> dict[str, Any]:
        if not self.compact:
            return written
        back = {v: k for k, v in COMPACT_KEYS.items()}
        return {back.get(k, k): (decode_date(v) if k in back else v) for k, v in written.items() if k != OCCUPATION_KEY}

    def check_files(self, files: Sequence[Path]) -> tuple[list[str], str | None]:
        """`harness data check`: biography files (or folders of them), counted line by line."""
        from scenarios.bio_needle.check import check_files

        return check_files(list(files))

    def check(self) -> None:
        if self.uses_files:
            self._load_files()

    def input_notes(self) -> list[str]:
        """What reading the data files did: normalised labels (counted), biographies left out."""
        return self._files.notes() if self._files is not None else []

    # ------------------------------------------------------------------ splits
    def search_terms(self, sample: Sample) -> list[str]:
        return surname_terms(sample.subject)

    def split(self, name: str, seed: int | None = None) -> BioNeedle:
        """The test people, or the training ones (surnames no test split can hold, seen forms only)."""
        if name not in self.splits:
            return super().split(name, seed)
        update = {"split": name} | ({"forms": "all"} if name == "train" else {})
        return BioNeedle(self.params.model_copy(update=update), self.seed if seed is None else seed)

    # ------------------------------------------------------------------ data
    @property
    def uses_files(self) -> bool:
        return getattr(self.params, "haystack_file", None) is not None

    def _load_files(self) -> _Files:
        if self._files is None:
            self._files = _Files(Path(self.params.haystack_file), Path(self.params.needles_file))
        return self._files

    def _needles(self, n: int) -> list[BioRecord]:
        if not self.uses_files:
            return self.generator.records("train-needles" if self.training else "needles", n)
        needles = self._load_files().needles
        if n > len(needles):
            raise UsageError(f"{self.params.needles_file} holds {len(needles)} biographies; {n} needles requested")
        return needles[:n]

    def _pool(self) -> _Pool:
        if not self.uses_files:
            split = "train-haystack" if self.training else "haystack"
            return _Pool(lambda n: [(f"h{i}", r) for i, r in enumerate(self.generator.records(split, n))], None)
        files = self._load_files()
        return _Pool(files.take, files.kept)

    def reference_labels(self, n: int = REFERENCE_SIZE) -> list[dict[str, Any]]:
        """Labels of the population chance level is taken from: (up to) the first `n` haystack
        biographies — or, when the haystack file has no labels, the needles file's."""
        return self._reference(n)[0]

    @property
    def null_source(self) -> str:
        """Where the null baseline's labels come from, in words (saved with the run, shown beside it)."""
        return self._reference(REFERENCE_SIZE)[1]

    def _reference(self, n: int) -> tuple[list[dict[str, Any]], str]:
        if not self.uses_files:
            labels = [r.labels.model_dump() for _, r in self._pool().take(n)]
            return labels, f"haystack labels of {len(labels):,} synthetic biographies"
        files = self._load_files()
        seen = min(n, files.kept)
        labels = files.reference[:n]
        if labels:
            part = "" if len(labels) == seen else f" of the first {seen:,}"
            return labels, f"haystack labels of {len(labels):,}{part} biographies"
        labels = [r.labels.model_dump() for r in files.needles[:n]]
        return labels, f"needle labels of {len(labels):,} biographies; haystack unlabeled"

    def _counter(self, count_tokens: TokenCounter) -> TokenCache:
        if self._cache is None or self._cache.count_tokens is not count_tokens:
            self._cache = TokenCache(count_tokens)
        return self._cache

    # ------------------------------------------------------------------ the grid
    def samples(
        self, lengths: Sequence[int], depths: Sequence[float], needles: int, count_tokens: TokenCounter
    ) -> list[Sample]:
        lengths = list(dict.fromkeys(lengths))
        depths = [float(d) for d in dict.fromkeys(depths)]
        _check_grid(lengths, depths, needles)
        needle_recs = self._needles(needles)
        questions = [question_for(r.name) for r in needle_recs]
        cache = self._counter(count_tokens)
        pool = self._pool()

        # First batch: needles, questions and a guess at the background; then top up.
        guess = _take_until(pool, 0, max(lengths), lambda r: len(r.bio) / CHARS_PER_TOKEN_GUESS + SEP_TOKENS)
        cache.ensure([r.bio for r in needle_recs] + questions + [r.bio for _, r in guess])
        needle_tokens = [cache[r.bio] for r in needle_recs]
        for L in lengths:
            for i in range(len(needle_recs)):
                need = needle_tokens[i] + cache[questions[i]]
                if L < need:
                    raise UsageError(
                        f"bio-needle: length {L} is too small for needle n{i} ({need} tokens with its question)"
                    )
        biggest_needle = max(needle_tokens)
        background = _count_background(pool, cache, guess, max(lengths) - biggest_needle)
        # ends[k]: tokens before a needle placed after the first k background documents.
        ends = [0]
        for _, r in background:
            ends.append(ends[-1] + cache[r.bio] + SEP_TOKENS)
        docs = [Document(id=doc_id, text=r.bio) for doc_id, r in background]
        needle_docs = [Document(id=f"n{i}", text=r.bio) for i, r in enumerate(needle_recs)]
        self._people.update((r.bio, r) for _, r in background)
        self._people.update((r.bio, r) for r in needle_recs)

        out: list[Sample] = []
        for L in lengths:
            n = bisect.bisect_right(ends, L - biggest_needle) - 1
            if pool.size is not None and n == pool.size:
                total = ends[-1] - SEP_TOKENS * len(background)
                raise UsageError(
                    f"{self.params.haystack_file} holds {total} tokens ({pool.size} biographies), "
                    f"too few to fill length {L} (about {L - biggest_needle} tokens of haystack needed)"
                )
            span = ends[n]
            for d in depths:
                k = _nearest(ends, n, d / 100 * span)
                for i, rec in enumerate(needle_recs):
                    out.append(
                        Sample(
                            id=f"bio-needle/L{L}/d{d:g}/n{i}",
                            scenario=self.name,
                            length=L,
                            depth=d,
                            needle_index=i,
                            documents=docs[:k] + [needle_docs[i]] + docs[k:n],
                            gold_ids=[f"n{i}"],
                            subject=rec.name,
                            question=questions[i],
                            gold=gold_of(rec),
                            context_tokens=span + needle_tokens[i],
                            meta={
                                "needle_position": k,
                                "needle_token_offset": ends[k],
                                "actual_depth": round(100 * ends[k] / span, 2) if span else 0.0,
                                "needle_tokens": needle_tokens[i],
                                "haystack_documents": n,
                            },
                        )
                    )
        return out

    def questions(self, sample: Sample) -> list[Sample]:
        """The same haystack asked about each person in it (every biography is some person's): the needle first."""
        out = [sample]
        for d in sample.documents:
            rec = self._people.get(d.text)
            if rec is None or d.id in sample.gold_ids:
                continue
            out.append(
                sample.model_copy(
                    update={
                        "id": f"{sample.id}/{d.id}",
                        "gold_ids": [d.id],
                        "subject": rec.name,
                        "question": question_for(rec.name),
                        "gold": gold_of(rec),
                        "meta": {**sample.meta, "asked_about": d.id},
                    }
                )
            )
        return out

    # ------------------------------------------------------------------ few-shot
    def shots(self, n: int) -> list[Shot]:
        """Each shot: 2-3 short synthetic bios from the "shots" split, a question about one."""
        if n < 0:
            raise UsageError(f"bio-needle: number of shots must be >= 0 (got {n})")
        out: list[Shot] = []
        pos = 0
        for j in range(n):
            rng = random.Random(f"bio-needle/{self.seed}/shot/{j}")
            k = rng.choice((2, 3))
            target = rng.randrange(k)
            recs = self.generator.records("shots", pos + k)[pos:]
            documents = [Document(id=f"s{pos + m}", text=r.bio) for m, r in enumerate(recs)]
            pos += k
            out.append(
                Shot(
                    documents=documents,
                    question=question_for(recs[target].name),
                    answer=gold_of(recs[target]),
                )
            )
        return out

    # ------------------------------------------------------------------ marking
    def score(self, answer: dict[str, Any], gold: dict[str, Any]) -> dict[str, bool]:
        out = {"nationality": _norm(answer.get("nationality")) == _norm(gold["nationality"])}
        for f in ("date_of_birth", "date_of_death"):
            got = _date(answer.get(f))
            out[f] = got is not None and got == _date(gold[f])
        for f in ("sportsperson", "politician"):
            got = answer.get(f)
            out[f] = isinstance(got, bool) and got == gold[f]
        return out


# ---------------------------------------------------------------------- data files
def _name_key(name: str) -> str:
    return " ".join(name.split()).lower()


class _Files:
    """The run's two data files: read through once when opened (every line checked, counted, the
    needles kept), then the haystack is read again lazily, only as far as the grid needs.

    Memory stays bounded whatever the haystack's size: the scan keeps counts and the first
    REFERENCE_SIZE labels, and a grid's haystack is the few hundred biographies its longest
    length holds."""

    def __init__(self, haystack: Path, needles: Path):
        self.haystack_path, self.needles_path = haystack, needles
        for path in (haystack, needles):  # the haystack is named first, as it is given first
            if not path.exists():
                raise UsageError(f"{path}: no such file")
        self.needles_report = ReadReport(str(needles))
        self.needles = [line.record for line in read_bios(needles, need_labels=True, report=self.needles_report)]
        self.needle_names = {_name_key(r.name) for r in self.needles}
        self.haystack_report = ReadReport(str(haystack))
        self.kept = 0  # haystack biographies a run may use
        self.dropped = 0  # haystack biographies that share a name with a needle
        self.reference: list[dict[str, Any]] = []  # labels among the first REFERENCE_SIZE kept
        for _, record in self._haystack(self.haystack_report):
            if self.kept < REFERENCE_SIZE and record.labels is not None:
                self.reference.append(record.labels.model_dump())
            self.kept += 1
        self._taken: list[tuple[str, BioRecord]] = []
        self._rest: Any = None

    def _haystack(self, report: ReadReport | None = None):
        """(id, record) of each usable haystack biography; ids keep the file's numbering."""
        for i, line in enumerate(read_bios(self.haystack_path, drop_bad_labels=True, report=report)):
            if _name_key(line.record.name) in self.needle_names:
                if report is not None:
                    self.dropped += 1
                continue
            yield f"h{i}", line.record

    def take(self, n: int) -> list[tuple[str, BioRecord]]:
        if self._rest is None:
            self._rest = self._haystack()
        while len(self._taken) < n:
            item = next(self._rest, None)
            if item is None:
                break
            self._taken.append(item)
        return self._taken[:n]

    def notes(self) -> list[str]:
        out = [f"{r.path}: {note}" for r in (self.haystack_report, self.needles_report) for note in r.note_lines()]
        if self.dropped:
            out.append(
                f"{self.haystack_path}: {self.dropped:,} biograph{'y' if self.dropped == 1 else 'ies'} "
                "left out (the same name as a needle)"
            )
        if not self.reference:
            out.append(
                f"{self.haystack_path}: no labels in its first {min(self.kept, REFERENCE_SIZE):,} biographies: "
                "the null baseline comes from the needles' labels"
            )
        return out


# ---------------------------------------------------------------------- helpers
def _check_grid(lengths: list[int], depths: list[float], needles: int) -> None:
    if not lengths:
        raise UsageError("bio-needle: no context lengths given")
    for L in lengths:
        if isinstance(L, bool) or not isinstance(L, int) or L < 1:
            raise UsageError(f"bio-needle: context length {L!r} is not a positive integer")
    if not depths:
        raise UsageError("bio-needle: no depths given")
    for d in depths:
        if not 0 <= d <= 100:
            raise UsageError(f"bio-needle: depth {d:g} is outside 0-100 (percent)")
    if isinstance(needles, bool) or not isinstance(needles, int) or needles < 1:
        raise UsageError(f"bio-needle: needles per cell must be at least 1 (got {needles!r})")


def _take_until(
    pool: _Pool, start: int, budget: float, cost: Callable[[BioRecord], float], chunk: int = 64
) -> list[tuple[str, BioRecord]]:
    """Pool items from `start` on whose estimated cost first reaches `budget` (at least one)."""
    taken: list[tuple[str, BioRecord]] = []
    spent = 0.0
    have = start
    while True:
        items = pool.take(have + chunk)[have:]
        if not items:
            return taken
        for item in items:
            taken.append(item)
            spent += cost(item[1])
            if spent >= budget:
                return taken
        have += len(items)


def _count_background(
    pool: _Pool, cache: TokenCache, counted: list[tuple[str, BioRecord]], budget: int
) -> list[tuple[str, BioRecord]]:
    """Count pool items until their tokens (with separators) pass `budget` or the pool ends."""
    counted = list(counted)
    while True:
        used = sum(cache[r.bio] + SEP_TOKENS for _, r in counted)
        if used >= budget:  # the next document cannot fit any more
            return counted
        chars = sum(len(r.bio) for _, r in counted)
        per_char = used / chars if chars else 1 / CHARS_PER_TOKEN_GUESS
        # Aim 5% past the remaining budget so one more batch is usually enough.
        more = _take_until(
            pool,
            len(counted),
            (budget - used) * 1.05 + 1,
            lambda r: len(r.bio) * per_char + SEP_TOKENS,  # noqa: B023 (called at once, in the loop)
        )
        if not more:
            return counted
        cache.ensure([r.bio for _, r in more])
        counted += more


def _nearest(ends: list[int], n: int, target: float) -> int:
    """The boundary k in 0..n whose offset ends[k] is nearest `target` (ties go earlier)."""
    j = bisect.bisect_left(ends, target, 0, n + 1)
    if j > n:
        return n
    if j > 0 and target - ends[j - 1] <= ends[j] - target:
        return j - 1
    return j


def encode_date(date: dict[str, int]) -> str:
    """{"day": 28, "month": 1, "year": 1951} -> "1951-01-28"; parts after the last known one are left out."""
    d, m, y = (int(date.get(k) or 0) for k in ("day", "month", "year"))
    if d:
        return f"{y:04d}-{m:02d}-{d:02d}"
    if m:
        return f"{y:04d}-{m:02d}"
    return f"{y:04d}" if y else "0"


def decode_date(text: str) -> dict[str, int]:
    """The inverse of encode_date for a string matching DATE_PATTERN ("0" -> all zeros)."""
    parts = [int(p) for p in text.split("-")] if text else []
    parts += [0] * (3 - len(parts))
    return {"day": parts[2], "month": parts[1], "year": parts[0]}


def _norm(value: Any) -> str | None:
    return " ".join(value.split()).lower() if isinstance(value, str) else None


def _date(value: Any) -> tuple[int, int, int] | None:
    if not isinstance(value, dict):
        return None
    parts = tuple(value.get(k) for k in ("day", "month", "year"))
    if any(isinstance(p, bool) or not isinstance(p, int) for p in parts):
        return None
    return parts  # type: ignore[return-value]
