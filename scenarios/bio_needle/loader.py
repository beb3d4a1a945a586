"""The biography record schema and reading it from JSONL.

One JSON object a line: {"name": ..., "bio": ..., "json": {labels}}. The same pydantic
models validate data files, type the generator's output and give the answer schema, so a
label the loader accepts is exactly an answer the model may give. Validation is strict
(no "3" for 3, no 1 for true): a data file is read once and silently coerced values would
turn into wrong gold answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.errors import UsageError

NATIONALITY_MAX_LENGTH = 40


class BioDate(BaseModel):
    """A calendar date with 0 for each unknown part (all zeros: no date)."""

    model_config = ConfigDict(strict=True)

    day: int = Field(ge=0, le=31)
    month: int = Field(ge=0, le=12)
    year: int = Field(ge=0, le=2100)


class BioLabels(BaseModel):
    """What the model must answer about a person; also the answer schema."""

    model_config = ConfigDict(strict=True)

    nationality: str = Field(min_length=1, max_length=NATIONALITY_MAX_LENGTH)
    date_of_birth: BioDate
    date_of_death: BioDate
    sportsperson: bool
    politician: bool


class BioRecord(BaseModel):
    """One biography with its labels, as stored in a JSONL line."""

    model_config = ConfigDict(strict=True, populate_by_name=True)

    name: str = Field(min_length=1)
    bio: str = Field(min_length=1)
    labels: BioLabels = Field(alias="json")

    def to_json_line(self) -> str:
        return json.dumps(self.model_dump(by_alias=True), ensure_ascii=False)


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


def load_jsonl(path: str | Path) -> list[BioRecord]:
    """Read and validate every record; a bad line raises UsageError naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read ({e})") from None
    records: list[BioRecord] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj: Any = json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"{path} line {lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
        try:
            records.append(BioRecord.model_validate(obj))
        except ValidationError as e:
            raise UsageError(f"{path} line {lineno}: {_describe(e)}") from None
    return records
