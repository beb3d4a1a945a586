"""Labels as people and LLMs write them, read into the scored form — or refused.

A label file is gold: whatever is read here is what answers are marked against. So a label is
normalised only when the intended value is beyond doubt, every normalisation is named (and
counted by the loader), and anything that could be a wrong answer is refused with its field:

  normalised                                         refused
  "1951", " 3 " (numbers as strings)                 "1951?", "c. 1951", "1950s", 3.5, -1
  null / "" / "unknown" for a date part  -> 0        day 31 in February, month 13, day 32
  a null, "" or "0" date         -> no date (zeros)  death before birth, or 126+ years after it
  "1951-01-28" / "1951" date strings                 "28/01/1951" (order is ambiguous)
  "March", "mar" for a month     -> 3
  " French " (case, spaces)      -> "french"         "french?", "french/italian", "" (empty)
  null, "n/a", "none" nationality -> "unknown"
  "yes"/"no", "true"/"false", "y"/"n", 1/0            "maybe", null, "unknown" for a boolean
  compact keys "born"/"died"     -> date_of_birth/..  a missing field
  extra keys                     -> ignored (named)

`normalise_labels` returns the labels and the names of the normalisations it applied (the same
name for the same kind of change, so they can be counted over a file), or raises `LabelError`
naming the field.
"""

from __future__ import annotations

import calendar
import re
from typing import Any

NATIONALITY_MAX_LENGTH = 40
YEAR_MAX = 2100
MAX_LIFESPAN = 125  # years between birth and death beyond which a label pair is surely wrong
FIELDS = ("nationality", "date_of_birth", "date_of_death", "sportsperson", "politician")
DATE_FIELDS = ("date_of_birth", "date_of_death")
BOOL_FIELDS = ("sportsperson", "politician")
COMPACT_KEYS = {"born": "date_of_birth", "died": "date_of_death"}

_TRUE = frozenset({"true", "yes", "y", "t"})
_FALSE = frozenset({"false", "no", "n", "f"})
# What a labeller writes for "the text gives no nationality".
_NO_NATIONALITY = frozenset(
    {"n/a", "na", "none", "null", "not stated", "not given", "not specified", "unspecified", "not mentioned", "unknown"}
)
_NATIONALITY = re.compile(r"[^\W\d_]+(?:[ '\-][^\W\d_]+)*")
_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_name) if m}
_MONTHS.update({m.lower(): i for i, m in enumerate(calendar.month_abbr) if m})
_MONTHS["sept"] = 9
_ISO = re.compile(r"(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?")
_DIGITS = re.compile(r"\d{1,4}")


