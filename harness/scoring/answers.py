"""Parse a model's raw text into an answer and mark it field by field, never raising.

A response that is not JSON, not an object, or does not fit the scenario's schema is
*invalid*: every field scores 0 and the reason is kept, so the run goes on and the
report can show why.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema

MAX_REASON = 300


def parse_answer(raw: str, schema: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(answer, None) when `raw` is a JSON object valid under `schema`, else (None, reason)."""
    if not isinstance(raw, str):
        return None, f"response is {type(raw).__name__}, not text"
    text = raw.strip()
    if not text:
        return None, "empty response"
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        return None, f"not JSON: {str(e)[:MAX_REASON]}"
    if not isinstance(value, dict):
        return None, f"JSON {type(value).__name__}, not an object"
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as e:
        where = "/".join(map(str, e.absolute_path)) or "answer"
        return None, f"schema: {where}: {e.message[:MAX_REASON]}"
    except (jsonschema.SchemaError, RecursionError) as e:
        return None, f"schema check failed: {str(e)[:MAX_REASON]}"
    return value, None


def mark(scenario, answer: dict[str, Any] | None, gold: dict[str, Any]) -> tuple[dict[str, bool], float]:
    """Per-field marks and their mean; an invalid answer gets every field wrong."""
    if answer is None:
        marks = {f: False for f in scenario.fields}
    else:
        try:
            marks = {f: bool(v) for f, v in scenario.score(answer, gold).items()}
        except Exception:  # a scorer bug must not sink a paid-for query
            marks = {f: False for f in scenario.fields}
    return marks, (sum(marks.values()) / len(marks) if marks else 0.0)
