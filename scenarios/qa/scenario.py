"""qa: your own questions, answers and documents, read from a file (`-P file=data.jsonl`).

Each row of the file is a needle: its question, its answers, its documents. For a length L (the
served model's tokens) and a depth d, the row's gold documents (those the file marks: `isgold`,
`hasanswer`, HotpotQA's supporting facts, SQuAD's passage) are placed at d% of a context filled to
L with the row's own other documents (its distractors) first, then other rows' documents. Where the
file marks no gold, the row's own documents go in as one block, and the report's retrieval columns
say "no gold documents marked". The background of a row is the same at every depth (only the gold
moves): row i is the same question at every depth and length, the pairing the verdict relies on.

A row whose own gold (or block) is longer than L is cut to the window of its pieces (documents,
then paragraphs, then sentences) around the first one holding an answer; the sample's
`meta.cut` says what was left out and config.yaml's input notes count them.

Scored by `-P metric=` (scenarios/qa/metrics.py) against any of the row's answers, or per field
against a JSON answer with `-P schema=schema.json`. Chance level: always giving the most common
answer in the file (with no answer given twice, there is none: open answers, 0%).

Rows are asked in file order (another --seed shuffles them); shots are worked examples of the
scenario's own (written here, about made-up things), never a row of the file.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ConfigDict, Field

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
    check_grid,
    depth_index,
    fill,
    joined_tokens,
)
from scenarios.qa.layouts import Mapping, QADoc, QARow, RowError, iter_rows, parse_row
from scenarios.qa.metrics import Metric, check_answers, mark, mark_value, normalize, number

INSTRUCTIONS = """\
Read the documents below, then answer the question using only what they say. Answer with the \
shortest span that answers it (a name, a number, a date, a few words), not a sentence."""

SCHEMA_INSTRUCTIONS = """\
Read the documents below, then answer the question using only what they say. Fill in every field \
of the JSON answer."""

SHOTS = [
    (
        [
            (
                "Harbour Lantern",
                "The Harbour Lantern of Veltra was lit for the first time in 1874. Its keeper, Odile Marsk, kept a log of every ship that passed.",
            ),
            ("Veltra", "Veltra is a fishing town on the Sarn coast, known for its blue boats and its winter market."),
        ],
        "In which year was the Harbour Lantern of Veltra first lit?",
        "1874",
    ),
    (
        [
            (
                "Quill Moss",
                "Quill moss grows only on north-facing granite above 900 metres; shepherds used it to stuff pillows.",
            ),
            (
                "Tessan Ridge",
                "The Tessan Ridge cable car carries walkers from Oru village to the summit hut in eleven minutes.",
            ),
        ],
        "How long does the Tessan Ridge cable car take to reach the summit hut?",
        "eleven minutes",
    ),
    (
        [
            (
                "Brannock Prize",
                "The Brannock Prize for clockmaking was awarded to Ilse Varga for a clock that runs on falling sand.",
            ),
        ],
        "Who was awarded the Brannock Prize for clockmaking?",
        "Ilse Varga",
    ),
]

MAX_ROWS_KEPT_REFUSED = 50


class QAParams(ScenarioParams):
    """`-P key=value`: the file, which of its columns hold what, and how answers are scored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    file: Path | None = Field(
        None, description="the question-answer file (.jsonl, .json, .csv, .parquet) or datasets folder"
    )
    question: str | None = Field(None, description="column of the question (default: question, input, query)")
    answers: str | None = Field(None, description="column of the answers (default: golden_answers, answers, answer)")
    documents: str | None = Field(
        None, description="column of the documents (default: ctxs, context, contexts, documents, passages)"
    )
    id: str | None = Field(None, description="column of the row id (default: id, _id, qid; else the row number)")
    split: str | None = Field(None, description="the split of a datasets folder with several")
    metric: Metric = Field("em", description="em, f1, contains, numeric or regex")
    tolerance: float = Field(0.0, ge=0, description="numeric: allowed error as a fraction of the answer")
    schema_file: Path | None = Field(None, alias="schema", description="JSON schema of JSON answers, scored per field")