class LabelError(ValueError):
    """A label that cannot be read without guessing: `field` is its dotted path inside the labels."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else '"' + value + '"'
    return text if len(text) <= 40 else text[:37] + "..."


def normalise_labels(raw: Any) -> tuple[dict[str, Any], list[str]]:
    """(labels in the scored form, names of the normalisations applied) or LabelError."""
    if not isinstance(raw, dict):
        raise LabelError("json", "expected a JSON object")
    if not raw:
        raise LabelError("json", "empty object (leave json out for an unlabeled biography)")
    notes: list[str] = []
    raw = dict(raw)
    for short, full in COMPACT_KEYS.items():
        if short in raw and full not in raw:
            raw[full] = raw.pop(short)
            notes.append("compact keys born/died read as date_of_birth/date_of_death")
    extra = sorted(k for k in raw if k not in FIELDS)
    if extra:
        notes.append(f"extra label keys ignored ({', '.join(map(str, extra))})")
    for f in FIELDS:
        if f not in raw:
            raise LabelError(f, "missing")
    out: dict[str, Any] = {"nationality": _nationality(raw["nationality"], notes)}
    for f in DATE_FIELDS:
        out[f] = _date(f, raw[f], notes)
    birth, death = out["date_of_birth"], out["date_of_death"]
    if birth["year"] and death["year"] and _before(death, birth):
        raise LabelError("date_of_death", f"{_iso(death)} is before the date of birth {_iso(birth)}")
    if birth["year"] and death["year"] and death["year"] - birth["year"] > MAX_LIFESPAN:
        raise LabelError(
            "date_of_death", f"{death['year'] - birth['year']} years after the date of birth (more than {MAX_LIFESPAN})"
        )
    for f in BOOL_FIELDS:
        out[f] = _boolean(f, raw[f], notes)
    return out, notes


def _before(a: dict[str, int], b: dict[str, int]) -> bool:
    """`a` is surely before `b`, judging only the parts both dates give."""
    for part in ("year", "month", "day"):
        if not (a[part] and b[part]):
            return False
        if a[part] != b[part]:
            return a[part] < b[part]
    return False


def _iso(d: dict[str, int]) -> str:
    return f"{d['year']:04d}-{d['month']:02d}-{d['day']:02d}"


def _nationality(value: Any, notes: list[str]) -> str:
    if value is None:
        notes.append('nationality: null read as "unknown"')
        return "unknown"
    if not isinstance(value, str):
        raise LabelError("nationality", "expected a string")
    text = " ".join(value.split()).lower()
    if not text:
        raise LabelError("nationality", 'must not be empty ("unknown" when the text states none)')
    if text in _NO_NATIONALITY and text != "unknown":
        notes.append(f'nationality: {_show(text)} read as "unknown"')
        return "unknown"
    if text != value:
        notes.append("nationality: case or spaces normalised")
    if len(text) > NATIONALITY_MAX_LENGTH:
        raise LabelError("nationality", f"longer than {NATIONALITY_MAX_LENGTH} characters")
    if not _NATIONALITY.fullmatch(text):
        raise LabelError("nationality", f"{_show(value)} is not one nationality (letters, spaces, hyphens only)")
    return text


def _date(field: str, value: Any, notes: list[str]) -> dict[str, int]:
    if value is None or value in ("", "0"):
        said = "null" if value is None else "empty string" if value == "" else '"0"'
        notes.append(f"{field}: {said} read as no date (zeros)")
        return {"day": 0, "month": 0, "year": 0}
    if isinstance(value, str):
        m = _ISO.fullmatch(value.strip())
        if not m:
            raise LabelError(
                field,
                f'{_show(value)} is not a date (an object with day, month, year, or "YYYY-MM-DD", "YYYY-MM", "YYYY")',
            )
        notes.append(f'{field}: written as a "YYYY-MM-DD" string')
        year, month, day = (int(p) if p else 0 for p in m.groups())
        return _valid_date(field, day, month, year)
    if not isinstance(value, dict):
        raise LabelError(field, "expected a JSON object with day, month, year")
    extra = sorted(k for k in value if k not in ("day", "month", "year"))
    if extra:
        raise LabelError(f"{field}.{extra[0]}", "not a date part (day, month, year)")
    parts = {}
    for part in ("day", "month", "year"):
        if part not in value:
            notes.append(f"{field}: a missing part read as 0 (unknown)")
        parts[part] = _part(f"{field}.{part}", value.get(part), notes)
    return _valid_date(field, parts["day"], parts["month"], parts["year"])


def _part(where: str, value: Any, notes: list[str]) -> int:
    """One date part as an integer, 0 for unknown."""
    if value is None:
        notes.append("date parts: null read as 0 (unknown)")
        return 0
    if isinstance(value, bool):
        raise LabelError(where, "expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            notes.append("date parts: whole numbers written as decimals")
            return int(value)
        raise LabelError(where, "expected an integer")
    if isinstance(value, str):
        text = value.strip()
        if text == "" or text.lower() == "unknown":
            notes.append('date parts: "" or "unknown" read as 0 (unknown)')
            return 0
        if _DIGITS.fullmatch(text):
            notes.append("date parts: numbers written as strings")
            return int(text)
        if where.endswith(".month") and text.lower().rstrip(".") in _MONTHS:
            notes.append("months written as names")
            return _MONTHS[text.lower().rstrip(".")]
        raise LabelError(where, f"{_show(value)} is not a number")
    raise LabelError(where, "expected an integer")


def _valid_date(field: str, day: int, month: int, year: int) -> dict[str, int]:
    if not 0 <= year <= YEAR_MAX:
        raise LabelError(f"{field}.year", f"{year} is outside 0-{YEAR_MAX} (0: unknown)")
    if not 0 <= month <= 12:
        raise LabelError(f"{field}.month", f"{month} is not a month (1-12, or 0: unknown)")
    # An unknown year may be a leap year; an unknown month may be any month.
    last = 31 if not month else calendar.monthrange(year or 2000, month)[1]
    if not 0 <= day <= last:
        where = f" of {calendar.month_name[month]}{f' {year}' if year else ''}" if month else ""
        raise LabelError(f"{field}.day", f"{day} is not a day{where} (1-{last}, or 0: unknown)")
    return {"day": day, "month": month, "year": year}


def _boolean(field: str, value: Any, notes: list[str]) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        notes.append("booleans written as 1/0")
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _TRUE or word in _FALSE:
            notes.append("booleans written as words (yes/no, true/false)")
            return word in _TRUE
    raise LabelError(
        field, f"{_show(value)} is not true or false" if value is not None else "null is not true or false"
    )
