"""The biography record schema and reading it from JSONL, streamed.

One JSON object a line: {"name": ..., "bio": ..., "json": {labels}}, as the published data has
it: needles carry labels, haystack files often do not (`json` left out or null), and extra keys
(a token count, a source id) are ignored. The same pydantic models type the generator's output
and give the answer schema, so a label the loader accepts is exactly an answer the model may give.

Labels written by people or LLMs ("1951", "yes", " French ") go through labels.normalise_labels:
what is read without doubt is normalised and counted in a `ReadReport`, anything else is refused
with file, line and field — a silently coerced value would become a wrong gold answer.

Files are read a line at a time (`read_bios`): a 100k-line file is never held as text, nor its
parsed JSON kept beside the records.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.plugin import UsageError
from scenarios.bio_needle.labels import NATIONALITY_MAX_LENGTH, YEAR_MAX, LabelError, normalise_labels


class BioDate(BaseModel):
    """A calendar date with 0 for each unknown part (all zeros: no date)."""

    model_config = ConfigDict(strict=True)

    day: int = Field(ge=0, le=31)
    month: int = Field(ge=0, le=12)
    year: int = Field(ge=0, le=YEAR_MAX)


class BioLabels(BaseModel):
    """What the model must answer about a person; also the answer schema."""

    model_config = ConfigDict(strict=True)

    nationality: str = Field(min_length=1, max_length=NATIONALITY_MAX_LENGTH)
    date_of_birth: BioDate
    date_of_death: BioDate
    sportsperson: bool
    politician: bool


class BioRecord(BaseModel):
    """One biography with its labels (None: not labeled yet), as stored in a JSONL line."""

    model_config = ConfigDict(strict=True, populate_by_name=True)

    name: str = Field(min_length=1)
    bio: str = Field(min_length=1)
    labels: BioLabels | None = Field(None, alias="json")
    occupation: str | None = Field(
        None,
        min_length=1,
        description='what the biography says the person is or was, in its words ("road cyclist"); not scored: the '
        "compact answer form writes it before the two roles, so a reader decides them from a word it copied",
    )

    def to_json_line(self) -> str:
        return json.dumps(self.model_dump(by_alias=True, exclude_none=True), ensure_ascii=False)


@dataclass
class Line:
    """One biography as read: its line number, the record, the keys it had besides name/bio/json,
    and the normalisations its labels needed."""

    lineno: int
    record: BioRecord
    extras: dict[str, Any]
    notes: list[str]


MAX_REFUSALS_KEPT = 50


@dataclass
class ReadReport:
    """What reading a file found: counts, normalisations (with the first line of each), refusals."""

    path: str
    lines: int = 0  # non-blank lines
    blank: int = 0
    labeled: int = 0
    unlabeled: int = 0
    normalised: Counter = field(default_factory=Counter)  # note -> records it applied to
    first_line: dict[str, int] = field(default_factory=dict)  # note -> first line number
    refused: list[str] = field(default_factory=list)  # "file line N: field: why", the first ones
    refused_count: int = 0
    dropped_labels: list[str] = field(default_factory=list)  # "line N: field: why", the first ones (haystack only)
    dropped_count: int = 0

    @property
    def records(self) -> int:
        return self.labeled + self.unlabeled

    def note_lines(self) -> list[str]:
        """'json.x: what was done (N biographies, first on line L)', most frequent first."""
        return [
            f"{note} ({n:,} biograph{'y' if n == 1 else 'ies'}, first on line {self.first_line[note]})"
            for note, n in self.normalised.most_common()
        ] + self.dropped_lines()

    def dropped_lines(self) -> list[str]:
        """'N impossible labels dropped ... (first: line L: field: why)': haystack labels that could not be
        read, whose biographies were kept unlabeled."""
        if not self.dropped_count:
            return []
        n = self.dropped_count
        return [
            f"{n:,} impossible label{'s' if n != 1 else ''} dropped, the biograph{'y' if n == 1 else 'ies'} kept "
            f"unlabeled (haystack labels only feed the null baseline; first: {self.dropped_labels[0]})"
        ]


_MESSAGES = {
    "int_type": "expected an integer",
    "bool_type": "expected true or false",
    "string_type": "expected a string",
    "model_type": "expected a JSON object",
    "dict_type": "expected a JSON object",
    "missing": "missing",
    "string_too_short": "must not be empty",
}


def _describe(err: ValidationError) -> str:
    """The first validation error as 'dotted.path: message' (one line, for the CLI)."""
    errors = err.errors()
    first = errors[0]
    where = ".".join(str(p) for p in first["loc"])
    msg = _MESSAGES.get(first["type"], first["msg"][:1].lower() + first["msg"][1:])
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {msg}{more}" if where else f"{msg}{more}"


class LineError(ValueError):
    """A line that cannot be read as a biography: 'field: why'."""


def _text(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if value is None:
        raise LineError(f"{key}: missing")
    if not isinstance(value, str):
        raise LineError(f"{key}: expected a string")
    if not value.strip():
        raise LineError(f"{key}: must not be empty")
    return value


class DroppedLabel(LineError):
    """A haystack line whose labels cannot be read: the biography is kept without them."""

    def __init__(self, message: str, record: BioRecord, extras: dict[str, Any], notes: list[str]):
        super().__init__(message)
        self.parsed = (record, extras, notes)


def parse_line(
    text: str, need_labels: bool = False, drop_bad_labels: bool = False
) -> tuple[BioRecord, dict[str, Any], list[str]]:
    """(record, extra keys, normalisations) of one JSONL line, or LineError with 'field: why'.

    drop_bad_labels (a haystack's lines, whose labels only feed the null baseline): labels that cannot
    be read raise DroppedLabel, which carries the biography parsed without them."""
    try:
        obj: Any = json.loads(text)
    except json.JSONDecodeError as e:
        raise LineError(f"invalid JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise LineError("expected a JSON object")
    name, bio = _text(obj, "name"), _text(obj, "bio")
    notes: list[str] = []
    clean = " ".join(name.split())
    if clean != name:
        notes.append("name: spaces normalised")
    raw = obj.pop("json", None)
    labels = None
    dropped = None
    if raw is not None:
        try:
            values, more = normalise_labels(raw)
        except LabelError as e:
            why = f"json.{e.field}: {e.message}" if e.field != "json" else f"json: {e.message}"
            if not drop_bad_labels:
                raise LineError(why) from None
            dropped, raw, more = why, None, []
    if raw is not None:
        notes += more
        try:
            labels = BioLabels.model_validate(values)
        except ValidationError as e:  # normalise_labels lets nothing through that fails here; a guard
            raise LineError("json." + _describe(e)) from None
    elif need_labels:
        raise LineError("json: missing (needles need labels: `harness data label FILE` writes them)")
    obj.pop("name"), obj.pop("bio")
    occupation = None
    if isinstance(obj.get("occupation"), str):  # optional, unscored: see BioRecord.occupation
        occupation = " ".join(obj.pop("occupation").split()) or None
    record = BioRecord(name=clean, bio=bio, labels=labels, occupation=occupation)
    if dropped is not None:
        raise DroppedLabel(dropped, record, obj, list(dict.fromkeys(notes)))
    return record, obj, list(dict.fromkeys(notes))


def read_bios(
    path: str | Path,
    *,
    strict: bool = True,
    need_labels: bool = False,
    drop_bad_labels: bool = False,
    report: ReadReport | None = None,
) -> Iterator[Line]:
    """Each good line of a biography file, in order, read a line at a time.

    strict: the first bad line raises UsageError naming file, line and field; otherwise bad lines
    are counted in `report` (the first MAX_REFUSALS_KEPT kept as messages) and skipped.
    drop_bad_labels (a haystack): a line whose labels cannot be read keeps its biography, unlabeled;
    the dropped labels are counted in `report` (published haystacks hold the odd impossible label,
    and a haystack's labels only feed the null baseline). Needle labels are never dropped.
    """
    path = Path(path)
    report = report if report is not None else ReadReport(str(path))
    try:
        fh = open(path, encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read ({e})") from None
    lineno = 0
    with fh:
        try:
            for lineno, text in enumerate(fh, 1):
                if not text.strip():
                    report.blank += 1
                    continue
                report.lines += 1
                try:
                    record, extras, notes = parse_line(text, need_labels, drop_bad_labels)
                except DroppedLabel as e:
                    record, extras, notes = e.parsed
                    report.dropped_count += 1
                    if len(report.dropped_labels) < MAX_REFUSALS_KEPT:
                        report.dropped_labels.append(f"line {lineno}: {e}")
                except LineError as e:
                    message = f"{path} line {lineno}: {e}"
                    if strict:
                        raise UsageError(message) from None
                    report.refused_count += 1
                    if len(report.refused) < MAX_REFUSALS_KEPT:
                        report.refused.append(message)
                    continue
                if record.labels is None:
                    report.unlabeled += 1
                else:
                    report.labeled += 1
                for note in notes:
                    report.normalised[note] += 1
                    report.first_line.setdefault(note, lineno)
                yield Line(lineno, record, extras, notes)
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"{path} line {lineno + 1}: cannot read ({e})") from None


def load_jsonl(path: str | Path, need_labels: bool = False) -> list[BioRecord]:
    """Every record of a file (small files: needles, tests); a bad line raises UsageError naming file and line."""
    return [line.record for line in read_bios(path, need_labels=need_labels)]