class QA(Scenario):
    """Your own questions: a question-answer file in the layouts people have (FlashRAG, Lost in the Middle, HotpotQA, LongBench, SQuAD)."""

    name = "qa"
    Params = QAParams
    fields = ["answer"]
    words = Words(document="document", documents="documents", subject="question")

    def __init__(self, params: ScenarioParams | None = None, seed: int = 0):
        super().__init__(params, seed)
        p = self.params
        self.schema: dict[str, Any] | None = None
        if p.schema_file is not None:
            self.schema = _load_schema(p.schema_file)
            self.fields = list(self.schema["properties"])
        self.mapping = Mapping(
            question=p.question, answers=p.answers, documents=p.documents, id=p.id, json_answer=self.schema is not None
        )
        self.rows: list[QARow] | None = None
        self.layouts: Counter = Counter()
        self.refused: list[str] = []
        self.refused_count = 0
        self.cuts: Counter = Counter()
        self._cache: TokenCache | None = None
        self._asked: set[int] = set()

    # -- the file -----------------------------------------------------------------------------------
    def _path(self) -> Path:
        if self.params.file is None:
            raise UsageError("qa: give the question-answer file with -P file=data.jsonl (or .json, .csv, .parquet)")
        return self.params.file

    def read(self, strict: bool = True) -> list[QARow]:
        """Every usable row. strict: the first refused row raises its one-line reason; otherwise
        refused rows are counted (the first MAX_ROWS_KEPT_REFUSED kept as 'FILE row N: field: why')."""
        path = self._path()
        rows: list[QARow] = []
        self.layouts.clear()
        self.refused, self.refused_count = [], 0
        for n, raw in iter_rows(path, self.params.split):
            try:
                row = parse_row(raw, n, self.mapping)
                why = self._unscorable(row)
                if why:
                    raise RowError(why)
            except RowError as e:
                message = f"{path} row {n}: {e}"
                if strict:
                    raise UsageError(
                        f"{message} (`harness data check {path} --scenario qa` lists every refused row)"
                    ) from None
                self.refused_count += 1
                if len(self.refused) < MAX_ROWS_KEPT_REFUSED:
                    self.refused.append(message)
                continue
            rows.append(row)
            self.layouts[row.layout] += 1
        if not rows and strict:
            raise UsageError(f"{path}: no rows")
        return rows

    def _unscorable(self, row: QARow) -> str | None:
        if self.schema is None:
            why = check_answers(row.answers, self.params.metric)
            return f"answers: {why}" if why else None
        import jsonschema

        try:
            jsonschema.validate(row.answer, self.schema)
        except jsonschema.ValidationError as e:
            where = ".".join(map(str, e.absolute_path))
            return f"answer{'.' + where if where else ''}: {e.message} (against {self.params.schema_file})"
        return None

    def check(self) -> None:
        if self.rows is None:
            self.rows = self.read(strict=True)

    def _rows(self) -> list[QARow]:
        self.check()
        assert self.rows is not None
        return self.rows

    def check_files(self, files: Sequence[Path]) -> tuple[list[str], str | None]:
        """`harness data check FILE --scenario qa`: rows, layouts, gold marking, refused rows one a line."""
        from scenarios.qa.check import check_files

        return check_files(self, list(files))

    def order(self) -> list[int]:
        """Row indices in the order they are asked: file order, shuffled by a non-zero seed."""
        idx = list(range(len(self._rows())))
        if self.seed:
            random.Random(f"qa/{self.seed}").shuffle(idx)
        return idx

    def input_notes(self) -> list[str]:
        if self.rows is None:
            return []
        path = self.params.file
        n = len(self.rows)
        marked = sum(r.gold_marked for r in self.rows)
        kinds = ", ".join(f"{k} {v:,}" for k, v in self.layouts.most_common())
        out = [
            f"{path}: {n:,} row{'s' if n != 1 else ''} ({kinds}); gold documents marked in {marked:,}"
            + ("" if marked == n else " (the others go in as one block; no retrieval diagnostics for them)")
        ]
        for what, k in self.cuts.most_common():
            out.append(f"{path}: {k:,} sample{'s' if k != 1 else ''} cut: {what} (samples.jsonl meta.cut)")
        return out

    # -- the answer -----------------------------------------------------------------------------------
    @property
    def instructions(self) -> str:
        return SCHEMA_INSTRUCTIONS if self.schema is not None else INSTRUCTIONS

    def answer_schema(self) -> dict[str, Any]:
        if self.schema is not None:
            return self.schema
        return {"type": "number"} if self.params.metric == "numeric" else {"type": "string"}

    def encode_answer(self, answer: dict[str, Any]) -> Any:
        if self.schema is not None:
            return {f: answer[f] for f in self.fields if f in answer}
        first = answer["answer"][0] if isinstance(answer["answer"], list) else answer["answer"]
        if self.params.metric != "numeric":
            return first
        value = number(first)
        return int(value) if value is not None and value.is_integer() else value

    def score(self, answer: dict[str, Any], gold: dict[str, Any]) -> dict[str, float]:
        p = self.params
        if self.schema is not None:
            return {f: mark_value(answer.get(f), gold.get(f), p.metric, p.tolerance) for f in self.fields}
        return {"answer": mark(answer.get("answer"), gold["answer"], p.metric, p.tolerance)}

    def gold(self, row: QARow) -> dict[str, Any]:
        return dict(row.answer) if self.schema is not None else {"answer": list(row.answers)}

    def reference_labels(self) -> list[dict[str, Any]]:
        return [self.gold(r) for r in self._rows()]

    def null_answer(self, golds: Sequence[dict[str, Any]]) -> dict[str, Any]:
        if self.schema is not None:  # each field's most common value, or none where no value is given twice
            out = {}
            for f in self.fields:
                counts = Counter(json.dumps(g.get(f), sort_keys=True) for g in golds)
                top = counts.most_common(1)
                out[f] = json.loads(top[0][0]) if top and top[0][1] >= 2 else None
            return out
        common = self._most_common(golds)
        return {"answer": common[0] if common else None}

    def _most_common(self, golds: Sequence[dict[str, Any]]) -> tuple[str, int] | None:
        """The most common answer (its first form) and how many rows give it; None when none is given twice."""
        counts: Counter = Counter()
        first: dict[str, str] = {}
        for g in golds:
            for a in dict.fromkeys(normalize(x) for x in g["answer"]):
                counts[a] += 1
            first.setdefault(normalize(g["answer"][0]), g["answer"][0])
        best = [(a, k) for a, k in counts.most_common() if a in first]
        if not best or best[0][1] < 2:
            return None
        return first[best[0][0]], best[0][1]

    @property
    def null_source(self) -> str:
        rows = self._rows()
        if self.schema is not None:
            return f"each field's most common value in {len(rows):,} rows; none where no value is given twice"
        common = self._most_common([self.gold(r) for r in rows])
        if common is None:
            return "none: open answers, no answer given twice in the file"
        return f'the most common answer, "{common[0]}", {common[1]:,} of {len(rows):,} rows'

    def grounding(self) -> Grounding:
        return AnswerGrounding()

    # -- the grid -----------------------------------------------------------------------------------
    def samples(
        self, lengths: Sequence[int], depths: Sequence[float], needles: int, count_tokens: TokenCounter
    ) -> list[Sample]:
        lengths = list(dict.fromkeys(lengths))
        depths = [float(d) for d in dict.fromkeys(depths)]
        check_grid(self.name, lengths, depths, needles)
        rows = self._rows()
        if needles > len(rows):
            raise UsageError(f"qa: {needles} needles asked, but {self.params.file} has {len(rows):,} usable rows")
        if self._cache is None or self._cache.count_tokens is not count_tokens:
            self._cache = TokenCache(count_tokens)
        cache = self._cache
        asked = self.order()[:needles]
        self._asked = set(asked)
        self.cuts.clear()
        out: list[Sample] = []
        for L in lengths:
            for i, r in enumerate(asked):
                out += self._row_samples(r, i, L, depths, cache)
        return out

    def _row_samples(self, r: int, i: int, L: int, depths: list[float], cache: TokenCache) -> list[Sample]:
        row = self._rows()[r]
        own = [Document(id=f"r{r}d{j}", text=d.render()) for j, d in enumerate(row.documents)]
        gold = {f"r{r}d{j}" for j, d in enumerate(row.documents) if d.gold}
        core = [d for d in own if d.id in gold] if gold else own
        rest = [d for d in own if d.id not in gold] if gold else []
        core, cut = self._fit(core, row.answers if self.schema is None else _answer_texts(row.answer), L, cache)
        used = joined_tokens(cache.count([d.text for d in core]))
        # the row's own distractors first, then other rows' documents (each text once in a context)
        background = fill(rest, L - used - SEP_TOKENS, cache, text=lambda d: d.text)
        dropped_own = len(rest) - len(background)
        if background:
            used += SEP_TOKENS + joined_tokens(cache.count([d.text for d in background]))
        seen = {d.text for d in own}
        others = fill(self._others(r, seen), L - used - SEP_TOKENS, cache, text=lambda d: d.text)
        background += others
        if dropped_own:
            cut = "; ".join(filter(None, (cut, f"{dropped_own} of the row's own distractors left out")))
        if cut:
            self.cuts[f"at {L:,} tokens, " + re.sub(r"\d+", "N", cut)] += 1
        counts = cache.count([d.text for d in background])
        core_counts = cache.count([d.text for d in core])
        gold_ids = [d.id for d in core if d.id.split(".")[0] in gold] if gold else []
        out = []
        for d in depths:
            k = depth_index(counts, d)
            docs = background[:k] + core + background[k:]
            out.append(
                Sample(
                    id=f"qa/L{L}/d{d:g}/n{i}",
                    scenario=self.name,
                    length=L,
                    depth=d,
                    needle_index=i,
                    documents=docs,
                    gold_ids=gold_ids,
                    subject=row.question,
                    question=row.question,
                    gold=self.gold(row),
                    context_tokens=joined_tokens(counts[:k] + core_counts + counts[k:]),
                    meta={
                        "row": r + 1,
                        "row_id": row.id,
                        "layout": row.layout,
                        "gold_marked": bool(gold),
                        "gold_position": k,
                        "own_documents": len(core) + len(background) - len(others),
                        "other_rows_documents": len(others),
                        "cut": cut or None,
                    },
                )
            )
        return out

    def _others(self, r: int, seen: set[str]):
        """Other rows' documents, from the row after this one on (wrapping), each text once."""
        rows = self._rows()
        n = len(rows)
        for step in range(1, n):
            j = (r + step) % n
            for q, d in enumerate(rows[j].documents):
                text = d.render()
                if text in seen:
                    continue
                seen.add(text)
                yield Document(id=f"r{j}d{q}", text=text)

    def _fit(self, core: list[Document], answers: list[str], L: int, cache: TokenCache) -> tuple[list[Document], str]:
        """The core documents if they fit in L, else the window of pieces around the first holding an answer."""
        counts = cache.count([d.text for d in core])
        if joined_tokens(counts) <= L:
            return core, ""
        pieces = _pieces(core, L, cache)
        pc = cache.count([p.text for p in pieces])
        wanted = [normalize(a) for a in answers if normalize(a)]
        anchor = next((k for k, p in enumerate(pieces) if any(f" {a} " in f" {normalize(p.text)} " for a in wanted)), 0)
        lo, hi = anchor, anchor + 1
        if pc[anchor] > L:
            raise UsageError(f"qa: length {L} is too small for one sentence of a row's documents ({pc[anchor]} tokens)")
        while True:
            grew = False
            for cand in ((lo, hi + 1), (lo - 1, hi)):
                a, b = cand
                if a >= 0 and b <= len(pieces) and joined_tokens(pc[a:b]) <= L and (a, b) != (lo, hi):
                    lo, hi, grew = a, b, True
                    break
            if not grew:
                break
        left = sum(len(p.text) for p in pieces[:lo]) + sum(len(p.text) for p in pieces[hi:])
        return pieces[
            lo:hi
        ], f"own context cut to {hi - lo} of {len(pieces)} pieces around the answer ({left} characters left out)"

    # -- few-shot -----------------------------------------------------------------------------------
    def shots(self, n: int) -> list[Shot]:
        if n < 0:
            raise UsageError(f"qa: number of shots must be >= 0 (got {n})")
        if self.schema is not None:
            return self._row_shots(n)
        pool = [s for s in SHOTS if self.params.metric != "numeric" or number(s[2]) is not None]
        return [
            Shot(
                documents=[Document(id=f"s{j}d{q}", text=f"{t}\n{x}") for q, (t, x) in enumerate(docs)],
                question=question,
                answer={"answer": [answer]},
            )
            for j, (docs, question, answer) in enumerate(pool[:n])
        ]

    def _row_shots(self, n: int) -> list[Shot]:
        """JSON answers have the file's own form: shots are the last rows in asking order that the run
        does not ask (their gold documents only; fewer shots when the run asks nearly every row)."""
        rows = self._rows()
        picked = [r for r in self.order()[::-1] if r not in self._asked][:n]
        out = []
        for r in picked:
            row = rows[r]
            docs = [d for d in row.documents if d.gold] or row.documents[:1]
            out.append(
                Shot(
                    documents=[Document(id=f"s{r}d{q}", text=_short(d)) for q, d in enumerate(docs)],
                    question=row.question,
                    answer=self.gold(row),
                )
            )
        return out


