"""Question-answer files in the layouts people have, read into one typed row.

Files: .jsonl (a row a line), .json (a list of rows, or SQuAD's nested `data/paragraphs/qas`),
.csv (a cell that holds a JSON list or object is read as one), .parquet, and a folder written by
`datasets`' `save_to_disk`. Rows are read without any mapping in these layouts:

  FlashRAG            id, question, golden_answers[, metadata]  (documents under metadata, if any)
  Lost in the Middle  question, answers, ctxs: [{title, text, hasanswer, isgold}]    gold: isgold (else hasanswer)
  HotpotQA            question, answer, context: [[title, [sentences]]] (or {title: [], sentences: []}),
                      supporting_facts: [[title, sent_id]] (or {title: [], sent_id: []})      gold: supporting titles
  LongBench           input, context (one string), answers                          gold: not marked
  SQuAD               id, context (one string), question, answers: {text, answer_start}      gold: the context

`-P question= -P answers= -P documents= -P id=` name other columns (dotted for nested keys:
`metadata.passages`). A row that cannot be read raises RowError with 'field: why', one line.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from harness.plugin import UsageError

QUESTION_KEYS = ("question", "input", "query")
ANSWER_KEYS = ("golden_answers", "answers", "answer")
DOCUMENT_KEYS = ("ctxs", "context", "contexts", "documents", "passages")
ID_KEYS = ("id", "_id", "qid")
SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


class QADoc(BaseModel):
    """One document of a row: its title (may be empty), text, and whether the file marks it gold
    (None: the file does not say)."""

    title: str = ""
    text: str
    gold: bool | None = None

    def render(self) -> str:
        return f"{self.title}\n{self.text}" if self.title else self.text


class QARow(BaseModel):
    """A row as the scenario uses it: question, gold answers (strings) or one JSON answer (-P schema=),
    its own documents, and the layout it was read in."""

    id: str
    question: str
    answers: list[str] = []
    answer: Any = None  # the JSON answer of a -P schema= run
    documents: list[QADoc]
    layout: str

    @property
    def gold_marked(self) -> bool:
        return any(d.gold for d in self.documents)


class RowError(ValueError):
    """A row that cannot be used: 'field: why'."""


class Mapping(BaseModel):
    """Which column holds what (None: the layouts' own names)."""

    question: str | None = None
    answers: str | None = None
    documents: str | None = None
    id: str | None = None
    json_answer: bool = False  # -P schema=: the answer is a JSON object, not strings


# -- reading files ------------------------------------------------------------------------------------
def iter_rows(path: Path, split: str | None = None) -> Iterator[tuple[int, Any]]:
    """(row number from 1, raw row) of a file or `datasets` folder, streamed where the format allows."""
    if path.is_dir():
        yield from _arrow_folder(path, split)
        return
    if not path.exists():
        raise UsageError(f"{path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".jsonl":
            with open(path, encoding="utf-8") as fh:
                n = 0
                for text in fh:
                    if not text.strip():
                        continue
                    n += 1
                    try:
                        yield n, json.loads(text)
                    except json.JSONDecodeError as e:
                        yield n, RowError(f"invalid JSON ({e.msg} at column {e.colno})")
        elif suffix == ".json":
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            yield from enumerate(_json_rows(path, data), 1)
        elif suffix == ".csv":
            with open(path, encoding="utf-8", newline="") as fh:
                for n, row in enumerate(csv.DictReader(fh), 1):
                    yield n, {k: _cell(v) for k, v in row.items() if k is not None}
        elif suffix == ".parquet":
            import pyarrow.parquet as pq

            n = 0
            for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
                for row in batch.to_pylist():
                    n += 1
                    yield n, row
        else:
            raise UsageError(
                f"{path}: not a question-answer file ({', '.join(SUFFIXES)}, or a folder saved by datasets)"
            )
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UsageError(f"{path}: cannot read ({e})") from None
    except Exception as e:  # pyarrow's errors: a damaged parquet file
        if type(e).__module__.startswith("pyarrow"):
            raise UsageError(f"{path}: cannot read as parquet ({e})") from None
        raise


def _json_rows(path: Path, data: Any) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and isinstance(data.get("data"), list):  # SQuAD's official nested JSON
        rows = []
        for article in data["data"]:
            for para in article.get("paragraphs", []) if isinstance(article, dict) else []:
                for qa in para.get("qas", []):
                    rows.append(
                        {
                            "id": qa.get("id"),
                            "title": article.get("title", ""),
                            "context": para.get("context"),
                            "question": qa.get("question"),
                            "answers": {"text": [a.get("text") for a in qa.get("answers", [])]},
                        }
                    )
        return rows
    raise UsageError(f"{path}: expected a JSON list of rows (or SQuAD's {{'data': [...]}})")


def _cell(value: str | None) -> Any:
    """A CSV cell: a JSON list or object when it is one, else the text."""
    if value is None:
        return None
    s = value.strip()
    if s[:1] in "[{":
        try:
            return json.loads(s)
        except json.JSONDecodeError:
            return value
    return value


def _arrow_folder(path: Path, split: str | None) -> Iterator[tuple[int, Any]]:
    try:
        import datasets
    except ImportError:
        raise UsageError(f"{path}: a folder is read with the datasets library (pip install datasets)") from None
    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as e:
        raise UsageError(f"{path}: not a folder saved by datasets' save_to_disk ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        names = list(ds)
        pick = split or ("test" if "test" in ds else names[0] if len(names) == 1 else None)
        if pick not in ds:
            raise UsageError(f"{path}: splits {', '.join(names)}: choose one with -P split=NAME")
        ds = ds[pick]
    yield from enumerate(ds, 1)


# -- one row --------------------------------------------------------------------------------------------
def _get(row: dict[str, Any], dotted: str) -> Any:
    value: Any = row
    for part in dotted.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _first(row: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    for k in keys:
        if row.get(k) is not None:
            return k, row[k]
    meta = row.get("metadata")
    if isinstance(meta, dict):  # FlashRAG keeps a dataset's own columns under metadata
        for k in keys:
            if meta.get(k) is not None:
                return f"metadata.{k}", meta[k]
    return None, None


def _pick(row: dict[str, Any], mapped: str | None, keys: tuple[str, ...]) -> tuple[str | None, Any]:
    if mapped:
        return mapped, _get(row, mapped)
    return _first(row, keys)


def parse_row(raw: Any, n: int, mapping: Mapping) -> QARow:
    """One row in the scenario's form, or RowError naming the field."""
    if isinstance(raw, RowError):
        raise raw
    if not isinstance(raw, dict):
        raise RowError("expected an object (a row of named columns)")
    qkey, question = _pick(raw, mapping.question, QUESTION_KEYS)
    if not isinstance(question, str) or not question.strip():
        raise RowError(_missing(qkey or mapping.question, "question", QUESTION_KEYS, question))
    _, rid = _pick(raw, mapping.id, ID_KEYS)
    akey, answers = _pick(raw, mapping.answers, ANSWER_KEYS)
    dkey, docs = _pick(raw, mapping.documents, DOCUMENT_KEYS)
    if docs is None:
        raise RowError(
            "documents: none in this row (name the column with -P documents=FIELD; "
            f"read without one: {', '.join(DOCUMENT_KEYS)}, also under metadata)"
        )
    documents, layout = _documents(docs, dkey or "documents", raw)
    out = QARow(
        id=str(rid) if rid is not None and str(rid).strip() else f"row{n}",
        question=" ".join(question.split()),
        documents=documents,
        layout=_layout(raw, qkey, akey, layout),
    )
    if answers is None:
        raise RowError(_missing(akey or mapping.answers, "answers", ANSWER_KEYS, answers))
    where = akey or "answers"
    if mapping.json_answer:
        if isinstance(answers, str):
            try:
                answers = json.loads(answers)
            except json.JSONDecodeError:
                raise RowError(f"{where}: not a JSON object (a -P schema= run scores JSON answers)") from None
        if isinstance(answers, list) and len(answers) == 1:
            answers = answers[0]
        if not isinstance(answers, dict):
            raise RowError(f"{where}: expected a JSON object (a -P schema= run scores JSON answers)")
        out.answer = answers
        return out
    out.answers = _answer_strings(answers, where)
    return out


def _missing(key: str | None, what: str, keys: tuple[str, ...], value: Any) -> str:
    if key and value is not None:
        return f"{key}: expected a non-empty string" if what == "question" else f"{key}: no answers"
    hint = f"-P {what}=FIELD names another column; read without one: {', '.join(keys)}"
    return f"{key or what}: missing ({hint})"


def _answer_strings(value: Any, where: str) -> list[str]:
    if isinstance(value, dict) and "text" in value:  # SQuAD: {"text": [...], "answer_start": [...]}
        value, where = value["text"], f"{where}.text"
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list | tuple):
        raise RowError(f"{where}: expected a list of answers or one answer")
    out = []
    for a in value:
        if isinstance(a, bool) or not isinstance(a, str | int | float):
            raise RowError(f"{where}: {a!r} is not an answer (strings or numbers)")
        text = " ".join(str(a).split())
        if text:
            out.append(text)
    if not out:
        raise RowError(f"{where}: no answers (an empty list cannot be scored)")
    return list(dict.fromkeys(out))


def _documents(value: Any, key: str, row: dict[str, Any]) -> tuple[list[QADoc], str]:
    """(documents, layout hint) of a row's context column."""
    facts = _supporting_titles(row.get("supporting_facts") or _get(row, "metadata.supporting_facts"))
    if isinstance(value, str):  # one context: SQuAD's passage (gold: the question is on it) or LongBench's
        if not value.strip():
            raise RowError(f"{key}: empty")
        squad = isinstance(row.get("answers"), dict) or "answer_start" in str(row.get("answers", ""))[:200]
        if squad:
            return [QADoc(title=str(row.get("title") or ""), text=value, gold=True)], "squad"
        return [QADoc(text=p) for p in _paragraphs(value)], "context"
    if isinstance(value, dict) and "title" in value and "sentences" in value:  # HotpotQA as datasets has it
        value = list(zip(value["title"], value["sentences"]))
    if not isinstance(value, list | tuple) or not value:
        raise RowError(f"{key}: expected a string, a list of documents or [title, sentences] pairs")
    docs: list[QADoc] = []
    has_answer: list[bool] = []  # Lost in the Middle's hasanswer: gold when no passage is marked isgold
    layout = "documents"
    for j, item in enumerate(value):
        if isinstance(item, str):
            docs.append(QADoc(text=item))
        elif isinstance(item, list | tuple) and len(item) == 2 and isinstance(item[0], str):  # [title, sentences]
            sents = item[1]
            text = "".join(sents) if isinstance(sents, list | tuple) else str(sents)
            docs.append(QADoc(title=item[0], text=text, gold=(item[0] in facts) if facts else None))
            layout = "hotpotqa"
        elif isinstance(item, dict):
            text = item.get("text", item.get("contents", item.get("paragraph_text")))
            if not isinstance(text, str):
                raise RowError(f"{key}[{j}]: no text")
            gold = item.get("isgold")
            docs.append(
                QADoc(title=str(item.get("title") or ""), text=text, gold=bool(gold) if gold is not None else None)
            )
            if "isgold" in item or "hasanswer" in item:
                layout = "ctxs"
        else:
            raise RowError(f"{key}[{j}]: expected a string, an object with text, or [title, sentences]")
        has_answer.append(bool(item.get("hasanswer")) if isinstance(item, dict) else False)
    if not any(d.gold for d in docs) and any(has_answer):
        for d, h in zip(docs, has_answer):
            d.gold = h
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise RowError(f"{key}: every document is empty")
    return docs, layout


def _supporting_titles(value: Any) -> set[str]:
    if isinstance(value, dict) and isinstance(value.get("title"), list):
        return {str(t) for t in value["title"]}
    if isinstance(value, list):
        return {str(f[0]) for f in value if isinstance(f, list | tuple) and f}
    return set()


def _paragraphs(text: str) -> list[str]:
    parts = [p.strip() for p in text.split("\n\n")]
    parts = [p for p in parts if p]
    return parts or [text]


def _layout(raw: dict[str, Any], qkey: str | None, akey: str | None, hint: str) -> str:
    if akey == "golden_answers":
        return "flashrag"
    if hint == "squad":
        return "squad"
    if hint == "ctxs":
        return "lost-in-the-middle"
    if hint == "hotpotqa":
        return "hotpotqa"
    if qkey == "input" and hint == "context":
        return "longbench"
    return "other"