class AnswerGrounding(Grounding):
    """An answer is supported by a text that holds it, both normalised as SQuAD does."""

    def is_claim(self, field: str, value: Any) -> bool:
        return value is not None and not isinstance(value, bool | dict | list) and bool(normalize(str(value)))

    def supports(self, field: str, value: Any, text: str) -> bool:
        return f" {normalize(str(value))} " in f" {normalize(text)} "


def _short(doc: QADoc, chars: int = 1200) -> str:
    text = doc.render()
    return text if len(text) <= chars else text[:chars] + " …"


def _answer_texts(answer: Any) -> list[str]:
    if isinstance(answer, dict):
        return [str(v) for v in answer.values() if isinstance(v, str | int | float) and not isinstance(v, bool)]
    return []


def _pieces(docs: list[Document], L: int, cache: TokenCache) -> list[Document]:
    """Documents, split into paragraphs and then sentences where one is longer than L tokens."""
    out: list[Document] = []
    for d in docs:
        if cache.count([d.text])[0] <= L:
            out.append(d)
            continue
        paras = [p for p in d.text.split("\n") if p.strip()]
        k = 0
        for para in paras:
            parts = [para] if cache.count([para])[0] <= L else [s for s in re.split(r"(?<=[.!?])\s+", para) if s]
            for part in parts:
                out.append(Document(id=f"{d.id}.p{k}", text=part))
                k += 1
    return out


def _load_schema(path: Path) -> dict[str, Any]:
    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: not a JSON schema ({e})") from None
    if (
        not isinstance(schema, dict)
        or schema.get("type") != "object"
        or not isinstance(schema.get("properties"), dict)
        or not schema["properties"]
    ):
        raise UsageError(
            f'{path}: expected a JSON schema of an object with properties ({{"type": "object", "properties": {{...}}}})'
        )
    import jsonschema

    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as e:
        raise UsageError(f"{path}: not a valid JSON schema ({e.message})") from None
    if "$ref" in json.dumps(schema):
        raise UsageError(f"{path}: the schema must be self-contained (no $ref)")
    return schema
